"""McNemar's exact test and the paired bootstrap against scipy and cases worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.significance import (add_holm, compare_predictions, holm_adjust, mcnemar_exact, mcnemar_p,
                                   paired_bootstrap, read_predictions)

scipy_stats = pytest.importorskip("scipy.stats")


def pairs(b: int, c: int, both: int = 0, neither: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with b images only A gets right, c only B, and the concordant rest."""
    a = [1] * b + [0] * c + [1] * both + [0] * neither
    bb = [0] * b + [1] * c + [1] * both + [0] * neither
    return np.array(a, bool), np.array(bb, bool)


def test_mcnemar_by_hand():
    # b = 1, c = 6: P[X <= 1] for X ~ Bin(7, 1/2) is (1 + 7) / 128, two-sided 16/128.
    a, b = pairs(1, 6, both=20, neither=5)
    assert mcnemar_exact(a, b) == (1, 6, pytest.approx(0.125, abs=1e-15))
    # b = c: the most likely outcome, p = 1 (capped, not 2 * P[X <= b] > 1)
    assert mcnemar_p(3, 3) == 1.0
    # no discordant pairs: nothing to test
    assert mcnemar_p(0, 0) == 1.0
    # b = 0, c = 5: 2 / 32
    assert mcnemar_p(0, 5) == pytest.approx(1 / 16, abs=1e-15)
    # the concordant images do not change p
    assert mcnemar_exact(*pairs(1, 6))[2] == mcnemar_exact(*pairs(1, 6, both=500, neither=40))[2]


@pytest.mark.parametrize("b,c", [(0, 1), (2, 9), (13, 4), (40, 61), (250, 199), (1200, 1290)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    expected = scipy_stats.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_p(b, c) == mcnemar_p(c, b)


def test_mcnemar_rejects_unpaired_input():
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1], [1, 1])


def test_bootstrap_degenerate_cases_by_hand():
    # A right everywhere, B wrong everywhere: every resample has difference 1.
    assert paired_bootstrap(np.ones(30, bool), np.zeros(30, bool), n_resamples=500) == (1.0, 1.0, 1.0)
    # identical correctness: the paired difference is 0 in every resample, whatever the accuracy
    same = np.arange(40) % 3 == 0
    assert paired_bootstrap(same, same, n_resamples=500) == (0.0, 0.0, 0.0)


def test_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(5)
    a = rng.random(150) < 0.7
    b = a.copy()
    flip = rng.choice(150, 12, replace=False)
    b[flip] = ~b[flip]
    first = paired_bootstrap(a, b, n_resamples=10_000, seed=3)
    assert paired_bootstrap(a, b, n_resamples=10_000, seed=3) == first
    other = paired_bootstrap(a, b, n_resamples=10_000, seed=4)   # another seed: the same bounds up to one image
    assert other[1] == pytest.approx(first[1], abs=1.01 / 150) and other[2] == pytest.approx(first[2], abs=1.01 / 150)
    # Pairing matters: the differences are confined to 12 images, so the paired interval is far
    # narrower than the interval of two independent accuracies would be.
    diff, low, high = first
    assert diff == pytest.approx(a.mean() - b.mean())
    assert high - low < 0.12   # independent resampling of the two accuracies gives about 0.2 here


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(11)
    n = 200
    a = rng.random(n) < 0.72
    b = np.where(rng.random(n) < 0.8, a, rng.random(n) < 0.6)
    diff, low, high = paired_bootstrap(a, b, n_resamples=10_000, seed=0)
    ref = scipy_stats.bootstrap((a.astype(float), b.astype(float)), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                                paired=True, vectorized=True, n_resamples=10_000, method="percentile",
                                confidence_level=0.95, random_state=np.random.default_rng(1))
    assert diff == pytest.approx(a.mean() - b.mean())
    # Both are Monte-Carlo estimates of the same percentiles: they agree to about one image in n.
    assert low == pytest.approx(ref.confidence_interval.low, abs=1.5 / n)
    assert high == pytest.approx(ref.confidence_interval.high, abs=1.5 / n)
    assert low < diff < high


def write_predictions(path, rows, classes=("joy", "sad")):
    lines = ["path,label,predicted," + ",".join(f"p_{c}" for c in classes)]
    for p, label, pred in rows:
        probs = ["0.9" if c == pred else "0.1" for c in classes]
        lines.append(",".join([p, label, pred, *probs]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_predictions_pairs_images_by_path(tmp_path):
    truth = {f"img{i}.jpg": ("joy" if i % 2 else "sad") for i in range(10)}
    flip = {"joy": "sad", "sad": "joy"}
    # method: right on all but img0; baseline: wrong on img1..img4 (listed in another order)
    m = write_predictions(tmp_path / "m.csv", [(p, t, flip[t] if p == "img0.jpg" else t) for p, t in truth.items()])
    wrong = {"img1.jpg", "img2.jpg", "img3.jpg", "img4.jpg"}
    base_rows = [(p, t, flip[t] if p in wrong else t) for p, t in reversed(list(truth.items()))]
    bl = write_predictions(tmp_path / "b.csv", base_rows)
    pm, pb = read_predictions(m), read_predictions(bl)
    assert pm.classnames == ["joy", "sad"] and pm.accuracy == pytest.approx(0.9)
    row = compare_predictions(pm, pb, method_name="cascade", baseline_name="shallow", seed_label=0,
                              method_run="runs/a", baseline_run="runs/b", n_resamples=2000)
    assert row.n == 10
    assert row.acc_diff == pytest.approx(0.9 - 0.6)
    assert row.mcnemar_p == pytest.approx(mcnemar_p(4, 1))   # b = 4 only the method, c = 1 only the baseline
    assert row.ci_low <= row.acc_diff <= row.ci_high


def test_compare_refuses_different_images_or_labels(tmp_path):
    a = read_predictions(write_predictions(tmp_path / "a.csv", [("x.jpg", "joy", "joy"), ("y.jpg", "sad", "joy")]))
    b = read_predictions(write_predictions(tmp_path / "b.csv", [("x.jpg", "joy", "joy"), ("z.jpg", "sad", "sad")]))
    with pytest.raises(ValueError, match="not the same images"):
        compare_predictions(a, b, method_name="m", baseline_name="b", seed_label=0, method_run="", baseline_run="")
    c = read_predictions(write_predictions(tmp_path / "c.csv", [("x.jpg", "joy", "joy"), ("y.jpg", "joy", "joy")]))
    with pytest.raises(ValueError, match="different true labels"):
        compare_predictions(a, c, method_name="m", baseline_name="b", seed_label=0, method_run="", baseline_run="")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.jpg,joy\n")
    with pytest.raises(ValueError, match="bad.csv.*header"):
        read_predictions(bad)


def test_compare_rejects_a_repeated_path_in_either_file(tmp_path):
    rows = [("x.jpg", "joy", "joy"), ("y.jpg", "sad", "joy")]
    once = read_predictions(write_predictions(tmp_path / "once.csv", rows))
    twice = read_predictions(write_predictions(tmp_path / "twice.csv", rows + [("y.jpg", "sad", "sad")]))
    for method, baseline in ((twice, once), (once, twice)):
        with pytest.raises(ValueError, match=r"twice.csv: image 'y.jpg' is listed twice"):
            compare_predictions(method, baseline, method_name="m", baseline_name="b", seed_label=0, method_run="",
                                baseline_run="")


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.2 × 3 = 0.6; 0.6 × 2 = 1.2 → capped at 1; 0.7 × 1 = 0.7 → 1 (monotone)
    assert holm_adjust([0.6, 0.2, 0.7]) == pytest.approx([1.0, 0.6, 1.0])
    assert holm_adjust([0.04]) == [0.04] and holm_adjust([]) == []
    # ties keep their order and get the same value: 0.01 × 2 = 0.02 and max(0.02, 0.01 × 1)
    assert holm_adjust([0.01, 0.01]) == pytest.approx([0.02, 0.02])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust([0.5, 1.5])


def test_holm_families_are_the_unordered_pairs_of_one_seed():
    def both(a, b, seed, p):
        return [{"method": a, "baseline": b, "seed": seed, "mcnemar_p": p},
                {"method": b, "baseline": a, "seed": seed, "mcnemar_p": p}]

    rows = [*both("A", "B", 0, 0.01), *both("A", "C", 0, 0.04), *both("B", "C", 0, 0.03), *both("A", "B", 1, 0.02)]
    add_holm(rows)
    got = {(r["method"], r["baseline"], r["seed"]): r["p_holm"] for r in rows}
    # seed 0: three pairs, not six rows: 0.01 × 3 = 0.03; 0.03 × 2 = 0.06; max(0.06, 0.04 × 1) = 0.06
    assert got[("A", "B", 0)] == got[("B", "A", 0)] == pytest.approx(0.03)
    assert got[("B", "C", 0)] == got[("C", "B", 0)] == pytest.approx(0.06)
    assert got[("A", "C", 0)] == got[("C", "A", 0)] == pytest.approx(0.06)
    # seed 1: a family of one pair keeps its p
    assert got[("A", "B", 1)] == got[("B", "A", 1)] == pytest.approx(0.02)
    assert all(r["p_holm"] >= r["mcnemar_p"] for r in rows)
