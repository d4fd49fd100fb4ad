"""The ``easytensor`` command against a real server, as a script would run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import RunningServer
from safetensors.torch import save_model
from test_cli_servers import run_in_terminal

from easytensor_jupyter.cli import build_parser
from easytensor_jupyter.cli import main as cli_main
from easytensor_jupyter.cli.models import describe_scaling
from easytensor_jupyter.client import Client, EasyTensorError

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart"


def run_cli(
    server: RunningServer, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    env.update(
        EASYTENSOR_URL=server.url,
        EASYTENSOR_API_KEY=server.admin_key,
        EASYTENSOR_HOME=str(server.home),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "easytensor_jupyter.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def deployed(
    server: RunningServer, news_model: Any, tmp_path: Path, unique_name: str
) -> dict[str, Any]:
    weights = tmp_path / "news.safetensors"
    save_model(news_model, str(weights))
    out = run_cli(
        server,
        "deploy",
        str(QUICKSTART / "model.py"),
        "--weights",
        str(weights),
        "--name",
        unique_name,
        "--sample-text",
        "Stocks rally",
        "--json",
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_deploy_and_query_three_ways(
    server: RunningServer, deployed: dict[str, Any], news_model: Any, tmp_path: Path
) -> None:
    assert deployed["version"] == 1 and deployed["query_token"].startswith("et_q_")
    text = "Central bank holds interest rates"
    by_text = json.loads(
        run_cli(server, "query", deployed["id"], "--text", text, "--format", "json").stdout
    )
    assert by_text["prediction"] == news_model.predict_single(text)
    by_json = run_cli(server, "query", deployed["name"], "--json", json.dumps(text)).stdout.strip()
    assert by_json == news_model.predict_single(text)
    path = tmp_path / "headline.txt"
    path.write_text(text)
    bad = run_cli(server, "query", deployed["id"], "--file", str(path), check=False)
    assert bad.returncode == 1 and "error:" in bad.stderr and "model_error" in bad.stderr


def test_models_list_show_default_delete(
    server: RunningServer, deployed: dict[str, Any], news_model: Any, tmp_path: Path
) -> None:
    weights = tmp_path / "state.pt"
    torch.save(news_model.state_dict(), weights)
    second = json.loads(
        run_cli(
            server,
            "deploy",
            str(QUICKSTART / "model.py"),
            "--weights",
            str(weights),
            "--name",
            deployed["name"],
            "--force",
            "--json",
        ).stdout
    )
    assert second["version"] == 2 and second["id"] == deployed["id"]
    listing = json.loads(run_cli(server, "models", "list", "--json").stdout)["models"]
    assert any(m["id"] == deployed["id"] and m["default_version"] == 2 for m in listing)
    assert deployed["name"] in run_cli(server, "models").stdout
    shown = run_cli(server, "models", "show", deployed["id"]).stdout
    assert "* v2" in shown and "  v1" in shown
    rolled = json.loads(run_cli(server, "models", "default", deployed["id"], "1", "--json").stdout)
    assert rolled["default_version"] == 1
    run_cli(server, "models", "delete", deployed["id"], "--version", "2", "--yes")
    run_cli(server, "models", "delete", deployed["id"], "-y")
    gone = run_cli(server, "models", "show", deployed["id"], check=False)
    assert gone.returncode == 1 and "No model" in gone.stderr


def test_delete_asks_first(server: RunningServer, tiny_model: dict[str, Any]) -> None:
    model_id, name = tiny_model["id"], tiny_model["name"]
    unasked = run_cli(server, "models", "delete", model_id, check=False)
    assert unasked.returncode == 1
    assert unasked.stderr.startswith(f"error: Delete {name} ({model_id}) and its 1 version?")
    assert "add --yes to delete without asking" in unasked.stderr
    env = {"EASYTENSOR_URL": server.url, "EASYTENSOR_API_KEY": server.admin_key}
    code, out, shown = run_in_terminal(server.home, ["models", "delete", model_id], "n", **env)
    assert code == 1 and out.strip() == "Nothing deleted."
    assert "and its 1 version? Its endpoint stops answering. [y/N]" in shown
    assert run_cli(server, "models", "show", model_id).returncode == 0
    code, out, _ = run_in_terminal(server.home, ["models", "delete", model_id], "y", **env)
    assert code == 0 and out.startswith(f"Deleted {name}")
    assert run_cli(server, "models", "show", model_id, check=False).returncode == 1


def test_a_closed_pipe_ends_quietly(server: RunningServer) -> None:
    """The reader is gone before the command writes (``| true``), as ``| head`` can be."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    env.update(EASYTENSOR_URL=server.url, EASYTENSOR_API_KEY=server.admin_key)
    command = f"{sys.executable} -m easytensor_jupyter.cli models list --json | true"
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.stderr == "", piped.stderr
    assert piped.returncode == 141


def test_deploy_again_reuses_its_token(
    server: RunningServer, deployed: dict[str, Any], news_model: Any, tmp_path: Path
) -> None:
    weights = tmp_path / "again.safetensors"
    save_model(news_model, str(weights))
    args = ["deploy", str(QUICKSTART / "model.py"), "--weights", str(weights)]
    again = json.loads(
        run_cli(
            server, *args, "--name", deployed["name"], "--sample-text", "Stocks rally", "--json"
        ).stdout
    )
    assert again["unchanged"] and again["query_token_reused"]
    assert again["query_token"] == deployed["query_token"]
    tokens = json.loads(run_cli(server, "tokens", "list", deployed["id"], "--json").stdout)[
        "tokens"
    ]
    assert len(tokens) == 1 and tokens[0]["label"].startswith("CLI: easytensor deploy (")
    shown = run_cli(server, "tokens", "show", deployed["name"])
    assert shown.stdout == deployed["query_token"] + "\n"
    missing = run_cli(server, "tokens", "show", "no-such-model", check=False)
    assert missing.returncode == 1 and "easytensor tokens create no-such-model" in missing.stderr


def test_tokens_create_list_revoke(server: RunningServer, deployed: dict[str, Any]) -> None:
    labelled = run_cli(server, "tokens", "create", deployed["id"], "--label", "nightly job")
    assert labelled.stdout.startswith("Token tok_")
    listing = run_cli(server, "tokens", "list", deployed["id"]).stdout
    assert "nightly job" in listing and "CLI: easytensor deploy" in listing
    assert re.search(
        r"tok_\w+  active   created \d{4}-\d\d-\d\d \d\d:\d\d  last used never", listing
    )
    created = json.loads(run_cli(server, "tokens", "create", deployed["id"], "--json").stdout)
    assert created["label"].startswith("CLI: easytensor tokens create (")
    ok = run_cli(server, "query", deployed["id"], "--text", "hello", "--token", created["token"])
    assert ok.stdout.strip()
    tokens = json.loads(run_cli(server, "tokens", "list", deployed["id"], "--json").stdout)[
        "tokens"
    ]
    assert created["id"] in {t["id"] for t in tokens}
    assert all("token" not in t and "hash" not in json.dumps(t) for t in tokens)
    run_cli(server, "tokens", "revoke", deployed["id"], created["id"])
    refused = run_cli(
        server, "query", deployed["id"], "--text", "hello", "--token", created["token"], check=False
    )
    assert refused.returncode == 1 and "401" in refused.stderr


def test_deploy_errors_are_plain(server: RunningServer, tmp_path: Path) -> None:
    missing = run_cli(
        server,
        "deploy",
        str(tmp_path / "nope.py"),
        "--weights",
        "w.safetensors",
        "--name",
        "x",
        check=False,
    )
    assert (
        missing.returncode == 1
        and "nope.py" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    model = tmp_path / "model.py"
    model.write_text(
        "from torch import nn\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(2, 2)\n    def predict_single(self, x):\n        return 1\n"
    )
    weights = tmp_path / "w.safetensors"
    save_model(torch.nn.Sequential(torch.nn.Linear(3, 3)), str(weights))
    mismatch = run_cli(
        server, "deploy", str(model), "--weights", str(weights), "--name", "mismatch", check=False
    )
    assert mismatch.returncode == 1 and "does not fit M" in mismatch.stderr


def test_unreachable_server_is_a_plain_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYTENSOR_")}
    env.update(
        EASYTENSOR_URL="http://127.0.0.1:9", EASYTENSOR_API_KEY="x", EASYTENSOR_HOME=str(tmp_path)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "easytensor_jupyter.cli", "models"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "Cannot reach the EasyTensor server at http://127.0.0.1:9" in proc.stderr


FIXED = {
    "id": "news-classifier-3fa2b1",
    "scaling": {"replicas": 2, "autoscaling": None},
    "backend": "local",
    "replicas_running": 1,
}
AUTO = {
    "id": "news-classifier-3fa2b1",
    "scaling": {
        "replicas": None,
        "autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 2.0},
    },
    "backend": "ray",
    "replicas_running": 3,
}


@pytest.mark.parametrize(
    ("model", "line"),
    [
        (FIXED, "2 replicas (fixed), 1 running, backend local"),
        (AUTO, "autoscaling 0 to 4 replicas, target 2 in flight, 3 running, backend ray"),
        (
            {"scaling": {"replicas": 1, "autoscaling": None}, "replicas_running": 0},
            "1 replica (fixed), 0 running",
        ),
        (
            {"scaling": {"autoscaling": {"max_replicas": 8, "target_ongoing_requests": 1.5}}},
            "autoscaling 1 to 8 replicas, target 1.5 in flight",
        ),
        ({"id": "old-server-model", "versions": []}, ""),
    ],
)
def test_describe_scaling(model: dict[str, Any], line: str) -> None:
    assert describe_scaling(model) == line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--replicas", "2"], (2, None, None, None)),
        (["--min", "0", "--max", "4", "--target", "2.5"], (None, 0, 4, 2.5)),
        (["--max", "4"], (None, None, 4, None)),
    ],
)
def test_models_scale_parses_one_form(
    argv: list[str], expected: tuple[int | None, int | None, int | None, float | None]
) -> None:
    args = build_parser().parse_args(["models", "scale", "news", *argv])
    assert args.model == "news"
    assert (
        args.replicas,
        args.min_replicas,
        args.max_replicas,
        args.target_ongoing_requests,
    ) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --replicas --max is required"),
        (["--replicas", "2", "--max", "4"], "not allowed with argument"),
        (["--min", "0"], "one of the arguments --replicas --max is required"),
        (["--replicas", "2", "--min", "1"], "--min and --target go with --max"),
        (["--replicas", "2", "--target", "3"], "--min and --target go with --max"),
    ],
)
def test_models_scale_refuses_mixed_forms_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["models", "scale", "news", "--url", "http://127.0.0.1:9", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_models_scale_resolves_the_name_and_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def set_scaling(self: Client, model_id: str, **kwargs: Any) -> dict[str, Any]:
        calls.append((model_id, kwargs))
        return AUTO

    monkeypatch.setattr(Client, "find_model", lambda self, name: {"id": AUTO["id"]})
    monkeypatch.setattr(Client, "set_scaling", set_scaling)
    base = ["models", "scale", "News classifier", "--url", "http://127.0.0.1:9", "--api-key", "k"]
    assert cli_main([*base, "--min", "0", "--max", "4"]) == 0
    assert calls == [
        (
            AUTO["id"],
            {
                "replicas": None,
                "min_replicas": 0,
                "max_replicas": 4,
                "target_ongoing_requests": None,
            },
        )
    ]
    assert capsys.readouterr().out == (
        "news-classifier-3fa2b1: autoscaling 0 to 4 replicas, target 2 in flight, "
        "3 running, backend ray\n"
    )
    assert cli_main([*base, "--replicas", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == AUTO


def test_models_scale_shows_the_server_refusal_plainly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: Client, model_id: str, **kwargs: Any) -> dict[str, Any]:
        raise EasyTensorError(
            "Autoscaling needs the Ray backend", status=422, code="scaling_unsupported"
        )

    monkeypatch.setattr(Client, "find_model", lambda self, name: {"id": "m-1"})
    monkeypatch.setattr(Client, "set_scaling", refuse)
    code = cli_main(["models", "scale", "m-1", "--max", "4", "--url", "http://127.0.0.1:9"])
    assert code == 1
    assert capsys.readouterr().err == (
        "error: Autoscaling needs the Ray backend (HTTP 422, scaling_unsupported)\n"
    )
