"""The ORM models, one module per table or base; `import_models()` loads them all."""

import importlib
import pkgutil

__all__ = ["import_models"]


def import_models() -> None:
    """Import every module of this package, so that each model registers its table.

    Alembic's autogenerate compares the database with the MetaData; a model that was
    never imported is missing from it, and autogenerate would drop its table.
    """
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
