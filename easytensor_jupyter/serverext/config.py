"""Settings read from Jupyter's own config files (``c.EasyTensor.*``).

They live in Jupyter's config rather than ours so an administrator can point every user's lab at
a team server from one ``jupyter_server_config.py``.
"""

from __future__ import annotations

from traitlets import Bool, Unicode
from traitlets.config import Configurable

__all__ = ["EasyTensor"]


class EasyTensor(Configurable):
    """Which inference server the lab panel talks to, and with which admin key."""

    url = Unicode(
        None,
        allow_none=True,
        help="Inference server base URL. Default: EASYTENSOR_URL, else the embedded server.",
    ).tag(config=True)

    api_key = Unicode(
        None,
        allow_none=True,
        help="Admin key sent to the inference server (never to the browser). "
        "Default: EASYTENSOR_API_KEY, else the key file under EASYTENSOR_HOME.",
    ).tag(config=True)

    autostart = Bool(
        True,
        help="With no URL configured, start (or join) the embedded inference server when "
        "Jupyter starts, and tell kernels about it through EASYTENSOR_URL.",
    ).tag(config=True)
