"""The API's routers, in the order the app includes them, which is the order FastAPI
tries their routes in.

The busiest come first: FastAPI matches a request's path against the routes one by one,
so every route listed before a request's own costs it a little (docs/performance.md).
The health checks lead: load balancers ask them every few seconds, they are the cheapest
requests, and their two routes add little to any other request. The fast path for hot
reads (/profiles) comes next, for the same reason: one route, asked for often.

Add a router here, with a prefix of its own, and `create_app()` includes it.
"""

from fastapi import APIRouter

{% if cookiecutter.include_example_api == "yes" and cookiecutter.second_database == "yes" -%}
from app.api.routes import audit, export, health, notes, profiles, stats, users
{% elif cookiecutter.include_example_api == "yes" -%}
from app.api.routes import export, health, notes, profiles, stats, users
{% else -%}
from app.api.routes import health
{% endif %}
__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    health.router,
{%- if cookiecutter.include_example_api == "yes" %}
    profiles.router,
    users.router,
    notes.router,
    stats.router,
    export.router,
{%- endif %}
{%- if cookiecutter.include_example_api == "yes" and cookiecutter.second_database == "yes" %}
    audit.router,
{%- endif %}
]
