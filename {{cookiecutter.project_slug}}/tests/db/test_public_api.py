"""The package's public surface, and that it imports without FastAPI."""

import subprocess
import sys
from pathlib import Path

import app.db
from app.db import DBSessionMeta, SessionProxy, db

ROOT = Path(__file__).resolve().parents[2]


def test_all_lists_the_public_names():
    assert sorted(app.db.__all__) == sorted(
        [
            "INCLUDE_DELETED",
            "NAMING_CONVENTION",
            "Base",
            "CreatedAtMixin",
            "DBSessionMeta",
            "DBSessionType",
            "MissingSessionError",
            "PoolTimeoutError",
            "PortableJSON",
            "ProxyBindingError",
            "QueryMixin",
            "SQLAlchemyMiddleware",
            "SessionBlock",
            "SessionFinalizedError",
            "SessionNotInitialisedError",
            "SessionProxy",
            "SoftDeleteMixin",
            "TimestampMixin",
            "UTCDateTime",
            "UtcNow",
            "create_engine",
            "create_middleware_and_session_proxy",
            "create_session_factory",
            "db",
            "to_async_url",
            "utc_now",
        ]
    )
    assert all(hasattr(app.db, name) for name in app.db.__all__)


def test_db_is_an_instance_of_the_annotation_type():
    def uses(proxy: DBSessionMeta) -> SessionProxy:
        return proxy

    assert isinstance(uses(db), DBSessionMeta)


def test_package_imports_without_fastapi():
    # A `None` entry in sys.modules makes any `import fastapi` fail.
    code = "import sys; sys.modules['fastapi'] = None; import app.db; print('ok')"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.strip() == "ok", result.stderr
