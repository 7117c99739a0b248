from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score, recall_score

from cascade.metrics import (
    DISTRIBUTION_METRICS,
    EVAL_METRICS,
    METRIC_DIRECTIONS,
    METRIC_DISPLAY_NAMES,
    EmotionMetrics,
    classification_metrics,
    column_label,
    display_name,
    distribution_metrics,
    higher_is_better,
    is_known_metric,
    is_unit_interval,
    split_stage,
)


def _one_hot_scores(pred: list[int], c: int) -> np.ndarray:
    return np.eye(c)[pred]


def test_classification_by_hand():
    y = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y, _one_hot_scores([0, 1, 1, 1, 0, 2], 3))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == pytest.approx([0.5, 1.0, 0.5])
    assert m["uar"] == pytest.approx(2 / 3)
    assert m["per_class_f1"] == pytest.approx([0.5, 0.8, 2 / 3])
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_argmax_ties_go_to_lowest_index():
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    m = classification_metrics([0, 1, 0], logits)
    assert m["accuracy"] == 1.0
    acc = EmotionMetrics(3)
    acc.update(torch.tensor(logits), torch.tensor([0, 1, 0]))
    assert acc.compute()["accuracy"] == 1.0


def test_agrees_with_sklearn_including_absent_classes():
    rng = np.random.default_rng(0)
    for trial in range(5):
        y = rng.integers(0, 5, 80)
        y[y == 4] = 3  # class 4 never true; sometimes predicted
        logits = rng.normal(size=(80, 6))
        pred = logits.argmax(1)
        m = classification_metrics(y, logits)
        assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
        assert m["accuracy"] == pytest.approx((pred == y).mean())
        assert m["uar"] == pytest.approx(recall_score(y, pred, average="macro", labels=np.unique(y)))
        np.testing.assert_array_equal(m["confusion"], sk_confusion(y, pred, labels=range(6)))
        assert math.isnan(m["per_class_recall"][4])


def test_distribution_metrics_by_hand():
    p = [[0.5, 0.5, 0.0]]
    q = [[0.25, 0.25, 0.5]]
    m = distribution_metrics(p, q)
    assert m["kl"] == pytest.approx(math.log(2))
    assert m["chebyshev"] == pytest.approx(0.5)
    assert m["clark"] == pytest.approx(math.sqrt(1 + 2 / 9))
    assert m["canberra"] == pytest.approx(5 / 3)
    assert m["cosine"] == pytest.approx(1 / math.sqrt(3))
    assert m["intersection"] == pytest.approx(0.5)


def test_distribution_metric_edge_cases():
    same = distribution_metrics([[0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]])
    assert same == pytest.approx({"kl": 0, "chebyshev": 0, "clark": 0, "canberra": 0, "cosine": 1, "intersection": 1})
    disjoint = distribution_metrics([[1.0, 0.0, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0]])
    # Not scaled by the class count: two disjoint one-hots give Clark sqrt(2) and Canberra 2.
    assert disjoint["clark"] == pytest.approx(math.sqrt(2))
    assert disjoint["canberra"] == pytest.approx(2.0)
    assert disjoint["kl"] == pytest.approx(-math.log(1e-12))
    assert np.isfinite(disjoint["kl"])
    two = distribution_metrics([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], [[0.25, 0.25, 0.5], [0.0, 1.0, 0.0]])
    assert two["kl"] == pytest.approx(math.log(2) / 2)
    with pytest.raises(ValueError, match="negative"):
        distribution_metrics([[0.5, 0.5]], [[2.0, -1.0]])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        distribution_metrics([[0.5, 0.5]], [[0.3, 0.3, 0.4]])


def _batches(seed: int = 0, n: int = 90, c: int = 6):
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(n, c)) * 2, dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, c, n))
    dists = torch.tensor(rng.dirichlet(np.ones(c), n), dtype=torch.float32)
    return logits, labels, dists


def _one_shot(logits, labels, dists) -> dict[str, float]:
    probs = torch.softmax(logits.double(), dim=1).numpy()
    out = {k: v for k, v in classification_metrics(labels.numpy(), logits.numpy()).items()
           if k in ("accuracy", "macro_f1", "uar")}
    out.update(distribution_metrics(dists.double().numpy(), probs))
    return out


def test_accumulator_over_batches_equals_one_shot():
    logits, labels, dists = _batches()
    acc = EmotionMetrics(6)
    for s in range(0, 90, 16):
        acc.update(logits[s : s + 16], labels[s : s + 16], dists[s : s + 16])
    got = acc.compute()
    expected = _one_shot(logits, labels, dists)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert got["num_samples"] == 90
    assert set(EVAL_METRICS) <= set(got)
    assert acc.confusion() == classification_metrics(labels.numpy(), logits.numpy())["confusion"]
    acc.reset()
    assert acc.num_samples == 0 and math.isnan(acc.compute()["accuracy"])


def test_merge_and_state_transport_equal_one_shot():
    logits, labels, dists = _batches(seed=3)
    ranks = [EmotionMetrics(6) for _ in range(3)]
    for r, m in enumerate(ranks):
        sl = slice(r * 30, (r + 1) * 30)
        m.update(logits[sl], labels[sl], dists[sl])
    whole = EmotionMetrics(6)
    whole.update(logits, labels, dists)

    merged = EmotionMetrics(6).merge(ranks[0]).merge(ranks[1]).merge(ranks[2])
    assert merged.compute() == pytest.approx(whole.compute(), rel=1e-12)

    summed = sum(m.state_tensor() for m in ranks)
    gathered = EmotionMetrics(6)
    gathered.load_state_tensor(summed)
    assert gathered.compute() == pytest.approx(whole.compute(), rel=1e-12)

    restored = EmotionMetrics(6)
    restored.load_state_dict(whole.state_dict())
    assert restored.compute() == whole.compute()
    with pytest.raises(ValueError):
        EmotionMetrics(5).merge(whole)


def test_without_dists_distribution_metrics_are_nan():
    logits, labels, _ = _batches()
    m = EmotionMetrics(6)
    m.update(logits, labels)
    out = m.compute()
    assert all(math.isnan(out[k]) for k in DISTRIBUTION_METRICS)
    assert 0 <= out["accuracy"] <= 1


def test_probability_inputs():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    truth = np.array([[0.6, 0.3, 0.1], [0.0, 0.2, 0.8]])
    m = EmotionMetrics(3, inputs="probs")
    m.update(p, [0, 2], truth)
    out = m.compute()
    assert out["kl"] == pytest.approx(distribution_metrics(truth, p)["kl"])
    assert out["accuracy"] == 1.0


def test_directions():
    assert higher_is_better("accuracy") and higher_is_better("cosine") and higher_is_better("intersection")
    assert not higher_is_better("kl") and not higher_is_better("canberra")
    assert not higher_is_better("loss")          # checkpoint selection may use the loss
    assert not higher_is_better("stage2.kl") and higher_is_better("stage1.accuracy")
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        higher_is_better("acuracy")


def test_display_names_are_one_per_metric():
    assert display_name("macro_f1") == "macro-F1" and display_name("uar") == "UAR"
    assert display_name("kl") == "KL ↓"                  # lower is better, marked
    assert display_name("stage2.accuracy") == "stage 2 accuracy"
    assert display_name("images_per_s") == "images per s"   # outside the registry: readable still
    assert set(METRIC_DISPLAY_NAMES) == set(METRIC_DIRECTIONS)
    lower = {m for m, d in METRIC_DIRECTIONS.items() if d == "min"}
    assert {m for m, label in METRIC_DISPLAY_NAMES.items() if label.endswith("↓")} == lower
    assert is_unit_interval("stage3.uar") and is_unit_interval("accuracy")
    assert not is_unit_interval("kl") and not is_unit_interval("clark") and not is_unit_interval("loss")


def test_stage_prefix_and_known_names():
    assert split_stage("stage12.macro_f1") == (12, "macro_f1")
    assert split_stage("accuracy") == (None, "accuracy")
    assert split_stage("stages.kl") == (None, "stages.kl")
    assert is_known_metric("stage3.uar") and is_known_metric("intersection")
    assert not is_known_metric("stage3.uar", stages=False)
    assert not is_known_metric("loss")       # evaluations report no loss column
    assert set(EVAL_METRICS) | {"loss"} == set(METRIC_DIRECTIONS)


def test_mean_std_over_finite_numbers_only():
    from cascade.metrics import mean_std

    mean, std = mean_std([0.5, 0.7, None, float("nan"), "n/a", True])
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1414213562)   # sample std
    assert mean_std(["0.25"]) == (0.25, None)         # numbers read from CSV text; one value: std n/a
    assert mean_std([None, float("inf")]) == (None, None)


def test_column_label_names_metric_words_only():
    assert column_label("test macro_f1") == "test macro-F1"
    assert column_label("kl std") == "KL ↓ std"
    assert column_label("val uar") == "val UAR"
    assert column_label("test stage1 accuracy") == "test stage1 accuracy"
    assert column_label("best epoch") == "best epoch"
