"""The model runtime, in process: load a bundle folder, predict, convert outputs, explain failures."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from bundles import BATCH_SOURCE, Bundle

from easytensor_jupyter.inference.runtime.loader import (
    LoadError,
    NotJSONableError,
    load_bundle_dir,
    to_jsonable,
)

TIED = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, bias=False)
            self.b = nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight

        def predict_single(self, x):
            return self.b(self.a(torch.tensor(x))).sum()
    """
)

FLAKY_BATCH = BATCH_SOURCE.replace(
    "return [{", "if 0 in xs:\n            raise RuntimeError('batch failed')\n        return [{"
)


def _load(bundle: Bundle) -> object:
    return load_bundle_dir(bundle.directory, bundle.manifest)


def test_load_and_predict(bundle_factory: Callable[..., Bundle]) -> None:
    model = load_bundle_dir(*_dir(bundle_factory(name="tiny")))
    assert not model.model.training
    assert model.batch_fn is None
    outcomes = model.predict(["hi", [1.0, 2.0, 3.0, 4.0], b"\x01\x02", "raise", "object"])
    assert [o.ok for o in outcomes] == [True, True, True, False, False]
    assert outcomes[0].value == {"text": "hi", "length": 2, "tag": "base"}
    assert len(outcomes[1].value) == 2
    assert outcomes[2].value == {"bytes": 2, "head": [1, 2]}
    error = outcomes[3].value
    assert error["code"] == "model_error" and "boom" in error["message"]
    assert (
        error["detail"]["exception"] == "ValueError"
        and "predict_single" in error["detail"]["traceback"]
    )
    assert outcomes[4].value["code"] == "output_not_json"
    assert "builtins.object" in outcomes[4].value["message"]
    assert outcomes[0].to_wire() == [True, outcomes[0].value]


def _dir(bundle: Bundle) -> tuple[Path, object]:
    return bundle.directory, bundle.manifest


def test_to_jsonable() -> None:
    assert to_jsonable(torch.tensor([[1.0, 2.0]])) == [[1.0, 2.0]]
    assert to_jsonable(np.arange(3)) == [0, 1, 2]
    assert to_jsonable(np.float32(1.5)) == 1.5
    assert to_jsonable({1: (float("nan"), math.inf, True, None)}) == {"1": [None, None, True, None]}
    with pytest.raises(NotJSONableError, match=r"output\['k'\]\[1\] is a builtins.set"):
        to_jsonable({"k": [1, {2}]})


def test_weight_mismatch_names_the_keys(bundle_factory: Callable[..., Bundle]) -> None:
    bundle = bundle_factory(name="shapes", init_kwargs={"n_in": 4})
    bundle.manifest.init_kwargs = {"n_in": 6}
    with pytest.raises(LoadError) as info:
        load_bundle_dir(*_dir(bundle))
    assert info.value.stage == "weights"
    assert "mis-shaped keys: linear.weight: weights [2, 4] vs model [2, 6]" in str(info.value)

    extra = bundle_factory(
        name="extra",
        source=_with_extra_layer(),
        model=torch.nn.Sequential(),
    )
    with pytest.raises(LoadError) as info:
        load_bundle_dir(*_dir(extra))
    assert "missing keys: linear.weight, linear.bias, extra.weight, extra.bias" in str(info.value)

    unexpected = bundle_factory(name="unexpected", source=_with_extra_layer())
    unexpected.replace_file("model.py", bundle.files["model.py"].read_bytes())
    with pytest.raises(LoadError) as info:
        load_bundle_dir(*_dir(unexpected))
    assert "unexpected keys: extra.bias, extra.weight" in str(info.value)


def _with_extra_layer() -> str:
    from bundles import TINY_SOURCE

    return TINY_SOURCE.replace(
        "self.tag = tag", "self.tag = tag\n        self.extra = nn.Linear(2, 2)"
    )


def test_tied_weights_load(bundle_factory: Callable[..., Bundle]) -> None:
    model = load_bundle_dir(
        *_dir(bundle_factory(name="tied", source=TIED, class_name="Tied", sample=None))
    )
    [outcome] = model.predict([[1.0, 2.0, 3.0]])
    assert outcome.ok and isinstance(outcome.value, float)


@pytest.mark.parametrize(
    ("source", "class_name", "kwargs", "stage", "words"),
    [
        ("def broken(:\n", "Tiny", {}, "import", "SyntaxError"),
        ("raise RuntimeError('no GPU here')\n", "Tiny", {}, "import", "no GPU here"),
        ("x = 1\n", "Tiny", {}, "class", "no nn.Module class named 'Tiny'"),
        (
            "import torch\nclass Tiny(torch.nn.Module):\n    pass\n",
            "Tiny",
            {},
            "class",
            "no predict_single",
        ),
        (None, "Tiny", {"bogus": 1}, "build", "Tiny(bogus=1) failed: TypeError"),
    ],
)
def test_load_stages(
    bundle_factory: Callable[..., Bundle],
    source: str | None,
    class_name: str,
    kwargs: dict[str, int],
    stage: str,
    words: str,
) -> None:
    bundle = bundle_factory(name="stages")
    if source is not None:
        bundle.replace_file("model.py", source.encode())
    bundle.manifest.class_name = class_name
    bundle.manifest.init_kwargs = kwargs
    with pytest.raises(LoadError) as info:
        load_bundle_dir(*_dir(bundle))
    assert info.value.stage == stage and words in str(info.value)
    assert info.value.to_dict()["stage"] == stage


def test_predict_batch(bundle_factory: Callable[..., Bundle]) -> None:
    model = load_bundle_dir(
        *_dir(bundle_factory(name="b", source=BATCH_SOURCE, class_name="Batcher", sample=1))
    )
    assert model.batch_fn is not None
    assert [o.value["batch"] for o in model.predict([1, 2, 3])] == [3, 3, 3]
    assert [o.value["batch"] for o in model.predict([1])] == [1]

    flaky = load_bundle_dir(
        *_dir(bundle_factory(name="f", source=FLAKY_BATCH, class_name="Batcher", sample=1))
    )
    assert [o.value["batch"] for o in flaky.predict([0, 1])] == [1, 1]
