"""`app/db` copied into an empty directory works from a bare Starlette app, without FastAPI."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

APP_DB = Path(__file__).resolve().parents[2] / "app" / "db"

BARE_APP = textwrap.dedent(
    """
    import asyncio
    import sys

    sys.modules["fastapi"] = None  # any FastAPI import now fails

    import httpx
    from sqlalchemy import text
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from service.db import SQLAlchemyMiddleware, db


    async def answer(request):
        return JSONResponse((await db.session.execute(text("SELECT 42"))).scalar_one())


    app = Starlette(
        routes=[Route("/", answer)],
        middleware=[Middleware(SQLAlchemyMiddleware, db_url="sqlite://", commit_on_exit=True)],
    )


    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            print((await client.get("/")).json())
        async with db():
            print((await db.session.execute(text("SELECT 7"))).scalar_one())


    asyncio.run(main())
    """
)


def test_copied_folder_serves_a_bare_starlette_app(tmp_path):
    package = tmp_path / "service"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copytree(APP_DB, package / "db", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "main.py").write_text(BARE_APP)
    result = subprocess.run(
        [sys.executable, "-W", "error", "main.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.stdout.split() == ["42", "7"], result.stderr
