"""cascade's version is the one ``pyproject.toml`` declares."""
import tomllib
from pathlib import Path

import cascade
from cascade.version import __version__


def test_package_version_is_pyprojects():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert __version__ == pyproject["project"]["version"]
    assert cascade.__version__ == __version__
