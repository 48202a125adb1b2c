"""Alembic's environment: runs one database's migrations, online (async) or offline.

alembic.ini has a section per database; each names the settings field holding the
URL and the MetaData to compare with (see app.ops.migrate); the field's direct
counterpart (DATABASE_DIRECT_URL) wins when it is set, so that migrations bypass a
pooler. Online, the migrations run on an async engine through `run_sync`, or on the
connection app.ops.migrate passes in.
Offline (`alembic upgrade head --sql`), they are printed as SQL for the URL's dialect.
"""

import asyncio
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import URL, Connection, MetaData
from sqlalchemy.pool import NullPool

from app.db import PortableJSON, UTCDateTime, UtcNow, create_engine
from app.ops.migrate import database_url, target_metadata


def main() -> None:
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    # Only the `alembic` command line sets up logging from alembic.ini; called from the
    # app, the app's logging stays as it is.
    if connection is None and config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    metadata = target_metadata(config)
    if context.is_offline_mode():
        url = database_url(config)
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            **_options(url.get_backend_name() == "sqlite"),
        )
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        _migrate(connection, metadata)
    else:
        asyncio.run(_migrate_async(database_url(config), metadata))


async def _migrate_async(url: URL, metadata: MetaData) -> None:
    engine = create_engine(url, {"poolclass": NullPool})
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, metadata)
    finally:
        await engine.dispose()


def _migrate(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        **_options(connection.dialect.name == "sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _options(sqlite: bool) -> dict[str, Any]:
    return {
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": sqlite,
        "render_item": _render_item,
    }


def _render_item(kind: str, item: Any, autogen: AutogenContext) -> str | Literal[False]:
    # Our portable column types render as imports from app.db, so that a
    # revision written on SQLite still builds the right columns on PostgreSQL and MySQL.
    if kind == "type" and isinstance(item, UTCDateTime):
        autogen.imports.add("from app.db import UTCDateTime")
        return "UTCDateTime()"
    if kind == "type" and item is PortableJSON:
        autogen.imports.add("from app.db import PortableJSON")
        return "PortableJSON"
    if kind == "server_default" and isinstance(getattr(item, "arg", None), UtcNow):
        autogen.imports.add("from app.db import UtcNow")
        return "UtcNow()"
    return False


main()
