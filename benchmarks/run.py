"""`make bench`: install wrk, build the benchmark's venv, bake the service, run the harness.

Runs on the system Python with the standard library only. Its arguments go to
the harness unchanged: `--quick`, `--rounds N`, `--only KEYS`, `--database-url
URL` and the rest that `python3 benchmarks/run.py --help` lists.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from harness.config import PEER_PACKAGE, PEER_VERSION

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
VENV = HERE / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / "bench-requirements.txt"

# Installed next to the baked project's own dependencies.
TOOLS = ["cookiecutter>=2.6", "uvloop", "httptools"]
# This release declares Python >= 3.12 but runs on 3.11, so pip is told to ignore that.
PEER = f"{PEER_PACKAGE}=={PEER_VERSION}"


def _run(*command: str | Path, quiet: bool = False) -> None:
    """Run `command`, failing the benchmark if it fails; `quiet` hides its standard output."""
    stdout = subprocess.DEVNULL if quiet else None
    subprocess.run([str(part) for part in command], stdout=stdout, check=True)


def _ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is missing: install it with `sudo apt-get install wrk`, then run again.")
    print("installing wrk from Debian's packages", file=sys.stderr)
    _run("apt-get", "update", "-qq")
    _run("apt-get", "install", "-y", "-qq", "wrk")


def _pip(*arguments: str) -> None:
    _run(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *arguments)


def _ensure_venv() -> None:
    """Create the venv with cookiecutter in it: the project's own dependencies
    are only known once it is baked."""
    if not (VENV / "bin" / "cookiecutter").exists():
        print("creating the benchmark's venv", file=sys.stderr)
        _run(sys.executable, "-m", "venv", VENV)
        _pip(*TOOLS)


def _ensure_requirements(requirements: list[str]) -> None:
    """Install `requirements` and the peer, unless the stamp says they already are."""
    wanted = "\n".join([*requirements, PEER]) + "\n"
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing the benchmark's requirements", file=sys.stderr)
    _pip(*requirements)
    _pip("--ignore-requires-python", PEER)
    STAMP.write_text(wanted)


def _bake(into: Path) -> Path:
    """Bake the template with its default answers and return the project folder."""
    # Its "next steps" message is for people baking a service, not for this run.
    _run(VENV / "bin" / "cookiecutter", "--no-input", "--output-dir", into, REPOSITORY, quiet=True)
    (project,) = (path for path in into.iterdir() if path.is_dir())
    return project


def _dependencies(project: Path) -> list[str]:
    with (project / "pyproject.toml").open("rb") as file:
        project_table = tomllib.load(file)["project"]
    # The extras too: the traced contestant needs the tracing one.
    extras = project_table.get("optional-dependencies", {}).values()
    dependencies: list[str] = project_table["dependencies"]
    return [*dependencies, *(requirement for extra in extras for requirement in extra)]


def _bake_and_run() -> int:
    _ensure_wrk()
    _ensure_venv()
    with tempfile.TemporaryDirectory(prefix="bench-bake-") as bake:
        project = _bake(Path(bake))
        _ensure_requirements(sorted({*TOOLS, *_dependencies(project)}))
        harness = [PYTHON, "-m", "harness", "--project", project, *sys.argv[1:]]
        return subprocess.run([str(part) for part in harness], cwd=HERE, check=False).returncode


def main() -> int:
    try:
        return _bake_and_run()
    except subprocess.CalledProcessError as error:
        command = " ".join(str(part) for part in error.cmd)
        sys.exit(f"`{command}` failed with exit status {error.returncode}; see its output above.")


if __name__ == "__main__":
    sys.exit(main())
