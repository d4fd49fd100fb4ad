"""File names and node tags shared by the writer and the reader of a bundle's state."""

from __future__ import annotations

from easytensor_jupyter.bundle import STATE_FILES

__all__ = [
    "FORMAT",
    "SECTIONS",
    "STATE_FILES",
    "STATE_JSON",
    "STATE_SKOPS",
    "STATE_TENSORS",
    "TAG",
    "TRUSTED_PREFIXES",
]

STATE_JSON, STATE_TENSORS, STATE_SKOPS = STATE_FILES
FORMAT = 1
TAG = "$"
SECTIONS = ("globals", "init", "attrs")
"""Decoded in this order: ``model.py`` reads its globals at import, the loader the rest."""

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
"""The only types a worker accepts from ``state.skops``, besides skops's own defaults."""
