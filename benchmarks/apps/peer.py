"""fastapi-async-sqlalchemy 0.8.1's middleware and `db` proxy on the shared endpoints."""

import fastapi_async_sqlalchemy

from proxy_app import build_app

app = build_app(fastapi_async_sqlalchemy)
