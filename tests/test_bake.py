"""Bake every variant, then lint, type-check and test what comes out.

The variants are the default answers, every value of every choice, and every
combination of database x second_database x include_example_api. Each baked
project's own suite runs on SQLite, on PostgreSQL, and, for the mysql variant,
on MariaDB.
"""

import fnmatch
from pathlib import Path

import pytest

from tests.conftest import bake_into, run, server_url
from tests.variants import CHOICES, CONTEXT, VARIANTS

COPY_WITHOUT_RENDER: list[str] = CONTEXT["_copy_without_render"]
JINJA_MARKERS = ("{{", "{%", "cookiecutter.")
# What each kind of file in `_copy_without_render` holds of its own template syntax.
TEMPLATE_SYNTAX = {"*.mako": "${"}


@pytest.fixture(scope="session")
def baked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each variant, baked once per test session (or xdist worker) on first use."""
    return _BakedProjects(tmp_path_factory)


class _BakedProjects(dict[str, Path]):
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self._factory = factory

    def __missing__(self, variant: str) -> Path:
        project = bake_into(self._factory.mktemp(variant), **VARIANTS[variant])
        self[variant] = project
        return project


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by the variants a worker checks in turn, so that the third-party
    # packages are analysed once per worker rather than once per variant.
    return tmp_path_factory.mktemp("mypy-cache")


def _text_files(project: Path) -> list[Path]:
    return [
        path
        for path in sorted(project.rglob("*"))
        if path.is_file() and path.suffix not in {".pyc", ".db"}
    ]


def _copied_verbatim(relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in COPY_WITHOUT_RENDER)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bake_leaves_no_template_syntax(baked: dict[str, Path], variant: str) -> None:
    project = baked[variant]
    leftovers = []
    for path in _text_files(project):
        relative = path.relative_to(project).as_posix()
        text = path.read_text()
        if _copied_verbatim(relative):
            own_syntax = next(
                syntax for pattern, syntax in TEMPLATE_SYNTAX.items() if path.match(pattern)
            )
            assert own_syntax in text, f"{relative} lost its own template syntax"
            continue
        leftovers += [f"{relative}: {marker}" for marker in JINJA_MARKERS if marker in text]
        leftovers += [relative for marker in JINJA_MARKERS if marker in relative]

    assert leftovers == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_baked_project_passes_lint_and_strict_types(
    baked: dict[str, Path], mypy_cache: Path, variant: str
) -> None:
    project = baked[variant]
    for command in (
        ("ruff", "check", "--no-cache", "."),
        ("ruff", "format", "--no-cache", "--check", "."),
        ("mypy", "--strict", "--cache-dir", mypy_cache, "app", "migrations", "tests"),
    ):
        result = run(*command, cwd=project)
        assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}"


def _run_suite(project: Path, database_url: str | None, *pytest_args: str) -> None:
    env = {"TEST_DATABASE_URL": database_url or ""}
    result = run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args, cwd=project, env=env
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_baked_suite_passes_on_sqlite(baked: dict[str, Path], variant: str) -> None:
    _run_suite(baked[variant], None, "-m", "not postgresql")


@pytest.mark.parametrize("variant", VARIANTS)
def test_baked_suite_passes_on_postgresql(baked: dict[str, Path], variant: str) -> None:
    url = server_url("TEST_DATABASE_URL", "PostgreSQL")
    _run_suite(baked[variant], url)


@pytest.mark.parametrize("variant", [name for name in VARIANTS if name.startswith("mysql-")])
def test_baked_suite_passes_on_mariadb(baked: dict[str, Path], variant: str) -> None:
    url = server_url("TEST_MYSQL_URL", "MariaDB")
    _run_suite(baked[variant], url, "-m", "not postgresql")


def test_matrix_covers_every_value_of_every_choice() -> None:
    for name, values in CHOICES.items():
        baked_values = {answers[name] for answers in VARIANTS.values()}
        assert baked_values == set(values), name
    assert len(VARIANTS) == 2 + 12  # two extra Python versions, every database combination
