"""Helpers for baking the template and running commands in what comes out."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from tests.variants import TEMPLATE

BIN = Path(sys.executable).parent
RUNNING_IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")

Bake = Callable[..., Path]


def _select_every_pyenv_python() -> None:
    """Let uv find each Python that pyenv has installed, to lock the 3.12 and 3.13 bakes.

    The post-gen hook's `uv lock` needs an interpreter of the bake's `python_version` and
    never downloads one; pyenv's shim for a version it has but has not selected fails
    instead of being skipped. The selected version stays first, so `python3` is unchanged.
    Nothing changes without pyenv, or when PYENV_VERSION is set already.
    """
    if "PYENV_VERSION" in os.environ or shutil.which("pyenv") is None:
        return
    pyenv = ("pyenv", "version-name"), ("pyenv", "versions", "--bare", "--skip-aliases")
    current, installed = (
        subprocess.run(command, capture_output=True, text=True, check=False).stdout.split()
        for command in pyenv
    )
    if current:
        os.environ["PYENV_VERSION"] = ":".join(dict.fromkeys([*current, *installed]))


_select_every_pyenv_python()


def bake_into(output_dir: Path, **answers: str) -> Path:
    """Render the template with the default answers, overridden by `answers`."""
    project = cookiecutter(
        str(TEMPLATE), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(project)


@pytest.fixture
def bake(tmp_path: Path) -> Bake:
    return lambda **answers: bake_into(tmp_path, **answers)


def run(
    *command: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command with the template's virtualenv first on PATH; never raises on failure."""
    merged = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def server_url(variable: str, what: str) -> str:
    """The URL of a database server the tests need; skips on a laptop, fails under CI."""
    url = os.environ.get(variable)
    if url:
        return url
    reason = f"needs {what}: set {variable} (.ci/run does)"
    if RUNNING_IN_CI:
        pytest.fail(f"{reason}; CI is set, so this test may not be skipped", pytrace=False)
    pytest.skip(reason)
