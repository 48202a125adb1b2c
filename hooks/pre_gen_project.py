"""Validate the free-text answers before cookiecutter writes anything.

Each rule fails with one line that names the field, the value given and the rule,
and exits non-zero; cookiecutter then removes the half-made project directory.
"""

import re
import sys

ANSWERS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "description": {{ cookiecutter.description | tojson }},
    "author_name": {{ cookiecutter.author_name | tojson }},
    "author_email": {{ cookiecutter.author_email | tojson }},
}

SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
# Quotes, backslashes and control characters would break the TOML and Python
# files that these answers are written into.
PLAIN_TEXT = re.compile(r"[^\"\\\x00-\x1f\x7f]+")

RULES = {
    "project_name": (
        lambda v: bool(PLAIN_TEXT.fullmatch(v)) and any(c.isalpha() for c in v) and len(v) <= 80,
        "it must contain a letter, be at most 80 characters long, and hold no quotes, "
        "backslashes or control characters",
    ),
    "project_slug": (
        lambda v: bool(SLUG.fullmatch(v)) and len(v) <= 60,
        "it must start with a lowercase letter and hold only lowercase letters, digits and "
        "single hyphens between them (for example my-service), at most 60 characters",
    ),
    "description": (
        lambda v: bool(PLAIN_TEXT.fullmatch(v)) and len(v) <= 200,
        "it must be one line of at most 200 characters with no quotes, backslashes or "
        "control characters",
    ),
    "author_name": (
        lambda v: bool(PLAIN_TEXT.fullmatch(v)) and len(v) <= 100,
        "it must be a non-empty name of at most 100 characters with no quotes, backslashes "
        "or control characters",
    ),
    "author_email": (
        lambda v: bool(EMAIL.fullmatch(v)),
        "it must be an e-mail address such as you@example.com",
    ),
}


def main() -> int:
    for field, (is_valid, rule) in RULES.items():
        value = ANSWERS[field]
        if not is_valid(value):
            print(f"error: {field} {value!r} is not valid: {rule}.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
