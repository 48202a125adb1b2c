"""The API's routers: each module of this package defines one, named `router`."""

import importlib
import pkgutil

from fastapi import APIRouter

__all__ = ["routers"]


def routers() -> list[APIRouter]:
    """The `router` of every module here, in module-name order.

    Give it a prefix of its own: `app.api.routing.include_routers()` then tries its
    routes only for requests whose path holds that prefix.

    Adding a module adds its routes; deleting one (as the template does for the parts
    you did not ask for) removes them, with no list to keep in step.
    """
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
        router = getattr(importlib.import_module(f"{__name__}.{module.name}"), "router", None)
        if not isinstance(router, APIRouter):
            raise TypeError(f"{__name__}.{module.name} must define `router = APIRouter(...)`.")
        found.append(router)
    return found
