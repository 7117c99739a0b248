"""The report's LaTeX tables compile with pdflatex, standalone with booktabs, in a one- and a
two-column article, with no error and no overfull box."""
from __future__ import annotations

import subprocess

import pytest
from support.ablation import write_ablation
from support.latex import compile_fragment, require_pdflatex

from analysis.paper_report import ablation_significance, ablation_tables
from analysis.tables import Table
from cascade.metrics import CLASSIFICATION_METRICS, DISTRIBUTION_METRICS


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """Eight methods, three seeds; cascade and its variants with four stages."""
    return write_ablation(tmp_path_factory.mktemp("ablation") / "abl")


def _tables(ablation, **kw):
    sig, _ = ablation_significance(ablation, n_resamples=200)
    return sig, ablation_tables(ablation, sig, **kw)


@pytest.mark.parametrize("documentclass", ["article", "twocolumn"])
def test_ablation_and_stage_tables_compile_without_overfull_boxes(ablation, tmp_path, documentclass):
    _, (main, stages) = _tables(ablation)
    for name, table in (("ablation", main), ("stages", stages)):
        errors, overfull = compile_fragment(table.to_latex(), tmp_path / name, documentclass)
        assert not errors, f"{name}.tex: {errors}"
        assert not overfull, f"{name}.tex in {documentclass}: overfull boxes of {overfull} pt"


def test_every_metric_column_still_fits(ablation, tmp_path):
    """All ten metrics cannot share one line: the columns go to stacked tabulars that each fit."""
    every = (*CLASSIFICATION_METRICS, *DISTRIBUTION_METRICS)
    _, (main, _) = _tables(ablation, metrics=every)
    tex = main.to_latex()
    assert tex.count(r"\begin{tabular}") >= 2 and tex.count("Method &") == tex.count(r"\begin{tabular}")
    for documentclass in ("article", "twocolumn"):
        errors, overfull = compile_fragment(tex, tmp_path / documentclass, documentclass)
        assert not errors and not overfull, (errors, overfull)


def test_significance_note_is_math_and_names_holm(ablation, tmp_path):
    _, (main, _) = _tables(ablation)
    tex = main.to_latex()
    assert "$p < 0.05$" in tex and "p < 0.05" not in tex.replace("$p < 0.05$", "")
    assert "Holm-adjusted" in tex and "per pair, uncorrected" in tex
    require_pdflatex()
    errors, _ = compile_fragment(tex, tmp_path, "article")
    assert not errors
    text = subprocess.run(["pdftotext", str(tmp_path / "doc-article.pdf"), "-"], capture_output=True, text=True)
    if text.returncode == 0:                                       # poppler-utils present: read the PDF back
        flat = " ".join(text.stdout.split())
        assert "p < 0.05" in flat and "¡" not in flat


def test_a_narrow_table_stays_in_one_column(tmp_path):
    t = Table(columns=["method", "accuracy"], rows=[{"method": "cascade", "accuracy": (0.5, 0.01)},
                                                   {"method": "zeroshot", "accuracy": (0.4, 0.02)}],
              metric_columns={"accuracy": "accuracy"}, caption="Two rows", notes=["Holm-adjusted p < 0.05."])
    tex = t.to_latex()
    assert tex.startswith(r"\begin{table}[t]") and r"\small" in tex
    errors, overfull = compile_fragment(tex, tmp_path, "twocolumn")
    assert not errors and not overfull, (errors, overfull)
