"""The ``cascade`` subcommands: one module per command, sharing one error guard (:func:`run_guarded`)."""
from .guard import run_guarded

__all__ = ["run_guarded"]
