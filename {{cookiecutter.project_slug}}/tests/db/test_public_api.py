"""The package's public surface is exactly `__all__`, and it imports without FastAPI."""

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import app.db
from app.db import DBSessionMeta, SessionProxy, db

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "app" / "db"


def test_all_is_exactly_the_public_names() -> None:
    for name in app.db.__all__:
        getattr(app.db, name)  # loads the names that wait for first use
    public = [
        name
        for name, value in vars(app.db).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    ]

    assert sorted(app.db.__all__) == sorted(public)
    assert len(set(app.db.__all__)) == len(app.db.__all__)


# The opt-in modules, imported by name; the core never imports them (make lint checks).
OPT_IN = {"replica", "standalone"}


def test_every_module_behind_the_surface_is_private_but_the_opt_in_ones() -> None:
    modules = [path.stem for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]

    assert modules
    assert {name for name in modules if not name.startswith("_")} == OPT_IN
    for name in OPT_IN:
        module = importlib.import_module(f"app.db.{name}")
        assert module.__all__
        assert all(hasattr(module, public) for public in module.__all__)


def test_code_outside_the_package_imports_only_its_surface() -> None:
    # The layer's own unit tests (this folder) may reach behind it; nothing else may.
    own_tests = ROOT / "tests" / "db"
    sources = [
        path for top in ("app", "migrations", "tests") for path in (ROOT / top).rglob("*.py")
    ]
    offenders = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in sorted(sources)
        if PACKAGE not in path.parents and own_tests not in path.parents
        for line in path.read_text().splitlines()
        if "app.db." in line and not any(f"app.db.{name} " in line for name in OPT_IN)
    ]

    assert offenders == []


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(app.db, "no_such_name")


def test_db_is_an_instance_of_the_annotation_type() -> None:
    def uses(proxy: DBSessionMeta) -> SessionProxy:
        return proxy

    assert isinstance(uses(db), DBSessionMeta)


def test_package_imports_without_fastapi() -> None:
    # A `None` entry in sys.modules makes any `import fastapi` fail.
    code = "import sys; sys.modules['fastapi'] = None; import app.db; print('ok')"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == "ok", result.stderr
