"""The Dockerfile and compose.yaml of every variant are consistent with the project.

No Docker engine runs where these tests run, so they check what can be checked without
one: compose.yaml is valid against the Compose specification, gives every service that
runs the image the settings the app needs (the app's own Settings must accept them), and
orders the start (databases healthy, then the migration, then the app); the Dockerfile
passes hadolint, copies files that exist and that .dockerignore lets through, builds
from uv.lock, and starts modules the project has; its stages, replayed with uv in a
folder, install from the lock and serve from the runtime stage's files alone; and the
health checks of both, run against a real server, pass and fail when they should.
"""

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, bake_into, run
from tests.servers import free_port, status_of, wait_until_answering
from tests.variants import VARIANTS

STARTUP_DEADLINE = 120
DATABASE_SERVICES = {"db", "audit-db"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_into(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])


def _compose(project: Path) -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((project / "compose.yaml").read_text())
    return compose


def _app_services(compose: dict[str, Any], project: Path) -> dict[str, dict[str, Any]]:
    """The services that run the project's own image."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == project.name
    }


def _documented_settings(project: Path) -> set[str]:
    example = (project / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.MULTILINE))


def _host(url: str) -> str:
    match = re.match(r"\w+://(?:[^@/]*@)?([^:/]*)", url)
    assert match is not None, url
    return match.group(1)


def _module_exists(project: Path, module: str) -> bool:
    path = module.replace(".", "/")
    return (project / f"{path}.py").exists() or (project / path / "__init__.py").exists()


def test_compose_follows_the_compose_specification(project: Path) -> None:
    result = run(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml", cwd=project
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (project / "compose.yaml").read_text()
    assert "\n\n\n" not in text
    assert [line for line in text.splitlines() if line != line.rstrip()] == []


def test_every_app_service_has_the_settings_the_app_accepts(project: Path, tmp_path: Path) -> None:
    compose = _compose(project)
    services = _app_services(compose, project)
    assert {"migrate", "app"} <= set(services)
    for name, service in services.items():
        environment = {
            key: re.sub(r"\$\{SECRET_KEY:\?[^}]*\}", "a-secret-from-env", str(value))
            for key, value in service["environment"].items()
        }
        assert set(environment) <= _documented_settings(project), name
        for key, url in environment.items():
            if key.endswith("_URL") and not url.startswith("sqlite"):
                assert _host(url) in compose["services"], f"{name}: {key}={url}"
        # The app's own Settings, from this environment alone (no .env in the working
        # directory): a missing setting or a value it refuses fails here.
        check = subprocess.run(
            [sys.executable, "-c", "from app.settings import Settings; Settings()"],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(project), **environment},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert check.returncode == 0, f"{name}: {check.stderr[-3000:]}"


def test_compose_starts_databases_then_the_migration_then_the_app(project: Path) -> None:
    compose = _compose(project)
    services = compose["services"]
    databases = DATABASE_SERVICES & set(services)
    migrate = services["migrate"]

    assert migrate["command"] == ["python", "-m", "app.ops.migrate", "upgrade"]
    assert _module_exists(project, "app.ops.migrate")
    assert migrate["restart"] == "no"
    assert migrate.get("depends_on", {}) == {
        name: {"condition": "service_healthy"} for name in databases
    }
    for name, service in _app_services(compose, project).items():
        if name == "migrate":
            continue
        assert service["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name
        assert "/health/ready" in " ".join(service["healthcheck"]["test"]), name
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            if condition["condition"] == "service_healthy":
                assert "test" in services[target]["healthcheck"], f"{target} has no health check"
            # A service outside a profile cannot wait for one inside it.
            assert set(services[target].get("profiles", [])) <= set(service.get("profiles", []))


def test_the_pooler_profile_puts_pgbouncer_between_a_second_app_and_the_database(
    project: Path,
) -> None:
    services = _compose(project)["services"]
    in_profile = {name for name, service in services.items() if "profiles" in service}
    if "asyncpg" not in (project / "pyproject.toml").read_text().split("[dependency-groups]")[0]:
        assert in_profile == set(), "PgBouncer pools PostgreSQL connections only"
        return

    assert in_profile == {"pooler", "app-pooled"}
    assert all(services[name]["profiles"] == ["pooler"] for name in in_profile)
    pooler = services["pooler"]
    assert pooler["environment"]["POOL_MODE"] == "transaction"
    assert _host(pooler["environment"]["DATABASE_URL"]) == "db"
    pooled = services["app-pooled"]["environment"]
    assert pooled["DATABASE_POOLER"] == "pgbouncer"
    assert _host(pooled["DATABASE_URL"]) == "pooler"
    assert _host(pooled["DATABASE_DIRECT_URL"]) == "db"
    app = services["app"]["environment"]
    assert {key: value for key, value in app.items() if key != "DATABASE_URL"} == {
        key: value
        for key, value in pooled.items()
        if key not in {"DATABASE_URL", "DATABASE_DIRECT_URL", "DATABASE_POOLER"}
    }


def _dockerfile(project: Path) -> list[str]:
    """The Dockerfile's instructions, each on one line."""
    text = (project / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_passes_hadolint(project: Path) -> None:
    result = run("hadolint", "Dockerfile", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_files_that_exist_and_reach_the_build(project: Path) -> None:
    copied = [
        source
        for line in _dockerfile(project)
        if line.startswith("COPY ") and "--from=" not in line
        for source in shlex.split(line)[1:-1]
    ]
    ignored = [
        line.rstrip("/")
        for line in (project / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    assert "uv.lock" in copied
    if not (project / "uv.lock").exists():
        pytest.fail(
            "the bake has no uv.lock, which the post-gen hook writes with `uv lock` and the "
            "image builds from; the hook's 'Did not write uv.lock' line says why"
        )
    assert [source for source in copied if not (project / source).exists()] == []
    assert [
        source
        for source in copied
        for pattern in ignored
        if fnmatch.fnmatch(source, pattern.removeprefix("**/"))
    ] == []


def test_dockerfile_builds_from_the_lock_and_runs_the_server_unprivileged(project: Path) -> None:
    instructions = _dockerfile(project)
    stages = [line for line in instructions if line.startswith("FROM ")]
    runtime = instructions[instructions.index(stages[-1]) :]
    syncs = [line for line in instructions if "uv sync" in line]
    user = next(line for line in runtime if line.startswith("USER "))
    healthcheck = next(line for line in runtime if line.startswith("HEALTHCHECK "))
    command = json.loads(next(line for line in runtime if line.startswith("CMD "))[4:])

    assert len(stages) == 2
    assert len(syncs) == 2
    assert all("--locked" in line and "--no-dev" in line for line in syncs)
    assert all("--mount=type=cache,target=/cache/uv" in line for line in syncs)
    assert user.split()[1].split(":")[0] not in {"root", "0"}
    assert "/health/live" in healthcheck
    assert command[:2] == ["python", "-m"]
    assert _module_exists(project, command[2]), command


def _probe(command: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """Run a health check's command (`python -c ...`) against the server on `port`."""
    assert command[:2] == ["python", "-c"], command
    assert "127.0.0.1:8000/" in command[2], command
    code = command[2].replace("127.0.0.1:8000/", f"127.0.0.1:{port}/")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_health_checks_pass_once_the_app_is_ready(tmp_path: Path) -> None:
    # The example API brings migrations, so that a fresh database is behind until they run.
    project = bake_into(tmp_path, database="sqlite", include_example_api="yes")
    dockerfile_check = json.loads(
        next(line for line in _dockerfile(project) if line.startswith("HEALTHCHECK ")).split(
            " CMD ", 1
        )[1]
    )
    compose_check = _compose(project)["services"]["app"]["healthcheck"]["test"]
    assert compose_check[0] == "CMD"
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as output:
        server = subprocess.Popen(
            [BIN / "uvicorn", "app.main:create_app", "--factory", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(
            f"http://127.0.0.1:{port}/health/live", server, log, deadline=STARTUP_DEADLINE
        )
        # Not migrated yet: alive, but not ready for traffic.
        assert status_of(f"http://127.0.0.1:{port}/health/ready") == 503
        assert _probe(dockerfile_check, port).returncode == 0
        assert _probe(compose_check[1:], port).returncode != 0

        migrated = run("python", "-m", "app.ops.migrate", "upgrade", cwd=project)
        assert migrated.returncode == 0, migrated.stderr
        assert _probe(compose_check[1:], port).returncode == 0, log.read_text()[-3000:]
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert _probe(dockerfile_check, port).returncode != 0


def _stage_copies(instructions: list[str], stage: int) -> list[str]:
    """The build-context sources that the `stage`-th stage (0-based) copies."""
    starts = [index for index, line in enumerate(instructions) if line.startswith("FROM ")]
    ends = [*starts[1:], len(instructions)]
    return [
        source
        for line in instructions[starts[stage] : ends[stage]]
        if line.startswith("COPY ") and "--from=" not in line
        for source in shlex.split(line)[1:-1]
    ]


def test_the_images_files_install_from_the_lock_and_serve(tmp_path: Path) -> None:
    """Replay the Dockerfile's stages in a folder, with uv, and serve what the image holds.

    The build stage's files and its two `uv sync` steps make the virtualenv; then only
    the virtualenv and the runtime stage's files stay, and `python -m app.ops.migrate
    upgrade` and the image's command must work from those alone, in an environment
    that holds nothing but the image's variables and the app's settings.
    """
    project = bake_into(tmp_path / "bake", database="sqlite")
    if not (project / "uv.lock").exists():
        pytest.fail("the bake has no uv.lock, which the post-gen hook writes with `uv lock`")
    instructions = _dockerfile(project)
    srv = tmp_path / "srv"
    srv.mkdir()
    for source in _stage_copies(instructions, 0):
        copy = shutil.copytree if (project / source).is_dir() else shutil.copy2
        copy(project / source, srv / source)
    uv_env = {
        "UV_COMPILE_BYTECODE": "1",
        "UV_LINK_MODE": "copy",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(srv / ".venv"),
    }
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    # Each `RUN --mount=... uv sync ...` as written, without its mounts, on this Python.
    syncs = [
        [word for word in shlex.split(line)[1:] if not word.startswith("--mount=")]
        for line in instructions
        if line.startswith("RUN ") and "uv sync" in line
    ]
    assert len(syncs) == 2
    for sync in syncs:
        synced = run(*sync, "--python", python, cwd=srv, env=uv_env, timeout=600)
        assert synced.returncode == 0, synced.stderr[-3000:]
    for path in srv.iterdir():
        if path.name != ".venv":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for source in _stage_copies(instructions, 1):
        copy = shutil.copytree if (project / source).is_dir() else shutil.copy2
        copy(project / source, srv / source)

    port = free_port()
    env = {
        "PATH": f"{srv / '.venv' / 'bin'}{os.pathsep}{os.defpath}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "SECRET_KEY": "a-secret-from-env",
    }
    migrated = subprocess.run(
        ["python", "-m", "app.ops.migrate", "upgrade"],
        cwd=srv,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    command = json.loads(next(line for line in instructions if line.startswith("CMD "))[4:])
    log = tmp_path / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            command, cwd=srv, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until_answering(
            f"http://127.0.0.1:{port}/health/ready", server, log, deadline=STARTUP_DEADLINE
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()[-3000:]
