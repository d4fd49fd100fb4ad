"""Per-model environments built with uv over the server's own, from local wheels only."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from wheels import build_wheel

from easytensor_jupyter.inference.backends.local.envs import (
    EnvironmentBuilder,
    EnvironmentBuildError,
)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels") / "wheels"
    build_wheel(out, "etdemo-base", "1.0.0", "def shout(x):\n    return str(x).upper() + '!'\n")
    build_wheel(out, "etdemo-base", "2.0.0", "def shout(x):\n    return str(x) + '?'\n")
    build_wheel(
        out,
        "etdemo-tool",
        "0.3.0",
        "import numpy, etdemo_base\ndef f(x):\n    return etdemo_base.shout(x), numpy.__version__\n",
        dependencies=("numpy>=1.20", "etdemo-base>=1,<2"),
    )
    return out


def run(env_python: str, code: str) -> str:
    done = subprocess.run([env_python, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_an_environment_layers_pins_over_the_servers_packages(
    wheelhouse: Path, tmp_path: Path
) -> None:
    import numpy
    import torch

    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(wheelhouse)])
    said: list[str] = []
    env = asyncio.run(builder.ensure(["etdemo-tool==0.3.0"], said.append))
    assert said == ["Building environment: etdemo-tool==0.3.0"]
    assert env.installed == ["etdemo-tool==0.3.0", "etdemo-base<2,>=1"]
    out = run(
        env.python, "import etdemo_tool, torch; print(etdemo_tool.f('hi'), torch.__version__)"
    )
    assert out == f"('HI!', '{numpy.__version__}') {torch.__version__}"
    # numpy and torch come from the server's environment, not a second copy.
    assert not list(env.path.rglob("numpy")) and not list(env.path.rglob("torch"))
    again = asyncio.run(builder.ensure(["etdemo-tool==0.3.0"], said.append))
    assert again.path == env.path and builder.builds == 1 and len(said) == 1


def test_conflicting_pins_get_their_own_environment_and_unused_ones_go(
    wheelhouse: Path, tmp_path: Path
) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(wheelhouse)])
    one = asyncio.run(builder.ensure(["etdemo-base==1.0.0"]))
    two = asyncio.run(builder.ensure(["etdemo-base==2.0.0"]))
    assert one.key != two.key and builder.builds == 2
    assert run(one.python, "import etdemo_base; print(etdemo_base.shout('a'))") == "A!"
    assert run(two.python, "import etdemo_base; print(etdemo_base.shout('a'))") == "a?"
    assert builder.remove_unused([two.key]) == [one.key]
    assert not one.path.exists() and two.path.exists()


def test_a_failed_build_says_what_the_installer_said_and_leaves_nothing(
    wheelhouse: Path, tmp_path: Path
) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs", find_links=[str(wheelhouse)])
    with pytest.raises(EnvironmentBuildError) as caught:
        asyncio.run(builder.ensure(["etdemo-base==9.9.9"]))
    assert "etdemo-base" in caught.value.tail and "9.9.9" in caught.value.tail
    assert list((tmp_path / "envs").iterdir()) == []
