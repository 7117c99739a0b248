"""``cascade report`` on a tiny ablation (2 methods × 2 seeds) and on one of its runs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.significance import mcnemar_p, read_predictions
from cascade.cli import main

from support.browser import needs_browser
from support.files import check_csv, check_latex, check_pdf, check_png, check_svg

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "synthetic-tiny.yaml"
SMALL = ["data.synthetic.num_samples=72", "model.prompt_tokens=2", "train.epochs.warmup=1",
         "train.epochs.unfreeze=0", "train.epochs.global=1", "train.batch_size=16", "train.drift.every_k_steps=2",
         "train.drift.probe_size=8"]

pytestmark = [pytest.mark.slow, needs_browser]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation") / "abl"
    args = ["ablate", "--config", str(TINY), "--methods", "cascade,zeroshot", "--seeds", "2", "--out", str(out),
            "--quiet"]
    for o in SMALL:
        args += ["--set", o]
    assert main(args) == 0
    return out


def check_file(path: Path) -> None:
    data = path.read_bytes()
    {".pdf": check_pdf, ".png": check_png, ".svg": check_svg, ".csv": check_csv,
     ".tex": lambda d, w: check_latex(d.decode(), w)}.get(path.suffix, lambda d, w: None)(data, str(path))


def test_ablation_report(ablation, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--ablation", str(ablation), "--out", str(out)]) == 0
    index = (out / "index.md").read_text()
    listed = {line.split("](")[0].lstrip("| [") for line in index.splitlines() if line.startswith("| [")}
    written = {p.name for p in out.iterdir()} - {"index.md"}
    assert listed == written                                   # index.md lists every file it wrote
    for stem in ("ablation", "stages"):
        assert {f"{stem}.tex", f"{stem}.md", f"{stem}.csv"} <= written
    for stem in ("ablation-accuracy", "stage-accuracy", "significance-vs-cascade"):
        assert {f"{stem}.pdf", f"{stem}.svg", f"{stem}.png", f"{stem}.csv"} <= written
    for p in out.iterdir():
        check_file(p)
    assert "RANDOM backbone weights" in index

    # significance.csv: every ordered pair of methods per seed, checked against the predictions files
    rows = list(csv.DictReader((out / "significance.csv").open()))
    assert list(rows[0]) == ["method", "baseline", "seed", "n", "acc_diff", "ci_low", "ci_high", "mcnemar_p",
                             "p_holm", "method_run", "baseline_run"]
    # two methods: one pair per seed, so Holm leaves each p as it is
    assert all(float(r["p_holm"]) == pytest.approx(float(r["mcnemar_p"])) for r in rows)
    assert sorted((r["method"], r["baseline"], r["seed"]) for r in rows) == sorted(
        (m, b, s) for m, b in (("cascade", "zeroshot"), ("zeroshot", "cascade")) for s in ("0", "1"))
    for r in rows:
        a = read_predictions(Path(r["method_run"]) / "predictions-test.csv")
        b = read_predictions(Path(r["baseline_run"]) / "predictions-test.csv")
        assert a.paths == b.paths and int(r["n"]) == len(a.paths)
        ca, cb = a.correct, b.correct
        assert float(r["acc_diff"]) == pytest.approx(ca.mean() - cb.mean())
        assert float(r["mcnemar_p"]) == pytest.approx(mcnemar_p(int((ca & ~cb).sum()), int((~ca & cb).sum())))
        assert float(r["ci_low"]) <= float(r["acc_diff"]) <= float(r["ci_high"])
        ev = json.loads((Path(r["method_run"]) / "eval.json").read_text())
        assert ca.mean() == pytest.approx(ev["test"]["fused"]["accuracy"])

    tex = (out / "ablation.tex").read_text()
    assert r"\mathbf{" in tex and "McNemar's exact" in tex
    md = (out / "ablation.md").read_text()
    assert "| cascade | 2 |" in md and "| zeroshot | 2 |" in md
    stages = (out / "stages.md").read_text()
    assert "| zeroshot |" in stages and "—" in stages       # zero-shot has one stage: the rest are absent


def test_run_report(ablation, tmp_path):
    run = ablation / "runs" / "cascade-seed0"
    out = tmp_path / "run-report"
    assert main(["report", "--run", str(run), "--out", str(out), "--formats", "pdf,png", "--quiet", "--dpi", "200"]) == 0
    written = {p.name for p in out.iterdir()}
    for stem in ("training-curves", "sigma-lambda", "nga-curves", "sigma-sweep", "cka-within", "cka-frozen",
                 "cka-stages", "drift", "confusion", "stage-accuracy", "explanations"):
        assert {f"{stem}.pdf", f"{stem}.png", f"{stem}.csv"} <= written, stem
        assert f"{stem}.svg" not in written                    # --formats pdf,png
    for p in out.iterdir():
        if p.suffix == ".png":
            check_png(p.read_bytes(), str(p), dpi=200)
        else:
            check_file(p)
    with np.load(out / "explanations.npz", allow_pickle=False) as z:   # four val images, one per class first
        assert z["maps"].shape[:2] == (5, 4) and len(set(z["target_names"].tolist())) >= 1
    drift = np.genfromtxt(out / "drift.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert len(drift) > 0
    assert "val accuracy" in (out / "index.md").read_text() or "val metrics" in (out / "index.md").read_text()


def test_report_errors_name_the_folder(tmp_path, capsys):
    assert main(["report", "--ablation", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert main(["report", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
