"""Alembic, driven from code: upgrade, inspect, create-or-upgrade, and the revision checks.

Each database is a section of alembic.ini: `[alembic]` holds the "main" database and
any other section (`[audit]`) a database of that name. The functions take the
database's AsyncEngine and run Alembic on one of its connections through `run_sync`,
so they work inside a running event loop: in readiness checks, in tests, in the CLI:

    python -m app.ops.migrate upgrade|downgrade|current|verify|check|sync [--database NAME]
"""

import argparse
import asyncio
import configparser
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Literal, TypeVar

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL, Connection, MetaData, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from app.db import create_engine, to_async_url
from app.models import import_models
from app.settings import SettingsError, get_settings

__all__ = [
    "ALEMBIC_INI",
    "MAIN",
    "MigrationStateError",
    "SyncResult",
    "alembic_config",
    "check",
    "current_revision",
    "database_url",
    "databases",
    "downgrade",
    "ensure_up_to_date",
    "is_up_to_date",
    "main",
    "revision_problem",
    "sync",
    "target_metadata",
    "upgrade",
]

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
MAIN = "main"
# The main database lives in alembic.ini's default section, so that a bare `alembic`
# command works on it.
_MAIN_SECTION = "alembic"

# Alembic's default, which migrations/env.py keeps.
_VERSION_TABLE = "alembic_version"

# What sync() did: built an empty database, applied revisions, or found nothing to do.
SyncResult = Literal["created", "upgraded", "up to date"]
T = TypeVar("T")


class MigrationStateError(RuntimeError):
    """The database's schema revision does not match the code; the message says what to do."""


def databases() -> list[str]:
    """The names of the databases that have migrations, "main" first."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ALEMBIC_INI)
    sections = [name for name in parser.sections() if parser.has_option(name, "script_location")]
    return [MAIN if name == _MAIN_SECTION else name for name in sections]


def alembic_config(database: str = MAIN) -> Config:
    """Alembic's Config for one database, read from its section of alembic.ini."""
    known = databases()
    if database not in known:
        raise ValueError(
            f"There is no database {database!r} in alembic.ini; choose one of: {', '.join(known)}."
        )
    return Config(ALEMBIC_INI, ini_section=_MAIN_SECTION if database == MAIN else database)


def target_metadata(config: Config) -> MetaData:
    """The MetaData the section's migrations build, from its `target_metadata` option."""
    import_models()
    reference = config.get_main_option("target_metadata")
    if reference is None:
        raise ValueError(
            f"alembic.ini [{config.config_ini_section}] needs a target_metadata option "
            "such as app.db:Base.metadata."
        )
    module, _, attribute_path = reference.partition(":")
    value: object = import_module(module)
    for attribute in attribute_path.split("."):
        value = getattr(value, attribute)
    if not isinstance(value, MetaData):
        raise TypeError(f"target_metadata {reference!r} is a {type(value).__name__}, not MetaData.")
    return value


def database_url(config: Config) -> URL:
    """The section's async database URL: `sqlalchemy.url` if set, else from the settings.

    Migrations bypass a connection pooler: the field's direct counterpart
    (`database_direct_url` for `database_url`) wins when it is set, since a migration
    may need the session that PgBouncer in transaction mode does not keep.
    """
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        setting = config.get_main_option("database_url_setting", "database_url")
        settings = get_settings()
        url = getattr(settings, setting, None)
        if not isinstance(url, str):
            raise ValueError(
                f"alembic.ini [{config.config_ini_section}] reads the URL from "
                f"settings.{setting}, which Settings does not have; fix database_url_setting."
            )
        url = getattr(settings, _direct(setting), None) or url
    return to_async_url(url)


def _direct(setting: str) -> str:
    """The settings field holding the direct URL of the database `setting` names."""
    return setting.removesuffix("_url") + "_direct_url"


async def upgrade(engine: AsyncEngine, revision: str = "heads", *, database: str = MAIN) -> None:
    """Apply the migrations up to `revision` (all of them by default)."""
    await _with_alembic(engine, database, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str, *, database: str = MAIN) -> None:
    """Revert the migrations down to `revision` ("base" reverts them all)."""
    await _with_alembic(engine, database, lambda config: command.downgrade(config, revision))


async def check(engine: AsyncEngine, *, database: str = MAIN) -> None:
    """`alembic check`: raise AutogenerateDiffsDetected if the models and migrations differ.

    The database must be at head; the comparison is against its actual schema.
    """
    await _with_alembic(engine, database, command.check)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    return ",".join(sorted(await _heads(engine))) or None


async def is_up_to_date(engine: AsyncEngine, *, database: str = MAIN) -> bool:
    """Whether the database is at the code's head revision."""
    script = ScriptDirectory.from_config(alembic_config(database))
    return set(await _heads(engine)) == set(script.get_heads())


async def ensure_up_to_date(engine: AsyncEngine, *, database: str = MAIN) -> None:
    """Refuse to go on unless the database is exactly at the code's head revision.

    `python -m app.ops.migrate verify` runs it. It never migrates: a database that is
    behind is a forgotten `make migrate`, and one at an unknown revision was migrated
    by other code, which an automatic upgrade or downgrade could destroy.
    """
    script = ScriptDirectory.from_config(alembic_config(database))
    heads = await _heads(engine)
    expected = script.get_heads()
    if set(heads) == set(expected):
        return
    where = _describe(engine, database)
    _refuse_unknown(script, heads, where)
    current = ", ".join(heads) or "no revision at all (nothing has been migrated)"
    raise MigrationStateError(
        f"The {where} is at {current}, but the code expects {', '.join(expected)}; "
        f"apply the migrations with `make migrate` (or `python -m app.ops.migrate upgrade`)."
    )


async def revision_problem(connection: AsyncConnection, *, database: str = MAIN) -> str | None:
    """None when the database is at the code's head, else the mismatch in one short phrase.

    /health/ready reports it: "behind: at base, code expects 0d5a7c1e3b9f; run make
    migrate", or "ahead: at 0123456789ab, which this code does not know; ...".
    """
    script = ScriptDirectory.from_config(alembic_config(database))
    heads = await connection.run_sync(_database_heads)
    expected = script.get_heads()
    if set(heads) == set(expected):
        return None
    current = ", ".join(heads) or "base"
    if any(not _knows(script, revision) for revision in heads):
        return (
            f"ahead: at {current}, which this code does not know; run the release that migrated it"
        )
    return f"behind: at {current}, code expects {', '.join(expected)}; run make migrate"


async def sync(engine: AsyncEngine, *, database: str = MAIN) -> SyncResult:
    """Bring the database to head: build an empty one from the models, upgrade any other.

    An empty database gets `create_all()` and is stamped at head, which is quicker than
    replaying every migration ("created"); one that is behind is upgraded ("upgraded"),
    and one already at head is left alone ("up to date").
    """

    def run(config: Config) -> SyncResult:
        connection: Connection = config.attributes["connection"]
        tables = inspect(connection).get_table_names()
        if _VERSION_TABLE in tables:
            script = ScriptDirectory.from_config(config)
            heads = _database_heads(connection)
            _refuse_unknown(script, heads, _describe(engine, database))
            if set(heads) == set(script.get_heads()):
                return "up to date"
            command.upgrade(config, "heads")
            return "upgraded"
        if tables:
            raise MigrationStateError(
                f"The {_describe(engine, database)} has tables but no Alembic revision, so "
                "it was not built by these migrations. If its schema matches the models, "
                "record that with `alembic stamp head`; otherwise migrate it by hand."
            )
        target_metadata(config).create_all(connection)
        command.stamp(config, "heads")
        return "created"

    return await _with_alembic(engine, database, run)


async def _with_alembic(engine: AsyncEngine, database: str, run: Callable[[Config], T]) -> T:
    config = alembic_config(database)

    def run_on(connection: Connection) -> T:
        # migrations/env.py finds the connection here and migrates on it.
        config.attributes["connection"] = connection
        return run(config)

    async with engine.begin() as connection:
        return await connection.run_sync(run_on)


async def _heads(engine: AsyncEngine) -> tuple[str, ...]:
    async with engine.connect() as connection:
        return await connection.run_sync(_database_heads)


def _database_heads(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


def _knows(script: ScriptDirectory, revision: str) -> bool:
    try:
        script.get_revision(revision)
    except CommandError:
        return False
    return True


def _refuse_unknown(script: ScriptDirectory, heads: tuple[str, ...], where: str) -> None:
    for revision in heads:
        if not _knows(script, revision):
            raise MigrationStateError(
                f"The {where} is at revision {revision}, which this code does not know: "
                "it was migrated by a newer release or another branch. Run the release "
                "that matches it, or downgrade it with that release's migrations; the "
                "service will not touch it automatically."
            )


def _describe(engine: AsyncEngine, database: str) -> str:
    return f"{database} database ({engine.url.render_as_string(hide_password=True)})"


async def main(argv: list[str]) -> int:
    """The command line; returns the exit status."""
    known = databases()
    if not known:
        # Otherwise every action would run on no database at all, and exit 0.
        print(f"error: {_no_databases()}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog="python -m app.ops.migrate", description=__doc__)
    parser.add_argument(
        "action",
        choices=["upgrade", "downgrade", "current", "verify", "check", "sync"],
        help="verify: fail unless at head, as /health/ready does; "
        "check: fail if the models and the migrations differ (alembic check)",
    )
    parser.add_argument(
        "revision", nargs="?", help='for upgrade (default "heads") and downgrade (default "-1")'
    )
    parser.add_argument(
        "--database",
        choices=known,
        help="default: every database, except for downgrade, which defaults to main",
    )
    args = parser.parse_args(argv)
    if args.database:
        chosen = [args.database]
    elif args.action == "downgrade":
        chosen = [MAIN]
    else:
        chosen = known
    failed = False
    for database in chosen:
        config = alembic_config(database)
        try:
            engine = create_engine(database_url(config), {"poolclass": NullPool})
        except (SettingsError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        label = _describe(engine, database)
        try:
            unreachable = await _unreachable(engine, config, label)
            if unreachable:
                print(f"error: {unreachable}", file=sys.stderr)
                failed = True
                continue
            print(f"{label}: {await _run_action(engine, database, args.action, args.revision)}")
        except MigrationStateError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
        except CommandError as exc:
            print(f"error: {label}: {exc}", file=sys.stderr)
            failed = True
        finally:
            await engine.dispose()
    return 1 if failed else 0


def _no_databases() -> str:
    if not ALEMBIC_INI.is_file():
        return (
            f"{ALEMBIC_INI} is missing, so no database has migrations to run; "
            "restore it from the template or from version control."
        )
    return (
        f"{ALEMBIC_INI} names no database: none of its sections has a script_location; "
        "restore its [alembic] section from the template or from version control."
    )


async def _unreachable(engine: AsyncEngine, config: Config, label: str) -> str | None:
    """Why no connection to the database opens, with the fix; None when one does."""
    try:
        async with engine.connect():
            return None
    except (OSError, sqlalchemy.exc.DBAPIError) as exc:
        # The class name only: driver messages can carry the host, user or password.
        setting = config.get_main_option("database_url_setting") or "database_url"
        if getattr(get_settings(), _direct(setting), None):
            setting = _direct(setting)
        variable = setting.upper()
        return (
            f"cannot connect to the {label} ({type(exc).__name__}); check {variable} and "
            "that the database server is running."
        )


async def _run_action(engine: AsyncEngine, database: str, action: str, revision: str | None) -> str:
    if action == "upgrade":
        before = await current_revision(engine)
        await upgrade(engine, revision or "heads", database=database)
        return _moved("upgraded", before, await current_revision(engine))
    if action == "downgrade":
        await downgrade(engine, revision or "-1", database=database)
        return f"downgraded, now at {await current_revision(engine) or 'base'}"
    if action == "current":
        return f"at {await current_revision(engine) or 'base (nothing migrated)'}"
    if action == "verify":
        await ensure_up_to_date(engine, database=database)
        return "up to date"
    if action == "check":
        await check(engine, database=database)
        return "the models match the migrations"
    before = await current_revision(engine)
    outcome = await sync(engine, database=database)
    return _moved(outcome, before, await current_revision(engine))


def _moved(outcome: str, before: str | None, after: str | None) -> str:
    """What happened to the revision, in words: "upgraded from X to Y", "up to date at Y"."""
    if outcome == "created":
        return f"created at {after or 'base'}"
    if before == after:
        return f"already up to date at {after or 'base'}"
    return f"{outcome} from {before or 'base'} to {after or 'base'}"


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
