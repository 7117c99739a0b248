"""Centred kernel alignment (CKA) between layer representations.

Two families of estimators live here.

Full-batch functions (``linear_cka``, ``linear_cka_gram``, ``rbf_cka``) take two
feature matrices X [n, p] and Y [n, q] for the same n examples and return a Python
float.  With ``debiased=False`` they compute the classic estimator of Kornblith et
al. (2019),

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),  HSIC(K, L) = tr(K H L H),

which for the linear kernel on column-centred features is
``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``.  With ``debiased=True`` every HSIC is replaced by
the unbiased U-statistic of Song et al. (2012).  With K̃, L̃ the Gram matrices with
their diagonals set to zero and 1 the all-ones vector,

    HSIC_u(K, L) = [ tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1 ] / (n(n-3)).

The biased estimator is pulled upwards by the dimension of the features when n is
small; the unbiased one is not, at the price of being slightly negative at times.

``MinibatchCKA`` follows Nguyen, Raghu & Kornblith (2021): HSIC_u is an unbiased
estimate of the population HSIC for any batch, so summing it over minibatches and
forming the ratio once at the end gives a consistent CKA estimate from data that
never fits in one Gram matrix.  (Averaging per-batch CKA values instead is a known
mistake: a ratio of means is not a mean of ratios.)  It computes a whole
[La, Lb] layer-by-layer matrix per batch with a handful of batched matrix products.

Every computation runs in float64 whatever the input dtype, because the unbiased
estimator subtracts terms of similar size and float32 loses several digits there.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Union

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MinibatchCKA",
    "benchmark_cka",
    "cka_matrix",
    "linear_cka",
    "linear_cka_gram",
    "rbf_cka",
]

ArrayLike = Union[torch.Tensor, np.ndarray]
# A batch of layer features: one [B, d_i] matrix per layer, or all layers stacked.
LayerFeatures = Union[torch.Tensor, np.ndarray, Sequence[ArrayLike]]

# The cost of one batch is dominated by the Gram matrices, L·B²·d multiply-adds, so
# the cost per example grows linearly with B, while a larger B lowers the variance
# of each batch's estimate (see the tolerance study in tests/analysis/test_cka.py).
# At 256 the 13×13, n=10,000, d=768 matrix took about 0.75 s on two idle CPU cores
# (0.55 s at 128; about 2× longer at 512 and 4-5× at 1,000, per example cost
# growing with B and the Grams outgrowing the caches).
DEFAULT_BATCH_SIZE = 256

_MIN_BATCH = 4  # HSIC_u divides by n(n-3) and (n-1)(n-2).


# ---------------------------------------------------------------------------
# conversions and small helpers
# ---------------------------------------------------------------------------


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def _as_matrix(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    """[n, ...] input as a float64 [n, features] tensor; trailing dims (tokens) are flattened."""
    t = _as_tensor(x)
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape [n, features], got {tuple(t.shape)}")
    if device is not None:
        t = t.to(device)
    return t.reshape(t.shape[0], -1).to(torch.float64)


def _centre_columns(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-2, keepdim=True)


def _check_same_n(x: torch.Tensor, y: torch.Tensor, min_n: int, why: str) -> int:
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"X and Y must hold the same examples: got n={n} and n={y.shape[0]}")
    if n < min_n:
        raise ValueError(f"{why} needs at least {min_n} examples, got n={n}")
    return n


def _check_pair(x: torch.Tensor, y: torch.Tensor, debiased: bool) -> int:
    if debiased:
        return _check_same_n(x, y, _MIN_BATCH, "the unbiased HSIC estimator")
    return _check_same_n(x, y, 2, "CKA")


def _ratio(xy: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor) -> float:
    xy_f, xx_f, yy_f = float(xy), float(xx), float(yy)
    for name, value in (("X", xx_f), ("Y", yy_f)):
        if not math.isfinite(value):
            raise ValueError(f"HSIC({name}, {name}) is not finite: the features hold NaN or inf")
        if value <= 0.0:
            raise ValueError(
                f"HSIC({name}, {name}) = {value:.3g} is not positive: {name} is constant "
                "(or, for the unbiased estimator, has too little variance for this n), "
                "so CKA is undefined"
            )
    return xy_f / (math.sqrt(xx_f) * math.sqrt(yy_f))


# ---------------------------------------------------------------------------
# HSIC estimators
# ---------------------------------------------------------------------------


def _zero_diagonal(k: torch.Tensor) -> torch.Tensor:
    """Copy of k ([..., n, n]) with zeroed diagonal(s); the caller's matrix is untouched."""
    k = k.clone()
    k.diagonal(dim1=-2, dim2=-1).zero_()
    return k


def _unbiased_hsic_pairs(ka: torch.Tensor, kb: torch.Tensor) -> torch.Tensor:
    """HSIC_u for every pair of stacked Gram matrices.

    ``ka`` [La, n, n] and ``kb`` [Lb, n, n] must be symmetric with zero diagonals.
    Returns [La, Lb].  Symmetry turns tr(K̃L̃) into the inner product of the
    flattened matrices and 1ᵀK̃L̃1 into the inner product of row sums, so all
    La·Lb values come out of two matrix products.
    """
    n = ka.shape[-1]
    trace = ka.reshape(ka.shape[0], -1) @ kb.reshape(kb.shape[0], -1).T
    rows_a, rows_b = ka.sum(dim=-1), kb.sum(dim=-1)
    sum_a, sum_b = rows_a.sum(dim=-1), rows_b.sum(dim=-1)
    return (
        trace
        + torch.outer(sum_a, sum_b) / ((n - 1) * (n - 2))
        - (2.0 / (n - 2)) * (rows_a @ rows_b.T)
    ) / (n * (n - 3))


class _BatchStats(NamedTuple):
    """What HSIC_u needs from one batch of L layers, without the full Gram matrices.

    For K = XXᵀ with zeroed diagonal K̃: ``gram`` [L, P] holds the upper-triangular
    blocks of K̃, off-diagonal blocks scaled by √2, so that gram_a · gram_b
    = Σ_ij K̃_a[i, j] K̃_b[i, j] = tr(K̃_a K̃_b); ``rows`` [L, B] is K̃1 and
    ``total`` [L] is 1ᵀK̃1.
    """

    gram: torch.Tensor
    rows: torch.Tensor
    total: torch.Tensor

    @property
    def n(self) -> int:
        return self.rows.shape[-1]


def _gram_panels(b: int) -> int:
    # Row panels of ≥ 64 examples keep each product large enough for BLAS to run
    # near full speed; four panels compute 5/8 of the Gram matrix instead of all.
    return max(1, min(4, b // 64))


def _batch_stats(x: torch.Tensor) -> _BatchStats:
    """Statistics of centred float64 features x [L, B, d] (see :class:`_BatchStats`).

    K is symmetric, so only the panels K[rows of panel p, columns from p on] are
    computed; those products are where the time goes (L·B²·d multiply-adds for
    the full matrix, 5/8 of that with four panels).  Row sums of K̃ are gathered
    from the same panels: a row's entries left of its panel are the column sums
    of the off-diagonal blocks of earlier panels.
    """
    num_layers, b, _ = x.shape
    panels = _gram_panels(b)
    bounds = [round(i * b / panels) for i in range(panels + 1)]
    rows = x.new_zeros(num_layers, b)
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        panel = torch.bmm(x[:, start:stop], x[:, start:].transpose(1, 2))
        width = stop - start
        panel[:, :, :width].diagonal(dim1=-2, dim2=-1).zero_()
        rows[:, start:stop] += panel.sum(dim=-1)
        if stop < b:
            off_diagonal = panel[:, :, width:]
            rows[:, stop:] += off_diagonal.sum(dim=-2)
            off_diagonal *= math.sqrt(2.0)
        pieces.append(panel.reshape(num_layers, -1))
    gram = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
    return _BatchStats(gram, rows, rows.sum(dim=-1))


def _hsic_from_stats(a: _BatchStats, b: _BatchStats) -> torch.Tensor:
    """HSIC_u [La, Lb] for every layer pair of one batch (same examples on both sides)."""
    n = a.n
    return (
        a.gram @ b.gram.T
        + torch.outer(a.total, b.total) / ((n - 1) * (n - 2))
        - (2.0 / (n - 2)) * (a.rows @ b.rows.T)
    ) / (n * (n - 3))


def _hsic_self_from_stats(a: _BatchStats) -> torch.Tensor:
    """Diagonal of ``_hsic_from_stats(a, a)`` ([L]) without the L×L products."""
    n = a.n
    return (
        a.gram.square().sum(dim=-1)
        + a.total.square() / ((n - 1) * (n - 2))
        - (2.0 / (n - 2)) * a.rows.square().sum(dim=-1)
    ) / (n * (n - 3))


def _unbiased_hsic_linear(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """HSIC_u for linear kernels straight from features, never forming an n×n matrix.

    With K = XXᵀ, L = YYᵀ, d_i = ‖x_i‖² and e_i = ‖y_i‖²:
    tr(K̃L̃) = ‖YᵀX‖²_F − Σ d_i e_i, K̃1 = X(Xᵀ1) − d and 1ᵀK̃1 = Σ(K̃1).
    Cost O(n·p·q) instead of O(n²(p+q)).
    """
    n = x.shape[0]
    dx, dy = x.square().sum(dim=1), y.square().sum(dim=1)
    trace = (y.T @ x).square().sum() - (dx * dy).sum()
    rows_x = x @ x.sum(dim=0) - dx
    rows_y = y @ y.sum(dim=0) - dy
    return (
        trace
        + rows_x.sum() * rows_y.sum() / ((n - 1) * (n - 2))
        - (2.0 / (n - 2)) * (rows_x @ rows_y)
    ) / (n * (n - 3))


def _centre_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I − 11ᵀ/n, written as row/column mean removal."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def _cka_from_grams(k: torch.Tensor, l: torch.Tensor, debiased: bool) -> float:
    if debiased:
        kl = torch.stack([_zero_diagonal(k), _zero_diagonal(l)])
        h = _unbiased_hsic_pairs(kl, kl)
        return _ratio(h[0, 1], h[0, 0], h[1, 1])
    kc, lc = _centre_gram(k), _centre_gram(l)
    # The common 1/(n-1)² factor of tr(KHLH) cancels in the ratio.
    return _ratio((kc * lc).sum(), kc.square().sum(), lc.square().sum())


# ---------------------------------------------------------------------------
# full-batch CKA
# ---------------------------------------------------------------------------


def linear_cka(X: ArrayLike, Y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA in feature space: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X, Y.

    Args:
        X: [n, p] features (torch tensor or NumPy array; extra trailing dims flattened).
        Y: [n, q] features of the same n examples.
        debiased: use the unbiased HSIC (Song et al. 2012) in numerator and
            denominator; computed from features without any n×n matrix, so it
            stays cheap for large n.  Needs n ≥ 4.

    Returns:
        CKA as a Python float; in [0, 1] for the biased form, can be slightly
        negative (or above 1) for the debiased one.

    Raises:
        ValueError: mismatched n, too few examples, or a constant input.
    """
    x = _centre_columns(_as_matrix(X, "X"))
    y = _centre_columns(_as_matrix(Y, "Y")).to(x.device)
    if debiased:
        _check_pair(x, y, debiased)
        return _ratio(
            _unbiased_hsic_linear(x, y), _unbiased_hsic_linear(x, x), _unbiased_hsic_linear(y, y)
        )
    _check_pair(x, y, debiased)
    return _ratio(
        (y.T @ x).square().sum(), (x.T @ x).square().sum(), (y.T @ y).square().sum()
    )


def linear_cka_gram(X: ArrayLike, Y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA through the n×n Gram matrices K = XXᵀ, L = YYᵀ.

    Agrees with :func:`linear_cka` to rounding; it exists as an independent route
    (and is the cheaper one when the feature dimension exceeds n).  Memory is
    O(n²).  Arguments and errors as for :func:`linear_cka`.
    """
    x = _centre_columns(_as_matrix(X, "X"))
    y = _centre_columns(_as_matrix(Y, "Y")).to(x.device)
    _check_pair(x, y, debiased)
    return _cka_from_grams(x @ x.T, y @ y.T, debiased)


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median that averages the two middle values for even counts, like NumPy."""
    m = values.numel()
    lower = torch.kthvalue(values, (m + 1) // 2).values
    if m % 2:
        return lower
    return 0.5 * (lower + torch.kthvalue(values, m // 2 + 1).values)


def _rbf_gram(x: torch.Tensor, sigma_frac: float, name: str) -> torch.Tensor:
    sq_norms = x.square().sum(dim=1)
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0)
    sq_dist.fill_diagonal_(0.0)
    n = x.shape[0]
    upper = torch.triu_indices(n, n, offset=1, device=x.device)
    median_dist = _median(sq_dist[upper[0], upper[1]].sqrt())
    sigma = sigma_frac * float(median_dist)
    if not sigma > 0.0:
        raise ValueError(
            f"RBF bandwidth for {name} is {sigma!r}: the median pairwise distance is zero "
            "(most examples are identical) or sigma_frac is not positive"
        )
    return torch.exp(-sq_dist / (2.0 * sigma * sigma))


def rbf_cka(
    X: ArrayLike, Y: ArrayLike, sigma_frac: float = 0.8, debiased: bool = False
) -> float:
    """CKA with Gaussian (RBF) kernels k(a, b) = exp(−‖a−b‖² / (2σ²)).

    σ is chosen per representation as ``sigma_frac`` × the median Euclidean
    distance between distinct examples (pairs i < j), so the kernel adapts to each
    layer's scale.  Memory is O(n²).  Other arguments and errors as for
    :func:`linear_cka`.
    """
    x = _centre_columns(_as_matrix(X, "X"))
    y = _centre_columns(_as_matrix(Y, "Y")).to(x.device)
    _check_pair(x, y, debiased)
    return _cka_from_grams(_rbf_gram(x, sigma_frac, "X"), _rbf_gram(y, sigma_frac, "Y"), debiased)


# ---------------------------------------------------------------------------
# minibatch CKA
# ---------------------------------------------------------------------------


def _layer_list_device(features: LayerFeatures) -> torch.device | None:
    if isinstance(features, torch.Tensor):
        return features.device
    if isinstance(features, (list, tuple)) and features and isinstance(features[0], torch.Tensor):
        return features[0].device
    return None


class MinibatchCKA:
    """Accumulates unbiased HSIC over minibatches for every layer pair at once.

    For each batch of B ≥ 4 examples, every layer's features are centred over the
    batch (HSIC_u is exactly invariant to that shift; centring only spares float64
    digits) and their Gram matrices K_i = X_i X_iᵀ, diagonals zeroed, are formed
    for all layers at once with batched products.  Since K is symmetric only its
    upper-triangular blocks are computed, and K̃1, 1ᵀK̃1 come from the features
    (see ``_batch_stats``).  HSIC_u (Song et al. 2012) for all layer pairs then
    takes two small matrix products.  Three float64 accumulators are *summed*
    over batches:

        S_ab[i, j] = Σ_batches HSIC_u(K_a,i, K_b,j)     [La, Lb]
        S_aa[i]    = Σ_batches HSIC_u(K_a,i, K_a,i)     [La]
        S_bb[j]    = Σ_batches HSIC_u(K_b,j, K_b,j)     [Lb]

    and ``compute()`` returns S_ab / sqrt(S_aa S_bb) (Nguyen, Raghu & Kornblith
    2021).  Because HSIC_u is unbiased per batch, the result converges to the
    population CKA as batches accumulate, whatever the batch size; unequal batch
    sizes are fine.  Batches should be drawn at random: a batch of one class only
    measures within-class similarity.

    When ``features_b`` is omitted (or is the very same object as
    ``features_a``) the comparison is of one model with itself: the Gram matrices
    are built once and the La×La matrix comes out of one product.

    Cross terms can be slightly negative, and CKA can leave [0, 1] slightly, because
    HSIC_u is an unbiased rather than a non-negative estimate; values are reported
    as they are.  Self terms must end up positive, otherwise ``compute`` raises.

    Args:
        num_layers_a: number of layers La on side a.
        num_layers_b: number of layers Lb on side b; defaults to La.
        device: where to compute and keep the accumulators.  ``None`` follows the
            first batch's device (CPU for NumPy input).  Works on CPU or CUDA.

    Distributed use: each rank updates with its own batches, then calls
    ``all_reduce()`` once before ``compute()``.  ``state_dict``/``merge`` combine
    accumulators by hand (e.g. from checkpoints or worker processes).
    """

    def __init__(
        self,
        num_layers_a: int,
        num_layers_b: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if num_layers_a < 1 or (num_layers_b is not None and num_layers_b < 1):
            raise ValueError("the number of layers must be at least 1")
        self.num_layers_a = int(num_layers_a)
        self.num_layers_b = int(num_layers_b if num_layers_b is not None else num_layers_a)
        self.device = torch.device(device) if device is not None else None
        self.reset()

    # -- state --------------------------------------------------------------

    def reset(self) -> None:
        """Forget all batches seen so far."""
        dev = self.device or torch.device("cpu")
        self.hsic_ab = torch.zeros(self.num_layers_a, self.num_layers_b, dtype=torch.float64, device=dev)
        self.hsic_aa = torch.zeros(self.num_layers_a, dtype=torch.float64, device=dev)
        self.hsic_bb = torch.zeros(self.num_layers_b, dtype=torch.float64, device=dev)
        self.num_batches = 0
        self.num_samples = 0

    @property
    def _acc_device(self) -> torch.device:
        return self.hsic_ab.device

    def _move_accumulators(self, device: torch.device) -> None:
        self.hsic_ab = self.hsic_ab.to(device)
        self.hsic_aa = self.hsic_aa.to(device)
        self.hsic_bb = self.hsic_bb.to(device)

    def state_dict(self) -> dict[str, Any]:
        """Accumulators (CPU copies) and counts, enough to resume or merge later."""
        return {
            "num_layers_a": self.num_layers_a,
            "num_layers_b": self.num_layers_b,
            "hsic_ab": self.hsic_ab.detach().cpu().clone(),
            "hsic_aa": self.hsic_aa.detach().cpu().clone(),
            "hsic_bb": self.hsic_bb.detach().cpu().clone(),
            "num_batches": self.num_batches,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace this accumulator's state with ``state`` (from :meth:`state_dict`)."""
        self._check_compatible(state)
        dev = self._acc_device
        self.hsic_ab = state["hsic_ab"].to(dev, torch.float64).clone()
        self.hsic_aa = state["hsic_aa"].to(dev, torch.float64).clone()
        self.hsic_bb = state["hsic_bb"].to(dev, torch.float64).clone()
        self.num_batches = int(state["num_batches"])
        self.num_samples = int(state["num_samples"])

    def _check_compatible(self, state: dict[str, Any]) -> None:
        shape = (int(state["num_layers_a"]), int(state["num_layers_b"]))
        if shape != (self.num_layers_a, self.num_layers_b):
            raise ValueError(
                f"cannot combine a {shape[0]}×{shape[1]} CKA accumulator with a "
                f"{self.num_layers_a}×{self.num_layers_b} one"
            )

    def merge(self, other: MinibatchCKA | dict[str, Any]) -> MinibatchCKA:
        """Add another accumulator's sums (same layer counts) into this one; returns self.

        HSIC sums are additive, so merging accumulators fed disjoint batches equals
        one accumulator fed all of them.
        """
        state = other.state_dict() if isinstance(other, MinibatchCKA) else other
        self._check_compatible(state)
        dev = self._acc_device
        self.hsic_ab += state["hsic_ab"].to(dev, torch.float64)
        self.hsic_aa += state["hsic_aa"].to(dev, torch.float64)
        self.hsic_bb += state["hsic_bb"].to(dev, torch.float64)
        self.num_batches += int(state["num_batches"])
        self.num_samples += int(state["num_samples"])
        return self

    def all_reduce(self, group: Any = None) -> MinibatchCKA:
        """Sum the accumulators over all ranks of ``torch.distributed``; returns self.

        A no-op when torch.distributed is unavailable or not initialised.  Call it
        exactly once after the last update: a second call would add the already
        summed totals again.  With the NCCL backend the packed buffer travels
        through the current CUDA device.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        counts = torch.tensor([self.num_batches, self.num_samples], dtype=torch.float64, device=self._acc_device)
        flat = torch.cat([self.hsic_ab.reshape(-1), self.hsic_aa, self.hsic_bb, counts])
        if "nccl" in str(dist.get_backend(group)).lower():
            flat = flat.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat = flat.to(self._acc_device)
        la, lb = self.num_layers_a, self.num_layers_b
        self.hsic_ab = flat[: la * lb].reshape(la, lb).clone()
        self.hsic_aa = flat[la * lb : la * lb + la].clone()
        self.hsic_bb = flat[la * lb + la : la * lb + la + lb].clone()
        # float64 holds integers exactly up to 2**53, far beyond any batch count.
        self.num_batches = int(flat[-2].item())
        self.num_samples = int(flat[-1].item())
        return self

    # -- accumulation -------------------------------------------------------

    def _stats(self, features: LayerFeatures, num_layers: int, name: str) -> _BatchStats:
        """Centre one side's batch in float64 and reduce it to :class:`_BatchStats`."""
        dev = self._acc_device
        if isinstance(features, (list, tuple)):
            if len(features) != num_layers:
                raise ValueError(f"{name}: expected {num_layers} layers, got {len(features)}")
            mats = [_as_matrix(f, f"{name}[{i}]", dev) for i, f in enumerate(features)]
            sizes = {m.shape[0] for m in mats}
            if len(sizes) != 1:
                raise ValueError(f"{name}: all layers must hold the same batch, got sizes {sorted(sizes)}")
            n = sizes.pop()
        else:
            t = _as_tensor(features)
            if t.ndim < 3:
                raise ValueError(f"{name}: a stacked batch must have shape [L, B, d], got {tuple(t.shape)}")
            if t.shape[0] != num_layers:
                raise ValueError(f"{name}: expected {num_layers} layers, got {t.shape[0]}")
            n = t.shape[1]
            mats = None
        if n < _MIN_BATCH:
            raise ValueError(
                f"{name}: a batch of n={n} examples is too small; the unbiased HSIC estimator "
                f"needs n >= {_MIN_BATCH} (it divides by n(n-3) and (n-1)(n-2))"
            )
        if mats is None:
            t = t.to(dev).reshape(t.shape[0], n, -1)
            # Mean accumulated in float64, then one promoting subtraction: a single
            # pass that yields a fresh float64 batch, never a view of the caller's.
            return _batch_stats(t - t.mean(dim=1, keepdim=True, dtype=torch.float64))
        if len({m.shape[1] for m in mats}) == 1:
            stacked = torch.stack(mats)
            stacked.sub_(stacked.mean(dim=1, keepdim=True))  # torch.stack copied: safe in place
            return _batch_stats(stacked)
        # Layers of different widths: one layer at a time; P depends only on B, so
        # the per-layer statistics stack.
        per_layer = [_batch_stats(_centre_columns(m).unsqueeze(0)) for m in mats]
        return _BatchStats(*(torch.cat(parts) for parts in zip(*per_layer)))

    @torch.no_grad()
    def update(self, features_a: LayerFeatures, features_b: LayerFeatures | None = None) -> None:
        """Add one batch.

        Args:
            features_a: side a's features for this batch: a list of La tensors or
                arrays [B, d_i] (widths may differ), or one [La, B, d] tensor.
                Trailing dims beyond d (e.g. tokens) are flattened.
            features_b: side b's features for the same B examples, in the same
                forms; omit (or pass ``features_a`` itself) to compare a model with
                itself, which needs La == Lb and computes the Grams once.

        Raises:
            ValueError: wrong layer count, mismatched batch sizes, or B < 4.
        """
        same = features_b is None or features_b is features_a
        if same and self.num_layers_a != self.num_layers_b:
            raise ValueError(
                "features_b is required when num_layers_a != num_layers_b "
                f"({self.num_layers_a} vs {self.num_layers_b})"
            )
        if self.device is None and self.num_batches == 0:
            first_device = _layer_list_device(features_a)
            if first_device is not None:
                self._move_accumulators(first_device)
        sa = self._stats(features_a, self.num_layers_a, "features_a")
        n = sa.n
        if same:
            h = _hsic_from_stats(sa, sa)
            self_terms = h.diagonal()
            self.hsic_ab += h
            self.hsic_aa += self_terms
            self.hsic_bb += self_terms
        else:
            sb = self._stats(features_b, self.num_layers_b, "features_b")
            if sb.n != n:
                raise ValueError(f"features_a and features_b hold different batch sizes: {n} vs {sb.n}")
            self.hsic_ab += _hsic_from_stats(sa, sb)
            self.hsic_aa += _hsic_self_from_stats(sa)
            self.hsic_bb += _hsic_self_from_stats(sb)
        self.num_batches += 1
        self.num_samples += n

    def compute(self) -> torch.Tensor:
        """CKA matrix [La, Lb] (float64, on the accumulator device) from the sums so far.

        Raises:
            ValueError: no batch was added (e.g. forward hooks that never fired),
                a sum is NaN/inf (non-finite features), or a layer's self-HSIC sum is
                not positive (constant features, or too little data to estimate it);
                the message names the layer.  The square root is only taken after
                this check, so it never sees a negative number.
        """
        if self.num_batches == 0:
            raise ValueError(
                "MinibatchCKA.compute() called before any update(): no features were "
                "accumulated (did the forward hooks fire?)"
            )
        for side, acc in (("a", self.hsic_aa), ("b", self.hsic_bb)):
            finite = torch.isfinite(acc)
            if not bool(finite.all()):
                layer = int((~finite).nonzero()[0])
                raise ValueError(f"HSIC sum of layer {layer} on side {side} is not finite: NaN or inf in its features")
            nonpositive = acc <= 0
            if bool(nonpositive.any()):
                layer = int(nonpositive.nonzero()[0])
                raise ValueError(
                    f"HSIC sum of layer {layer} on side {side} is {float(acc[layer]):.3g} <= 0, so "
                    "CKA is undefined: its features are constant, or too few examples were "
                    "seen for the unbiased estimate to be positive"
                )
        if not bool(torch.isfinite(self.hsic_ab).all()):
            raise ValueError("a cross-layer HSIC sum is not finite: NaN or inf in the features")
        return self.hsic_ab / (self.hsic_aa.sqrt()[:, None] * self.hsic_bb.sqrt()[None, :])


# ---------------------------------------------------------------------------
# convenience driver and benchmark
# ---------------------------------------------------------------------------


def _num_examples(features: LayerFeatures, name: str) -> int:
    if isinstance(features, (list, tuple)):
        if not features:
            raise ValueError(f"{name} holds no layers")
        sizes = {int(_as_tensor(f).shape[0]) for f in features}
        if len(sizes) != 1:
            raise ValueError(f"{name}: layers hold different numbers of examples: {sorted(sizes)}")
        return sizes.pop()
    t = _as_tensor(features)
    if t.ndim < 3:
        raise ValueError(f"{name} must have shape [L, n, d] (or be a list of [n, d_i]), got {tuple(t.shape)}")
    return int(t.shape[1])


def _num_layers(features: LayerFeatures) -> int:
    return len(features) if isinstance(features, (list, tuple)) else int(_as_tensor(features).shape[0])


def _take(features: LayerFeatures, idx: torch.Tensor | slice) -> LayerFeatures:
    if isinstance(features, (list, tuple)):
        out = []
        for f in features:
            t = _as_tensor(f)
            out.append(t[idx] if isinstance(idx, slice) else t[idx.to(t.device)])
        return out
    t = _as_tensor(features)
    return t[:, idx] if isinstance(idx, slice) else t.index_select(1, idx.to(t.device))


def _batch_indices(n: int, batch_size: int, shuffle: bool, seed: int) -> list[torch.Tensor | slice]:
    # Near-equal batches of at least batch_size (n // batch_size of them) so the tail
    # never forms a batch too small for HSIC_u.
    num_batches = max(1, n // batch_size)
    if shuffle:
        gen = torch.Generator().manual_seed(seed)
        return list(torch.tensor_split(torch.randperm(n, generator=gen), num_batches))
    bounds = torch.tensor_split(torch.arange(n), num_batches)
    return [slice(int(b[0]), int(b[-1]) + 1) for b in bounds]


def cka_matrix(
    features_a: LayerFeatures,
    features_b: LayerFeatures | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    shuffle: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Layer-by-layer minibatch CKA matrix of precomputed features.

    Args:
        features_a: [La, n, d] tensor/array or a list of La [n, d_i] matrices.
        features_b: the same for side b (same n examples, same order); ``None``
            compares side a with itself.
        batch_size: target batch size; n is split into n // batch_size near-equal
            batches (each ≥ batch_size, so no undersized tail).
        shuffle: draw batches from a fixed random permutation (``seed``) rather
            than in order, so that data sorted by class or source does not turn the
            estimate into a within-group one.
        device: where to compute; default follows the features.

    Returns:
        float64 tensor [La, Lb].
    """
    if batch_size < _MIN_BATCH:
        raise ValueError(f"batch_size must be at least {_MIN_BATCH}, got {batch_size}")
    n = _num_examples(features_a, "features_a")
    same = features_b is None or features_b is features_a
    if not same and _num_examples(features_b, "features_b") != n:
        raise ValueError("features_a and features_b must hold the same examples")
    if n < _MIN_BATCH:
        raise ValueError(f"need at least {_MIN_BATCH} examples for the unbiased HSIC estimator, got n={n}")
    la = _num_layers(features_a)
    lb = la if same else _num_layers(features_b)
    acc = MinibatchCKA(la, lb, device=device)
    for idx in _batch_indices(n, batch_size, shuffle, seed):
        batch_a = _take(features_a, idx)
        acc.update(batch_a, None if same else _take(features_b, idx))
    return acc.compute()


def benchmark_cka(
    n: int = 10_000,
    d: int = 768,
    layers: int = 13,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time :func:`cka_matrix` on a layers×layers matrix of random float32 features.

    Features are drawn once (seeded, not timed) as a random walk over layers, so
    neighbouring layers are similar like a residual stream's.  One small warm-up
    call absorbs one-off start-up costs (thread pools, CUDA context).

    Returns:
        dict with ``seconds`` (best of ``repeats``), ``seconds_median``, the sizes,
        ``num_batches``, ``device``, ``threads`` and ``torch_version``.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    feats = torch.empty(layers, n, d)
    feats[0] = torch.randn(n, d, generator=gen)
    for i in range(1, layers):
        feats[i] = 0.8 * feats[i - 1] + 0.6 * torch.randn(n, d, generator=gen)
    feats = feats.to(dev)

    def _sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    warm = min(n, 2 * batch_size)
    cka_matrix(feats[:, :warm], batch_size=batch_size)
    _sync()
    times = []
    result = None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = cka_matrix(feats, batch_size=batch_size)
        _sync()
        times.append(time.perf_counter() - start)
    assert result is not None
    return {
        "seconds": min(times),
        "seconds_median": statistics.median(times),
        "n": n,
        "d": d,
        "layers": layers,
        "batch_size": batch_size,
        "num_batches": max(1, n // batch_size),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "diagonal_max_error": float((result.diagonal() - 1.0).abs().max()),
    }
