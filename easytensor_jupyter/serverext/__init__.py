"""The jupyter_server extension: the lab panel's REST API, proxied to the inference server.

Enabled by ``jupyter-config/jupyter_server_config.d/easytensor_jupyter.json`` (installed into
``etc/jupyter`` by the wheel). An editable install does not install that file: put the repo's
``jupyter-config`` on ``JUPYTER_CONFIG_PATH`` or run
``jupyter server extension enable easytensor_jupyter``.
"""

from __future__ import annotations

from typing import Any

from easytensor_jupyter.serverext.config import EasyTensor
from easytensor_jupyter.serverext.handlers import UPSTREAM_SETTING, route_table
from easytensor_jupyter.serverext.proxy import Upstream
from easytensor_jupyter.serverext.traffic_handlers import traffic_route_table

__all__ = [
    "EasyTensor",
    "load_jupyter_server_extension",
]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "easytensor_jupyter.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the routes; with nothing configured, bring up the embedded server off-thread.

    Kernels inherit this process's environment, so once the embedded server answers its URL is
    put in ``EASYTENSOR_URL`` and every kernel started afterwards uses the same server.
    """
    settings = EasyTensor(parent=serverapp)
    upstream = Upstream(settings.url, settings.api_key, log=serverapp.log)
    web_app = serverapp.web_app
    web_app.settings[UPSTREAM_SETTING] = upstream
    web_app.add_handlers(".*$", route_table(web_app.settings["base_url"]))
    web_app.add_handlers(".*$", traffic_route_table(web_app.settings["base_url"]))
    if upstream.embedded and settings.autostart:
        upstream.start_in_background()
        serverapp.log.debug("EasyTensor: starting the embedded inference server in the background")
    else:
        where = upstream.configured_url or "the embedded server, if one is running"
        serverapp.log.info("EasyTensor: the lab panel talks to %s", where)


load_jupyter_server_extension = _load_jupyter_server_extension
