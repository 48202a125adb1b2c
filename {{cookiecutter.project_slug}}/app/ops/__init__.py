"""Running the service: the server, its checks, migrations and commands.

- `serve`: `python -m app.ops.serve`, uvicorn with workers, draining on SIGTERM;
- `readiness`: whether each database can serve now, for /health/ready;
- `budget`: whether the pools of every worker fit in each database server;
- `migrate`: `python -m app.ops.migrate`, Alembic driven from code;
- `cli`: `python -m app.ops.cli`, commands that use the database outside requests.
"""
