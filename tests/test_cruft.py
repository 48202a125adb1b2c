"""A project baked with cruft takes a later template commit without losing its own changes.

The template is committed, as it stands in this checkout, into a repository of its own in
a temporary directory; cruft bakes from that commit, the project becomes a git repository
with a change of its own, and the template moves on by a commit that changes and removes
other files. `cruft update` must bring exactly the template's changes: the user's edit
stays, `.env` keeps its secret, and no `.rej` file or stray change appears. During the
update cruft renders both template commits again, post-gen hook included, and diffs them;
a file the hook makes differently each time (`.env`'s secret, a lock resolved on another
day) must be left out of that diff, or it lands in the project as a conflict.
"""

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run
from tests.variants import TEMPLATE

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Template Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
USER_LINE = "A paragraph the project's own team wrote.\n"
TEMPLATE_LINE = "# A line a later template commit adds.\n"
# Rendered from the template's folder of the same name.
TEMPLATE_CHANGED = "Makefile"
TEMPLATE_REMOVED = ".dockerignore"
USER_CHANGED = "README.md"


def _git(*args: str, cwd: Path) -> str:
    result = run("git", *args, cwd=cwd, env=GIT_IDENTITY)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def _commit_all(repo: Path, message: str) -> str:
    _git("add", "--all", cwd=repo)
    _git("commit", "--quiet", "--message", message, cwd=repo)
    return _git("rev-parse", "HEAD", cwd=repo).strip()


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """The template's files as they are in this checkout, committed into a repository."""
    listed = run(
        "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=TEMPLATE
    )
    if listed.returncode != 0:
        pytest.skip(f"the template is not a git checkout, which cruft needs: {listed.stderr}")
    repo = tmp_path / "template"
    for relative in filter(None, listed.stdout.split("\0")):
        source = TEMPLATE / relative
        if source.is_file():  # a tracked file deleted in the work tree is left out
            (repo / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / relative)
    _git("init", "--quiet", cwd=repo)
    return repo


def _cruft(*args: str, cwd: Path) -> str:
    result = run("cruft", *args, cwd=cwd, env=GIT_IDENTITY)
    assert result.returncode == 0, f"cruft {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_cruft_update_brings_the_template_change_and_keeps_the_users(
    template_repo: Path, tmp_path: Path
) -> None:
    baked_from = _commit_all(template_repo, "The template as it is")
    _cruft(
        "create",
        "--no-input",
        "--checkout",
        baked_from,
        "--output-dir",
        str(tmp_path / "out"),
        str(template_repo),
        cwd=tmp_path,
    )
    project = tmp_path / "out" / "my-service"
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == baked_from
    assert "{{" not in (project / ".cruft.json").read_text()
    secret = (project / ".env").read_text()
    _git("init", "--quiet", cwd=project)
    _commit_all(project, "Bake the service")
    with (project / USER_CHANGED).open("a") as readme:
        readme.write(USER_LINE)
    _commit_all(project, "Say what the service is for")

    slug_dir = template_repo / "{{cookiecutter.project_slug}}"
    with (slug_dir / TEMPLATE_CHANGED).open("a") as makefile:
        makefile.write(TEMPLATE_LINE)
    (slug_dir / TEMPLATE_REMOVED).unlink()
    moved_to = _commit_all(template_repo, "Move the template forward")

    check = run("cruft", "check", cwd=project)
    assert check.returncode != 0
    assert "out of date" in check.stdout

    output = _cruft("update", "--skip-apply-ask", cwd=project)

    changed = sorted(_git("diff", "HEAD", "--name-status", cwd=project).splitlines())
    untracked = _git("status", "--porcelain", "--untracked-files=all", cwd=project)
    assert changed == [
        f"D\t{TEMPLATE_REMOVED}",
        "M\t.cruft.json",
        f"M\t{TEMPLATE_CHANGED}",
    ], output
    assert "??" not in untracked, untracked
    assert _git("diff", "HEAD", "--numstat", "--", TEMPLATE_CHANGED, cwd=project).split() == [
        "1",
        "0",
        TEMPLATE_CHANGED,
    ]
    assert (project / TEMPLATE_CHANGED).read_text().endswith(TEMPLATE_LINE)
    assert (project / USER_CHANGED).read_text().endswith(USER_LINE)
    assert (project / ".env").read_text() == secret
    assert list(project.rglob("*.rej")) == []
    assert json.loads((project / ".cruft.json").read_text())["commit"] == moved_to
    assert "up to date" in _cruft("check", cwd=project)
