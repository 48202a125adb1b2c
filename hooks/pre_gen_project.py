"""Validate the answers before cookiecutter writes anything.

Each bad answer gets one line that names the field, the value given and the rule, and the
hook exits non-zero; cookiecutter then removes the half-made project directory.

The choices are checked too, for the answers that reach the hook without cookiecutter
checking them (a replay file). A value outside a choice given on the command line
(`database=oracle`) never gets here: cookiecutter refuses it itself, before any hook.
"""

import re
import sys
from collections.abc import Callable, Mapping
from urllib.parse import unquote

# cookiecutter renders each answer into these literals percent-encoded. Jinja's `urlencode`
# escapes every quote, backslash, control character and "%" (checked with Jinja 3.1), so the
# literal stays valid Python whatever the user typed, and main() gets the exact answer back
# with `unquote`. Unrendered, the module still imports, so the tests can load it.
ENCODED_ANSWERS = {
    "project_name": "{{ cookiecutter.project_name | urlencode }}",
    "project_slug": "{{ cookiecutter.project_slug | urlencode }}",
    "description": "{{ cookiecutter.description | urlencode }}",
    "author_name": "{{ cookiecutter.author_name | urlencode }}",
    "author_email": "{{ cookiecutter.author_email | urlencode }}",
    "python_version": "{{ cookiecutter.python_version | urlencode }}",
    "database": "{{ cookiecutter.database | urlencode }}",
    "include_example_api": "{{ cookiecutter.include_example_api | urlencode }}",
    "second_database": "{{ cookiecutter.second_database | urlencode }}",
}

# The lists in cookiecutter.json, which the tests keep in step.
CHOICES = {
    "python_version": ("3.11", "3.12", "3.13"),
    "database": ("postgresql", "mysql", "sqlite"),
    "include_example_api": ("yes", "no"),
    "second_database": ("no", "yes"),
}

SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
# Quotes, backslashes and control characters would break the TOML and Python
# files that these answers are written into.
PLAIN_TEXT = re.compile(r"[^\"\\\x00-\x1f\x7f]+")


def _is_plain(value: str, *, max_length: int) -> bool:
    return bool(PLAIN_TEXT.fullmatch(value)) and len(value) <= max_length


# Each field: the test its value must pass, and the rule that the error message states.
RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "project_name": (
        lambda v: _is_plain(v, max_length=80) and any(c.isalpha() for c in v),
        "it must contain a letter, be at most 80 characters long, and hold no quotes, "
        "backslashes or control characters",
    ),
    "project_slug": (
        lambda v: bool(SLUG.fullmatch(v)) and len(v) <= 60,
        "it must start with a lowercase letter and hold only lowercase letters, digits and "
        "single hyphens between them (for example my-service), at most 60 characters",
    ),
    "description": (
        lambda v: _is_plain(v, max_length=200),
        "it must be one line of at most 200 characters with no quotes, backslashes or "
        "control characters",
    ),
    "author_name": (
        lambda v: _is_plain(v, max_length=100),
        "it must be a non-empty name of at most 100 characters with no quotes, backslashes "
        "or control characters",
    ),
    "author_email": (
        lambda v: bool(EMAIL.fullmatch(v)),
        "it must be an e-mail address such as you@example.com",
    ),
    **{
        field: (choices.__contains__, f"it must be one of {', '.join(choices)}")
        for field, choices in CHOICES.items()
    },
}


def validate(answers: Mapping[str, str]) -> list[str]:
    """One error line per answer that breaks its rule; an empty list means all are valid."""
    return [
        f"error: {field} {answers[field]!r} is not valid: {rule}."
        for field, (is_valid, rule) in RULES.items()
        if not is_valid(answers[field])
    ]


def main() -> int:
    answers = {field: unquote(value) for field, value in ENCODED_ANSWERS.items()}
    errors = validate(answers)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
