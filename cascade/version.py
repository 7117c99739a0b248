"""The version of cascade, the same as ``pyproject.toml``'s: a module of its own, so that the
modules ``cascade/__init__.py`` imports can read it at their top without an import circle."""
__version__ = "0.1.0"
