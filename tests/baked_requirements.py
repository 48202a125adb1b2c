"""Write the requirements of every baked variant to a file, for `make install`.

The template's test environment runs the baked projects' code and tools, so it
installs exactly what their pyproject.toml files ask for, nothing typed twice.
"""

import sys
import tempfile
import tomllib
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
DATABASES = ("postgresql", "mysql", "sqlite")


def requirements_of(database: str, output: Path) -> list[str]:
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(output / database),
        extra_context={"database": database},
    )
    pyproject = tomllib.loads((Path(project) / "pyproject.toml").read_text())
    project_table = pyproject["project"]
    return [*project_table["dependencies"], *project_table["optional-dependencies"]["dev"]]


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as output:
        wanted: dict[str, None] = {}
        for database in DATABASES:
            wanted.update(dict.fromkeys(requirements_of(database, Path(output))))
    target.write_text("\n".join(wanted) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
