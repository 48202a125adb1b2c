"""Write the requirements of every baked variant to a file, for `make install`.

The template's test environment runs the baked projects' code and tools, so it
installs exactly what their pyproject.toml files ask for, nothing typed twice:
each database's dependencies, the optional extras and the "dev" dependency group.

Run it from the repository's root as `python -m tools.baked_requirements TARGET`, so
that it reads the choices from `tests/variants.py`, as the bake tests do.
"""

import sys
import tempfile
import tomllib
from pathlib import Path

from cookiecutter.main import cookiecutter

from tests.variants import CHOICES, TEMPLATE


def requirements_of(database: str, output: Path) -> list[str]:
    """The dependencies, extras and dev group of the project baked with `database`."""
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(output / database),
        extra_context={"database": database},
    )
    pyproject = tomllib.loads((Path(project) / "pyproject.toml").read_text())
    dev = pyproject["dependency-groups"]["dev"]
    if not all(isinstance(requirement, str) for requirement in dev):
        # The requirements file this writes has no way to say {include-group = ...}.
        raise SystemExit(
            "error: the baked dev group includes another group; list its requirements "
            "in it one by one, or expand the include in tools/baked_requirements.py."
        )
    # The extras too (tracing): the tests exercise what they turn on.
    extras = pyproject["project"].get("optional-dependencies", {}).values()
    optional = [requirement for extra in extras for requirement in extra]
    return [*pyproject["project"]["dependencies"], *optional, *dev]


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as output:
        wanted: dict[str, None] = {}
        # Only the database changes what a baked project depends on.
        for database in CHOICES["database"]:
            wanted.update(dict.fromkeys(requirements_of(database, Path(output))))
    target.write_text("\n".join(wanted) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
