"""Schemathesis against a baked service: no input gets a 500 or a status the API does not document.

Each run bakes a variant, migrates a new database on the server, serves the app with
uvicorn on a free loopback port, and points schemathesis at its /openapi.json: the
examples, the boundary values of every constraint (coverage), generated valid and
invalid requests (fuzzing), and chains of calls that feed one response's ids into
the next request (stateful). Generation is derandomised, so a run sends the same
requests every time; `MAX_EXAMPLES` bounds how many (about 1,500 per database, in
under a minute each).
"""

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import BIN, bake_into, run, server_url
from tests.servers import free_port, new_database, wait_until_answering
from tests.variants import VARIANTS

MAX_EXAMPLES = 100
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    # Input the schema calls invalid is refused with a 4xx, not stored.
    "negative_data_rejection",
]
PHASES = ["examples", "coverage", "fuzzing", "stateful"]
# A floor on what a run sends, so that a schema that stopped describing the API (and
# so gave schemathesis nothing to test) cannot pass.
MIN_CASES = 1000
# What one schemathesis run may take before the test gives up on it.
RUN_DEADLINE = 300
STARTUP_DEADLINE = 60

DATABASES = [
    pytest.param("default", "TEST_DATABASE_URL", "PostgreSQL", id="postgresql"),
    pytest.param("mysql-second-no-example-yes", "TEST_MYSQL_URL", "MariaDB", id="mariadb"),
]


@contextmanager
def _serving(project: Path, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """The base URL of the baked app under uvicorn, ready to answer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        listen = ["--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            [BIN / "uvicorn", "app.main:create_app", "--factory", "--no-access-log", *listen],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(f"{base}/health/ready", server, log_path, deadline=STARTUP_DEADLINE)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize(("variant", "variable", "what"), DATABASES)
def test_no_request_gets_a_server_error_or_an_undocumented_status(
    tmp_path: Path, variant: str, variable: str, what: str
) -> None:
    server = server_url(variable, what)
    project = bake_into(tmp_path / "bake", **VARIANTS[variant])
    report = tmp_path / "schemathesis.json"
    with new_database(server, "fuzz") as database:
        database_url = database.render_as_string(hide_password=False)
        env = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
        migrated = run(BIN / "python", "-m", "app.ops.migrate", "upgrade", cwd=project, env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        with _serving(project, {**os.environ, **env}, tmp_path / "uvicorn.log") as base:
            result = run(
                BIN / "schemathesis",
                "run",
                f"{base}/openapi.json",
                *_schemathesis_options(report),
                cwd=tmp_path,
                timeout=RUN_DEADLINE,
            )
    server_log = (tmp_path / "uvicorn.log").read_text()

    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-2000:] + server_log
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    assert (summary["failures"], summary["errors"]) == ([], [])
    assert summary["operations"]["tested"] == summary["operations"]["selected"]
    assert {phase: state["status"] for phase, state in summary["phases"].items()} == dict.fromkeys(
        PHASES, "success"
    )
    assert cases["generated"] >= MIN_CASES
    assert "Traceback" not in server_log, server_log


def _schemathesis_options(report: Path) -> list[str]:
    return [
        *("--checks", ",".join(CHECKS)),
        *("--phases", ",".join(PHASES)),
        *("--max-examples", str(MAX_EXAMPLES)),
        # The same cases on every run, and no example database left behind; a seed
        # would be ignored.
        "--generation-deterministic",
        *("--workers", "1"),
        *("--request-timeout", "10"),
        "--no-color",
        *("--report", "json", "--report-json-path", str(report)),
    ]
