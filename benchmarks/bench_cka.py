"""Time a layer×layer minibatch CKA matrix, and compare with torch-cka when installed.

    python benchmarks/bench_cka.py                 # 13×13, n=10,000, d=768
    python benchmarks/bench_cka.py --n 2000 --layers 4

torch-cka (pip name ``torch-cka``, AntixK) hooks a model's layers and runs a
DataLoader; here it is fed the same precomputed features through identity
layers and exactly the same minibatches as ours, so both compute the same
estimator and the matrices can be compared entry by entry.  Install it without
letting it touch torch: ``pip install --no-deps torch-cka``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import types
import warnings
from pathlib import Path

import torch

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.cka import DEFAULT_BATCH_SIZE, benchmark_cka, cka_matrix  # noqa: E402


def import_torch_cka():
    """torch_cka, or None when it is not installed.

    torch-cka imports matplotlib at module level for its plotting helper only;
    when matplotlib is absent, stand-in modules let the CKA class import, and the
    plotting helper (never called here) is the only thing that would break.
    """
    try:
        import torch_cka

        return torch_cka
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in ("matplotlib", "mpl_toolkits"):
            return None
    stubs = {}
    for name in ("matplotlib", "matplotlib.pyplot", "mpl_toolkits", "mpl_toolkits.axes_grid1"):
        if name not in sys.modules:
            stubs[name] = sys.modules[name] = types.ModuleType(name)
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    sys.modules["mpl_toolkits"].axes_grid1 = sys.modules["mpl_toolkits.axes_grid1"]
    try:
        import torch_cka

        return torch_cka
    except ImportError:
        return None
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


class LayerBank(torch.nn.Module):
    """Replays stacked features [B, L, d] through L named identity layers for hooks."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Identity() for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            layer(x[:, i])
        return x


def make_features(n: int, d: int, layers: int, seed: int) -> torch.Tensor:
    # Same recipe as analysis.cka.benchmark_cka: a random walk over layers.
    gen = torch.Generator().manual_seed(seed)
    feats = torch.empty(layers, n, d)
    feats[0] = torch.randn(n, d, generator=gen)
    for i in range(1, layers):
        feats[i] = 0.8 * feats[i - 1] + 0.6 * torch.randn(n, d, generator=gen)
    return feats


def time_torch_cka(torch_cka, feats: torch.Tensor, batch_size: int) -> tuple[float, torch.Tensor]:
    layers, n, _ = feats.shape
    # The split cka_matrix(shuffle=False) uses: n // batch_size near-equal batches.
    batches = [b.tolist() for b in torch.tensor_split(torch.arange(n), max(1, n // batch_size))]
    dataset = torch.utils.data.TensorDataset(feats.permute(1, 0, 2))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches)
    names = [f"layers.{i}" for i in range(layers)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cka = torch_cka.CKA(
            LayerBank(layers), LayerBank(layers), "bank_a", "bank_b", names, names, device="cpu"
        )
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            cka.compare(loader)
        elapsed = time.perf_counter() - start
    return elapsed, cka.export()["CKA"].to(torch.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--layers", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-torch-cka", action="store_true")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    ours = benchmark_cka(args.n, args.d, args.layers, args.batch_size, seed=args.seed, repeats=args.repeats)
    print(
        f"analysis.cka  {ours['layers']}x{ours['layers']}, n={ours['n']}, d={ours['d']}, "
        f"batch {ours['batch_size']} ({ours['num_batches']} batches, shuffled): "
        f"best {ours['seconds']:.3f} s, median {ours['seconds_median']:.3f} s"
    )

    feats = make_features(args.n, args.d, args.layers, args.seed)
    start = time.perf_counter()
    ours_same = cka_matrix(feats, batch_size=args.batch_size, shuffle=False)
    ours_same_s = time.perf_counter() - start
    print(f"analysis.cka  same batches in order (as fed to torch-cka): {ours_same_s:.3f} s")

    torch_cka = None if args.skip_torch_cka else import_torch_cka()
    if torch_cka is None:
        print("torch-cka: not installed (pip install --no-deps torch-cka), comparison skipped")
        return 0
    theirs_s, theirs = time_torch_cka(torch_cka, feats, args.batch_size)
    print(f"torch-cka {getattr(torch_cka, '__version__', '?')}  same batches: {theirs_s:.3f} s")
    print(f"ratio torch-cka / analysis.cka (same batches): {theirs_s / ours_same_s:.1f}x")
    print(f"max |difference| between the two matrices: {float((theirs - ours_same).abs().max()):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
