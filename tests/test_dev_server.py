"""`make dev` in a fresh bake installs everything, serves the app, and answers /health/live."""

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import Bake
from tests.servers import free_port, status_of

# `make dev` creates the virtualenv and installs from the package index first.
STARTUP_DEADLINE = 600


def test_make_dev_serves_health_live(bake: Bake, tmp_path: Path) -> None:
    project = bake()
    port = free_port()
    # The baked project builds its own virtualenv, as it would on a laptop.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    log_path = tmp_path / "make-dev.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            ["make", "dev", f"PORT={port}"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        status = None
        while status != 200 and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            status = status_of(f"http://127.0.0.1:{port}/health/live")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    output = log_path.read_text()

    assert status == 200, output[-4000:]
    assert f"Serving on http://127.0.0.1:{port}" in output
    assert status_of(f"http://127.0.0.1:{port}/health/live") is None, "the server outlived make dev"
