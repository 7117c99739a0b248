"""The model configs cascade ships (``cascade-tiny``), made known to open_clip's factory."""
from __future__ import annotations

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
TINY_MODEL = "cascade-tiny"
_registered = False


def register_model_configs() -> None:
    """Make the bundled configs (``cascade-tiny``) known to open_clip's factory, once."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
