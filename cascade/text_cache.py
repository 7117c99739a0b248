"""A disk cache of CLIP text embeddings, keyed by what they are computed from.

The key hashes the text tower's identity (open_clip model name, weights tag or file with
its size and modification time, the seed of random weights, QuickGELU, open_clip's
version) together with the exact list of texts. Editing, adding, removing or reordering a
sentence gives a new key, so a changed descriptions file is never served stale
embeddings; a dataset's name plays no part.

Entries are safetensors files (never pickles) under ``$CASCADE_TEXT_CACHE`` or
``~/.cache/cascade/text-embeddings``; a cache that cannot be written is skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .classifier import encode_texts
from .fileio import atomic_path

CACHE_ENV = "CASCADE_TEXT_CACHE"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "cascade" / "text-embeddings"


def model_identity(backbone) -> dict[str, Any]:
    """What the text embeddings of ``backbone`` depend on, as plain JSON values."""
    info = backbone.info
    out: dict[str, Any] = {"model": info.name, "pretrained": info.pretrained, "quick_gelu": info.quick_gelu,
                           "open_clip": open_clip.__version__}
    if info.random_weights:
        out["seed"] = info.seed
    elif info.pretrained and os.path.isfile(info.pretrained):
        st = os.stat(info.pretrained)
        out["weights_file"] = {"path": os.path.abspath(info.pretrained), "size": st.st_size,
                               "mtime_ns": st.st_mtime_ns}
    return out


def cache_key(identity: dict[str, Any], texts: list[str]) -> str:
    """SHA-256 of the model identity and the exact texts, in order."""
    blob = json.dumps({"model": identity, "texts": list(texts)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cached_text_embeddings(backbone, texts: list[str], cache_dir: str | os.PathLike | None = None,
                           ) -> torch.Tensor:
    """L2-normalised text embeddings of ``texts`` [len(texts), E] (float32, on the CPU),
    read from the cache when this model has encoded exactly these texts before."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{cache_key(model_identity(backbone), texts)}.safetensors"
    if path.is_file():
        try:
            emb = load_file(str(path))["embeddings"]
            if emb.shape[0] == len(texts):
                return emb
        except (OSError, SafetensorError, KeyError):
            pass   # a damaged entry is recomputed and replaced below
    emb = encode_texts(backbone, texts).cpu().contiguous()
    try:
        with atomic_path(path) as tmp:
            save_file({"embeddings": emb}, str(tmp), metadata={"format": "cascade-text-embeddings",
                                                               "count": str(len(texts))})
    except OSError:
        pass
    return emb
