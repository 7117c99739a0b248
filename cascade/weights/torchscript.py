"""Tensors by name from a TorchScript archive (OpenAI's ``clip`` ``.pt`` files), without running it.

A TorchScript archive is a zip: ``<name>/data.pkl`` pickles the module tree, ``<name>/data/<key>``
holds the raw bytes of each storage and ``<name>/code/`` the TorchScript source of every class.
The pickle is read by an unpickler that builds nothing but tensors (from those raw bytes) and
inert records of the module objects, so no code from the file ever runs. Classes whose source
defines ``__setstate__`` would rebuild themselves with code on a real load, so the stored values
may not be what that load produces: such archives are refused.
"""
from __future__ import annotations

import ast
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import WeightsError

# Storage classes a TorchScript pickle names, and the element type each holds.
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Ints OpenAI's archives keep beside the weights; open_clip models have no such tensors.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

_CLASS = re.compile(r"^class (\w+)\(")
_LIST_ATTR = re.compile(r"^  (__parameters__|__buffers__) = (\[.*\])\s*$")
_SETSTATE = re.compile(r"^  def __setstate__\(")


@dataclass
class ClassInfo:
    """What the archive's TorchScript source says about one class."""

    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    has_setstate: bool = False


class ScriptRecord:
    """An inert stand-in for a TorchScript object: its class name and its pickled state."""

    qualname = ""

    def __setstate__(self, state) -> None:  # our own method: it only keeps the state
        self.state = state


def is_torchscript(path: str | Path) -> bool:
    """A zip archive with TorchScript source in it (``torch.save`` zips have none)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n for n in zf.namelist()) and any(n.endswith("/data.pkl") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_class_infos(zf: zipfile.ZipFile, root: str, path: str) -> dict[str, ClassInfo]:
    """``qualified name -> ClassInfo`` for every class in the archive's ``code/`` folder."""
    infos: dict[str, ClassInfo] = {}
    prefix = f"{root}/code/"
    for name in zf.namelist():
        if not (name.startswith(prefix) and name.endswith(".py")):
            continue
        module = name[len(prefix):-3].replace("/", ".")
        try:
            text = zf.read(name).decode("utf-8")
        except (UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise WeightsError(f"pretrained: {path} is corrupt ({name}: {exc})") from None
        current: ClassInfo | None = None
        for line in text.splitlines():
            m = _CLASS.match(line)
            if m:
                current = infos.setdefault(f"{module}.{m.group(1)}", ClassInfo())
                continue
            if current is None:
                continue
            m = _LIST_ATTR.match(line)
            if m:
                try:
                    names = ast.literal_eval(m.group(2))
                except (ValueError, SyntaxError):
                    raise WeightsError(f"pretrained: {path} is corrupt (unreadable {m.group(1)} in {name})") from None
                setattr(current, m.group(1).strip("_"), [str(n) for n in names])
            elif _SETSTATE.match(line):
                current.has_setstate = True
    return infos


class _Unpickler(pickle.Unpickler):
    """Builds tensors from the archive's storages and ScriptRecords; refuses every other class."""

    def __init__(self, file, zf: zipfile.ZipFile, root: str, path: str, meta: bool = False):
        super().__init__(file)
        self.zf, self.root, self.path, self.meta = zf, root, path, meta
        self.storages: dict[str, torch.Tensor] = {}
        self.records: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self.rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self.records:
                self.records[qualname] = type(name, (ScriptRecord,), {"qualname": qualname})
            return self.records[qualname]
        raise WeightsError(f"pretrained: {self.path} refers to {module}.{name}, which a weights archive "
                           "has no need for; it is not loaded")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsError(f"pretrained: {self.path} is corrupt (unexpected persistent id {pid!r:.80})")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(numel, int):
            raise WeightsError(f"pretrained: {self.path} is corrupt (bad storage record {pid!r:.80})")
        key = str(key)
        if key not in self.storages:
            member = f"{self.root}/data/{key}"
            try:
                size = self.zf.getinfo(member).file_size
                raw = b"" if self.meta else self.zf.read(member)
            except KeyError:
                raise WeightsError(f"pretrained: {self.path} is truncated or corrupt (storage {member} "
                                   "is missing)") from None
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise WeightsError(f"pretrained: {self.path} is corrupt (storage {member}: {exc})") from None
            itemsize = torch.empty((), dtype=dtype).element_size()
            if size != numel * itemsize or (not self.meta and len(raw) != size):
                raise WeightsError(f"pretrained: {self.path} is truncated or corrupt (storage {member} holds "
                                   f"{size} bytes, {numel * itemsize} expected)")
            if self.meta:
                self.storages[key] = torch.empty(numel, dtype=dtype, device="meta")
                return self.storages[key]
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            self.storages[key] = flat.view(dtype) if dtype != torch.uint8 else flat
        return self.storages[key]

    def rebuild_tensor(self, storage, offset, size, stride, *_ignored):
        if not isinstance(storage, torch.Tensor):
            raise WeightsError(f"pretrained: {self.path} is corrupt (a tensor without storage)")
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise WeightsError(f"pretrained: {self.path} is corrupt (tensor of size {size}, stride {stride})")
        if all(s > 0 for s in size):
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= storage.numel():
                raise WeightsError(f"pretrained: {self.path} is corrupt (a tensor reaches past its storage)")
        if storage.is_meta:
            return torch.empty(size, dtype=storage.dtype, device="meta")
        return torch.as_strided(storage, size, stride, offset).clone()


def flatten(obj: ScriptRecord, infos: dict[str, ClassInfo], path: str, prefix: str = "",
            out: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Parameters and buffers of a module record and its submodules, by dotted name."""
    out = {} if out is None else out
    info = infos.get(obj.qualname)
    if info is None:
        raise WeightsError(f"pretrained: {path} has no TorchScript source for class {obj.qualname}; not loaded")
    if info.has_setstate:
        raise WeightsError(f"pretrained: {path} is refused: its class {obj.qualname} rebuilds itself with its own "
                           "__setstate__ code, so the stored tensors may not be the weights it means")
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise WeightsError(f"pretrained: {path} is corrupt (object {obj.qualname} has no attribute mapping)")
    for name in info.parameters + info.buffers:
        value = state.get(name)
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    for name, value in state.items():
        if isinstance(value, ScriptRecord):
            flatten(value, infos, path, f"{prefix}{name}.", out)
    return out


def read_torchscript(path: str | Path, meta: bool = False) -> dict[str, torch.Tensor]:
    """The state dict stored in a TorchScript archive, without OpenAI's extra ints.

    ``meta=True`` gives tensors on the meta device (shapes and dtypes, no data read).

    Raises :class:`WeightsError` for archives that are truncated, corrupt, or whose objects
    rebuild themselves with code (``__setstate__``).
    """
    path = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise WeightsError(f"pretrained: {path} is not a TorchScript archive (no single <name>/data.pkl)")
            root = pickles[0].split("/")[0]
            if f"{root}/byteorder" in zf.namelist():
                order = zf.read(f"{root}/byteorder").decode("ascii", "replace").strip()
                if order != sys.byteorder:
                    raise WeightsError(f"pretrained: {path} stores {order}-endian tensors; this machine is "
                                       f"{sys.byteorder}-endian")
            infos = read_class_infos(zf, root, path)
            with zf.open(pickles[0]) as fh:
                try:
                    top = _Unpickler(fh, zf, root, path, meta).load()
                except WeightsError:
                    raise
                except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError,
                        AttributeError, IndexError, KeyError, RuntimeError) as exc:
                    raise WeightsError(f"pretrained: {path} is corrupt ({type(exc).__name__}: {exc})") from None
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"pretrained: {path} is truncated or corrupt (not a readable zip archive: {exc})") from None
    except OSError as exc:
        raise WeightsError(f"pretrained: cannot read {path} ({exc.strerror or exc})") from None
    if not isinstance(top, ScriptRecord):
        raise WeightsError(f"pretrained: {path} is not a TorchScript module archive")
    state = flatten(top, infos, path)
    for key in list(state):
        if key.rsplit(".", 1)[-1] in OPENAI_EXTRA_KEYS:
            del state[key]
    if not state:
        raise WeightsError(f"pretrained: {path} holds no tensors")
    return state
