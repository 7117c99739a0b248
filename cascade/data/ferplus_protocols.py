"""FER+'s reference label protocols (Barsoum et al., "Training deep networks for facial expression
recognition with crowd-sourced label distribution", ICMI 2016).

Each FER+ face has 10 votes spread over 10 entries: the 8 emotions, unknown and NF (not a face).
The published protocols first drop every entry that got a single vote, as an outlier, and then
decide from the remaining votes (their total is ``T``) whether the face is kept and what it is
trained on:

- ``majority``: kept when its top entry holds more than half of ``T``; the target is that
  emotion, one-hot. Published FER+ accuracies use this protocol on the official test folder.
- ``crossentropy``: the top entries, taken a vote count at a time (entries that tie go in
  together), until they hold at least 75 % of ``T``, never more than 3 entries; kept when they
  hold more than half of ``T``; the target is their votes, normalised (a soft target).
- ``probability``: the same faces and distribution as ``crossentropy``, but training sees one
  label drawn from that distribution per epoch (:func:`draw_labels`).
- ``multi_target``: every entry with at least 30 % of ``T``; kept when they hold more than half
  of ``T``; the target spreads equal weight over them.

In every protocol a face is dropped when its top entry (or one of the entries tied at the top)
is unknown or NF, and when no entry has more than one vote. Unknown or NF votes that are not at
the top still count in ``T`` and towards the 75 % cover, but a target only ever holds emotions:
their weight is the emotions' share of the kept entries, renormalised.

``votes`` is not a published protocol: every face whose largest raw vote count is an emotion
(ties going to the earlier column), trained on all 8 emotion votes normalised.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .batch_augment import DRAWS, uniforms

PROTOCOLS = ("votes", "majority", "probability", "crossentropy", "multi_target")
PUBLISHED = ("majority", "probability", "crossentropy", "multi_target")
NUM_EMOTIONS = 8                 # FER+'s emotion columns come first, then unknown and NF
NON_EMOTION_NAMES = ("unknown", "NF (not a face)")
COVER = 0.75                     # crossentropy / probability: the share the top entries should reach
MAX_ENTRIES = 3                  # ... with at most this many entries
MULTI_SHARE = 0.30               # multi_target: an entry's share to count as a target
# The label draw of ``probability`` reads the column after the augmentation's draws of the same
# (seed, epoch, item) key, so the two never share a random number.
LABEL_DRAW_COLUMN = DRAWS


@dataclass(frozen=True)
class Decision:
    """What a protocol makes of one face: ``target`` (8 emotion weights summing to 1) when kept,
    else the ``reason`` it is dropped."""

    target: np.ndarray | None
    reason: str = ""

    @property
    def kept(self) -> bool:
        return self.target is not None


def _entry_name(i: int, names: Sequence[str]) -> str:
    return names[i] if i < NUM_EMOTIONS else NON_EMOTION_NAMES[i - NUM_EMOTIONS]


def _emotion_target(weights: np.ndarray, entries: Sequence[int]) -> np.ndarray | None:
    target = np.zeros(NUM_EMOTIONS, dtype=np.float64)
    for i in entries:
        if i < NUM_EMOTIONS:
            target[i] = weights[i]
    total = target.sum()
    return target / total if total > 0 else None


def apply_protocol(counts: Sequence[float], protocol: str, names: Sequence[str]) -> Decision:
    """``counts``: the 10 vote counts in FER+'s column order; ``names``: the 8 emotion names (for reasons)."""
    if protocol not in PUBLISHED:
        raise ValueError(f"unknown FER+ protocol {protocol!r}; choose from {list(PUBLISHED)}")
    raw = np.asarray(counts, dtype=np.float64)
    votes = np.where(raw == 1, 0.0, raw)              # single votes are outliers
    total = float(votes.sum())
    singles = int(np.count_nonzero(raw == 1))
    after = f"{total:g} votes left after dropping {singles} single vote(s)"
    if total <= 0:
        return Decision(None, f"no entry has more than one vote ({after})")
    top = float(votes.max())
    tied = [int(i) for i in np.flatnonzero(votes == top)]
    if any(i >= NUM_EMOTIONS for i in tied):
        which = next(i for i in tied if i >= NUM_EMOTIONS)
        return Decision(None, f"top entry is {_entry_name(which, names)}: {top:g} of {after}")

    if protocol == "majority":
        if len(tied) == 1 and top > total / 2:
            return Decision(np.eye(NUM_EMOTIONS)[tied[0]])
        return Decision(None, f"no majority: the top entry ({' = '.join(_entry_name(i, names) for i in tied)}) "
                              f"has {top:g} of {after}, not more than half")

    if protocol == "multi_target":
        entries = [int(i) for i in np.flatnonzero(votes >= MULTI_SHARE * total)]
        held = float(votes[entries].sum())
        if held <= total / 2:
            return Decision(None, f"the entries with at least {MULTI_SHARE:.0%} of the votes hold {held:g} of "
                                  f"{after}, not more than half")
        return Decision(_emotion_target(np.ones_like(votes), entries))

    entries: list[int] = []
    for level in sorted({v for v in votes.tolist() if v > 0}, reverse=True):
        group = [int(i) for i in np.flatnonzero(votes == level)]
        if len(entries) + len(group) > MAX_ENTRIES:
            break
        entries += group
        if votes[entries].sum() >= COVER * total:
            break
    held = float(votes[entries].sum()) if entries else 0.0
    if held <= total / 2:
        return Decision(None, f"the top entries (at most {MAX_ENTRIES}, ties together) hold {held:g} of {after}, "
                              "not more than half")
    target = _emotion_target(votes, entries)
    return Decision(target) if target is not None else Decision(None, "the kept entries hold no emotion vote")


def draw_labels(dists: np.ndarray, keys: Sequence[int]) -> np.ndarray:
    """One class per row of ``dists`` ([n, C], rows summing to 1), drawn by inverting the row's
    cumulative distribution at a uniform that depends on that row's key only: with keys from
    ``(seed, epoch, item)`` the draw is a pure function of those three."""
    d = np.asarray(dists, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != len(keys):
        raise ValueError(f"draw_labels: {d.shape} distributions for {len(keys)} keys")
    if d.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    u = uniforms(keys, LABEL_DRAW_COLUMN + 1)[:, LABEL_DRAW_COLUMN]
    cdf = np.cumsum(d, axis=1)
    cdf /= cdf[:, -1:]
    # The first class whose cumulative weight passes u: never one of zero weight, since its
    # cumulative weight equals the one before it.
    picked = (cdf <= u[:, None]).sum(axis=1)
    return np.minimum(picked, d.shape[1] - 1).astype(np.int64)
