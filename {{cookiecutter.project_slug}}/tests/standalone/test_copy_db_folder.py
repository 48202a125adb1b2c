"""`app/db` copied into an empty directory works from a bare Starlette app, without FastAPI.

Beyond serving a request, the copy must keep the promises of its mixins: a soft-deleted
row disappears from queries, and `updated_at` moves when a row changes. Those depend on
listeners that live in the folder itself.
"""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP_DB = Path(__file__).resolve().parents[2] / "app" / "db"

BARE_APP = textwrap.dedent(
    """
    import asyncio
    import sys

    sys.modules["fastapi"] = None  # any FastAPI import now fails
    OPT_IN = True  # whether the copy kept app/db's opt-in modules

    import httpx
    from sqlalchemy import String, select, text
    from sqlalchemy.orm import Mapped, mapped_column
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from service.db import (
        INCLUDE_DELETED,
        NORMALIZE,
        Base,
        SoftDeleteMixin,
        SQLAlchemyMiddleware,
        TimestampMixin,
        db,
    )


    class Task(TimestampMixin, SoftDeleteMixin, Base):
        __tablename__ = "tasks"

        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(50), info={NORMALIZE: str.strip})


    async def answer(request):
        return JSONResponse((await db.session.execute(text("SELECT 42"))).scalar_one())


    app = Starlette(
        routes=[Route("/", answer)],
        middleware=[
            Middleware(SQLAlchemyMiddleware, db_url="sqlite:///tasks.db", commit_on_exit=True)
        ],
    )


    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            print((await client.get("/")).json())
        async with db(commit_on_exit=True):
            print((await db.session.execute(text("SELECT 7"))).scalar_one())
            connection = await db.session.connection()
            await connection.run_sync(Base.metadata.create_all)
            task = Task(title="  write the docs ")
            db.session.add(task)
            await db.session.flush()
            print(repr(task.title))
            inserted_at = task.updated_at
            task.title = "write the docs, again"
            await db.session.flush()
            print("updated_at moved" if task.updated_at > inserted_at else "updated_at stuck")
            task.soft_delete()
        async with db():
            hidden = (await db.session.execute(select(Task))).scalars().all()
            every = select(Task).execution_options(**INCLUDE_DELETED)
            kept = (await db.session.execute(every)).scalars().all()
            print(f"visible={len(hidden)} stored={len(kept)}")
        if OPT_IN:
            from service.db.standalone import standalone_read

            async with db():
                print((await standalone_read(db, text("SELECT 'read'"))).scalar_one())


    asyncio.run(main())
    """
)


@pytest.mark.parametrize("opt_in", [True, False], ids=["whole", "without-opt-in-modules"])
def test_copied_folder_serves_a_bare_starlette_app_and_keeps_its_mixins(
    tmp_path: Path, opt_in: bool
) -> None:
    package = tmp_path / "service"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copytree(APP_DB, package / "db", ignore=shutil.ignore_patterns("__pycache__"))
    if not opt_in:  # a team that needs neither replicas nor standalone reads deletes them
        (package / "db" / "replica.py").unlink()
        (package / "db" / "standalone.py").unlink()
    (tmp_path / "main.py").write_text(BARE_APP.replace("OPT_IN = True", f"OPT_IN = {opt_in}"))
    result = subprocess.run(
        [sys.executable, "-W", "error", "main.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.splitlines() == [
        "42",
        "7",
        "'write the docs'",
        "updated_at moved",
        "visible=0 stored=1",
        *(["read"] if opt_in else []),
    ], result.stderr
