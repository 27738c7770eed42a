"""Print the pip requirements of this project's build and of the named extras, one per line.

The Makefile installs the development environment from this, so pyproject.toml stays the one list::

    python tools/extras.py build test demo distributed   # "build": [build-system] requires
"""

import sys
import tomllib
from pathlib import Path


def requirements(groups: list[str]) -> list[str]:
    """The requirement strings of the given groups (``build``, or an optional-dependency extra)."""
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    found = list(pyproject["project"]["dependencies"])
    for group in groups:
        if group == "build":
            found += pyproject["build-system"]["requires"]
        elif group in extras:
            found += extras[group]
        else:
            raise SystemExit(f"unknown extra {group!r}; pyproject.toml has {sorted(extras)}")
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
