"""The docs site's strict build stops on the mistakes it is there to catch.

`make test` builds the site from docs/ with `mkdocs build --strict`. These tests build
a copy with one mistake each and check that the build fails and names it, so that the
validation settings in mkdocs.yml keep doing their job.
"""

import shutil
from pathlib import Path

import pytest

from tests.conftest import run
from tests.variants import TEMPLATE


@pytest.fixture
def site_source(tmp_path: Path) -> Path:
    shutil.copy(TEMPLATE / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(TEMPLATE / "docs", tmp_path / "docs")
    return tmp_path


def _build(source: Path) -> tuple[int, str]:
    result = run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        str(source / "site"),
        cwd=source,
        # mkdocs-material's banner about its successor, on every build.
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
    return result.returncode, result.stdout + result.stderr


def test_the_docs_build_as_they_are(site_source: Path) -> None:
    code, output = _build(site_source)
    assert code == 0, output


def test_a_page_missing_from_the_nav_fails_the_build(site_source: Path) -> None:
    (site_source / "docs" / "orphan.md").write_text("# A page no one can reach\n")
    code, output = _build(site_source)
    assert code != 0
    assert "orphan.md" in output


@pytest.mark.parametrize(
    "link", ["[gone](no-such-page.md)", "[gone](db.md#no-such-section)", "[gone](#nowhere)"]
)
def test_a_broken_link_fails_the_build(site_source: Path, link: str) -> None:
    index = site_source / "docs" / "index.md"
    index.write_text(f"{index.read_text()}\nSee {link}.\n")
    code, output = _build(site_source)
    assert code != 0
    assert link.split("(")[1].rstrip(")").split("#")[-1] in output
