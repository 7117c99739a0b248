"""A run folder's checkpoints: where they are, which there are, and which name means which file.

``checkpoints/`` holds the trainer's model checkpoints (``best``, ``last``, and any
``epoch…``/``step…`` ones), its resume states (``*.train.safetensors``, not models), a
linear-probe run's probe, and checkpoints written later with a chosen σ (the σ tuner,
``cascade sigma-sweep --apply``). Each model checkpoint has a JSON beside it; a σ
checkpoint's JSON records the split its σ was chosen on (``sigma_tuned_on``), which is what
tells it apart from one the trainer selected.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import meta_path
from .folder import CHECKPOINTS, RunFolderError, read_json

SUFFIX = ".safetensors"
TRAIN_STATE_SUFFIX = ".train.safetensors"
PROBE_FILE = "linear_probe.safetensors"
TRAINER_NAMES = ("best", "last")


class MissingCheckpointError(RunFolderError, FileNotFoundError):
    """A run folder has no checkpoint of the asked name."""


def checkpoint_path(run_dir: str | os.PathLike, name: str) -> Path:
    """``<run>/checkpoints/<name>.safetensors`` (whether or not it exists)."""
    return Path(run_dir) / CHECKPOINTS / f"{name}{SUFFIX}"


def checkpoint_run_dir(checkpoint: str | os.PathLike) -> Path:
    """The run folder a checkpoint in its ``checkpoints/`` folder belongs to."""
    return Path(checkpoint).parent.parent


def is_model_checkpoint(path: str | os.PathLike) -> bool:
    """A ``.safetensors`` file holding a model, not a trainer's resume state."""
    name = Path(path).name
    return name.endswith(SUFFIX) and not name.endswith(TRAIN_STATE_SUFFIX)


def _order(path: Path) -> tuple:
    extra = (read_json(meta_path(path)) or {}).get("extra") or {}
    step = extra.get("step", extra.get("global_step"))
    epoch = extra.get("epoch")
    return (step if isinstance(step, (int, float)) else float("inf"),
            epoch if isinstance(epoch, (int, float)) else float("inf"), path.stat().st_mtime)


def iter_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Every model checkpoint of a run (not the ``*.train`` resume states), ordered by the step
    (or epoch) its JSON records, else by time."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(sorted(p for p in folder.glob(f"*{SUFFIX}") if is_model_checkpoint(p)), key=_order)


def checkpoint_names(run_dir: str | os.PathLike) -> list[str]:
    """The names of a run's model checkpoints, alphabetically (``best``, ``epoch2``, ``last``, ...)."""
    return sorted(p.name[: -len(SUFFIX)] for p in iter_checkpoints(run_dir))


def sigma_tuned_on(checkpoint: str | os.PathLike) -> str | None:
    """The split a checkpoint's σ was chosen on (σ tuner / ``apply_sigma``), from its JSON;
    None for the trainer's checkpoints and for a σ written without saying where it was chosen."""
    meta = read_json(meta_path(checkpoint))
    return meta.get("sigma_tuned_on") if isinstance(meta, dict) else None


def is_sigma_checkpoint(checkpoint: str | os.PathLike) -> bool:
    """True for a checkpoint written with a chosen σ rather than selected by the trainer."""
    meta = read_json(meta_path(checkpoint))
    return isinstance(meta, dict) and ("sigma_tuned_on" in meta or "sigma_applied" in (meta.get("extra") or {}))


def run_classnames(run_dir: str | os.PathLike) -> list[str] | None:
    """The class names a run's checkpoints were trained on (from a checkpoint's JSON), or None
    before the first checkpoint is written."""
    for path in iter_checkpoints(run_dir):
        meta = read_json(meta_path(path))
        names = meta.get("classnames") if isinstance(meta, dict) else None
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    return None


def resolve_checkpoint(run_or_checkpoint: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint file meant by a run folder and a name, or by a path.

    ``run_or_checkpoint`` is a run folder, its ``checkpoints/`` folder, or a ``.safetensors``
    file (returned as given); ``which`` is a checkpoint name (``best``, ``last``, a σ
    checkpoint's name) or a ``.safetensors`` path (returned as given). A name the run does
    not have raises :class:`MissingCheckpointError` listing the names it has.
    """
    p = Path(run_or_checkpoint)
    if p.is_file() or p.suffix == SUFFIX:
        return p
    if str(which).endswith(SUFFIX):
        return Path(which)
    for cand in (checkpoint_path(p, which), p / f"{which}{SUFFIX}"):
        if cand.is_file():
            return cand
    raise MissingCheckpointError(f"{p}: no checkpoint {which!r} (the run has: {checkpoint_names(p) or 'none'})")


def training_checkpoints(run_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """The checkpoints training wrote (``best``, ``last``, ``epoch-<k>``), one per global step, in
    training order, each with a label naming every checkpoint saved at that step
    (e.g. ``epoch-2 = best``).

    Checkpoints written with a chosen σ (:func:`is_sigma_checkpoint`) are left out: they carry
    the step of the checkpoint they were derived from, not a step of their own.
    """
    by_step: dict[object, list[Path]] = {}
    for path in iter_checkpoints(run_dir):
        if is_sigma_checkpoint(path):
            continue
        meta = read_json(meta_path(path))
        step = ((meta.get("extra") if isinstance(meta, dict) else None) or {}).get("global_step")
        by_step.setdefault(step if isinstance(step, int) else path.stem, []).append(path)
    rank = {"last": 1, "best": 2}   # a step's point is drawn from its epoch checkpoint, else last, else best
    out = []
    for paths in by_step.values():
        paths = sorted(paths, key=lambda p: (rank.get(p.stem, 0), p.stem))
        out.append((paths[0], " = ".join(p.stem for p in paths)))
    return out
