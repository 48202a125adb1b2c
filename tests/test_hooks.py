"""The hooks: bad answers are refused before anything is written; `.env` gets a fresh secret.

The unit tests load each hook file as it is committed, unrendered; the end-to-end tests
run the real `cookiecutter` command, which renders the hooks first.
"""

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from cookiecutter.main import cookiecutter
from cookiecutter.utils import create_env_with_context

from tests.conftest import TEMPLATE, Bake, bake_into, run
from tests.variants import CONTEXT

HOOKS = TEMPLATE / "hooks"
PROJECT_TEMPLATE = TEMPLATE / "{{cookiecutter.project_slug}}"


def _load_hook(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = _load_hook(HOOKS / "pre_gen_project.py")
post_gen = _load_hook(HOOKS / "post_gen_project.py")


# The pre-gen hook's rules, one answer at a time.

GOOD_ANSWERS = {
    "project_name": "My Service",
    "project_slug": "my-service",
    "description": "A FastAPI service on async SQLAlchemy.",
    "author_name": "Your Name",
    "author_email": "you@example.com",
    "python_version": "3.12",
    "database": "mysql",
    "include_example_api": "no",
    "second_database": "yes",
}

GOOD_VALUES = [
    ("project_name", "Billing API v2"),
    ("project_name", "Bob's 100% Café/Bar & Grill"),
    ("project_name", "x" * 80),
    ("project_slug", "a"),
    ("project_slug", "my-service-2"),
    ("project_slug", "a" * 60),
    ("description", "Serves notes; 50% faster, with {braces} and 'single quotes'."),
    ("description", "d" * 200),
    ("author_name", "Siân O'Neil"),
    ("author_name", "n" * 100),
    ("author_email", "first.last+tag@mail.example.co.uk"),
]

BAD_VALUES = [
    ("project_name", "1234", "must contain a letter"),
    ("project_name", "", "must contain a letter"),
    ("project_name", 'Say "hi"', "must contain a letter"),
    ("project_name", "back\\slash", "must contain a letter"),
    ("project_name", "two\nlines", "must contain a letter"),
    ("project_name", "tab\there", "must contain a letter"),
    ("project_name", "x" * 81, "must contain a letter"),
    ("project_slug", "", "must start with a lowercase letter"),
    ("project_slug", "1service", "must start with a lowercase letter"),
    ("project_slug", "My-Service", "must start with a lowercase letter"),
    ("project_slug", "my_service", "must start with a lowercase letter"),
    ("project_slug", "my-service-", "must start with a lowercase letter"),
    ("project_slug", "my--service", "must start with a lowercase letter"),
    ("project_slug", "my-service\n", "must start with a lowercase letter"),
    ("project_slug", "a" * 61, "must start with a lowercase letter"),
    ("description", 'a "quoted" word', "must be one line"),
    ("description", "back\\slash", "must be one line"),
    ("description", "two\nlines", "must be one line"),
    ("description", "d" * 201, "must be one line"),
    ("author_name", "", "must be a non-empty name"),
    ("author_name", 'The "Boss"', "must be a non-empty name"),
    ("author_name", "back\\slash", "must be a non-empty name"),
    ("author_name", "two\nlines", "must be a non-empty name"),
    ("author_name", "bell\x07", "must be a non-empty name"),
    ("author_name", "n" * 101, "must be a non-empty name"),
    ("author_email", "nobody", "must be an e-mail address"),
    ("author_email", "two@@example.com", "must be an e-mail address"),
    ("author_email", "no-dot@example", "must be an e-mail address"),
    ("author_email", "trailing-dot@example.", "must be an e-mail address"),
    ("author_email", "with space@example.com", "must be an e-mail address"),
    ("python_version", "3.10", "must be one of 3.11, 3.12, 3.13"),
    ("database", "oracle", "must be one of postgresql, mysql, sqlite"),
    ("database", "PostgreSQL", "must be one of postgresql, mysql, sqlite"),
    ("include_example_api", "true", "must be one of yes, no"),
    ("second_database", "", "must be one of no, yes"),
]


def test_the_default_answers_are_valid() -> None:
    # The default slug is a Jinja expression in cookiecutter.json; "my-service" is its value.
    # A choice's default is the first in its list.
    defaults = {
        field: CONTEXT[field][0] if isinstance(CONTEXT[field], list) else CONTEXT[field]
        for field in GOOD_ANSWERS
        if field != "project_slug"
    }

    assert pre_gen.validate({**defaults, "project_slug": "my-service"}) == []


@pytest.mark.parametrize(("field", "value"), GOOD_VALUES)
def test_good_value_passes(field: str, value: str) -> None:
    assert pre_gen.validate({**GOOD_ANSWERS, field: value}) == []


@pytest.mark.parametrize(("field", "value", "rule"), BAD_VALUES)
def test_bad_value_gets_one_line_naming_field_value_and_rule(
    field: str, value: str, rule: str
) -> None:
    errors = pre_gen.validate({**GOOD_ANSWERS, field: value})

    assert len(errors) == 1
    assert errors[0].startswith(f"error: {field} {value!r} is not valid: it {rule}")
    assert "\n" not in errors[0]


def test_every_bad_answer_is_reported_at_once() -> None:
    answers = {**GOOD_ANSWERS, "project_slug": "Bad", "author_email": "nobody"}

    errors = pre_gen.validate(answers)

    assert [error.split()[1] for error in errors] == ["project_slug", "author_email"]


def test_every_answer_has_a_rule() -> None:
    answers = {field for field in CONTEXT if not field.startswith("_")}

    assert set(pre_gen.RULES) == set(pre_gen.ENCODED_ANSWERS) == set(GOOD_ANSWERS) == answers


def test_the_hook_knows_the_choices_of_cookiecutter_json() -> None:
    listed = {
        field: tuple(values)
        for field, values in CONTEXT.items()
        if isinstance(values, list) and not field.startswith("_")
    }

    assert listed == pre_gen.CHOICES


def _render_pre_gen(tmp_path: Path, **answers: str) -> ModuleType:
    """The pre-gen hook rendered the way cookiecutter renders it, with its Jinja environment."""
    context = {"cookiecutter": {**GOOD_ANSWERS, **answers}}
    source = (HOOKS / "pre_gen_project.py").read_text()
    rendered = tmp_path / "pre_gen_project.py"
    rendered.write_text(create_env_with_context(context).from_string(source).render(**context))
    return _load_hook(rendered)


HOSTILE = "Say \"hi\" \\ 100%25 'now'\n\x00{{ x }}"


@pytest.mark.parametrize("field", ["project_name", "description", "author_name"])
def test_rendered_pre_gen_hook_refuses_hostile_text_with_its_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    hook = _render_pre_gen(tmp_path, **{field: HOSTILE})

    assert hook.main() == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"error: {field} {HOSTILE!r} is not valid: it ")
    assert stderr.count("\n") == 1


def test_rendered_pre_gen_hook_accepts_good_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hook = _render_pre_gen(tmp_path, project_name="Bob's 100% Café/Bar & Grill")

    assert hook.main() == 0
    assert capsys.readouterr().err == ""


# The post-gen hook's table of optional paths.


def test_every_optional_path_exists_in_the_template() -> None:
    listed = {path for paths in post_gen.OPTIONAL_PATHS.values() for path in paths}

    assert sorted(path for path in listed if not (PROJECT_TEMPLATE / path).exists()) == []


def test_options_are_the_template_choices() -> None:
    assert set(post_gen.OPTIONAL_PATHS) == set(post_gen.OPTIONS)
    for option in post_gen.OPTIONAL_PATHS:
        assert sorted(CONTEXT[option]) == ["no", "yes"]


BYSTANDERS = ["app/main.py", "app/api/routes/health.py", "tests/conftest.py", ".env.example"]


def _tree(root: Path) -> set[str]:
    """Make every optional path under `root` as the template has it, plus some others."""
    for relative in {path for paths in post_gen.OPTIONAL_PATHS.values() for path in paths}:
        path = root / relative
        if (PROJECT_TEMPLATE / relative).is_dir():
            (path / "nested").mkdir(parents=True)
            (path / "nested" / "module.py").touch()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    for relative in BYSTANDERS:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).touch()
    return _paths(root)


def _paths(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


def _under(paths: list[str], everything: set[str]) -> set[str]:
    return {
        path for path in everything if any(path == p or path.startswith(f"{p}/") for p in paths)
    }


@pytest.mark.parametrize("disabled", list(post_gen.OPTIONAL_PATHS))
def test_disabled_option_loses_exactly_its_paths(tmp_path: Path, disabled: str) -> None:
    before = _tree(tmp_path)
    options = {option: "no" if option == disabled else "yes" for option in post_gen.OPTIONS}

    post_gen.remove_disabled_options(tmp_path, options)

    assert before - _paths(tmp_path) == _under(post_gen.OPTIONAL_PATHS[disabled], before)


def test_both_options_disabled_remove_a_shared_path_once(tmp_path: Path) -> None:
    before = _tree(tmp_path)
    tables = [set(paths) for paths in post_gen.OPTIONAL_PATHS.values()]
    assert set.intersection(*tables), "the table has no path shared by both options to test with"

    post_gen.remove_disabled_options(tmp_path, dict.fromkeys(post_gen.OPTIONS, "no"))

    assert _paths(tmp_path) == before - _under(sorted(set.union(*tables)), before)


def test_all_options_enabled_remove_nothing(tmp_path: Path) -> None:
    before = _tree(tmp_path)

    post_gen.remove_disabled_options(tmp_path, dict.fromkeys(post_gen.OPTIONS, "yes"))

    assert _paths(tmp_path) == before


def test_stale_entry_exits_with_one_line_naming_it(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "app" / "models" / "audit_entry.py").unlink()

    with pytest.raises(SystemExit) as exited:
        post_gen.remove_disabled_options(
            tmp_path, {"include_example_api": "yes", "second_database": "no"}
        )

    message = str(exited.value.code)
    assert message.startswith(
        "error: the template lists app/models/audit_entry.py under second_database, "
        "but it does not exist"
    )
    assert "\n" not in message


# The post-gen hook's .env.

EXAMPLE = "# The settings.\nSECRET_KEY=\nDEBUG=false\n"


def _secret(env: str) -> str:
    match = re.search(r"^SECRET_KEY=(.*)$", env, flags=re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_write_env_fills_in_a_fresh_secret(tmp_path: Path) -> None:
    secrets = []
    for name in ("first", "second"):
        root = tmp_path / name
        root.mkdir()
        (root / ".env.example").write_text(EXAMPLE)

        post_gen.write_env(root)

        env = (root / ".env").read_text()
        assert env == EXAMPLE.replace("SECRET_KEY=\n", f"SECRET_KEY={_secret(env)}\n")
        secrets.append(_secret(env))

    assert all(len(secret) >= 40 for secret in secrets)
    assert secrets[0] != secrets[1]


def test_write_env_refuses_an_example_without_the_secret_line(tmp_path: Path) -> None:
    (tmp_path / ".env.example").write_text("# The settings.\nSECRET_KEY=fixed\n")

    with pytest.raises(SystemExit) as exited:
        post_gen.write_env(tmp_path)

    assert exited.value.code == "error: .env.example has no empty SECRET_KEY= line to fill in."
    assert not (tmp_path / ".env").exists()


def test_write_env_keeps_an_existing_env_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env.example").write_text(EXAMPLE)
    (tmp_path / ".env").write_text("SECRET_KEY=the-one-in-use\n")

    post_gen.write_env(tmp_path)

    assert (tmp_path / ".env").read_text() == "SECRET_KEY=the-one-in-use\n"
    assert "Kept the existing .env" in capsys.readouterr().out


# End to end, through the real `cookiecutter` command.

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
    ("description", "two\nlines", "must be one line"),
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


def test_a_value_outside_a_choice_is_refused_by_cookiecutter_before_any_hook(
    tmp_path: Path,
) -> None:
    # cookiecutter checks extra context against the choices itself, before the hooks
    # run, and reports it as an uncaught ValueError: README.md says so, and this pins it.
    output = tmp_path / "out"
    output.mkdir()

    result = run(
        "cookiecutter", "--no-input", "-o", output, TEMPLATE, "database=oracle", cwd=tmp_path
    )

    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == (
        "ValueError: oracle provided for choice variable database, but the choices are "
        "['postgresql', 'mysql', 'sqlite']."
    )
    assert list(output.iterdir()) == []


def test_a_replayed_value_outside_a_choice_gets_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    # A replay file skips cookiecutter's own check, so the pre-gen hook catches it.
    answers = {
        field: values[0] if isinstance(values, list) else values
        for field, values in CONTEXT.items()
        if field != "__prompts__"
    }
    answers.update(project_slug="my-service", database="oracle")
    replay = tmp_path / "answers.json"
    replay.write_text(json.dumps({"cookiecutter": answers}))
    output = tmp_path / "out"
    output.mkdir()

    result = run("cookiecutter", "--replay-file", replay, "-o", output, TEMPLATE, cwd=tmp_path)

    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: database 'oracle' is not valid: it must be one of postgresql, mysql, sqlite."
    ]
    assert list(output.iterdir()) == []


def test_slug_is_derived_from_the_name(bake: Bake) -> None:
    project = bake(project_name="Billing API v2")

    assert project.name == "billing-api-v2"


def test_each_bake_writes_its_own_secret(tmp_path: Path) -> None:
    secrets = []
    for name in ("first", "second"):
        env = (bake_into(tmp_path / name) / ".env").read_text()
        secrets.append(_secret(env))

    assert all(len(secret) >= 40 for secret in secrets)
    assert secrets[0] != secrets[1]
    assert "SECRET_KEY=\n" in (tmp_path / "first" / "my-service" / ".env.example").read_text()


def test_baking_again_in_place_keeps_the_secret(tmp_path: Path) -> None:
    project = bake_into(tmp_path, second_database="no")
    env = (project / ".env").read_text()

    again = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(tmp_path),
        overwrite_if_exists=True,
        extra_context={"second_database": "no"},
    )

    assert Path(again) == project
    assert (project / ".env").read_text() == env
    assert not (project / "app" / "audit").exists()


def test_env_file_is_ignored_by_git_and_the_example_is_not(bake: Bake) -> None:
    ignored = (bake() / ".gitignore").read_text().splitlines()

    assert ".env" in ignored
    assert ".env.example" not in ignored


# The post-gen hook's lock.

PYPROJECT = """[project]
name = "locked"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = []

[dependency-groups]
dev = []
"""


def test_lock_writes_uv_lock_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)

    message = post_gen.lock(tmp_path, post_gen.find_uv())

    assert message == "Locked the dependencies in uv.lock with uv."
    assert 'name = "locked"' in (tmp_path / "uv.lock").read_text()


def test_lock_without_uv_says_how_to_lock_later(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)

    message = post_gen.lock(tmp_path, None)

    assert message == (
        "Did not write uv.lock: uv is not installed. Run `make lock` in the project."
    )
    assert not (tmp_path / "uv.lock").exists()


@pytest.mark.parametrize(
    ("pyproject", "reason"),
    [
        # A Python no machine has: uv would download one, and the hook never lets it.
        (PYPROJECT.replace(">=3.11", ">=3.99"), "No interpreter found for Python >=3.99"),
        (PYPROJECT.replace("dependencies = []", 'dependencies = ["not a requirement!"]'), ""),
    ],
)
def test_a_failed_lock_is_one_line_and_never_fails_the_bake(
    tmp_path: Path, pyproject: str, reason: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)

    message = post_gen.lock(tmp_path, post_gen.find_uv())

    assert message.startswith("Did not write uv.lock (error: ")
    assert reason in message
    assert message.endswith("; fix that, then run `make lock`.")
    assert "\n" not in message
    assert not (tmp_path / "uv.lock").exists()


def test_a_bake_says_whether_it_locked(tmp_path: Path) -> None:
    result = run("cookiecutter", "--no-input", "-o", tmp_path, TEMPLATE, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Locked the dependencies in uv.lock with uv." in result.stdout.splitlines()
    assert (tmp_path / "my-service" / "uv.lock").exists()
