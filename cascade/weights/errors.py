"""The one error type for weights that cannot be read or do not fit."""
from __future__ import annotations


class WeightsError(ValueError):
    """A weights file or folder that cannot be used: the message names the file and what is wrong."""
