"""Serving on a Ray cluster: ``easytensor serve --backend ray``.

Imported only when that backend is chosen, so the local default never imports Ray.
"""

from __future__ import annotations

from easytensor_jupyter.inference.backends.ray.backend import RayBackend, RayOptions

__all__ = ["RayBackend", "RayOptions"]
