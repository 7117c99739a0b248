"""The one error guard of every subcommand: known user errors become one clear line and an exit status."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from ..backbone import WeightsUnavailableError
from ..checkpoint import CheckpointError
from ..config import ConfigError
from ..data import DataError
from ..runfolder import RunFolderError
from ..train.loop import NonFiniteLossError


def known_errors() -> tuple[type[BaseException], ...]:
    return (ConfigError, CheckpointError, DataError, RunFolderError, WeightsUnavailableError, FileNotFoundError)


class CommandFailed(Exception):
    def __init__(self, code: int):
        self.code = code


def _message(exc: BaseException):
    # str(KeyError("x")) is "'x'": the key's own text reads better in one line
    return exc.args[0] if isinstance(exc, KeyError) and exc.args else exc


@contextmanager
def friendly_errors(command: str, also: tuple[type[BaseException], ...] = ()):
    """Known user errors (and those in ``also``) print ``cascade <command>: error: ...`` and exit 2;
    a non-finite loss exits 3."""
    try:
        yield
    except NonFiniteLossError as exc:
        print(f"cascade {command}: error: {exc}", file=sys.stderr)
        raise CommandFailed(3) from None
    except (*known_errors(), *also) as exc:
        print(f"cascade {command}: error: {_message(exc)}", file=sys.stderr)
        raise CommandFailed(2) from None


def run_guarded(command: str, fn, *args, also: tuple[type[BaseException], ...] = (), **kwargs) -> int:
    """``fn(*args, **kwargs)`` as the exit status of ``cascade <command>``; see :func:`friendly_errors`."""
    try:
        with friendly_errors(command, also):
            return int(fn(*args, **kwargs) or 0)
    except CommandFailed as exc:
        return exc.code
