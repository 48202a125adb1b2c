"""The template's answers and the named variants that the tests and tools bake.

A plain module, free of pytest, so that `tools/baked_requirements.py` can import it too.
"""

import itertools
import json
from pathlib import Path

__all__ = ["CHOICES", "CONTEXT", "DEFAULTS", "TEMPLATE", "VARIANTS"]

TEMPLATE = Path(__file__).resolve().parents[1]
CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text())
# Every multiple-choice question with its values, the default first.
CHOICES: dict[str, list[str]] = {
    name: values
    for name, values in CONTEXT.items()
    if isinstance(values, list) and not name.startswith("_")
}
DEFAULTS = {name: values[0] for name, values in CHOICES.items()}


def _variants() -> dict[str, dict[str, str]]:
    """Name each distinct set of answers once; the all-defaults one is "default"."""
    variants = {"default": dict(DEFAULTS)}
    for version in CHOICES["python_version"]:
        variants.setdefault(f"python-{version}", {**DEFAULTS, "python_version": version})
    for database, second, example in itertools.product(
        CHOICES["database"], CHOICES["second_database"], CHOICES["include_example_api"]
    ):
        answers = {
            **DEFAULTS,
            "database": database,
            "second_database": second,
            "include_example_api": example,
        }
        name = f"{database}-second-{second}-example-{example}"
        variants.setdefault(name, answers)
    unique: dict[str, dict[str, str]] = {}
    for name, answers in variants.items():
        if answers not in unique.values():
            unique[name] = answers
    return unique


VARIANTS = _variants()
