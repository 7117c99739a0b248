"""Data-parallel training under ``torchrun`` (nccl on GPU, gloo on CPU).

The trainable set changes between phases, which ``DistributedDataParallel`` does not
support after wrapping; instead every rank computes its share of the global batch and the
gradients are summed with one ``all_reduce`` over a flat buffer. Each rank's loss is
scaled by ``n_local / n_global``, so the summed gradient is exactly the gradient of the
global-batch mean — the same as one process with the whole batch.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def from_main(self, fn):
        """``fn()`` run on rank 0 only; every rank returns its result, or raises its exception."""
        if not self.enabled:
            return fn()
        outcome = None
        if self.is_main:
            try:
                outcome = (fn(), None)
            except Exception as exc:  # noqa: BLE001 - raised again on every rank
                outcome = (None, exc)
        value, error = self.broadcast_object(outcome)
        if error is not None:
            raise error
        return value

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """One tensor from every rank, concatenated along dim 0 in rank order (lengths may differ), on the CPU."""
        if not self.enabled:
            return t
        comm_dev = torch.device("cuda", torch.cuda.current_device()) if "nccl" in str(dist.get_backend()).lower() \
            else torch.device("cpu")
        n = torch.tensor([t.shape[0]], device=comm_dev)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(sizes, n)
        lengths = [int(s.item()) for s in sizes]
        pad = torch.zeros((max(lengths) - t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype)
        local = torch.cat([t.cpu(), pad]).to(comm_dev)
        parts = [torch.empty_like(local) for _ in lengths]
        dist.all_gather(parts, local)
        return torch.cat([p[:k].cpu() for p, k in zip(parts, lengths)])

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def current_context() -> DistContext:
    """The process group this process is already in, or a single-process context; joins nothing."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistContext()


def init_distributed(device_kind: str) -> DistContext:
    """Join the process group torchrun describes (or one already initialised by the caller)."""
    if dist.is_available() and dist.is_initialized():
        return current_context()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistContext(rank, world, local, owns_group=True)


def all_reduce_grads(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Sum the gradients of ``params`` (those that have one) over ranks in one flat buffer."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n

