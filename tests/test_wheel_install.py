"""The wheel, installed the way a user installs it, brings both Jupyter extensions, with no Node.

The developer's ``.venv`` is an editable install, which hides packaging mistakes: a prebuilt
lab extension or a server-enable file left out of the wheel would still work there. So this test
builds the real wheel, installs it into a brand-new virtual environment (no system site
packages, no Node on ``PATH``, its own ``HOME`` and Jupyter dirs) and asks Jupyter there whether
``easytensor-jupyter`` (lab) and ``easytensor_jupyter`` (server) are enabled and OK, then starts
that environment's JupyterLab and checks it serves the extension.

torch goes in first, pinned to the CPU build on local disk, so pip never resolves the wheel's
``torch>=2.2`` to a multi-GB download. pip caches nothing: every file lives under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser import jupyter_lab

REPO = Path(__file__).resolve().parents[1]
DEV_BIN = Path(sys.executable).parent
TORCH = "torch==2.13.0"
JUPYTERLAB = "jupyterlab>=4.0,<5"
LAB_EXT = "share/jupyter/labextensions/easytensor-jupyter"
SERVER_ENABLE = "etc/jupyter/jupyter_server_config.d/easytensor_jupyter.json"
NODE_TOOLS = ("node", "nodejs", "npm", "jlpm", "yarn")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Variables that would let the developer's setup leak into the fresh environment.
LEAKY = ("PYTHON", "JUPYTER", "VIRTUAL_ENV", "EASYTENSOR_", "PIP_CACHE_DIR", "CONDA")


def _clean_env(home: Path, path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY)}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"),
        PATH=path,
        PIP_NO_CACHE_DIR="1",
        PYTHONNOUSERSITE="1",
        **extra,
    )
    return env


def _run(
    command: Sequence[str | Path], env: Mapping[str, str], cwd: Path, timeout: float = 300
) -> str:
    """Run a step; on failure show its output, which says far more than the exit code."""
    result = subprocess.run(
        [str(part) for part in command],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output[-6000:]}"
    return output


def _build_wheel(out: Path, home: Path) -> Path:
    """``pip wheel`` of the checkout; the prebuilt lab extension is reused (skip-if-exists)."""
    env = _clean_env(home, os.pathsep.join([str(DEV_BIN), os.environ.get("PATH", "")]))
    pip_wheel: list[str | Path] = [
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        out,
    ]
    _run([sys.executable, *pip_wheel, REPO], env, cwd=home)
    wheels = list(out.glob("easytensor_jupyter-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _check_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
        for required in (f"{LAB_EXT}/package.json", f"{LAB_EXT}/install.json", SERVER_ENABLE):
            assert required in data, f"{required} not in {wheel.name}: {sorted(data)}"
        assert any(fnmatch(n, f"{LAB_EXT}/static/remoteEntry.*.js") for n in data), data

        def read(relative: str) -> str:
            (member,) = [n for n in names if n.endswith(f".data/data/{relative}")]
            return archive.read(member).decode("utf-8")

        package = json.loads(read(f"{LAB_EXT}/package.json"))
        assert package["name"] == "easytensor-jupyter"
        # The entry point JupyterLab loads is the one shipped, not a stale hash.
        assert f"{LAB_EXT}/{package['jupyterlab']['_build']['load']}" in data
        assert json.loads(read(f"{LAB_EXT}/install.json"))["packageName"] == "easytensor-jupyter"
        assert json.loads(read(SERVER_ENABLE)) == {
            "ServerApp": {"jpserver_extensions": {"easytensor_jupyter": True}}
        }


# About 80 s here, most of it pip fetching the dependencies: above the suite's 300 s default
# only when the package index is slow, so it stays in CI with room to spare.
@pytest.mark.timeout(900)
def test_wheel_installs_both_extensions_without_node(tmp_path: Path) -> None:
    started = time.monotonic()
    home = tmp_path / "home"
    home.mkdir()
    wheel = _build_wheel(tmp_path / "dist", home)
    _check_wheel_contents(wheel)
    built = time.monotonic()

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", venv], _clean_env(home, os.environ.get("PATH", "")), home)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    bin_dir = venv / "bin"
    python = bin_dir / "python"
    # Only the new environment's own scripts: no Node, npm or jlpm can be reached.
    bare_path = str(bin_dir)
    env = _clean_env(home, bare_path)
    _run([python, "-m", "pip", "install", TORCH], env, home)
    missing = {tool: shutil.which(tool, path=bare_path) for tool in NODE_TOOLS}
    assert not any(missing.values()), f"Node tools on the install PATH: {missing}"
    _run([python, "-m", "pip", "install", wheel], env, home)
    # A user's JupyterLab, installed after the wheel so the wheel's install had no jlpm at all.
    _run([python, "-m", "pip", "install", JUPYTERLAB], env, home)
    installed = time.monotonic()

    where = _run(
        [python, "-c", "import easytensor_jupyter; print(easytensor_jupyter.__file__)"], env, home
    )
    assert Path(where.splitlines()[0]).is_relative_to(venv), where

    labext = _run([bin_dir / "jupyter", "labextension", "list"], env, home)
    assert f"{venv / 'share' / 'jupyter' / 'labextensions'}\n" in labext, labext
    assert re.search(
        r"easytensor-jupyter v[\w.]+ enabled OK \(python, easytensor-jupyter\)", labext
    ), labext

    serverext = _run([bin_dir / "jupyter", "server", "extension", "list"], env, home)
    section = serverext.split(f"Config dir: {venv / 'etc' / 'jupyter'}\n", 1)
    assert len(section) == 2, serverext
    listing = section[1].split("Config dir: ", 1)[0]
    assert re.search(r"^\s+easytensor_jupyter enabled$", listing, re.MULTILINE), serverext
    assert re.search(r"^\s+easytensor_jupyter [\w.]+ OK$", listing, re.MULTILINE), serverext
    listed = time.monotonic()

    # That environment's JupyterLab loads the server extension and serves the prebuilt bundle.
    root = tmp_path / "root"
    root.mkdir()
    lab_env = {"PATH": bare_path, "HOME": str(home), "PYTHONNOUSERSITE": "1"}
    with jupyter_lab(
        root, env=lab_env, python=python, extra_args=["--EasyTensor.autostart=False"]
    ) as lab:
        status = lab.api("/easytensor/api/status")
        assert status.status_code == 200, status.text
        page = lab.api("/lab")
        assert page.status_code == 200
        config = re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page.text, re.S)
        assert config, page.text[:2000]
        federated = {e["name"]: e for e in json.loads(config.group(1))["federated_extensions"]}
        assert "easytensor-jupyter" in federated, sorted(federated)
        entry = federated["easytensor-jupyter"]["load"]
        asset = lab.api(f"/lab/extensions/easytensor-jupyter/{entry}")
        assert asset.status_code == 200 and "easytensor" in asset.text, asset.status_code

    timings = {
        "build": built - started,
        "install": installed - built,
        "list": listed - installed,
        "lab": time.monotonic() - listed,
    }
    print("wheel install timings (s):", {k: round(v, 1) for k, v in timings.items()})
