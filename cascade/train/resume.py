"""Resumable training state without pickle: tensors in safetensors, scalars in JSON.

``checkpoints/last.train.safetensors`` holds the model's trainable tensors (``model.*``),
the optimiser moments (``optim.*``) and the RNG states (``rng.*``, uint8/int64 tensors).
The scalar state (position, best metric, lr step, metrics.jsonl length, numpy/python RNG
scalars) is stored as JSON in the same file's metadata — one file, one atomic rename, so
the position can never disagree with the tensors — and copied to ``last.train.json`` for
people to read.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..fileio import atomic_path, write_json

STATE_VERSION = 1


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state().clone()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s.clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64).copy())
    py_version, py_state, py_gauss = random.getstate()
    tensors["rng.python"] = torch.tensor(list(py_state), dtype=torch.int64)
    meta = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": py_version, "gauss_next": py_gauss}}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if "rng.numpy" in tensors and "numpy" in meta:
        m = meta["numpy"]
        np.random.set_state((m["kind"], tensors["rng.numpy"].numpy().astype(np.uint32), m["pos"],
                             m["has_gauss"], m["cached_gaussian"]))
    if "rng.python" in tensors and "python" in meta:
        m = meta["python"]
        random.setstate((m["version"], tuple(int(v) for v in tensors["rng.python"].tolist()), m["gauss_next"]))


def save_train_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> Path:
    path = Path(path)
    scalars = {"state_version": STATE_VERSION, **scalars}
    text = json.dumps(scalars)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": "cascade-train-state", "state": text})
    write_json(path.with_suffix(".json"), scalars)
    return path


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state to resume from (the run wrote no checkpoint yet)")
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key)
    if meta.get("format") != "cascade-train-state" or "state" not in meta:
        raise ValueError(f"{path}: not a cascade training state")
    return tensors, json.loads(meta["state"])
