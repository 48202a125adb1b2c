"""Under a real uvicorn, a 500 leaves the keep-alive connection usable, and the app's and
the server's lines are one JSON object each, the 500's traceback logged once."""

import http.client
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import BIN, Bake, run
from tests.servers import free_port, wait_until_answering

# The baked app plus a route that fails; nothing else in the bake is changed.
PROBE = """\
from app.main import create_app

app = create_app()


@app.get("/probe/crash")
async def crash() -> None:
    raise RuntimeError("the probe failed on purpose")
"""
STARTUP_DEADLINE = 60


def _json_lines(output: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The lines that are JSON objects, and the ones that are not."""
    parsed, plain = [], []
    for line in output.splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            plain.append(line)
    return parsed, plain


def test_a_500_keeps_the_connection_and_is_logged_once_as_json(bake: Bake, tmp_path: Path) -> None:
    project = bake()
    migrated = run(BIN / "python", "-m", "app.ops.migrate", "upgrade", cwd=project)
    assert migrated.returncode == 0, migrated.stderr
    (project / "probe.py").write_text(PROBE)
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        # The access log is on here, unlike in `make dev`, to show its lines are JSON too.
        listen = ["--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            [BIN / "uvicorn", "probe:app", "--log-config", "log-config.json", *listen],
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        live = f"http://127.0.0.1:{port}/health/live"
        wait_until_answering(live, server, log_path, deadline=STARTUP_DEADLINE)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/probe/crash", headers={"X-Request-ID": "probe-500"})
        failed = connection.getresponse()
        failed_body = json.loads(failed.read())
        # The same connection: before the fix the server had closed it after the 500.
        connection.request("GET", "/health/live")
        after = connection.getresponse()
        after.read()
        connection.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    lines, plain = _json_lines(log_path.read_text())

    assert failed.status == 500
    assert failed_body["error"]["request_id"] == "probe-500"
    assert after.status == 200
    assert plain == []
    the_500 = [line for line in lines if line["request_id"] == "probe-500"]
    assert [(line["logger"], line["level"]) for line in the_500] == [
        ("app.web.errors", "ERROR"),
        ("uvicorn.access", "INFO"),
        ("app.requests", "INFO"),
    ]
    [error] = [line for line in lines if "exception" in line]
    assert error["request_id"] == "probe-500"
    assert "the probe failed on purpose" in error["exception"]
    messages = {(line["logger"], line["message"]) for line in lines}
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert [line for line in lines if "color_message" in line] == []  # no terminal codes


def test_make_dev_and_the_image_serve_with_the_json_log_config(bake: Bake) -> None:
    project = bake()

    assert "--log-config log-config.json" in (project / "Makefile").read_text()
    # The image serves through app.ops.serve, which is also what make serve runs.
    assert 'CMD ["python", "-m", "app.ops.serve"]' in (project / "Dockerfile").read_text()
    assert 'LOG_CONFIG = "log-config.json"' in (project / "app" / "ops" / "serve.py").read_text()
