"""Upload progress: a tqdm bar that becomes a widget bar inside notebooks."""

from __future__ import annotations

from typing import Any

__all__ = ["byte_progress"]


def byte_progress(total: int, description: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, leave=False
    )
