"""The hooks: bad answers are refused before anything is written; `.env` gets a fresh secret."""

from pathlib import Path

import pytest

from tests.conftest import TEMPLATE, Bake, bake_into, run

BAD_ANSWERS = [
    ("project_slug", "1service", "must start with a lowercase letter"),
    ("project_slug", "My-Service", "must start with a lowercase letter"),
    ("project_slug", "my_service", "must start with a lowercase letter"),
    ("project_slug", "my-service-", "must start with a lowercase letter"),
    ("project_slug", "my--service", "must start with a lowercase letter"),
    ("author_email", "nobody", "must be an e-mail address"),
    ("author_email", "two@@example.com", "must be an e-mail address"),
    ("project_name", "1234", "must contain a letter"),
    ("project_name", 'Say "hi"', "must contain a letter"),
    ("description", "back\\slash", "must be one line"),
    ("author_name", "", "must be a non-empty name"),
]


@pytest.mark.parametrize(("field", "value", "rule"), BAD_ANSWERS)
def test_bad_answer_is_refused_with_one_line_and_leaves_nothing(
    tmp_path: Path, field: str, value: str, rule: str
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    extra = [f"{field}={value}"]
    if field == "project_name":
        extra.append("project_slug=fine-slug")  # keep the derived slug valid

    result = run("cookiecutter", "--no-input", "-o", output, TEMPLATE, *extra, cwd=tmp_path)

    assert result.returncode != 0
    message = f"error: {field} {value!r} is not valid: it {rule}"
    assert message in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        line for line in result.stderr.splitlines() if message in line
    ]
    assert list(output.iterdir()) == []


def test_slug_is_derived_from_the_name(bake: Bake) -> None:
    project = bake(project_name="Billing API v2")

    assert project.name == "billing-api-v2"


def test_each_bake_writes_its_own_secret(tmp_path: Path) -> None:
    secrets = []
    for name in ("first", "second"):
        env = (bake_into(tmp_path / name) / ".env").read_text()
        (secret,) = [line for line in env.splitlines() if line.startswith("SECRET_KEY=")]
        secrets.append(secret.removeprefix("SECRET_KEY="))

    assert all(len(secret) >= 40 for secret in secrets)
    assert secrets[0] != secrets[1]
    assert "SECRET_KEY=\n" in (tmp_path / "first" / "my-service" / ".env.example").read_text()


def test_env_file_is_ignored_by_git_and_the_example_is_not(bake: Bake) -> None:
    ignored = (bake() / ".gitignore").read_text().splitlines()

    assert ".env" in ignored
    assert ".env.example" not in ignored
