"""Shared pieces of the subcommands: turning known errors into one clear line."""
from __future__ import annotations

import sys
from contextlib import contextmanager


def known_errors() -> tuple[type[BaseException], ...]:
    from ..backbone import WeightsUnavailableError
    from ..checkpoint import CheckpointError
    from ..config import ConfigError
    from ..data import DataError
    from ..train.runfolder import RunFolderError
    from ..weights import WeightsError
    return (ConfigError, CheckpointError, DataError, RunFolderError, WeightsUnavailableError, WeightsError,
            FileNotFoundError)


class CommandFailed(Exception):
    def __init__(self, code: int):
        self.code = code


@contextmanager
def friendly_errors(command: str):
    """Known user errors print ``cascade <command>: error: ...`` and exit 2; a non-finite loss exits 3."""
    from ..train.loop import NonFiniteLossError
    try:
        yield
    except NonFiniteLossError as exc:
        print(f"cascade {command}: error: {exc}", file=sys.stderr)
        raise CommandFailed(3) from None
    except known_errors() as exc:
        print(f"cascade {command}: error: {exc}", file=sys.stderr)
        raise CommandFailed(2) from None


def run_guarded(command: str, fn, *args, **kwargs) -> int:
    try:
        with friendly_errors(command):
            return int(fn(*args, **kwargs) or 0)
    except CommandFailed as exc:
        return exc.code
