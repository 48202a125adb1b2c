"""Bake every variant, then lint, type-check and test what comes out.

The variants are the default answers, every value of every choice, and every
combination of database x second_database x include_example_api. Every variant is
locked and passes its own pre-commit hooks (ruff, mypy --strict, whitespace).

The database answer changes a bake's dependencies, compose file, workflow and docs, but
not its code: the app, its tests and its migrations depend only on second_database and
include_example_api (a test below proves it). So each server runs the suites of its own
variants, which cover every such combination once: the sqlite variants on SQLite, the
postgresql ones on PostgreSQL, the mysql ones on MariaDB. The python-3.12 and
python-3.13 variants differ from the default only in their version floors, which the
lock and the hooks check. tests/test_lifecycle.py runs the CI workflow's steps on one
variant per database, and those runs stand in for that variant's suite run here.
"""

import fnmatch
import itertools
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import bake_into, run, server_url
from tests.test_lifecycle import CI_VARIANTS
from tests.variants import CHOICES, CONTEXT, VARIANTS

COPY_WITHOUT_RENDER: list[str] = CONTEXT["_copy_without_render"]
JINJA_MARKERS = ("{{", "{%", "cookiecutter.")
# What each kind of file in `_copy_without_render` holds of its own template syntax.
TEMPLATE_SYNTAX = {"*.mako": "${"}
# GitHub's own expressions, which the workflows keep through rendering.
GITHUB_EXPRESSION = re.compile(r"\$\{\{ [^{}]+ \}\}")
# What a bake runs as code; the database answer must leave all of it alone.
CODE = ("app", "tests", "migrations", "alembic.ini", "log-config.json")


def _suite_variants(database: str) -> list[str]:
    """The variants of `database` whose suites run here (one per code combination)."""
    return [
        name
        for name, answers in VARIANTS.items()
        if answers["database"] == database
        and not name.startswith("python-")
        and name != CI_VARIANTS[database]
    ]


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
        if relative.startswith(".github/"):
            text = GITHUB_EXPRESSION.sub("", text)
        leftovers += [f"{relative}: {marker}" for marker in JINJA_MARKERS if marker in text]
        leftovers += [relative for marker in JINJA_MARKERS if marker in relative]

    assert leftovers == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_bake_is_locked_for_its_python_floor(baked: dict[str, Path], variant: str) -> None:
    project = baked[variant]
    assert (project / "uv.lock").exists(), "the post-gen hook wrote no uv.lock"
    lock = tomllib.loads((project / "uv.lock").read_text())

    assert lock["requires-python"] == f">={VARIANTS[variant]['python_version']}"
    # In step with pyproject.toml, from the cache alone: nothing needs resolving again.
    result = run("uv", "lock", "--check", "--offline", cwd=project)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Every hook is `repo: local`, so this holds pre-commit's bookkeeping and no download.
    return tmp_path_factory.mktemp("pre-commit")


@pytest.mark.parametrize("variant", VARIANTS)
def test_pre_commit_passes_on_the_bake_and_changes_nothing(
    baked: dict[str, Path],
    mypy_cache: Path,
    pre_commit_home: Path,
    tmp_path: Path,
    variant: str,
) -> None:
    # The hooks run ruff check, ruff format and mypy --strict, as `make lint` does, so
    # this is each variant's lint. They call the tools in the project's .venv; here that
    # is the template's environment, which holds the same dev group, so that no variant
    # needs an environment of its own (test_lifecycle.py builds real ones).
    project = tmp_path / baked[variant].name
    shutil.copytree(baked[variant], project)
    (project / ".venv").symlink_to(Path(sys.prefix))
    for command in (("git", "init", "--quiet"), ("git", "add", "--all")):
        assert run(*command, cwd=project).returncode == 0
    (project / ".git" / "info" / "exclude").write_text(".venv\n")
    env = {"PRE_COMMIT_HOME": str(pre_commit_home), "MYPY_CACHE_DIR": str(mypy_cache)}

    result = run("pre-commit", "run", "--all-files", "--color", "never", cwd=project, env=env)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Every file is staged: a hook's change would show between the index and the tree.
    unchanged = run("git", "diff", "--name-only", cwd=project)
    assert unchanged.returncode == 0
    assert unchanged.stdout == ""
    assert run("git", "ls-files", "--others", "--exclude-standard", cwd=project).stdout == ""


def _run_suite(project: Path, database_url: str | None, *pytest_args: str) -> None:
    env = {"TEST_DATABASE_URL": database_url or ""}
    result = run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args, cwd=project, env=env
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.parametrize("variant", _suite_variants("sqlite"))
def test_baked_suite_passes_on_sqlite(baked: dict[str, Path], variant: str) -> None:
    _run_suite(baked[variant], None, "-m", "not postgresql")


@pytest.mark.parametrize("variant", _suite_variants("postgresql"))
def test_baked_suite_passes_on_postgresql(baked: dict[str, Path], variant: str) -> None:
    url = server_url("TEST_DATABASE_URL", "PostgreSQL")
    _run_suite(baked[variant], url)


@pytest.mark.parametrize("variant", _suite_variants("mysql"))
def test_baked_suite_passes_on_mariadb(baked: dict[str, Path], variant: str) -> None:
    url = server_url("TEST_MYSQL_URL", "MariaDB")
    _run_suite(baked[variant], url, "-m", "not postgresql")


def test_matrix_covers_every_value_of_every_choice() -> None:
    for name, values in CHOICES.items():
        baked_values = {answers[name] for answers in VARIANTS.values()}
        assert baked_values == set(values), name
    assert len(VARIANTS) == 2 + 12  # two extra Python versions, every database combination


def test_the_skipped_suites_differ_from_the_default_only_in_python_version() -> None:
    for name in (name for name in VARIANTS if name.startswith("python-")):
        differences = {
            key for key, value in VARIANTS[name].items() if VARIANTS["default"][key] != value
        }
        assert differences == {"python_version"}, name


def test_each_server_runs_every_code_combination_once() -> None:
    for database in CHOICES["database"]:
        tested = [*_suite_variants(database), CI_VARIANTS[database]]
        combinations = [
            (VARIANTS[name]["second_database"], VARIANTS[name]["include_example_api"])
            for name in tested
        ]
        assert sorted(combinations) == sorted(
            itertools.product(CHOICES["second_database"], CHOICES["include_example_api"])
        ), database


@pytest.mark.parametrize(
    ("second_database", "include_example_api"),
    list(itertools.product(CHOICES["second_database"], CHOICES["include_example_api"])),
)
def test_the_database_answer_leaves_the_code_alone(
    baked: dict[str, Path], second_database: str, include_example_api: str
) -> None:
    trees = {
        answers["database"]: _code_of(baked[name])
        for name, answers in VARIANTS.items()
        if not name.startswith("python-")
        and (answers["second_database"], answers["include_example_api"])
        == (second_database, include_example_api)
    }
    assert set(trees) == set(CHOICES["database"])
    first = trees["postgresql"]
    for database, tree in trees.items():
        assert tree == first, f"the {database} bake's code differs from the postgresql one's"


def _code_of(project: Path) -> dict[str, bytes]:
    """Every file of the bake's code, and its pytest settings, by relative path."""
    files = {
        path.relative_to(project).as_posix(): path.read_bytes()
        for entry in CODE
        for path in (
            [project / entry] if (project / entry).is_file() else (project / entry).rglob("*")
        )
        if path.is_file() and path.suffix not in {".pyc", ".db"}
    }
    pytest_settings = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["pytest"]
    files["pyproject.toml [tool.pytest]"] = repr(pytest_settings).encode()
    return files


def test_every_workflow_and_dependabot_file_is_valid_and_audited(baked: dict[str, Path]) -> None:
    projects = [baked[variant] for variant in VARIANTS]
    for schema, relative in (
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
        ("vendor.dependabot", ".github/dependabot.yml"),
    ):
        files = [project / relative for project in projects]
        result = run("check-jsonschema", "--builtin-schema", schema, *files, cwd=projects[0])
        assert result.returncode == 0, f"{schema}:\n{result.stdout}{result.stderr}"

    # zizmor's audits that need no network: injection, credentials, permissions, pins.
    for project in projects:
        result = run("zizmor", "--offline", "--no-progress", ".github", cwd=project)
        assert result.returncode == 0, f"{project.parent.name}:\n{result.stdout}{result.stderr}"
