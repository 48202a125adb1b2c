"""The Dockerfile and compose.yaml of every variant are consistent with the project.

No Docker engine runs where these tests run, so they check what can be checked
without one: the compose file parses, sets only settings the service reads, and
waits for each database it defines; the Dockerfile copies files that exist and
starts the modules the project has.
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import bake_into
from tests.variants import VARIANTS


@pytest.fixture(scope="module", params=list(VARIANTS))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_into(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])


def _documented_settings(project: Path) -> set[str]:
    example = (project / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z_]+)=", example, flags=re.MULTILINE))


def test_compose_sets_only_documented_settings_and_waits_for_its_databases(
    project: Path,
) -> None:
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    app = compose["services"]["app"]
    databases = set(compose["services"]) - {"app"}

    assert set(app["environment"]) <= _documented_settings(project)
    assert set(app.get("depends_on", {})) == databases
    for name in databases:
        assert "healthcheck" in compose["services"][name]
        assert app["depends_on"][name] == {"condition": "service_healthy"}
    for url in (value for key, value in app["environment"].items() if key.endswith("_URL")):
        host = re.match(r"\w+://(?:[^@/]*@)?([^:/]*)", url)
        assert host is not None
        assert host.group(1) in databases | {""}, url


def test_dockerfile_copies_existing_files_and_runs_existing_modules(project: Path) -> None:
    dockerfile = (project / "Dockerfile").read_text()
    copied = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in shlex.split(line)[1:-1]
    ]
    command = re.search(r"^CMD (.+)$", dockerfile, flags=re.MULTILINE)

    assert copied
    assert [source for source in copied if not (project / source).exists()] == []
    assert command is not None
    for module in re.findall(r"python -m ([\w.]+)|uvicorn ([\w.]+):", command.group(1)):
        path = (module[0] or module[1]).replace(".", "/")
        assert (project / f"{path}.py").exists() or (project / path).is_dir(), path
    assert "USER app" in dockerfile
