"""The original EasyTensor API, served by EasyTensor for Jupyter.

    import easytensor
    model_id, access_token = easytensor.pytorch.upload_model("My PyTorch Model", model, "model.py")

With nothing configured, an embedded server on this machine does the serving.
"""

from __future__ import annotations

from typing import Any

from easytensor import pytorch
from easytensor._session import client, set_api_key, set_base_url

__all__ = ["delete_model", "list_models", "pytorch", "query", "set_api_key", "set_base_url"]


def query(
    model_id: str, instances: Any, token: str | None = None, *, version: int | None = None
) -> list[Any]:
    """Predict; a single instance that is not a list is sent as one instance."""
    batch = instances if isinstance(instances, list) else [instances]
    return client().predict(model_id, batch, token=token, version=version).predictions


def list_models() -> list[dict[str, Any]]:
    return client().list_models()


def delete_model(model_id: str) -> None:
    client().delete_model(model_id)
