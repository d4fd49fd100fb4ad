"""The extension is found and enabled the way users install it.

A wheel puts ``jupyter-config/jupyter_server_config.d/easytensor_jupyter.json`` under
``<prefix>/etc/jupyter``; hatchling's editable install does the same. A checkout used without
installing that file (e.g. ``PYTHONPATH``) can enable it with
``JUPYTER_CONFIG_PATH=<repo>/jupyter-config``, which the second test covers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "jupyter-config"
ENABLE_FILE = CONFIG_DIR / "jupyter_server_config.d" / "easytensor_jupyter.json"
JUPYTER = Path(sys.executable).with_name("jupyter")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _extension_list(tmp_path: Path, **extra_env: str) -> str:
    env = dict(os.environ, HOME=str(tmp_path), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter"))
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.update(extra_env)
    result = subprocess.run(
        [str(JUPYTER), "server", "extension", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return ANSI.sub("", result.stdout + result.stderr)


def _section(output: str, config_dir: Path) -> str:
    """The part of the listing printed under one ``Config dir:`` heading."""
    sections = re.split(r"^Config dir: ", output, flags=re.MULTILINE)
    for section in sections:
        if section.startswith(str(config_dir)):
            return section
    raise AssertionError(f"no 'Config dir: {config_dir}' in:\n{output}")


def test_enable_file_turns_on_the_package() -> None:
    assert json.loads(ENABLE_FILE.read_text(encoding="utf-8")) == {
        "ServerApp": {"jpserver_extensions": {"easytensor_jupyter": True}}
    }


def test_wheel_installs_the_enable_file() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter-config/jupyter_server_config.d"] == "etc/jupyter/jupyter_server_config.d"


def test_installed_extension_is_enabled_and_ok(tmp_path: Path) -> None:
    installed = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    if not (installed / ENABLE_FILE.name).is_file():
        pytest.skip(f"{ENABLE_FILE.name} is not installed in {installed}: reinstall the project")
    output = _extension_list(tmp_path)
    assert re.search(r"easytensor_jupyter\s+enabled", output), output
    assert re.search(r"easytensor_jupyter [0-9.]+\S*\s+OK", output), output


def test_repo_config_dir_listed_as_a_config_dir(tmp_path: Path) -> None:
    """``extension list`` reads only the user, sys-prefix and system dirs, never JUPYTER_CONFIG_PATH."""
    output = _extension_list(tmp_path, JUPYTER_CONFIG_DIR=str(CONFIG_DIR))
    section = _section(output, CONFIG_DIR)
    assert re.search(r"easytensor_jupyter\s+enabled", section), output
    assert re.search(r"easytensor_jupyter [0-9.]+\S*\s+OK", section), output


SERVER_READS = """
import json
from jupyter_server.extension.config import ExtensionConfigManager
from jupyter_server.serverapp import ServerApp
app = ServerApp()
paths = app.config_file_paths
print(json.dumps({
    "paths": paths,
    "from_repo": ExtensionConfigManager(read_config_path=[paths[paths.index(%r)]]).get_jpserver_extensions(),
}))
"""


def test_jupyter_config_path_reaches_the_server(tmp_path: Path) -> None:
    """What a running server merges: the repo dir is searched, and its file enables us."""
    env = dict(os.environ, HOME=str(tmp_path), JUPYTER_CONFIG_PATH=str(CONFIG_DIR))
    result = subprocess.run(
        [sys.executable, "-c", SERVER_READS % str(CONFIG_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert str(CONFIG_DIR) in answer["paths"]
    assert answer["from_repo"] == {"easytensor_jupyter": True}


def test_both_entry_points_name_the_loader() -> None:
    import easytensor_jupyter
    import easytensor_jupyter.serverext as serverext

    for package in (easytensor_jupyter, serverext):
        points = package._jupyter_server_extension_points()
        assert points == [{"module": "easytensor_jupyter.serverext"}]
    assert serverext.load_jupyter_server_extension is serverext._load_jupyter_server_extension
