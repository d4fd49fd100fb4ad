"""ConstructionRecorder against a real IPython shell."""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import textwrap
from collections.abc import Iterator
from typing import Any, cast

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

from easytensor_jupyter.capture import ConstructionRecorder, InitArgs, history_from_shell


@pytest.fixture
def recorder(shell: InteractiveShell) -> Iterator[ConstructionRecorder]:
    instance = ConstructionRecorder()
    instance.install(shell)
    yield instance
    instance.uninstall()


def run(shell: InteractiveShell, source: str, cell_id: str | None = None) -> None:
    result = cast(Any, shell).run_cell(textwrap.dedent(source), store_history=True, cell_id=cell_id)
    assert result.success, result.error_in_exec or result.error_before_exec


MODEL_CELL = '''
import torch
from torch import nn

class Sentiment(nn.Module):
    """A tiny model."""

    def __init__(self, vocab_size, hidden=4, labels=("neg", "pos")):
        super().__init__()
        self.labels = list(labels)
        self.lin = nn.Linear(vocab_size, hidden)

    def predict_single(self, features):
        """Classify one input."""
        return self.labels[int(self.lin(torch.as_tensor(features)).argmax()) % 2]
'''


def test_records_positional_and_keyword_arguments(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(shell, "import numpy as np\nclf = Sentiment(3, hidden=np.int64(8), labels=('bad', 'good'))")
    run(shell, "other = Sentiment(2)")
    init = recorder.init_args(shell.user_ns["clf"])
    assert init == InitArgs("Sentiment", [3], {"hidden": 8, "labels": ["bad", "good"]})
    assert init.is_json and init.bad_argument is None
    other = recorder.init_args(shell.user_ns["other"])
    assert other is not None and (other.args, other.kwargs) == ([2], {})


def test_class_without_own_init_records_empty_call(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, "import torch\nclass Bare(torch.nn.Module):\n    pass")
    run(shell, "m = Bare()")
    assert recorder.init_args(shell.user_ns["m"]) == InitArgs("Bare", [], {})
    bare = shell.user_ns["Bare"]
    assert bare.__init__.__qualname__ == "Bare.__init__"


def test_super_init_does_not_overwrite_the_outer_call(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(
        shell,
        """
        class Bigger(Sentiment):
            def __init__(self, width, depth=2):
                super().__init__(width * 10, hidden=depth)

        class NoInit(Bigger):
            pass
        """,
    )
    run(
        shell,
        """
        big = Bigger(1, depth=3)
        deeper = NoInit(2)
        """,
    )
    assert recorder.init_args(shell.user_ns["big"]) == InitArgs("Bigger", [1], {"depth": 3})
    assert recorder.init_args(shell.user_ns["deeper"]) == InitArgs("NoInit", [2], {})
    assert "__init__" not in shell.user_ns["NoInit"].__dict__


def test_subclass_built_in_its_defining_cell_is_not_misrecorded(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(
        shell,
        """
        class Sub(Sentiment):
            def __init__(self, width):
                super().__init__(width * 10, hidden=width)

            def predict_single(self, features):
                return super().predict_single([0.0] * len(features))

        sub = Sub(1)
        sub.predict_single([5.0] * 10)
        """,
    )
    sub = shell.user_ns["sub"]
    assert recorder.init_args(sub) is None
    assert recorder.last_input(sub) == (False, None)
    run(shell, "sub2 = Sub(2)\nsub2.predict_single([7.0] * 20)")
    sub2 = shell.user_ns["sub2"]
    assert recorder.init_args(sub2) == InitArgs("Sub", [2], {})
    assert recorder.last_input(sub2) == (True, [7.0] * 20)


def test_non_json_argument_is_named_and_kept_as_an_object(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(
        shell,
        """
        a = Sentiment(2, 4, torch.ones(2))
        b = Sentiment(2, labels={1: "x"})
        c = Sentiment(2, labels=["x", float("nan")])
        """,
    )
    first = recorder.init_args(shell.user_ns["a"])
    assert first is not None and not first.is_json
    assert (first.bad_argument, first.bad_type) == ("labels", "Tensor")
    assert first.args[:2] == [2, 4] and torch.equal(first.args[2], torch.ones(2))
    assert first.args[2] is not shell.user_ns["a"].labels
    second = recorder.init_args(shell.user_ns["b"])
    assert second is not None and (second.bad_argument, second.bad_type) == ("labels", "dict")
    third = recorder.init_args(shell.user_ns["c"])
    assert third is not None and (third.bad_argument, third.bad_type) == ("labels", "list")


def test_arguments_are_copied_before_init_mutates_them(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(
        shell,
        """
        import torch
        class Mutating(torch.nn.Module):
            def __init__(self, sizes):
                super().__init__()
                sizes.append(99)
        """,
    )
    run(
        shell,
        """
        sizes = [1, 2]
        m = Mutating(sizes)
        """,
    )
    assert recorder.init_args(shell.user_ns["m"]) == InitArgs("Mutating", [[1, 2]], {})


def test_last_input_is_recorded_per_instance(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(shell, "a = Sentiment(2)\nb = Sentiment(2)\nc = Sentiment(2)")
    a, b, c = (shell.user_ns[k] for k in "abc")
    assert recorder.last_input(a) == (False, None)
    run(shell, "a.predict_single([1.0, 2.0])\na.predict_single([3.0, 4.0])")
    run(shell, "b.predict_single(features=(0.5, 0.5))")
    assert recorder.last_input(a) == (True, [3.0, 4.0])
    assert recorder.last_input(b) == (True, [0.5, 0.5])
    run(shell, "c.predict_single(torch.ones(2).tolist())\nc.predict_single(torch.ones(2))")
    assert recorder.last_input(c) == (True, [1.0, 1.0])


def test_last_input_accepts_text_and_bytes(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(
        shell,
        """
        import torch
        class Echo(torch.nn.Module):
            def predict_single(self, input):
                return len(input)
        """,
    )
    run(
        shell,
        """
        e = Echo()
        e.predict_single("hello")
        f = Echo()
        f.predict_single(b"raw")
        """,
    )
    assert recorder.last_input(shell.user_ns["e"]) == (True, "hello")
    assert recorder.last_input(shell.user_ns["f"]) == (True, b"raw")


def test_wrapping_keeps_metadata_and_is_idempotent(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    cls = shell.user_ns["Sentiment"]
    init, predict = cls.__dict__["__init__"], cls.__dict__["predict_single"]
    assert init.__name__ == "__init__" and init.__qualname__ == "Sentiment.__init__"
    assert predict.__doc__ == "Classify one input."
    assert list(inspect.signature(cls).parameters) == ["vocab_size", "hidden", "labels"]
    assert inspect.unwrap(init) is init.__wrapped__
    assert not hasattr(init.__wrapped__, "__wrapped__")
    assert recorder.scan(shell.user_ns) == []
    run(shell, "x = 1")
    assert cls.__dict__["__init__"] is init and cls.__dict__["predict_single"] is predict


def test_pickling_and_state_dicts_still_work(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(shell, "clf = Sentiment(3, hidden=2)")
    clf = shell.user_ns["clf"]
    buffer = io.BytesIO()
    torch.save(clf.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    restored = pickle.loads(pickle.dumps(clf))
    assert torch.equal(restored.lin.weight, clf.lin.weight)
    clone = copy.deepcopy(clf)
    clone.load_state_dict(state, strict=True)
    assert torch.equal(clone.lin.bias, clf.lin.bias)
    fresh = shell.user_ns["Sentiment"](3, hidden=2)
    fresh.load_state_dict(state, strict=True)
    assert recorder.init_args(fresh) == InitArgs("Sentiment", [3], {"hidden": 2})


def test_classes_pickled_by_value_still_work(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    run(shell, MODEL_CELL)
    run(shell, "clf = Sentiment(3, hidden=2)")
    clf = shell.user_ns["clf"]
    restored = pickle.loads(cloudpickle.dumps(clf))
    assert torch.equal(restored.lin.weight, clf.lin.weight)
    rebuilt = pickle.loads(cloudpickle.dumps(shell.user_ns["Sentiment"]))(2)
    assert rebuilt.predict_single([1.0, 0.0]) in ("neg", "pos")


def test_two_recorders_both_record(shell: InteractiveShell, recorder: ConstructionRecorder) -> None:
    second = ConstructionRecorder()
    second.install(shell)
    run(shell, MODEL_CELL)
    run(shell, "clf = Sentiment(3, hidden=2)\nclf.predict_single([1.0, 2.0, 3.0])")
    clf = shell.user_ns["clf"]
    expected = InitArgs("Sentiment", [3], {"hidden": 2})
    assert recorder.init_args(clf) == expected and second.init_args(clf) == expected
    assert recorder.last_input(clf) == second.last_input(clf) == (True, [1.0, 2.0, 3.0])
    second.uninstall()


def test_instances_of_a_redefined_class_are_still_found(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(shell, "clf = Sentiment(5, hidden=6)")
    old_class = shell.user_ns["Sentiment"]
    run(shell, MODEL_CELL)
    new_class = shell.user_ns["Sentiment"]
    assert new_class is not old_class
    assert "__easytensor_recorder__" in dir(new_class.__dict__["__init__"])
    clf = shell.user_ns["clf"]
    assert type(clf) is old_class
    assert recorder.init_args(clf) == InitArgs("Sentiment", [5], {"hidden": 6})
    run(shell, "clf2 = Sentiment(7)")
    assert recorder.init_args(shell.user_ns["clf2"]) == InitArgs("Sentiment", [7], {})


def test_records_vanish_with_their_instances(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(shell, MODEL_CELL)
    run(shell, "clf = Sentiment(1)")
    assert len(recorder._inits._data) == 1
    run(shell, "del clf\nimport gc\ngc.collect()")
    cast(Any, shell).reset(new_session=False)
    import gc

    gc.collect()
    assert len(recorder._inits._data) == 0


def test_unhashable_modules_are_recorded(
    shell: InteractiveShell, recorder: ConstructionRecorder
) -> None:
    run(
        shell,
        """
        import torch
        class Eq(torch.nn.Module):
            def __init__(self, n):
                super().__init__()
                self.n = n
            def __eq__(self, other):
                return True
        """,
    )
    run(
        shell,
        """
        a, b = Eq(1), Eq(2)
        """,
    )
    assert recorder.init_args(shell.user_ns["a"]) == InitArgs("Eq", [1], {})
    assert recorder.init_args(shell.user_ns["b"]) == InitArgs("Eq", [2], {})


def test_uninstall_restores_classes_and_stops_recording(shell: InteractiveShell) -> None:
    recorder = ConstructionRecorder()
    recorder.install(shell)
    recorder.install(shell)
    run(shell, MODEL_CELL)
    cls = shell.user_ns["Sentiment"]
    run(shell, "before = Sentiment(1)")
    recorder.uninstall()
    assert not hasattr(cls.__dict__["__init__"], "__wrapped__")
    run(shell, "after = Sentiment(1)")
    assert recorder.init_args(shell.user_ns["before"]) is not None
    assert recorder.init_args(shell.user_ns["after"]) is None
    run(shell, "class Later(torch.nn.Module):\n    pass")
    assert "__init__" not in shell.user_ns["Later"].__dict__
    assert shell.events.callbacks["post_run_cell"] == []


def test_scan_wraps_classes_built_in_the_same_cell(shell: InteractiveShell) -> None:
    recorder = ConstructionRecorder()
    shell.user_ns["recorder"] = recorder
    run(shell, MODEL_CELL + "\nrecorder.scan(globals())\nclf = Sentiment(4)")
    assert recorder.init_args(shell.user_ns["clf"]) == InitArgs("Sentiment", [4], {})
    recorder.uninstall()


def test_cell_ids_feed_history(shell: InteractiveShell, recorder: ConstructionRecorder) -> None:
    run(shell, "x = 1", cell_id="first")
    run(shell, "y = 2")
    run(shell, "z = 3", cell_id="third")
    assert recorder.cell_ids == {1: "first", 3: "third"}
    history = history_from_shell(shell, recorder.cell_ids)
    assert [(r.execution_count, r.cell_id) for r in history] == [
        (1, "first"),
        (2, None),
        (3, "third"),
    ]
