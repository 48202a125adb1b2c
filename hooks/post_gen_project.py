"""Finish a freshly baked project.

Removes the files of disabled options (features are whole files, not template
conditionals), writes a `.env` holding a new random secret, and prints the next steps.
"""

import secrets
import shutil
import sys
from pathlib import Path

SLUG = {{ cookiecutter.project_slug | tojson }}
OPTIONS = {
    "include_example_api": {{ cookiecutter.include_example_api | tojson }},
    "second_database": {{ cookiecutter.second_database | tojson }},
}

# Paths that belong to an option, removed when that option is "no".
OPTIONAL_PATHS: dict[str, list[str]] = {
    "include_example_api": [],
    "second_database": [],
}


def remove_disabled_options(root: Path) -> None:
    for option, paths in OPTIONAL_PATHS.items():
        if OPTIONS[option] == "yes":
            continue
        for relative in paths:
            path = root / relative
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                # A stale entry would leave the feature's real files behind unnoticed.
                sys.exit(f"error: the template lists {relative} under {option}, but it does not exist.")


def write_env(root: Path) -> None:
    """Copy `.env.example` to `.env` with a secret that no other bake shares."""
    example = (root / ".env.example").read_text()
    secret = secrets.token_urlsafe(32)
    env = example.replace("SECRET_KEY=\n", f"SECRET_KEY={secret}\n")
    if env == example:
        sys.exit("error: .env.example has no empty SECRET_KEY= line to fill in.")
    (root / ".env").write_text(env)


def main() -> None:
    root = Path.cwd()
    remove_disabled_options(root)
    write_env(root)
    print(f"\nCreated {SLUG}/. Next steps:\n\n    cd {SLUG} && make dev\n")
    print("It runs on an embedded SQLite file until you set DATABASE_URL in .env.")


if __name__ == "__main__":
    main()
