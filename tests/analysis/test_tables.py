"""Results tables: LaTeX (booktabs), Markdown and CSV with bold best values, n/a and marks."""
import csv
import io

from analysis.tables import ABSENT, Table, format_number, latex_escape

from support.files import check_latex


def table(**kw):
    rows = [{"method": "cascade_v2", "seeds": 3, "accuracy": (0.61234, 0.01), "kl": (0.9, 0.1)},
            {"method": "shallow", "seeds": 3, "accuracy": (0.55, 0.02), "kl": (0.7, 0.05)},
            {"method": "zeroshot", "seeds": 3, "accuracy": (0.30, 0.0), "kl": (None, None)}]
    return Table(columns=["method", "seeds", "accuracy", "kl"], rows=rows,
                 metric_columns={"accuracy": "accuracy", "kl": "kl"}, caption="Results: 50% & more",
                 notes=["* differs from shallow (McNemar, p < 0.05)."], markers={(0, "accuracy"): "*"},
                 headers={"kl": "KL ↓"}, **kw)


def test_latex_is_booktabs_with_bold_best_marks_and_na():
    tex = table().to_latex()
    check_latex(tex)
    body = tex.splitlines()
    cascade = next(line for line in body if line.startswith("cascade"))
    # accuracy: higher is better, so cascade's is bold and carries the mark; KL: lower is better
    assert r"$\mathbf{0.612 \pm 0.010}^{*}$" in cascade
    assert r"\mathbf{0.700 \pm 0.050}" in next(line for line in body if line.startswith("shallow"))
    zeroshot = next(line for line in body if line.startswith("zeroshot"))
    assert zeroshot.endswith(r"n/a \\") and "nan" not in tex and "0.000 \\pm 0.000} " not in zeroshot
    assert r"cascade\_v2" in tex and r"50\% \& more" in tex            # escaped
    assert r"KL $\downarrow$" in tex
    assert r"$^{*}$ differs from shallow" in tex                         # the footnote names the mark


def test_markdown_and_csv():
    md = table().to_markdown()
    assert "| cascade_v2 | 3 | **0.612 ± 0.010*** | 0.900 ± 0.100 |" in md
    assert "| zeroshot | 3 | 0.300 ± 0.000 | n/a |" in md
    rows = list(csv.reader(io.StringIO(table().to_csv())))
    assert rows[0] == ["method", "seeds", "accuracy", "accuracy std", "kl", "kl std"]
    assert rows[3] == ["zeroshot", "3", "0.3", "0", "n/a", "n/a"]


def test_ties_are_all_bold_and_absent_cells():
    t = Table(columns=["method", "stage 1", "fused"], metric_columns={"stage 1": "accuracy", "fused": "accuracy"},
              rows=[{"method": "a", "stage 1": (0.5, 0.0), "fused": (0.6, 0.0)},
                    {"method": "b", "stage 1": ABSENT, "fused": (0.6, 0.1)}])
    assert t.best_rows("fused") == {0, 1}
    assert t.best_rows("stage 1") == set()          # a single value is nobody's best
    tex = t.to_latex()
    check_latex(tex)
    assert "---" in tex


def test_number_formatting():
    assert format_number(1e-20) == "1.00e-20"
    assert format_number(0.000123, 3) == "1.23e-04"
    assert format_number(0.5) == "0.500"
    assert format_number(None) == "n/a" and format_number(float("nan")) == "n/a"
    assert latex_escape("a_b ± c") == r"a\_b $\pm$ c"


def test_runs_export_never_bolds_a_partial_run_marks_it_and_prints_integers():
    import pandas as pd

    from analysis.tables import PARTIAL_MARK, frame_table

    # the stopped run has the lowest KL and the highest accuracy: neither may be set in bold
    df = pd.DataFrame([{"run": "done", "test accuracy": 0.5, "test kl": 0.40, "best epoch": 2.0},
                       {"run": "cut", "test accuracy": 0.9, "test kl": 0.10, "best epoch": None},
                       {"run": "other", "test accuracy": 0.6, "test kl": 0.30, "best epoch": 3.0}])
    t = frame_table(df, caption="Runs", partial=[False, True, False])
    tex = t.to_latex()
    check_latex(tex)
    cut = next(line for line in tex.splitlines() if line.startswith("cut"))
    assert "mathbf" not in cut and cut.startswith(r"cut$^{\dagger")
    assert r"\mathbf{0.6000}" in tex and r"\mathbf{0.3000}" in tex      # best among the finished runs
    done = next(line for line in tex.splitlines() if line.startswith("done"))
    assert done.endswith(r"& 2 \\") and "2.0000" not in tex             # an epoch is an integer
    assert "partial run" in tex
    md = t.to_markdown()
    assert f"| cut{PARTIAL_MARK} | 0.9000 | 0.1000 | n/a |" in md and "**0.9000**" not in md
    assert "partial run" in md


def test_one_seed_has_no_std():
    from cascade.metrics import mean_std

    t = Table(columns=["method", "accuracy"], rows=[{"method": "a", "accuracy": mean_std([0.5])},
                                                    {"method": "b", "accuracy": mean_std([0.3, 0.5])}],
              metric_columns={"accuracy": "accuracy"})
    tex, md = t.to_latex(), t.to_markdown()
    assert r"a & $\mathbf{0.500}$ \\" in tex and "0.000" not in tex
    assert "| a | **0.500** |" in md and "| b | 0.400 ± 0.141 |" in md and "one seed" in md
