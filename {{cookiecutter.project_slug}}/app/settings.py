"""Runtime configuration, read from environment variables and the `.env` file."""

import sys
from functools import lru_cache

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "get_settings"]


class SettingsError(Exception):
    """The configuration is invalid; the message names each bad variable and its fix."""

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> "SettingsError":
        problems = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{variable}: {error['msg']}")
        return cls(
            "Invalid configuration; fix these in the environment or in .env "
            "(see .env.example): " + "; ".join(problems)
        )


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}.db"
{%- if cookiecutter.second_database == "yes" %}
    audit_database_url: str = "sqlite+aiosqlite:///./{{ cookiecutter.project_slug }}-audit.db"
{%- endif %}
    secret_key: SecretStr
    debug: bool = False


@lru_cache
def get_settings() -> Settings:
    """Read the settings once per process, turning validation errors into one clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError.from_validation_error(exc) from None


if __name__ == "__main__":
    # `python -m app.settings` checks the configuration; `make dev` runs it first so
    # that a mistake shows up as one line instead of a server traceback.
    try:
        get_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
