"""Checks before upload: each failure names the file, line, key or value, in a real fresh process."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from easytensor_jupyter.bundle import Manifest, Sample, read_manifest_dir
from easytensor_jupyter.packaging import InitArgs, PublishRequest, build_bundle, resolve_init_args
from easytensor_jupyter.validate import (
    ModelCheckError,
    check_source,
    compare_outputs,
    explain_report,
    rebuild_in_fresh_process,
)

SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Scaler(nn.Module):
        def __init__(self, width=3):
            super().__init__()
            self.lin = nn.Linear(width, 1)

        def predict_single(self, x):
            return self.lin(torch.tensor(x, dtype=torch.float32)).item()
    """
)


def load_class(source: str, name: str = "Scaler") -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(source, "model.py", "exec"), namespace)
    return namespace[name]


def build_and_check(tmp_path: Path, request: PublishRequest) -> Manifest:
    manifest = build_bundle(request, tmp_path)
    explain_report(rebuild_in_fresh_process(tmp_path), manifest)
    return manifest


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ModelCheckError, match=r"model\.py, line 3: syntax error"):
        check_source("import torch\n\ndef broken(:\n", "model.py", "Scaler")


def test_missing_class_lists_what_is_defined() -> None:
    with pytest.raises(ModelCheckError, match=r"does not define class Other.*defines Scaler"):
        check_source(SOURCE, "model.py", "Other")


def test_predict_single_must_take_one_input() -> None:
    source = SOURCE.replace("def predict_single(self, x):", "def predict_single(self, x, y):")
    with pytest.raises(
        ModelCheckError,
        match=r"line \d+: Scaler.predict_single\(self, x, y\) must take exactly one input",
    ):
        check_source(source, "model.py", "Scaler")


def test_missing_predict_single() -> None:
    source = SOURCE.replace("def predict_single(self, x):", "def predict(self, x):")
    with pytest.raises(ModelCheckError, match="has no predict_single method"):
        check_source(source, "model.py", "Scaler")


def test_rebuild_and_parity_pass(tmp_path: Path) -> None:
    model = load_class(SOURCE)()
    manifest = build_and_check(
        tmp_path, PublishRequest(name="s", model=model, source=SOURCE, sample=[1.0, 2.0, 3.0])
    )
    assert manifest.sample is not None
    assert manifest.sample.output == pytest.approx(model.predict_single([1.0, 2.0, 3.0]))
    assert manifest.input_kind == "json"
    assert read_manifest_dir(tmp_path) == manifest


def test_missing_and_misshaped_keys_are_named(tmp_path: Path) -> None:
    live_source = SOURCE.replace(
        "self.lin = nn.Linear(width, 1)",
        "self.lin = nn.Linear(width, 1)\n        self.extra = nn.Linear(2, 2)",
    )
    model = load_class(live_source)(width=5)
    with pytest.raises(ModelCheckError) as err:
        build_and_check(
            tmp_path, PublishRequest(name="s", model=model, source=SOURCE, init=InitArgs())
        )
    text = str(err.value)
    assert "unexpected keys: extra.bias, extra.weight" in text
    assert "lin.weight: weights [1, 5] vs model [1, 3]" in text
    assert "init_kwargs" in text


def test_import_failure_in_fresh_process(tmp_path: Path) -> None:
    source = "from notebook_helpers import magic\n" + SOURCE
    model = load_class(SOURCE)()
    with pytest.raises(
        ModelCheckError,
        match=r"In a fresh Python process, model.py failed to import: ModuleNotFoundError.*notebook_helpers",
    ):
        build_and_check(tmp_path, PublishRequest(name="s", model=model, source=source))


def test_parity_failure_says_where_answers_differ(tmp_path: Path) -> None:
    live = load_class(SOURCE)()
    drifted = SOURCE.replace("return self.lin(", "return 1.0 + self.lin(")
    with pytest.raises(
        ModelCheckError, match=r"answers the sample differently.*answer: live .* vs rebuilt"
    ):
        build_and_check(
            tmp_path, PublishRequest(name="s", model=live, source=drifted, sample=[0.0, 0.0, 0.0])
        )


def test_constructor_args_resolved_from_attributes() -> None:
    class Needs(nn.Module):
        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.hidden = hidden

    assert resolve_init_args(Needs(8), None) == InitArgs(kwargs={"hidden": 8})


def test_unknown_constructor_arg_says_how_to_pass_it() -> None:
    class Hidden(nn.Module):
        def __init__(self, size: int) -> None:
            super().__init__()
            self.layer = nn.Linear(size, 1)

    with pytest.raises(
        ModelCheckError, match=r"needs the argument 'size'.*init_kwargs=\{'size': \.\.\.\}"
    ):
        resolve_init_args(Hidden(4), None)


def test_explicit_init_args_pass_through_even_when_not_json() -> None:
    explicit = InitArgs(kwargs={"act": torch.relu})
    assert resolve_init_args(nn.Linear(1, 1), explicit) is explicit


def test_tied_weights_round_trip(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        import torch
        from torch import nn

        class Tied(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(10, 4)
                self.out = nn.Linear(4, 10, bias=False)
                self.out.weight = self.emb.weight

            def predict_single(self, token):
                return self.out(self.emb(torch.tensor([token]))).argmax().item()
        """
    )
    model = load_class(source, "Tied")()
    build_and_check(tmp_path, PublishRequest(name="t", model=model, source=source, sample=3))


@pytest.mark.parametrize(
    ("live", "rebuilt", "expected"),
    [
        ({"p": [0.1, 0.9]}, {"p": [0.1, 0.9000001]}, None),
        ({"p": [0.1, 0.9]}, {"p": [0.1, 0.5]}, "answer['p'][1]: live 0.9 vs rebuilt 0.5"),
        ("Sports", "World", "answer: live 'Sports' vs rebuilt 'World'"),
        ([1, 2], [1, 2, 3], "answer: live has 2 items, rebuilt has 3"),
        (True, 1, "answer: live True vs rebuilt 1"),
    ],
)
def test_compare_outputs(live: Any, rebuilt: Any, expected: str | None) -> None:
    assert compare_outputs(live, rebuilt) == expected


def test_explain_report_sample_error() -> None:
    manifest = Manifest(
        name="m",
        class_name="C",
        files={
            "model.py": {"sha256": "0" * 64, "size": 1},
            "weights.safetensors": {"sha256": "1" * 64, "size": 1},
        },
        sample=Sample(input="x", output="y"),
    )
    report = {
        "ok": True,
        "sample_ok": False,
        "sample_error": {
            "message": "predict_single raised KeyError: 'x'",
            "detail": {"traceback": "KeyError: 'x'"},
        },
    }
    with pytest.raises(
        ModelCheckError, match=r"predict_single\(sample\) failed: predict_single raised KeyError"
    ):
        explain_report(report, manifest)
