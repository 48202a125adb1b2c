"""A bake's life after the bake: its locked install, its CI workflow, its lock going stale.

The CI workflow's steps are `make` targets; the tests here run those very steps, read
from the baked `.github/workflows/ci.yml`, on one variant per database, each in the
bake's own `.venv` built from its `uv.lock`, against a database of their own on the
server the workflow's service container stands for.
"""

import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import bake_into, run, server_url
from tests.servers import new_database
from tests.variants import VARIANTS

# The variant whose CI steps run here, per database: between them both values of
# second_database. tests/test_bake.py leaves out their suite runs on that database.
CI_VARIANTS = {
    "postgresql": "default",
    "mysql": "mysql-second-yes-example-yes",
    "sqlite": "sqlite-second-yes-example-yes",
}
CI_STEPS = ["make install", "make lint", "make test", "make db-check", "make db-roundtrip"]
SERVERS = {
    "postgresql": ("TEST_DATABASE_URL", "PostgreSQL"),
    "mysql": ("TEST_MYSQL_URL", "MariaDB"),
}
STALE_LOCK = "error: uv.lock is out of date with pyproject.toml; run make lock, then commit uv.lock"
# What pip puts into an environment besides the locked packages: itself, uv (which
# reads the lock for it) and, on Python 3.11, the venv's setuptools.
INSTALLERS = {"pip", "setuptools", "uv"}


def _workflow(project: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(
        (project / ".github" / "workflows" / "ci.yml").read_text()
    )
    return workflow


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize("database", CI_VARIANTS)
def test_the_ci_workflow_steps_pass_on_a_bake(
    tmp_path: Path, mypy_cache: Path, database: str
) -> None:
    project = bake_into(tmp_path, **VARIANTS[CI_VARIANTS[database]])
    job = _workflow(project)["jobs"]["check"]
    steps = [step["run"] for step in job["steps"] if "run" in step]
    assert steps == CI_STEPS
    env = {**job["env"], "CI": "true", "MYPY_CACHE_DIR": str(mypy_cache)}
    with ExitStack() as stack:
        if database in SERVERS:
            server = server_url(*SERVERS[database])
            # The workflow's URLs name its service containers; these name databases of
            # this test's own on the same kind of server.
            replaced = {"TEST_DATABASE_URL": server}
            for variable in ("DATABASE_URL", "AUDIT_DATABASE_URL"):
                if variable in env:
                    url = stack.enter_context(new_database(server, "ci"))
                    replaced[variable] = url.render_as_string(hide_password=False)
            assert set(replaced) <= set(job["env"])
            env.update(replaced)

        for step in steps:
            result = run("bash", "-e", "-c", step, cwd=project, env=env, timeout=900)
            assert result.returncode == 0, (
                f"{step}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
            )


def test_the_workflow_keeps_github_expressions_through_rendering(tmp_path: Path) -> None:
    workflow = _workflow(bake_into(tmp_path))

    assert workflow["concurrency"] == {
        "group": "${{ github.workflow }}-${{ github.ref }}",
        "cancel-in-progress": True,
    }
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert job["timeout-minutes"] <= 20, name


def _versions(project: Path) -> dict[str, str]:
    """Every distribution installed in the bake's .venv, by name."""
    listing = run(
        project / ".venv" / "bin" / "python",
        "-c",
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'].lower(), d.version)",
        cwd=project,
    )
    assert listing.returncode == 0, listing.stderr
    return dict(line.split() for line in listing.stdout.splitlines())


@pytest.fixture
def two_copies(tmp_path: Path) -> tuple[Path, Path]:
    """One bake, copied: the same pyproject.toml and uv.lock in two folders."""
    first = bake_into(tmp_path / "first")
    second = tmp_path / "second" / first.name
    shutil.copytree(first, second)
    return first, second


def test_uv_and_pip_install_the_same_locked_versions(two_copies: tuple[Path, Path]) -> None:
    with_uv, with_pip = two_copies

    results = [
        run("make", "install", cwd=with_uv, timeout=900),
        # An empty UV is what make sees on a machine without uv.
        run("make", "install", "UV=", cwd=with_pip, timeout=900),
    ]

    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    uv_versions, pip_versions = _versions(with_uv), _versions(with_pip)
    assert set(pip_versions) - set(uv_versions) <= INSTALLERS
    assert {name: pip_versions[name] for name in uv_versions} == uv_versions
    assert len(uv_versions) > 30  # the whole dependency tree, not just the project


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_stale_lock_fails_make_install_with_one_line(tmp_path: Path, installer: str) -> None:
    project = bake_into(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace("dependencies = [\n", 'dependencies = [\n    "rich",\n', 1))
    assert pyproject.read_text() != text

    result = run("make", "install", *(["UV="] if installer == "pip" else []), cwd=project)

    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [STALE_LOCK]
    # The one line, then make's own note of the failed target: none of uv's lines.
    assert result.stderr.splitlines()[-2:] == [
        STALE_LOCK,
        *[line for line in result.stderr.splitlines() if _is_make_failure(line)],
    ]
    assert not (project / ".venv" / ".installed").exists()


def test_a_missing_lock_fails_make_install_with_one_line(tmp_path: Path) -> None:
    project = bake_into(tmp_path)
    (project / "uv.lock").unlink()

    result = run("make", "install", cwd=project)

    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (
        "error: there is no uv.lock yet; run make lock, then commit uv.lock"
    )
    assert not (project / ".venv").exists()


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_make_lock_writes_the_lock_the_hook_wrote(tmp_path: Path, installer: str) -> None:
    project = bake_into(tmp_path)
    written = (project / "uv.lock").read_text()
    (project / "uv.lock").unlink()

    # Without uv on PATH, make lock has pip install uv into .venv first.
    result = run(
        "make",
        "lock",
        *(["UV="] if installer == "pip" else []),
        cwd=project,
        env={"UV_PYTHON_DOWNLOADS": "never"},
    )

    assert result.returncode == 0, result.stderr
    assert (project / "uv.lock").read_text() == written


def test_the_template_job_passes_softly_without_cruft_or_a_reachable_template(
    tmp_path: Path,
) -> None:
    project = bake_into(tmp_path)
    (step,) = [
        step["run"] for step in _workflow(project)["jobs"]["template"]["steps"] if "run" in step
    ]

    without = run("bash", "-e", "-c", step, cwd=project)
    (project / ".cruft.json").write_text(
        '{"template": "http://127.0.0.1:9/template.git", "commit": "0000000", "context": {}}'
    )
    unreachable = run("bash", "-e", "-c", step, cwd=project, env={"GIT_TERMINAL_PROMPT": "0"})

    assert without.returncode == 0, without.stderr
    assert "::warning title=cruft check skipped::no .cruft.json" in without.stdout
    assert unreachable.returncode == 0, unreachable.stdout + unreachable.stderr
    assert "::warning title=cruft check skipped::could not reach the template" in (
        unreachable.stdout
    )


def _is_make_failure(line: str) -> bool:
    """make's own note of a failed target: `make: ***`, or `make[1]: ***` when nested."""
    return line.startswith("make") and ": *** " in line
