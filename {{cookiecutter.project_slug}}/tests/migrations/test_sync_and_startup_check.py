"""sync() builds or upgrades; `verify` refuses a database the code cannot run on; the CLI."""

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from app.ops.migrate import (
    MigrationStateError,
    alembic_config,
    check,
    current_revision,
    downgrade,
    ensure_up_to_date,
    is_up_to_date,
    sync,
    target_metadata,
    upgrade,
)
from app.ops.migrate import main as migrate_cli
from app.settings import get_settings
from tests.api.test_health import SECRET_PASSWORD, unreachable_url
from tests.migrations.conftest import NewDatabase
from tests.migrations.test_migrations import _head, _tables


async def test_sync_creates_an_empty_database_then_upgrades(
    new_database: NewDatabase, database: str
) -> None:
    engine = await new_database()

    assert await sync(engine, database=database) == "created"
    assert await is_up_to_date(engine, database=database)
    assert await _tables(engine) == set(target_metadata(alembic_config(database)).tables)
    # What create_all() built is exactly what the migrations build.
    await check(engine, database=database)

    assert await sync(engine, database=database) == "up to date"
    assert await current_revision(engine) == _head(database)


async def test_sync_upgrades_a_migrated_database(new_database: NewDatabase, database: str) -> None:
    engine = await new_database()
    await upgrade(engine, "base", database=database)
    expected = "up to date" if _head(database) is None else "upgraded"

    assert await sync(engine, database=database) == expected
    assert await is_up_to_date(engine, database=database)


async def test_sync_refuses_tables_it_did_not_make(
    new_database: NewDatabase, database: str
) -> None:
    engine = await new_database()
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE legacy (id INTEGER PRIMARY KEY)"))

    with pytest.raises(MigrationStateError, match="alembic stamp head"):
        await sync(engine, database=database)


async def test_verify_passes_at_head(new_database: NewDatabase, database: str) -> None:
    engine = await new_database()
    await upgrade(engine, database=database)

    await ensure_up_to_date(engine, database=database)


async def test_verify_refuses_an_unmigrated_database(
    new_database: NewDatabase, database: str
) -> None:
    engine = await new_database()
    if _head(database) is None:
        # No migrations yet: an empty database is exactly what the code expects.
        await ensure_up_to_date(engine, database=database)
        return
    with pytest.raises(MigrationStateError, match=r"make migrate"):
        await ensure_up_to_date(engine, database=database)


async def test_verify_refuses_an_unknown_revision(new_database: NewDatabase, database: str) -> None:
    engine = await new_database()
    await upgrade(engine, database=database)
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM alembic_version"))
        await connection.execute(text("INSERT INTO alembic_version VALUES ('feedfacecafe')"))

    with pytest.raises(MigrationStateError, match="feedfacecafe, which this code does not know"):
        await ensure_up_to_date(engine, database=database)


async def test_verify_refuses_a_database_ahead_of_the_code(
    new_database: NewDatabase, database: str, tmp_path: Path
) -> None:
    """A newer release added a migration and ran it; this release must not start."""
    engine = await new_database()
    newer = alembic_config(database)
    versions = tmp_path / "versions"
    shutil.copytree(newer.get_main_option("version_locations") or "", versions)
    newer.set_main_option("version_locations", str(versions))
    newer.set_section_option("post_write_hooks", "hooks", "")
    command.revision(newer, message="from a newer release", rev_id="0123456789ab")

    def upgrade_with_newer_code(connection: Connection, config: Config) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade_with_newer_code, newer)

    with pytest.raises(MigrationStateError, match=r"0123456789ab.*newer release"):
        await ensure_up_to_date(engine, database=database)


CliAt = Callable[[str, str], str]


@pytest.fixture
def cli_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliAt]:
    """Points `python -m app.ops.migrate` at a URL for one database; returns the variable set."""

    def point(database: str, url: str) -> str:
        variable = (alembic_config(database).get_main_option("database_url_setting") or "").upper()
        monkeypatch.setenv(variable, url)
        monkeypatch.setenv("SECRET_KEY", "test-secret")
        get_settings.cache_clear()  # the command line reads the settings once per process
        return variable

    yield point
    get_settings.cache_clear()


async def test_command_line(
    new_database: NewDatabase,
    database: str,
    cli_at: CliAt,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = await new_database()
    cli_at(database, engine.url.render_as_string(hide_password=False))
    assert await migrate_cli(["sync", "--database", database]) == 0
    assert await migrate_cli(["verify", "--database", database]) == 0
    assert await migrate_cli(["current", "--database", database]) == 0
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM alembic_version"))
        await connection.execute(text("INSERT INTO alembic_version VALUES ('feedfacecafe')"))
    assert await migrate_cli(["verify", "--database", database]) == 1

    out, err = capsys.readouterr()
    assert f"{database} database" in out
    assert ": created" in out
    assert "up to date" in out
    assert f"at {_head(database) or 'base'}" in out
    assert "error:" in err
    assert "feedfacecafe" in err


async def test_the_command_line_says_which_of_the_three_outcomes_happened(
    new_database: NewDatabase,
    database: str,
    cli_at: CliAt,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = await new_database()
    cli_at(database, engine.url.render_as_string(hide_password=False))
    head = _head(database) or "base"
    said = []
    for action in (["upgrade", "base"], ["sync"], ["sync"], ["upgrade"]):
        assert await migrate_cli([*action, "--database", database]) == 0
        said.append(capsys.readouterr().out.split(": ", 1)[1].strip())
    await downgrade(engine, "base", database=database)
    assert await migrate_cli(["sync", "--database", database]) == 0
    said.append(capsys.readouterr().out.split(": ", 1)[1].strip())

    if head == "base":  # a database without migrations has nothing to move
        assert said == ["already up to date at base"] * 5
        return
    assert said == [
        "already up to date at base",
        f"upgraded from base to {head}",
        f"already up to date at {head}",
        f"already up to date at {head}",
        f"upgraded from base to {head}",
    ]


@pytest.mark.parametrize("action", ["upgrade", "current", "sync"])
async def test_the_command_line_names_an_unreachable_database_in_one_line(
    database: str,
    database_url: str,
    action: str,
    cli_at: CliAt,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable = cli_at(database, unreachable_url(database_url))
    assert await migrate_cli([action, "--database", database]) == 1
    await _let_aiosqlite_threads_finish()

    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: cannot connect to the {database} database (")
    assert err.rstrip().endswith(f"; check {variable} and that the database server is running.")
    assert SECRET_PASSWORD not in err


async def _let_aiosqlite_threads_finish() -> None:
    # aiosqlite answers a failed connect by stopping its worker thread, which reports
    # back to the event loop a moment later, on a future nobody awaits. Should the loop
    # close first (the session's last test), the thread fails and pytest reports it.
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, 5)


@pytest.mark.parametrize("action", ["upgrade", "current", "sync", "verify"])
async def test_the_command_line_refuses_a_project_without_alembic_ini(
    action: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "alembic.ini"
    monkeypatch.setattr("app.ops.migrate.ALEMBIC_INI", missing)

    assert await migrate_cli([action]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: {missing} is missing, so no database has migrations to run; "
        "restore it from the template or from version control.\n"
    )


async def test_the_command_line_refuses_an_alembic_ini_that_names_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emptied = tmp_path / "alembic.ini"
    emptied.write_text("[loggers]\nkeys = root\n")
    monkeypatch.setattr("app.ops.migrate.ALEMBIC_INI", emptied)

    assert await migrate_cli(["upgrade"]) == 1

    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {emptied} names no database: none of its sections has a script_location; "
        "restore its [alembic] section from the template or from version control."
    ]
