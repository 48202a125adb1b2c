"""`include_routers()`: the routers' routes on the app itself, found by their prefix.

FastAPI keeps an included router as one entry of the app's routes, and finds a request's
route by asking each entry in turn. An included router answers by matching the path
against its own routes, and when it is the one, they are matched again to pick the route
to run. Each route tried in vain costs a regex match and FastAPI's look-ups around it,
about 6,000 instructions, so a request paid for every route listed before its own. The
search was 9% of the instructions of a `GET /users/{id}`, the last router's, and 20% of
a `GET /health/live`.

`include_routers()` adds each router's routes to the app itself, bound to it as
`include_router()` binds them (`app.dependency_overrides` reaches them), and puts a
dispatcher in front of the app's router. The dispatcher compares each router's prefix
with the path, which costs next to nothing, and tries the routes of a router only when
the path holds its prefix. A request none of them takes (a 404, a 405, a redirect to the
path with or without its trailing slash) goes on to FastAPI's own search. The app's
route list is the plain one, with each route once, for the OpenAPI schema,
`url_path_for()` and the tracing instrumentation, which names spans by route.
"""

import copy
from collections.abc import Iterable, Sequence

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, request_response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["include_routers"]


def include_routers(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Add the routes of `routers` to `app`, each router's found through its prefix.

    A router without a fixed prefix (none, or one with a path parameter), or with a route
    other than a plain `APIRoute` (a websocket, a mount, a body limit of its own), is
    included with `app.include_router()` instead, and searched as FastAPI searches it.
    The routes found by prefix are tried before those added to the app in other ways,
    whatever the order they were added in: give a route of the app's own a path that no
    router's route also matches. Call it once per app, before the app serves.
    """
    index: list[tuple[str, Sequence[APIRoute]]] = []
    for router in routers:
        routes = _indexable_routes(router)
        if routes is None:
            app.include_router(router)
            continue
        bound = [_bound_to(app, route) for route in routes]
        app.router.routes.extend(bound)
        index.append((router.prefix, bound))
    # Routers are Starlette's, which wrap their search in `middleware_stack`; the
    # dispatcher joins it there, inside the app's exception handlers. Form limits set on
    # the app's router are applied by that search, so with them the search stays whole.
    if index and not app.router.form_limits:
        stack = app.router.middleware_stack
        app.router.middleware_stack = _PrefixDispatch(stack, app.router, index)


def _indexable_routes(router: APIRouter) -> list[APIRoute] | None:
    """The routes of `router`, if a fixed prefix leads to all of them and each is a plain
    `APIRoute`; None if not."""
    if not router.prefix or "{" in router.prefix:
        return None
    routes = [route for route in router.routes if type(route) is APIRoute]
    if len(routes) < len(router.routes) or any(r.max_body_size is not None for r in routes):
        return None
    return routes


def _bound_to(app: FastAPI, route: APIRoute) -> APIRoute:
    """A copy of `route` that takes its dependency overrides from `app`, as an included
    route does; the router's own route stays as it was, for other apps to include."""
    bound = copy.copy(route)
    bound.dependency_overrides_provider = app
    bound.app = request_response(bound.get_route_handler())
    return bound


class _PrefixDispatch:
    """Runs the route that matches a request in full, trying only the routes of the
    routers whose prefix the path holds; anything else goes on to `app`, the router's
    own search.

    The prefix is looked for anywhere in the path, not only at its start, so that a root
    path (an app served under `/api`) may stand in front of it. A path that holds a
    prefix elsewhere only has that router's routes tried in vain.
    """

    def __init__(
        self, app: ASGIApp, router: APIRouter, index: Sequence[tuple[str, Sequence[APIRoute]]]
    ) -> None:
        self.app = app
        self.router = router
        self.index = index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, routes in self.index:
                if prefix not in path:
                    continue
                for route in routes:
                    match, child_scope = route.matches(scope)
                    if match is Match.FULL:
                        scope.update(child_scope)
                        scope["route"] = route
                        # What the router's search records, for `request.url_for()`.
                        scope.setdefault("router", self.router)
                        await route.handle(scope, receive, send)
                        return
        await self.app(scope, receive, send)
