"""``cascade report --ablation`` on hand-made ablation folders: an empty test split, Holm marks."""
from __future__ import annotations

import csv

import pytest
from support.ablation import write_ablation

from analysis.paper_report import ablation_significance, ablation_tables, report_ablation
from analysis.significance import holm_adjust


def test_empty_test_split_skips_its_pairs_with_a_note(tmp_path):
    """Seed 0's split has no test images: every run of it writes a header-only predictions file."""
    methods = {"cascade": 4, "shallow": 1, "zeroshot": 1}
    abl = write_ablation(tmp_path / "abl", methods, seeds=2, empty_test={(m, 0) for m in methods})
    out = report_ablation(abl, tmp_path / "report", formats=(), n_resamples=200)
    index = out.read_text()
    for m in methods:
        assert f"{m} seed 0: " in index
    assert "lists no images (the test split is empty), so its pairs are not compared" in index
    rows = list(csv.DictReader((tmp_path / "report" / "significance.csv").open()))
    assert {r["seed"] for r in rows} == {"1"} and len(rows) == 6       # seed 1: 3 pairs, both directions
    assert (tmp_path / "report" / "ablation.tex").is_file()


def test_one_empty_predictions_file_leaves_the_others_compared(tmp_path):
    methods = {"cascade": 4, "shallow": 1, "zeroshot": 1}
    abl = write_ablation(tmp_path / "abl", methods, seeds=1, empty_test={("zeroshot", 0)})
    sig, notes = ablation_significance(abl, n_resamples=200)
    assert [n for n in notes if n.startswith("zeroshot seed 0: ")]
    assert {frozenset((r["method"], r["baseline"])) for r in sig} == {frozenset(("cascade", "shallow"))}
    # a family of the one pair left keeps its p
    assert all(r["p_holm"] == pytest.approx(r["mcnemar_p"]) for r in sig)


def test_marks_and_captions_use_holm(tmp_path):
    abl = write_ablation(tmp_path / "abl", seeds=2)
    sig, _ = ablation_significance(abl, n_resamples=200)
    for seed in (0, 1):
        family = {frozenset((r["method"], r["baseline"])): r["mcnemar_p"] for r in sig if r["seed"] == seed}
        assert len(family) == 28                                       # 8 methods: 28 pairs per seed
        expected = dict(zip(family, holm_adjust(list(family.values()))))
        for r in (r for r in sig if r["seed"] == seed):
            assert r["p_holm"] == pytest.approx(expected[frozenset((r["method"], r["baseline"]))])
    # a mark needs p_holm < 0.05 against the reference in every seed; a raw p alone is not enough
    for r in sig:
        if r["method"] == "shallow" and r["baseline"] == "cascade":
            r["mcnemar_p"], r["p_holm"] = 0.001, 0.2
        if r["method"] == "zeroshot" and r["baseline"] == "cascade":
            r["mcnemar_p"], r["p_holm"] = 0.001, 0.01
    main, _ = ablation_tables(abl, sig)
    marked = {main.rows[i]["method"] for (i, _c) in main.markers}
    assert "zeroshot" in marked and "shallow" not in marked
    note = " ".join(main.notes)
    assert "Holm-adjusted over the 28 method pairs of each seed" in note and "per pair, uncorrected" in note
    out = report_ablation(abl, tmp_path / "report", formats=(), n_resamples=200)
    assert "Holm-adjusted over the method pairs of each seed (p_holm)" in out.read_text()
    header = next(csv.reader((tmp_path / "report" / "significance.csv").open()))
    assert header[7:9] == ["mcnemar_p", "p_holm"]
