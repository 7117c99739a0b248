"""The analysis subcommands of ``cascade``, one module per command:

    cascade cka          analysis.cli.cka          CKA heatmaps of a run
    cascade sigma-sweep  analysis.cli.sigma_sweep  metrics over a grid of NGA σ from cached features
    cascade report       analysis.cli.report       a run's or an ablation's figures and tables for a paper
    cascade explain      analysis.cli.explain      per-stage explanation maps for image files

:func:`register` is the ``cascade.commands`` entry point. Every handler runs under
``cascade.commands.run_guarded`` (see :mod:`analysis.cli.common`), so a known user error is
one line on stderr and exit status 2, as for cascade's own subcommands.
"""
from __future__ import annotations

from . import cka, explain, report, sigma_sweep

COMMANDS = (cka, sigma_sweep, report, explain)


def register(subparsers) -> None:
    """Add ``cka``, ``sigma-sweep``, ``report`` and ``explain`` to ``cascade``'s subcommands."""
    for command in COMMANDS:
        command.register(subparsers)
