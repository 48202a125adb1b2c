"""The benchmark's code compiles, its harness starts and its apps import.

`make bench` needs PostgreSQL and minutes, so nothing else runs it; these checks keep
it from rotting unseen between runs. The harness and the apps below need only the
baked service's dependencies, which the template's virtualenv has.
"""

import os
import subprocess
import sys

from benchmarks.harness.config import DATABASE_URL_VARIABLE
from tests.variants import TEMPLATE

BENCHMARKS = TEMPLATE / "benchmarks"
# The apps that import without a bake or fastapi-async-sqlalchemy.
APPS = ["items", "baseline", "proxy_app", "raw_asyncpg"]


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), str(BENCHMARKS / "apps")]),
        # Read at import; nothing connects.
        DATABASE_URL_VARIABLE: "postgresql+asyncpg://nobody@127.0.0.1:1/none",
    }
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_benchmark_module_compiles() -> None:
    modules = [*BENCHMARKS.glob("apps/*.py"), *BENCHMARKS.glob("harness/*.py")]
    assert modules, f"no modules under {BENCHMARKS}/apps or harness"
    for path in [BENCHMARKS / "run.py", *modules]:
        compile(path.read_text(), str(path), "exec")


def test_the_harness_imports_and_lists_its_options() -> None:
    completed = _run("-m", "harness", "--help")
    assert completed.returncode == 0, completed.stderr
    assert "--quick" in completed.stdout


def test_the_apps_import() -> None:
    completed = _run("-c", "; ".join(f"import {app}" for app in APPS))
    assert completed.returncode == 0, completed.stderr
