"""Finish a freshly baked project: prune the disabled options, write `.env`, lock.

An optional feature is whole files, listed below and deleted here when its option is "no".
The Python files that wire the features in hold Jinja conditionals only around single
lines (an import, a name, a call, a setting with its comment). pyproject.toml's conditionals
are single dependency lines. The files that a tool or a reader takes whole hold longer
sections per option: alembic.ini the audit database's section, compose.yaml a service
per database, README.md and .env.example each option's paragraphs and settings.

Running it again over a project re-rendered in place (`cookiecutter -f`) keeps the
existing `.env` and so its secret.

The lock is the last step, and the only one allowed to fail: a laptop offline, or
without uv, still gets its project, and one line saying how to lock it (`make lock`).
"""

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# The pre-gen hook has validated the slug, and the options are choices, so plain
# literals are safe here.
SLUG = "{{ cookiecutter.project_slug }}"
OPTIONS = {
    "include_example_api": "{{ cookiecutter.include_example_api }}",
    "second_database": "{{ cookiecutter.second_database }}",
}

# Paths that belong to an option, removed when that option is "no".
# A path under both options (the audited route needs the example's users and the audit
# database) goes when either is "no".
OPTIONAL_PATHS: dict[str, list[str]] = {
    "include_example_api": [
        "app/api/routes/audit.py",
        "app/api/routes/export.py",
        "app/api/routes/notes.py",
        "app/api/routes/profiles.py",
        "app/api/routes/stats.py",
        "app/api/routes/users.py",
        "app/jobs/periodic.py",
        "app/jobs/purge.py",
        "app/models/job_run.py",
        "app/models/note.py",
        "app/models/user.py",
        "app/ops/cli.py",
        "app/schemas/audit.py",
        "app/schemas/notes.py",
        "app/schemas/partial.py",
        "app/schemas/stats.py",
        "app/schemas/users.py",
        "app/web/streaming.py",
        "migrations/versions/2026_11_21_0d5a7c1e3b9f_create_users_and_notes.py",
        "migrations/versions/2026_12_01_4e8b2c6a9d17_unique_among_live_users.py",
        "migrations/versions/2026_12_01_9c3f5e7a1b2d_indexes_for_keyset_pages.py",
        "migrations/versions/2026_12_01_9c3f1a7e5b20_create_job_runs.py",
        "tests/api/test_audit.py",
        "tests/api/test_database_down.py",
        "tests/api/test_export.py",
        "tests/api/test_hostile_input.py",
        "tests/api/test_notes.py",
        "tests/api/test_stats.py",
        "tests/api/test_users.py",
        "tests/factories.py",
        "tests/jobs/test_purge.py",
        "tests/migrations/test_example_schema.py",
        "tests/observability/test_tracing_writes.py",
        "tests/ops/test_cli.py",
    ],
    "second_database": [
        "app/api/routes/audit.py",
        "app/audit",
        "app/models/audit_base.py",
        "app/models/audit_entry.py",
        "app/schemas/audit.py",
        "migrations/audit_versions",
        "tests/api/test_audit.py",
    ],
}


def remove_disabled_options(root: Path, options: Mapping[str, str]) -> None:
    """Delete under `root` the paths of every option that `options` sets to "no"."""
    removed: set[str] = set()
    for option, paths in OPTIONAL_PATHS.items():
        if options[option] == "yes":
            continue
        for relative in paths:
            if relative in removed:
                continue
            removed.add(relative)
            path = root / relative
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                # A stale entry would leave the feature's real files behind unnoticed.
                sys.exit(
                    f"error: the template lists {relative} under {option}, but it does not "
                    "exist; fix OPTIONAL_PATHS in hooks/post_gen_project.py."
                )


def write_env(root: Path) -> None:
    """Copy `.env.example` to `.env` with a secret that no other bake shares.

    An existing `.env` is kept as it is: it holds the secret the service already runs with.
    """
    target = root / ".env"
    if target.exists():
        print("Kept the existing .env and its SECRET_KEY.")
        return
    example = (root / ".env.example").read_text()
    secret = secrets.token_urlsafe(32)
    env = example.replace("SECRET_KEY=\n", f"SECRET_KEY={secret}\n")
    if env == example:
        sys.exit("error: .env.example has no empty SECRET_KEY= line to fill in.")
    target.write_text(env)


def find_uv() -> str | None:
    """uv on PATH, else the one installed next to the Python that runs cookiecutter."""
    beside = Path(sys.executable).parent / "uv"
    return shutil.which("uv") or (str(beside) if os.access(beside, os.X_OK) else None)


def lock(root: Path, uv: str | None) -> str:
    """Write `uv.lock` under `root` with `uv lock`; one line saying what happened.

    It never downloads a Python interpreter (uv would, for a `python_version` that is
    not installed), and a failure is reported, not raised: the project is still whole.
    """
    if uv is None:
        return "Did not write uv.lock: uv is not installed. Run `make lock` in the project."
    try:
        result = subprocess.run(
            [uv, "lock", "--no-python-downloads", "--quiet"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Did not write uv.lock: {uv} lock did not finish ({exc}). Run `make lock` later."
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        reason = errors[0] if errors else f"exit status {result.returncode}"
        return f"Did not write uv.lock ({reason}); fix that, then run `make lock`."
    return "Locked the dependencies in uv.lock with uv."


def main() -> None:
    root = Path.cwd()
    remove_disabled_options(root, OPTIONS)
    write_env(root)
    print(lock(root, find_uv()))
    print(f"\nCreated {SLUG}/. Next steps:\n\n    cd {SLUG} && make dev\n")
    print("It runs on an embedded SQLite file until you set DATABASE_URL in .env.")


if __name__ == "__main__":
    main()
