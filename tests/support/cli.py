"""Calling the ``cascade`` command in-process, as a user would from a shell."""


def cli(*argv) -> int:
    from cascade.cli import main

    return main([str(a) for a in argv])
