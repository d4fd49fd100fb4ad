"""End-to-end capture: run cells in a real IPython shell, capture, and run model.py in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from safetensors.torch import save_file

from easytensor_jupyter.capture import (
    CONSTANTS_FILE,
    CapturedModel,
    CaptureError,
    ConstructionRecorder,
    capture_model,
    history_from_shell,
)

RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys
    import numpy, torch
    from safetensors.torch import load_file

    spec = json.load(open("spec.json"))
    module_spec = importlib.util.spec_from_file_location("model", "model.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = getattr(module, spec["class"])(*spec["args"], **spec["kwargs"])
    model.load_state_dict(load_file("weights.safetensors"), strict=True)
    model.eval()

    def plain(value):
        if isinstance(value, (torch.Tensor, numpy.ndarray)):
            return plain(value.tolist())
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, float):
            return round(value, 5)
        return value

    with torch.no_grad():
        print(json.dumps([plain(model.predict_single(x)) for x in spec["inputs"]]))
    """
)


def plain(value: Any) -> Any:
    """Same normalisation as the runner, for the live model's outputs."""
    if isinstance(value, torch.Tensor):
        return plain(value.tolist())
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return plain(value.tolist())
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 5)
    return value


def run(shell: InteractiveShell, source: str) -> None:
    result = cast(Any, shell).run_cell(textwrap.dedent(source), store_history=True)
    assert result.success, result.error_in_exec or result.error_before_exec


def capture(shell: InteractiveShell, source: str, class_name: str | None = None) -> CapturedModel:
    """Run ``source`` as the model cell, then capture it as the magic would."""
    source = textwrap.dedent(source)
    run(shell, source)
    return capture_model(source, history_from_shell(shell), shell.user_ns, class_name)


def deploy(
    tmp_path: Path,
    captured: CapturedModel,
    model: torch.nn.Module,
    inputs: list[Any],
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> list[Any]:
    """Outputs of ``predict_single`` from model.py in a fresh interpreter with ``model``'s weights."""
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "model.py").write_text(captured.source)
    if captured.constants:
        save_file(captured.constants, str(folder / CONSTANTS_FILE))
    if captured.state:
        captured.state.write(folder)
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / "weights.safetensors"))
    spec = {
        "class": captured.class_name,
        "args": args or [],
        "kwargs": kwargs or {},
        "inputs": inputs,
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "run.py").write_text(RUNNER)
    proc = subprocess.run(
        [sys.executable, "-I", "run.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + "\n--- model.py ---\n" + captured.source
    outputs: list[Any] = json.loads(proc.stdout.splitlines()[-1])
    return outputs


def live(shell: InteractiveShell, instance: str, inputs: list[Any]) -> list[Any]:
    model = shell.user_ns[instance]
    model.eval()
    with torch.no_grad():
        return [plain(model.predict_single(x)) for x in inputs]


def code_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line and not line.startswith("#")]


def test_import_forms_are_emitted_once_sorted_and_only_when_used(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    run(shell, "import json\nimport torch\nimport os.path\nimport torch.nn as nn")
    run(shell, "from torch import nn as tnn, optim\nimport torch.nn.functional as F")
    run(shell, "from collections import Counter\nimport math, re")
    cast(Any, shell).run_cell("import torch.tensor", store_history=True)
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = tnn.Linear(3, 2)

            def predict_single(self, text):
                counts = Counter(re.findall(r"[a-z]+", text))
                x = torch.tensor([len(counts), math.sqrt(len(text)), float(os.path.isabs(text))])
                return F.softmax(self.lin(x), dim=-1)
        """,
    )
    imports = [line for line in code_lines(captured.source) if "import" in line]
    assert imports == [
        "import math",
        "import os.path",
        "import re",
        "import torch",
        "import torch.nn as nn",
        "import torch.nn.functional as F",
        "from collections import Counter",
        "from torch import nn as tnn",
    ]
    assert "json" not in captured.source and "optim" not in captured.source
    assert "import torch.tensor" not in captured.source
    run(shell, "clf = Model()")
    inputs = ["hello world", "/abs path"]
    assert deploy(tmp_path, captured, shell.user_ns["clf"], inputs) == live(shell, "clf", inputs)


def test_modules_and_library_objects_without_import_lines(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    run(
        shell,
        """
        import importlib
        import torch
        np_mod = importlib.import_module("numpy")
        functional = importlib.import_module("torch.nn.functional")
        Linear = torch.nn.Linear
        relu = torch.relu
        from math import *
        """,
    )
    captured = capture(
        shell,
        """
        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = Linear(2, 2)

            def predict_single(self, x):
                y = relu(self.lin(torch.tensor(x)))
                return float(np_mod.sum(functional.softmax(y, dim=0).numpy())) + floor(pi)
        """,
    )
    lines = code_lines(captured.source)
    assert "import numpy as np_mod" in lines
    assert "import torch.nn.functional as functional" in lines
    assert "from torch import relu" in lines
    assert "from torch.nn import Linear" in lines
    assert "from math import floor, pi" in lines
    assert "importlib" not in captured.source
    run(shell, "clf = Model()")
    inputs = [[1.0, -2.0]]
    assert deploy(tmp_path, captured, shell.user_ns["clf"], inputs) == live(shell, "clf", inputs)


def test_helpers_are_copied_transitively_with_decorators(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    run(shell, "import functools\nimport torch\nfrom torch import nn")
    run(
        shell,
        '''
        def normalize(text):
            """Lower-case and strip."""
            return text.lower().strip()

        def unused_helper():
            return 1

        @functools.lru_cache(maxsize=None)
        def tokenize(text):
            return tuple(normalize(text).split())
        ''',
    )
    captured = capture(
        shell,
        """
        def count_tokens(text):
            return len(tokenize(text))

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(1))

            def predict_single(self, text):
                return float(self.scale * count_tokens(text))
        """,
    )
    source = captured.source
    assert "unused_helper" not in source
    assert "@functools.lru_cache(maxsize=None)\ndef tokenize(text):" in source
    assert '"""Lower-case and strip."""' in source
    assert source.index("def normalize") < source.index("def tokenize")
    assert source.index("def count_tokens") < source.index("class Model")
    assert {"normalize", "tokenize", "count_tokens", "functools"} <= set(captured.captured_names)
    run(shell, "clf = Model()\nwith torch.no_grad(): clf.scale.fill_(2.5)")
    inputs = ["  Hello Big World ", "one"]
    assert deploy(tmp_path, captured, shell.user_ns["clf"], inputs) == [7.5, 2.5]


def test_classes_made_by_calls_and_aliases(shell: InteractiveShell, tmp_path: Path) -> None:
    run(
        shell,
        """
        import collections
        import torch
        from torch import nn
        Pair = collections.namedtuple("Pair", "left right")
        def shout(text):
            return text.upper()
        yell = shout
        Layer = nn.Linear
        """,
    )
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = Layer(1, 1)

            def predict_single(self, text):
                pair = Pair(yell(text), len(text))
                return [pair.left, pair.right, type(pair).__name__]
        """,
    )
    lines = code_lines(captured.source)
    assert 'Pair = collections.namedtuple("Pair", "left right")' in lines
    assert "yell = shout" in lines and "def shout(text):" in lines
    assert "from torch.nn import Linear as Layer" in lines
    run(shell, "clf = Model()")
    assert deploy(tmp_path, captured, shell.user_ns["clf"], ["hi"]) == [["HI", 2, "Pair"]]


def test_helper_module_class_from_an_earlier_cell(shell: InteractiveShell, tmp_path: Path) -> None:
    run(shell, "import torch\nimport torch.nn as nn")
    run(
        shell,
        """
        class Block(nn.Module):
            def __init__(self, size):
                super().__init__()
                self.lin = nn.Linear(size, size)

            def forward(self, x):
                return torch.tanh(self.lin(x))

        class Encoder(nn.Module):
            def __init__(self, size, depth):
                super().__init__()
                self.blocks = nn.Sequential(*[Block(size) for _ in range(depth)])

            def forward(self, x):
                return self.blocks(x)
        """,
    )
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def __init__(self, size=3, depth=2):
                super().__init__()
                self.encoder = Encoder(size, depth)

            def predict_single(self, values):
                return self.encoder(torch.tensor(values)).tolist()
        """,
    )
    source = captured.source
    assert source.index("class Block") < source.index("class Encoder") < source.index("class Model")
    run(shell, "clf = Model(size=4, depth=3)")
    inputs = [[0.1, 0.2, 0.3, 0.4]]
    outputs = deploy(
        tmp_path, captured, shell.user_ns["clf"], inputs, kwargs={"size": 4, "depth": 3}
    )
    assert outputs == live(shell, "clf", inputs)


def test_json_like_constants_keep_values_and_types(shell: InteractiveShell, tmp_path: Path) -> None:
    run(
        shell,
        """
        import collections
        import torch
        from torch import nn
        LABELS = {0: "negative", 1: "positive"}
        VOCAB = {word: i for i, word in enumerate("the cat sat on a mat".split())}
        STOP_WORDS = {"the", "a", "on"}
        WEIGHTS = [0.5, 1.5, float("inf")]
        PAIRS = {(1, 2): frozenset({"x"}), (3, 4): frozenset()}
        COUNTS = collections.Counter("abracadabra")
        NOTHING = None
        """,
    )
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(1, 2)

            def predict_single(self, text):
                ids = [VOCAB[w] for w in text.split() if w not in STOP_WORDS]
                label = LABELS[int(self.lin(torch.tensor([float(sum(ids))])).argmax())]
                kinds = [type(v).__name__ for v in (LABELS, STOP_WORDS, PAIRS, COUNTS, NOTHING)]
                return [label, ids, kinds, COUNTS["z"], WEIGHTS[2] > 1e308, sorted(PAIRS[(1, 2)])]
        """,
    )
    lines = code_lines(captured.source)
    assert "LABELS = {0: 'negative', 1: 'positive'}" in lines
    assert "STOP_WORDS = {'a', 'on', 'the'}" in lines
    assert 'WEIGHTS = [0.5, 1.5, float("inf")]' in lines
    assert "import collections as _et_collections" in lines
    assert captured.constants == {}
    run(shell, "clf = Model()")
    inputs = ["the cat sat on a mat", "mat cat"]
    outputs = deploy(tmp_path, captured, shell.user_ns["clf"], inputs)
    assert outputs == live(shell, "clf", inputs)
    assert outputs[0][2] == ["dict", "set", "dict", "Counter", "NoneType"]
    assert outputs[0][1] == [1, 2, 5]
    assert outputs[0][3:] == [0, True, ["x"]]


def test_tensor_and_numpy_constants_go_to_safetensors(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    run(
        shell,
        """
        import numpy as np
        import torch
        from torch import nn
        MEAN = torch.tensor([1.0, 2.0, 3.0])
        SCALE = np.array([[2.0, 0.5, 1.0]], dtype=np.float32).T[:, 0]
        OFFSET = np.float64(0.25)
        DEVICE = torch.device("cpu")
        DTYPE = torch.float32
        """,
    )
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 1)

            def predict_single(self, values):
                x = (torch.tensor(values, dtype=DTYPE, device=DEVICE) - MEAN) * torch.from_numpy(SCALE)
                kinds = [type(SCALE).__name__, str(SCALE.dtype), type(OFFSET).__name__]
                return [float(self.lin(x)) + OFFSET, kinds]
        """,
    )
    assert set(captured.constants) == {"MEAN", "SCALE"}
    assert torch.equal(captured.constants["MEAN"], torch.tensor([1.0, 2.0, 3.0]))
    lines = code_lines(captured.source)
    assert 'SCALE = _et_constants["SCALE"].numpy()' in lines
    assert "OFFSET = _et_numpy.float64(0.25)" in lines
    assert 'DEVICE = _et_torch.device("cpu")' in lines
    assert "DTYPE = _et_torch.float32" in lines
    assert captured.warnings == []
    run(shell, "clf = Model()")
    inputs = [[3.0, 1.0, 0.0]]
    outputs = deploy(tmp_path, captured, shell.user_ns["clf"], inputs)
    assert outputs == live(shell, "clf", inputs)
    assert outputs[0][1] == ["ndarray", "float32", "float64"]


def test_seed_style_lambda_pipeline(shell: InteractiveShell, tmp_path: Path) -> None:
    run(shell, "import torch\nfrom torch import nn")
    run(
        shell,
        """
        def tokenizer(text):
            return text.lower().split()

        vocab = {"<unk>": 0, "good": 1, "bad": 2, "movie": 3}
        text_pipeline = lambda x: [vocab.get(token, 0) for token in tokenizer(x)]
        label_pipeline = lambda x: int(x) - 1
        """,
    )
    captured = capture(
        shell,
        """
        class TextClassifier(nn.Module):
            def __init__(self, vocab_size=4, num_class=2):
                super().__init__()
                self.embedding = nn.EmbeddingBag(vocab_size, 3)
                self.fc = nn.Linear(3, num_class)

            def predict_single(self, text):
                ids = torch.tensor(text_pipeline(text), dtype=torch.int64)
                return int(self.fc(self.embedding(ids, torch.tensor([0]))).argmax(1).item())
        """,
    )
    lines = code_lines(captured.source)
    assert "text_pipeline = lambda x: [vocab.get(token, 0) for token in tokenizer(x)]" in lines
    assert "label_pipeline" not in captured.source
    assert "token" not in captured.captured_names and "x" not in captured.captured_names
    run(shell, "model = TextClassifier()")
    inputs = ["Good movie", "bad BAD unknown"]
    assert deploy(tmp_path, captured, shell.user_ns["model"], inputs) == live(
        shell, "model", inputs
    )


def test_latest_definition_wins(shell: InteractiveShell, tmp_path: Path) -> None:
    run(shell, "import torch\nfrom torch import nn")
    run(shell, "def scale(x):\n    return x * 2\nFACTOR = 10")
    run(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, x):
                return "old"
        """,
    )
    run(shell, "def scale(x):\n    return x * 3\nFACTOR = 100")
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.bias = nn.Parameter(torch.zeros(1))

            def predict_single(self, x):
                return float(scale(x) + FACTOR + self.bias)
        """,
    )
    assert "x * 3" in captured.source and "x * 2" not in captured.source
    assert "FACTOR = 100" in captured.source and '"old"' not in captured.source
    run(shell, "clf = Model()")
    assert deploy(tmp_path, captured, shell.user_ns["clf"], [1, 5]) == [103.0, 115.0]


def test_train_then_rerun_class_cell_uses_recorded_arguments(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    recorder = ConstructionRecorder()
    recorder.install(shell)

    def magic(line: str, cell: str) -> None:
        exec(compile(cell, "<model cell>", "exec"), shell.user_ns)

    cast(Any, shell).register_magic_function(magic, "cell", "easytensor_model")
    class_cell = textwrap.dedent(
        """
        class Sentiment(nn.Module):
            def __init__(self, vocab_size, hidden=4):
                super().__init__()
                self.emb = nn.EmbeddingBag(vocab_size, hidden)
                self.out = nn.Linear(hidden, 2)

            def forward(self, ids):
                return self.out(self.emb(ids, torch.tensor([0])))

            def predict_single(self, text):
                ids = torch.tensor([hash_word(w) for w in text.split()])
                return LABELS[int(self.forward(ids).argmax())]
        """
    )
    run(
        shell,
        """
        import torch
        from torch import nn
        LABELS = {0: "neg", 1: "pos"}
        def hash_word(word):
            return sum(map(ord, word)) % 10
        """,
    )
    run(shell, class_cell)
    run(
        shell,
        """
        torch.manual_seed(0)
        clf = Sentiment(10, hidden=8)
        optimizer = torch.optim.SGD(clf.parameters(), lr=0.5)
        for _ in range(20):
            for text, label in [("good fun", 1), ("bad dull", 0)]:
                ids = torch.tensor([hash_word(w) for w in text.split()])
                loss = nn.functional.cross_entropy(clf(ids), torch.tensor([label]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        trained = [clf.predict_single("good fun"), clf.predict_single("bad dull")]
        """,
    )
    assert shell.user_ns["trained"] == ["pos", "neg"]
    run(shell, "%%easytensor_model Sentiment --instance clf\n" + class_cell)
    clf = shell.user_ns["clf"]
    assert not isinstance(clf, shell.user_ns["Sentiment"])
    history = history_from_shell(shell)
    assert history[-1].source.startswith("get_ipython().run_cell_magic('easytensor_model'")
    captured = capture_model(class_cell, history, shell.user_ns)
    assert captured.class_name == "Sentiment"
    assert captured.source.splitlines()[0] == "# Generated by EasyTensor from notebook cells."
    assert capture_model(class_cell, history, shell.user_ns).source == captured.source
    init = recorder.init_args(clf)
    assert init is not None and init.is_json
    assert (init.args, init.kwargs) == ([10], {"hidden": 8})
    assert recorder.last_input(clf) == (True, "bad dull")
    outputs = deploy(tmp_path, captured, clf, ["good fun", "bad dull"], init.args, init.kwargs)
    assert outputs == ["pos", "neg"]
    recorder.uninstall()


def test_open_file_global_is_refused_with_variable_and_cell(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    run(shell, "import torch\nfrom torch import nn")
    run(shell, f"LOG = open({str(tmp_path / 'log.txt')!r}, 'w')")
    run(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, x):
                LOG.write(str(x))
                return x
        """,
    )
    with pytest.raises(CaptureError) as caught:
        capture_model(shell.user_ns["In"][-1], history_from_shell(shell), shell.user_ns, "Model")
    message = str(caught.value)
    assert "'LOG'" in message and "cell [2]" in message and "open file" in message
    assert "TextIOWrapper" in message and "__init__" in message
    assert caught.value.variable == "LOG" and caught.value.execution_count == 2
    shell.user_ns["LOG"].close()


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("import threading\ncfg = threading.Lock()", "lock"),
        (
            "import threading\ncfg = {'guard': threading.Lock()}",
            "holding at cfg['guard'] a _thread.lock",
        ),
        ("cfg = nn.Linear(2, 2)", "an nn.Module"),
        ("cfg = [lambda x: x]", "holding at cfg[0] a function (__main__.<lambda>)"),
        ("def make():\n    return lambda x: x\ncfg = make()", "lambda"),
        (
            "def make():\n    def inner():\n        pass\n    return inner\ncfg = make()",
            "inside another",
        ),
    ],
)
def test_uncapturable_globals_are_refused(
    shell: InteractiveShell, definition: str, expected: str
) -> None:
    run(shell, "import torch\nfrom torch import nn")
    run(shell, definition)
    with pytest.raises(CaptureError) as caught:
        capture(
            shell,
            """
            class Model(nn.Module):
                def predict_single(self, x):
                    return cfg
            """,
        )
    message = str(caught.value)
    assert "'cfg' (cell [2])" in message and expected in message
    assert "class Model" in message


def test_undefined_and_deleted_names(shell: InteractiveShell) -> None:
    run(shell, "import torch\nfrom torch import nn\nTHRESHOLD = 0.5")
    model_cell = """
        class Model(nn.Module):
            def predict_single(self, x):
                return x > THRESHOLD and missing_helper(x)
        """
    with pytest.raises(CaptureError) as caught:
        capture(shell, model_cell)
    assert "'missing_helper' is not defined anywhere" in str(caught.value)
    run(shell, "def missing_helper(x):\n    return x\ndel THRESHOLD")
    with pytest.raises(CaptureError) as caught:
        capture(shell, model_cell)
    assert "'THRESHOLD', which cell [1] set" in str(caught.value)
    assert "Re-run cell [1]" in str(caught.value)


def test_model_class_selection(shell: InteractiveShell) -> None:
    run(shell, "import torch\nfrom torch import nn")
    two = """
        class Base(nn.Module):
            def predict_single(self, x):
                return 1

        class Other(nn.Module):
            def predict_single(self, x):
                return 2

        class Helper:
            def predict_single(self, x):
                return 3
        """
    with pytest.raises(CaptureError) as caught:
        capture(shell, two)
    assert "several model classes" in str(caught.value)
    assert "(Base, Other)" in str(caught.value)
    assert capture(shell, two, class_name="Other").class_name == "Other"
    with pytest.raises(
        CaptureError, match=r"does not define class 'Nope' \(classes here: Base, Helper, Other\)"
    ):
        capture(shell, two, class_name="Nope")
    with pytest.raises(CaptureError, match=r"'Helper' is not an nn\.Module subclass"):
        capture(shell, two, class_name="Helper")
    with pytest.raises(CaptureError, match=r"'Plain' has no predict_single") as no_method:
        capture(shell, "class Plain(nn.Module):\n    def forward(self, x):\n        return x\n")
    assert "def predict_single(self, input)" in str(no_method.value)
    assert "--class" not in str(no_method.value) and "name of the class" not in str(no_method.value)
    with pytest.raises(CaptureError, match=r"no nn\.Module class with a predict_single"):
        capture(shell, "class A(nn.Module):\n    pass\nclass B(nn.Module):\n    pass\n")
    with pytest.raises(CaptureError, match="'Plain' has no predict_single"):
        capture(shell, "class Plain(nn.Module):\n    pass\n", class_name="Plain")


def test_local_names_are_not_treated_as_globals(shell: InteractiveShell, tmp_path: Path) -> None:
    run(shell, "import torch\nfrom torch import nn")
    # Every local name below also exists as an uncapturable global: capturing any would fail.
    run(
        shell,
        """
        class Opaque:
            pass
        word = w = i = n = total = err = handle = acc = size = cached = counter = label = Opaque()
        """,
    )
    captured = capture(
        shell,
        """
        import contextlib
        SIZES = [1, 2]

        class Model(nn.Module):
            size = 3
            labels = [label for label in ("a", "b")]

            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(1, 1)

            def predict_single(self, text):
                words = [word.upper() for word in text.split()]
                lengths = {w: len(w) for w in words}
                scaled = list(map(lambda n: n * 2, lengths.values()))
                total = 0
                for i, n in enumerate(scaled):
                    total += i * n
                try:
                    raise ValueError(text)
                except ValueError as err:
                    total += len(str(err))
                with contextlib.nullcontext(5) as handle:
                    total += handle
                if (acc := total + 1) > 0:
                    total = acc
                def cached():
                    nonlocal total
                    total += type(self).size + SIZES[1]
                cached()
                return [total, self.labels]
        """,
    )
    assert set(captured.captured_names) == {"nn", "SIZES", "contextlib"}
    run(shell, "clf = Model()")
    inputs = ["ab cde"]
    outputs = deploy(tmp_path, captured, shell.user_ns["clf"], inputs)
    assert outputs == live(shell, "clf", inputs) == [[23, ["a", "b"]]]


def test_builtins_and_ipython_globals_are_not_captured(shell: InteractiveShell) -> None:
    run(shell, "import torch\nfrom torch import nn")
    assert "open" in shell.user_ns
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, path):
                with open(path) as f:
                    return len(f.read()) + sum(range(3)) + abs(-1)
        """,
    )
    assert captured.captured_names == ["nn"]
    assert "IPython" not in captured.source and "open =" not in captured.source


def test_big_constant_is_refused(shell: InteractiveShell) -> None:
    run(shell, "import torch\nfrom torch import nn\nBIG = ['x' * 100] * 60_000")
    with pytest.raises(CaptureError) as caught:
        capture(
            shell,
            """
            class Model(nn.Module):
                def predict_single(self, x):
                    return BIG[x]
            """,
        )
    assert "'BIG' (cell [1]) is too big" in str(caught.value)
    assert "tensor" in str(caught.value)


def test_history_from_shell_uses_execution_counts_and_unwraps_magics(
    shell: InteractiveShell,
) -> None:
    run(shell, "x = 1")
    cast(Any, shell).run_cell("y = 2", store_history=False)
    cast(Any, shell).run_cell("1 / 0", store_history=True)
    run(shell, "%%time\ndef zed():\n    return 3")
    history = history_from_shell(shell, {3: "cell-abc"})
    assert [(r.execution_count, r.source.strip()) for r in history][:2] == [
        (1, "x = 1"),
        (2, "1 / 0"),
    ]
    assert history[2].execution_count == 3 and "run_cell_magic('time'" in history[2].source
    assert history[2].cell_id == "cell-abc" and history[0].cell_id is None
    assert len(history) == 3
    run(shell, "import torch\nfrom torch import nn")
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, x):
                return zed()
        """,
    )
    assert "def zed():\n    return 3" in captured.source


def test_local_module_code_is_imported_and_shipped_and_its_data_written(
    shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "et_local_helpers.py").write_text(
        "LABELS = {0: 'no', 1: 'yes'}\ndef double(x):\n    return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run(shell, "import torch\nfrom torch import nn\nfrom et_local_helpers import double, LABELS")
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, x):
                return LABELS[double(x) % 2]
        """,
    )
    lines = code_lines(captured.source)
    assert "from et_local_helpers import double" in lines
    assert "LABELS = {0: 'no', 1: 'yes'}" in lines
    assert captured.warnings == []
    assert captured.local_modules == {"et_local_helpers": tmp_path / "et_local_helpers.py"}
    sys.modules.pop("et_local_helpers", None)


def test_type_aliases_and_future_annotations(shell: InteractiveShell, tmp_path: Path) -> None:
    run(
        shell,
        """
        from __future__ import annotations
        import torch
        from torch import nn
        from typing import Optional
        Vector = list[float]
        Maybe = Optional[int]
        """,
    )
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, x: Vector) -> Maybe:
                return len(x) if isinstance(x, list) else None
        """,
    )
    lines = code_lines(captured.source)
    assert lines[0] == "from __future__ import annotations"
    assert "Vector = list[float]" in lines and "Maybe = Optional[int]" in lines
    assert "from typing import Optional" in lines
    run(shell, "clf = Model()")
    assert deploy(tmp_path, captured, shell.user_ns["clf"], [[1.0, 2.0]]) == [2]


def test_accelerator_device_constant_gives_a_warning(shell: InteractiveShell) -> None:
    run(shell, "import torch\nfrom torch import nn\nGPU = torch.device('cuda', 1)")
    captured = capture(
        shell,
        """
        class Model(nn.Module):
            def predict_single(self, x):
                return torch.tensor(x, device=GPU)
        """,
    )
    assert 'GPU = _et_torch.device("cuda:1")' in captured.source
    assert captured.warnings and "'GPU' is the device 'cuda:1'" in captured.warnings[0]
