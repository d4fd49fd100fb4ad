"""The original EasyTensor workflow, end to end against a real server and real workers."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests
import torch
from conftest import RunningServer

import easytensor
from easytensor_jupyter.validate import ModelCheckError

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart"
HEADLINES = [
    "Liverpool beat Manchester United 4-2 on May 13th",
    "Central bank holds interest rates as inflation cools",
    "Astronomers find a new planet with a space telescope",
    "Protesters gather as parliament debates the election law",
]


def model_names(server: RunningServer) -> set[str]:
    models = requests.get(f"{server.url}/v1/models", headers=server.admin, timeout=10).json()[
        "models"
    ]
    return {m["name"] for m in models}


def test_seed_example_answers_like_the_live_model(
    seed_api: RunningServer, news_model: Any, unique_name: str
) -> None:
    model_id, token = easytensor.pytorch.upload_model(
        unique_name, news_model, QUICKSTART / "model.py", sample=HEADLINES[0], quiet=True
    )
    assert token is not None and token.startswith("et_q_")
    live = [news_model.predict_single(h) for h in HEADLINES]
    endpoint = f"{seed_api.url}/v1/models/{model_id}/predict"

    reply = requests.post(
        endpoint,
        json={"instances": HEADLINES},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == live

    original = requests.post(
        f"{seed_api.url}/query/",
        json={"instances": HEADLINES},
        headers={"accessToken": token},
        timeout=30,
    )
    assert original.status_code == 200, original.text
    assert original.json()["predictions"] == live

    assert easytensor.query(model_id, HEADLINES[1], token) == [live[1]]

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(
        [
            curl,
            "-s",
            "-X",
            "POST",
            endpoint,
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            HEADLINES[2],
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert json.loads(out.stdout)["predictions"] == [live[2]]


def test_create_token_false_and_list_delete(
    seed_api: RunningServer, news_model: Any, unique_name: str
) -> None:
    model_id, token = easytensor.pytorch.upload_model(
        unique_name, news_model, QUICKSTART / "model.py", create_token=False, quiet=True
    )
    assert token is None
    assert model_id in {m["id"] for m in easytensor.list_models()}
    easytensor.delete_model(model_id)
    assert model_id not in {m["id"] for m in easytensor.list_models()}


def test_unchanged_reupload_sends_no_weights(
    seed_api: RunningServer, news_model: Any, unique_name: str
) -> None:
    from easytensor._session import client
    from easytensor_jupyter.packaging import PublishRequest, publish

    model = copy.deepcopy(news_model)
    with torch.no_grad():
        model.fc.bias.add_(torch.rand_like(model.fc.bias))  # weights no earlier test uploaded
    request = PublishRequest(
        name=unique_name, model=model, source=(QUICKSTART / "model.py").read_text()
    )
    first = publish(request, client())
    assert first.version == 1 and "weights.safetensors" in first.received
    again = publish(request, client())
    assert again.unchanged and again.version == 1
    assert again.received == []
    forced = publish(request, client(), force=True)
    assert forced.version == 2 and not forced.unchanged
    assert "weights.safetensors" in forced.reused and "weights.safetensors" not in forced.received


CTOR_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Sentiment(nn.Module):
        def __init__(self, vocab, hidden=4):
            super().__init__()
            self.vocab = vocab
            self.emb = nn.EmbeddingBag(len(vocab) + 1, hidden)
            self.out = nn.Linear(hidden, 2)

        def predict_single(self, text):
            ids = [self.vocab.get(w, len(self.vocab)) for w in text.split()] or [len(self.vocab)]
            scores = self.out(self.emb(torch.tensor(ids), torch.tensor([0])))[0]
            return {"positive": round(float(scores.softmax(0)[1]), 6)}
    """
)


def test_constructor_arguments(seed_api: RunningServer, tmp_path: Path, unique_name: str) -> None:
    path = tmp_path / "model.py"
    path.write_text(CTOR_SOURCE)
    namespace: dict[str, Any] = {}
    exec(compile(CTOR_SOURCE, str(path), "exec"), namespace)
    torch.manual_seed(1)
    model = namespace["Sentiment"]({"good": 0, "bad": 1}, hidden=8)
    with pytest.raises(ModelCheckError, match=r"(?s)weights do not fit.*init_kwargs"):
        easytensor.pytorch.upload_model(unique_name, model, path, sample="good", quiet=True)
    assert unique_name not in model_names(seed_api)
    model_id, token = easytensor.pytorch.upload_model(
        unique_name,
        model,
        path,
        sample="good day",
        init_kwargs={"vocab": {"good": 0, "bad": 1}, "hidden": 8},
        quiet=True,
    )
    assert easytensor.query(model_id, "bad good", token) == [model.predict_single("bad good")]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (None, r"no such file"),
        ("class Broken(:\n", r"model\.py, line 1: syntax error"),
        (
            "from torch import nn\nclass Other(nn.Module):\n    def predict_single(self, x):\n        return x\n",
            r"does not define class TextClassificationModel",
        ),
        (
            "from torch import nn\nclass TextClassificationModel(nn.Module):\n    def predict_single(self):\n        return 1\n",
            r"must take exactly one input",
        ),
    ],
)
def test_validation_failures_upload_nothing(
    seed_api: RunningServer,
    news_model: Any,
    tmp_path: Path,
    unique_name: str,
    source: str | None,
    message: str,
) -> None:
    path = tmp_path / "model.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(ModelCheckError, match=message):
        easytensor.pytorch.upload_model(unique_name, news_model, path, quiet=True)
    assert unique_name not in model_names(seed_api)


def test_parity_failure_uploads_nothing(
    seed_api: RunningServer, news_model: Any, tmp_path: Path, unique_name: str
) -> None:
    drifted = (
        (QUICKSTART / "model.py")
        .read_text()
        .replace(
            "prediction = output.argmax(1).item() + 1", "prediction = output.argmin(1).item() + 1"
        )
    )
    path = tmp_path / "model.py"
    path.write_text(drifted)
    with pytest.raises(
        ModelCheckError, match=r"answers the sample differently.*answer: live '.*' vs rebuilt '.*'"
    ):
        easytensor.pytorch.upload_model(
            unique_name, news_model, path, sample=HEADLINES[0], quiet=True
        )
    assert unique_name not in model_names(seed_api)


BIG_UPLOAD = textwrap.dedent(
    """
    import json, resource, sys, torch
    from torch import nn
    sys.path.insert(0, sys.argv[1])
    from big_model import Big
    import easytensor
    easytensor.set_base_url(sys.argv[2]); easytensor.set_api_key(sys.argv[3])
    model = Big()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model_id, _ = easytensor.pytorch.upload_model(sys.argv[4], model, sys.argv[1] + "/big_model.py", quiet=True)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"id": model_id, "rss_before_kb": before, "rss_after_kb": after}))
    """
)

BIG_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Big(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.ones(125 * 1024 * 1024, dtype=torch.float32))

        def predict_single(self, i):
            return float(self.table[int(i)])
    """
)


def test_500mb_upload_with_bounded_client_memory(spawn_server: Any, tmp_path: Path) -> None:
    big_server = (
        spawn_server()
    )  # the default upload limit takes a 500 MB model; queries stay at 100 MB
    (tmp_path / "big_model.py").write_text(BIG_MODEL)
    script = tmp_path / "upload.py"
    script.write_text(BIG_UPLOAD)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path), big_server.url, big_server.admin_key, "big"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    grown_mb = (report["rss_after_kb"] - report["rss_before_kb"]) / 1024
    assert grown_mb < 150, f"client memory grew {grown_mb:.0f} MB during a 500 MB upload"
    reply = big_server.predict(report["id"], [7])
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [1.0]
