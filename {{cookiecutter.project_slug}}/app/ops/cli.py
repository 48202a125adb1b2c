"""Command-line tasks that use the database outside any request.

    python -m app.ops.cli create-user EMAIL USERNAME [--full-name NAME]
    python -m app.ops.cli purge-notes [--older-than-days DAYS]

There is no request here, so nothing binds `db` for us: `database()` does what the
middleware does for the web app, and each command opens its own `async with db()`.
"""

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.types import Receive, Scope, Send

from app.db import SQLAlchemyMiddleware, db
from app.jobs.after_commit import install_listeners
from app.jobs.purge import PURGE_AFTER, purge_deleted_notes
from app.models.user import User
from app.schemas.users import UserCreate
from app.settings import Settings, SettingsError, get_settings
from app.web.errors import is_unique_violation

__all__ = ["database", "main"]


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[None]:
    """Bind `db` to the main database for the block, and close its connections after."""
    install_listeners()
    middleware = SQLAlchemyMiddleware(_no_app, db_url=settings.database_url)
    try:
        yield
    finally:
        await middleware.dispose()


async def create_user(email: str, username: str, full_name: str) -> str:
    try:
        # The same rules as POST /users.
        valid = UserCreate(email=email, username=username, full_name=full_name)
    except ValidationError as exc:
        problems = "; ".join(f"{error['loc'][0]}: {error['msg']}" for error in exc.errors())
        raise CommandError(problems) from None
    async with db(commit_on_exit=True):
        user = User(**valid.model_dump())
        db.session.add(user)
        try:
            await db.session.flush()
        except IntegrityError as exc:
            if is_unique_violation(exc):
                raise CommandError(f"e-mail {email!r} or username {username!r} is taken") from None
            raise
        return f"created user {user.username} ({user.id})"


async def purge_notes(older_than_days: float) -> str:
    purged = await purge_deleted_notes(timedelta(days=older_than_days))
    return f"purged {purged} notes deleted more than {older_than_days:g} days ago"


class CommandError(Exception):
    """A command failed for a reason the user can fix; printed as one line."""


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("The command-line middleware binds `db` only; it serves no requests.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.ops.cli", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="add a user")
    create.add_argument("email")
    create.add_argument("username")
    create.add_argument("--full-name", default="")
    purge = commands.add_parser("purge-notes", help="remove notes soft-deleted long ago")
    purge.add_argument("--older-than-days", type=float, default=PURGE_AFTER.days)
    return parser


async def run(argv: Sequence[str], settings: Settings) -> str:
    """Run the command `argv` names and return what to print."""
    args = _parser().parse_args(argv)
    async with database(settings):
        if args.command == "create-user":
            return await create_user(args.email, args.username, args.full_name)
        return await purge_notes(args.older_than_days)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        print(asyncio.run(run(sys.argv[1:] if argv is None else argv, get_settings())))
    except (CommandError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
