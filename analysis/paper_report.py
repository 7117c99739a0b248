"""The paper report behind ``cascade report``: every figure of a run, or the tables, significance and
figures of an ablation, written in one go for a paper.

    cascade report --run DIR --out OUT        figures (PDF, SVG, PNG + CSV data), explanation maps and OUT/index.md
    cascade report --ablation DIR --out OUT   tables (LaTeX, Markdown, CSV), significance.csv,
                                              figures and OUT/index.md

Figures use the paper style (serif, single or double column); PNGs record their dpi,
PDFs their title. What a run cannot show (σ never logged, no checkpoint for CKA, no
drift measured) is listed in index.md with the reason instead of an empty figure.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis import drift
from analysis.drift import drift_from_logs, drift_over_checkpoints
from analysis.explain import relevance_table, save_relevance_npz
from analysis.export import export_figure
from analysis.features import frozen_final_embedding, load_run, run_features
from analysis.sigma import SigmaSweeper, nga_limits, nga_weight_curves
from analysis.significance import COLUMNS, add_holm, compare_predictions, read_predictions
from analysis.tables import ABSENT, Table
from cascade.checkpoint import read_meta
from cascade.config import CascadeConfig
from cascade.fileio import atomic_write_text
from cascade.metrics import mean_std
from cascade.runfolder import (EVAL, RunFolder, iter_checkpoints, predictions_path, read_json, read_progress,
                               training_checkpoints)
from cascade.train.ablate import variance_note
from cascade.train.pseudo import report_summary as pseudo_summary
from cascade.train.stage1 import block_summary as stage1_summary

__all__ = ["Report", "ablation_significance", "ablation_tables", "report_ablation", "report_run"]

FORMATS = ("pdf", "svg", "png")
TABLE_METRICS = ("accuracy", "macro_f1", "uar", "kl", "intersection")
HEADERS = {"accuracy": "Acc.", "macro_f1": "Macro-F1", "uar": "UAR", "kl": "KL ↓", "chebyshev": "Cheb. ↓",
           "clark": "Clark ↓", "canberra": "Canb. ↓", "cosine": "Cosine", "intersection": "Inters.",
           "method": "Method", "seeds": "Seeds"}
ALPHA = 0.05


@dataclass
class Report:
    """Files written so far, each with one line on what it shows (becomes index.md)."""

    out: Path
    title: str
    formats: tuple[str, ...] = FORMATS
    dpi: float = 300
    notes: list[str] = field(default_factory=list)
    entries: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path, what: str) -> Path:
        self.entries.append((path.relative_to(self.out).as_posix(), what))
        return path

    def skip(self, name: str, why: str) -> None:
        self.skipped.append((name, why))

    def figure(self, stem: str, fig, what: str, data=None, title: str | None = None) -> None:
        """The figure in every format, plus its data as ``<stem>.csv`` (a DataFrame or CSV text)."""
        for fmt in self.formats:
            path = export_figure(fig, self.out / f"{stem}.{fmt}", dpi=self.dpi, title=title or what)
            self.add(path, f"{what} ({fmt.upper()}{f', {self.dpi:g} dpi' if fmt == 'png' else ''})")
        if data is not None:
            text = data if isinstance(data, str) else data.to_csv(index=False, na_rep="n/a")
            self.add(atomic_write_text(self.out / f"{stem}.csv", text), f"{what}: the plotted data")

    def text(self, name: str, content: str, what: str) -> None:
        self.add(atomic_write_text(self.out / name, content), what)

    def write_index(self) -> Path:
        lines = [f"# {self.title}", ""]
        lines += [f"> {n}" for n in self.notes]
        if self.notes:
            lines.append("")
        lines += ["| file | what it shows |", "|---|---|"]
        lines += [f"| [{p}]({p}) | {w} |" for p, w in self.entries]
        if self.skipped:
            lines += ["", "Not written:", ""] + [f"- {n}: {w}" for n, w in self.skipped]
        return atomic_write_text(self.out / "index.md", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------


def _sigma_from_checkpoints(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """σ and λ at each saved checkpoint (for runs whose log predates per-step σ/λ)."""
    sigma, fusion, seen = [], [], set()
    for path in iter_checkpoints(run_dir):
        try:
            meta = read_meta(path)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint adds no point
            continue
        step = (meta.get("extra") or {}).get("global_step")
        if not isinstance(step, int) or step in seen:
            continue
        seen.add(step)
        sigma += [{"step": step, "stage": k + 1, "value": float(v)} for k, v in enumerate(meta.get("sigma") or [])]
        fusion += [{"step": step, "stage": k + 1, "value": float(v)}
                   for k, v in enumerate(meta.get("fusion_weights") or [])]
    return sigma, fusion


def report_run(run_dir: str | Path, out: str | Path, *, formats=FORMATS, column: str = "single", dpi: float = 300,
               split: str = "val", features: bool = True, device: str = "cpu", quiet: bool = True) -> Path:
    """Every figure of one run into ``out``; returns the path of ``out/index.md``."""
    import pandas as pd

    from analysis.figures import confusion_matrix_figure, nga_weight_figure
    from analysis.run_figures import sigma_lambda_figure, stage_bars, training_curves

    folder = RunFolder(run_dir)
    folder.require()
    run_dir = folder.path
    out = Path(out)
    name = run_dir.name
    rep = Report(out, f"Figures of run `{name}`", tuple(formats), dpi)
    report = read_json(run_dir / EVAL) or {}
    if report.get("random_weights"):
        rep.notes.append("RANDOM backbone weights (pretrained: none): the numbers say nothing about CLIP.")
    if not report:
        rep.notes.append("The run has no eval.json (unfinished or stopped early): curves show what was logged.")
    elif report.get("partial"):
        label = (report.get("state") or {}).get("label") or "did not reach its last epoch"
        rep.notes.append(f"Partial run ({label}): its metrics describe a run that did not train to its end.")
    if isinstance(report.get("stage1"), dict):
        rep.notes.append(stage1_summary(report["stage1"]))
    if report.get("supervision") == "pseudo":
        rep.notes.append(pseudo_summary(report))
    paper = column
    p = read_progress(run_dir)

    # ---- training curves with phases
    if p.loss or p.val:
        fig = training_curves(p.loss, p.val, p.phases, title=f"{name}: training", paper=paper)
        data = pd.concat([pd.DataFrame(p.loss).assign(kind="loss").rename(columns={"term": "name"}),
                          pd.DataFrame(p.val).assign(kind="val").rename(columns={"metric": "name"})],
                         ignore_index=True)
        rep.figure("training-curves", fig, "training loss terms and val metrics per step, phases marked", data)
    else:
        rep.skip("training-curves", "metrics.jsonl has no step or eval records")

    # ---- σ and λ
    sigma, fusion, source = p.sigma, p.fusion, "logged every step"
    if not sigma:
        sigma, fusion = _sigma_from_checkpoints(run_dir)
        source = "at the saved checkpoints"
    if sigma:
        fig = sigma_lambda_figure(sigma, fusion, p.phases, title=f"{name}: σ and λ", paper=paper)
        data = pd.concat([pd.DataFrame(sigma).assign(parameter="sigma"),
                          pd.DataFrame(fusion).assign(parameter="lambda")], ignore_index=True)
        rep.figure("sigma-lambda", fig, f"NGA σ and fusion λ per stage over training ({source})", data)
    else:
        rep.skip("sigma-lambda", "neither the log nor a checkpoint records σ")

    # ---- from the checkpoint: NGA curves, σ sweep, CKA, drift
    best = folder.checkpoint("best")
    model_run = report.get("method") != "linear-probe" and best.is_file()
    if model_run:
        meta = read_meta(best)
        cfg = CascadeConfig.model_validate(meta["config"])
        learned = [float(v) for v in meta.get("sigma") or cfg.sigmas()]
        blocks = [list(range(lo, hi + 1)) for lo, hi in cfg.stage_ranges()]
        label = "learned σ (" + ", ".join(f"{v:.3g}" for v in learned) + ")"
        curves = nga_weight_curves(blocks, [learned], mode=cfg.nga, labels=[label])
        fig = nga_weight_figure(curves, nga_limits(blocks) if cfg.nga == "normalized" else None, highlight=label,
                                title=f"{name}: NGA weights at the learned σ", paper="double")
        rep.figure("nga-curves", fig, "NGA weight per block at the learned σ, with the σ→0 and σ→∞ limits", curves)
    else:
        rep.skip("nga-curves, sigma-sweep, cka-*", "no cascade checkpoint (linear probe, or no best checkpoint)")

    if model_run and features:
        run = load_run(run_dir, "best", device)     # one load for the feature figures and the explanations
        _feature_figures(rep, run, name, split, device, quiet, paper)
        _explanation_figure(rep, run, name, split)
    elif model_run:
        rep.skip("sigma-sweep, cka-*, explanations", "--no-features: figures that need a forward pass were left out")

    _drift_figure(rep, run_dir, name, split, device, quiet, paper, features and model_run)

    # ---- from eval.json: confusion matrix and per-stage bars
    test = report.get("test") or {}
    classes = report.get("classnames") or []
    if test.get("confusion") and classes:
        cm = test["confusion"]
        fig = confusion_matrix_figure(cm, classes, title=f"{name}: confusion (test)", paper=paper)
        data = pd.DataFrame(cm, index=classes, columns=classes).rename_axis("true \\ predicted").reset_index()
        rep.figure("confusion", fig, "test confusion matrix of the val-selected checkpoint (rows: true class)", data)
    else:
        rep.skip("confusion", "eval.json has no test confusion matrix")
    if test.get("fused"):
        rows = [{"stage": f"stage {k + 1}", **(m or {})} for k, m in enumerate(test.get("stages") or [])]
        rows.append({"stage": "fused", **test["fused"]})
        df = pd.DataFrame(rows)
        fig = stage_bars(df, metric="accuracy", title=f"{name}: test accuracy per stage",
                         num_classes=len(classes) if classes else None, paper=paper)
        rep.figure("stage-accuracy", fig, "test accuracy of every stage's own prediction and of the fused one", df)
    else:
        rep.skip("stage-accuracy", "eval.json has no test metrics")
    return rep.write_index()


def _feature_figures(rep: Report, run, name: str, split: str, device: str, quiet: bool, paper) -> None:
    from analysis.figures import cka_heatmap, sigma_sweep_figure

    model = run.model
    if not run.splits.get(split):
        rep.skip("sigma-sweep, cka-*", f"the {split} split is empty")
        return
    fs = run_features(run, split, device=device, progress=not quiet)
    sweeper = SigmaSweeper(fs, model)
    df = sweeper.sweep_all(np.geomspace(0.05, 20.0, 41), joint=True)
    fig = sigma_sweep_figure(df, "accuracy", learned_sigma=[float(v) for v in model.sigma().detach().cpu()],
                             title=f"{name}: accuracy vs σ ({split})", paper=paper)
    rep.figure("sigma-sweep", fig, f"{split} accuracy against σ, each stage varied and all jointly (exact)", df)

    pooling = model.config.pooling
    frozen = run_features(run, split, which="frozen", poolings=sorted({"cls", pooling}), device=device,
                          progress=not quiet)
    within = drift.within_model_cka(fs, pooling=pooling, model=model)
    cross = drift.cross_model_cka(fs, frozen, pooling=pooling, model=model)
    stages = drift.stage_vs_frozen_matrix(fs, model, frozen, frozen_final_embedding(frozen, model))
    for stem, res, what, axes in (
            ("cka-within", within, f"block × block CKA of the run ({split})", ("block", "block")),
            ("cka-frozen", cross, f"CKA of the prompted blocks (rows) with frozen CLIP's (columns) ({split})",
             ("frozen CLIP block", "prompted block")),
            ("cka-stages", stages, f"CKA of each stage's Z_s with frozen CLIP's blocks and embedding ({split})",
             ("frozen CLIP", "stage"))):
        fig = cka_heatmap(res, x_title=axes[0], y_title=axes[1], title=f"{name}: {stem.replace('cka-', 'CKA ')}",
                          paper=paper)
        if stem == "cka-stages":
            fig.update_layout(height=max(200, 30 * len(res.rows) + 110))
        rep.figure(stem, fig, what)
        csv_path, npz_path = res.export(rep.out / stem)
        rep.add(csv_path, f"{what}: the matrix (CSV)")
        rep.add(npz_path, f"{what}: the matrix (NPZ, no pickle)")


def _explanation_figure(rep: Report, run, name: str, split: str, n: int = 4) -> None:
    """Where each stage looks on a few images of the split (one per class first), with the maps as NPZ."""
    from analysis.explain_figure import explain_grid

    try:
        fig, explained = explain_grid(run, n, split=split, paper="double")
    except ValueError as exc:   # an empty split, a backbone without plain attention blocks
        rep.skip("explanations", str(exc))
        return
    what = f"where each stage looks: explanation maps per stage and fused on {len(explained.names)} {split} images"
    rep.figure("explanations", fig, what, relevance_table(explained))
    rep.add(save_relevance_npz(explained, rep.out / "explanations.npz"), f"{what}: the maps (NPZ, no pickle)")


def _drift_figure(rep: Report, run_dir: Path, name: str, split: str, device: str, quiet: bool, paper,
                  can_compute: bool) -> None:
    from analysis.figures import drift_curves

    logged = drift_from_logs(run_dir)
    if not logged.empty:
        df, source = logged, "logged during training (train.drift)"
    else:
        ckpts = training_checkpoints(run_dir)
        if not can_compute or len(ckpts) < 2:
            rep.skip("drift", "no drift was logged (train.drift.every_k_steps: 0) and there are not two "
                              "checkpoints to compare (train.keep_epoch_checkpoints keeps one per epoch)")
            return
        df = drift_over_checkpoints(run_dir, split, device=device, progress=not quiet)
        source = f"at the saved checkpoints ({split})"
    stages = df[df["kind"] == "stage"].sort_values("global_step", kind="stable")
    fig = drift_curves(stages, kind=None, title=f"{name}: stage drift over training", paper=paper)
    rep.figure("drift", fig, f"each stage's drift 1 − CKA(Z_s, frozen CLIP embedding) by step, {source}", df)


# ---------------------------------------------------------------------------
# an ablation
# ---------------------------------------------------------------------------


def _ablation_rows(ablation_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    payload = read_json(ablation_dir / "results.json")
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise FileNotFoundError(f"{ablation_dir}: no results.json from `cascade ablate`")
    rows = [r for r in payload["rows"] if isinstance(r, dict) and r.get("method")]
    if not rows:
        raise ValueError(f"{ablation_dir / 'results.json'}: no rows")
    for r in rows:
        run = Path(str(r.get("run_dir") or ""))
        if not run.is_absolute() and not run.exists():
            alt = ablation_dir / "runs" / run.name
            run = alt if alt.exists() else run
        r["_run"] = run
    return payload, rows


def ablation_significance(ablation_dir: str | Path, *, n_resamples: int = 10_000, seed: int = 0,
                          split: str = "test") -> tuple[list[dict[str, Any]], list[str]]:
    """Every ordered pair of methods on the same seed: McNemar + paired bootstrap of the accuracy,
    with the McNemar p per pair (uncorrected) and Holm-adjusted over the seed's method pairs.

    Returns the rows of ``significance.csv`` and notes on pairs that could not be compared
    (no predictions file, or one that lists no images because the split is empty).
    """
    _, rows = _ablation_rows(Path(ablation_dir))
    notes: list[str] = []
    preds: dict[tuple[str, Any], Any] = {}
    for r in rows:
        path = predictions_path(r["_run"], split)
        if not path.is_file():
            notes.append(f"{r['method']} seed {r['seed']}: no {path.name} (run trained before predictions were "
                         "written; retrain it to include it)")
            continue
        pred = read_predictions(path)
        if pred.paths:
            preds[(r["method"], r["seed"])] = (pred, r["_run"])
        else:
            notes.append(f"{r['method']} seed {r['seed']}: {path} lists no images (the {split} split is empty), "
                         "so its pairs are not compared")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    out = []
    for s in seeds:
        for m in methods:
            for b in methods:
                if m == b or (m, s) not in preds or (b, s) not in preds:
                    continue
                (pm, rm), (pb, rb) = preds[(m, s)], preds[(b, s)]
                row = compare_predictions(pm, pb, method_name=m, baseline_name=b, seed_label=s, method_run=str(rm),
                                          baseline_run=str(rb), n_resamples=n_resamples, bootstrap_seed=seed)
                out.append(row.as_row())
    return add_holm(out, family=("seed",)), notes


def _split_note(payload: dict[str, Any], n_seeds: int) -> str:
    varied = payload.get("split_per_seed")
    if n_seeds < 2:
        return "One seed."
    if varied is None:
        return "Whether the split varied with the seed is not recorded (results.json predates split_per_seed)."
    note = variance_note(bool(varied))
    return note[0].upper() + note[1:] + "."


def ablation_tables(ablation_dir: str | Path, significance: list[dict[str, Any]] | None = None, *,
                    metrics: tuple[str, ...] = TABLE_METRICS, reference: str | None = None, alpha: float = ALPHA,
                    digits: int = 3):
    """The ablation table (mean ± std per method, best in bold, significance marks) and the
    per-stage accuracy table, as :class:`analysis.tables.Table`."""
    ablation_dir = Path(ablation_dir)
    payload, rows = _ablation_rows(ablation_dir)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    reference = reference or ("cascade" if "cascade" in methods else methods[0])
    table_rows, markers = [], {}
    for i, m in enumerate(methods):
        mine = [r for r in rows if r["method"] == m]
        cells: dict[str, Any] = {"method": m, "seeds": len(mine)}
        for k in metrics:
            mean, std = mean_std([r.get(k) for r in mine])
            cells[k] = (mean, std)
        table_rows.append(cells)
        if significance and m != reference:
            tests = [t for t in significance if t["method"] == m and t["baseline"] == reference]
            if tests and len(tests) == len(mine) and all(t["p_holm"] < alpha for t in tests):
                markers[(i, "accuracy")] = "*"
    notes = [f"Test split, checkpoint selected on val {payload.get('select_metric') or 'accuracy'}; mean ± sample "
             f"std over {len(seeds)} seed(s). {_split_note(payload, len(seeds))} Best value in bold."]
    if significance is not None:
        pairs = max((len({frozenset((t["method"], t["baseline"])) for t in significance if t["seed"] == s})
                     for s in seeds), default=0)
        notes.append(f"* accuracy differs from {reference} on the same test images in every seed: McNemar's exact "
                     f"two-sided test, Holm-adjusted over the {pairs} method pairs of each seed, p < {alpha:g} "
                     "(significance.csv: p_holm; its mcnemar_p is per pair, uncorrected; 95 % paired-bootstrap "
                     "intervals).")
    if payload.get("random_weights"):
        notes.insert(0, "RANDOM backbone weights: the numbers say nothing about CLIP.")
    partial = [f"{r['method']} seed {r['seed']}" for r in rows if r.get("partial")]
    if partial:
        notes.append("Partial runs (stopped before their last epoch) included: " + ", ".join(partial) + ".")
    main = Table(columns=["method", "seeds", *metrics], rows=table_rows, metric_columns={k: k for k in metrics},
                 markers=markers, caption=f"Ablation ({ablation_dir.name})", label="tab:ablation", notes=notes,
                 digits=digits, headers=HEADERS,
                 # the notes give the seed count when every method has it: a column the page can spare
                 latex_omit=("seeds",) if len({c["seeds"] for c in table_rows}) == 1 else ())

    stage_rows, width = [], 0
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        per_run = [((read_json(r["_run"] / EVAL) or {}).get("test") or {}) for r in mine]
        n_stages = max((len(t.get("stages") or []) for t in per_run), default=0)
        width = max(width, n_stages)
        cells: dict[str, Any] = {"method": m}
        for k in range(n_stages):
            values = [((t.get("stages") or [])[k] or {}).get("accuracy") if len(t.get("stages") or []) > k else None
                      for t in per_run]
            cells[f"stage {k + 1}"] = mean_std(values)
        cells["fused"] = mean_std([(t.get("fused") or {}).get("accuracy") for t in per_run])
        stage_rows.append(cells)
    cols = [f"stage {k + 1}" for k in range(width)] + ["fused"]
    for cells in stage_rows:
        for c in cols:
            cells.setdefault(c, ABSENT)
    stages = Table(columns=["method", *cols], rows=stage_rows, metric_columns={c: "accuracy" for c in cols},
                   caption=f"Test accuracy per stage ({ablation_dir.name})", label="tab:stages",
                   notes=[f"Mean ± sample std over {len(seeds)} seed(s); each stage's own prediction. "
                          f"{ABSENT}: the method has no such stage."], digits=digits, headers=HEADERS)
    return main, stages


def report_ablation(ablation_dir: str | Path, out: str | Path, *, formats=FORMATS, column: str = "single",
                    dpi: float = 300, metrics: tuple[str, ...] = TABLE_METRICS, reference: str | None = None,
                    n_resamples: int = 10_000, seed: int = 0) -> Path:
    """Tables, significance and figures of an ablation folder into ``out``; returns index.md's path."""
    import pandas as pd

    from analysis.run_figures import ablation_bars, significance_figure, stage_bars

    ablation_dir, out = Path(ablation_dir), Path(out)
    payload, rows = _ablation_rows(ablation_dir)
    rep = Report(out, f"Ablation `{ablation_dir.name}`", tuple(formats), dpi)
    if payload.get("random_weights"):
        rep.notes.append("RANDOM backbone weights (pretrained: none): the numbers say nothing about CLIP.")

    sig, missing = ablation_significance(ablation_dir, n_resamples=n_resamples, seed=seed)
    rep.notes += missing
    sig_df = pd.DataFrame(sig, columns=list(COLUMNS))
    rep.text("significance.csv", sig_df.to_csv(index=False),
             f"every method against every other on the same test images and seed: accuracy difference, "
             f"{n_resamples:,}-resample paired-bootstrap 95 % interval (seed {seed}), McNemar's exact p per pair, "
             "uncorrected (mcnemar_p), and Holm-adjusted over the method pairs of each seed (p_holm)")
    main, stages = ablation_tables(ablation_dir, sig if sig else None, metrics=metrics, reference=reference)
    for table, stem, what in ((main, "ablation", "mean ± std per method over seeds, best in bold"),
                              (stages, "stages", "test accuracy per stage and fused, mean ± std per method")):
        rep.text(f"{stem}.tex", table.to_latex(), f"{what} (LaTeX, booktabs)")
        rep.text(f"{stem}.md", table.to_markdown(), f"{what} (Markdown)")
        rep.text(f"{stem}.csv", table.to_csv(), f"{what} (CSV)")

    summary = pd.read_csv(io.StringIO(main.to_csv()), na_values=["n/a"])
    fig = ablation_bars(summary, "accuracy", title=f"{ablation_dir.name}: test accuracy", paper=column)
    rep.figure("ablation-accuracy", fig, "test accuracy per method, mean ± std over seeds", summary)
    long = []
    for cells in stages.rows:
        for c in stages.columns[1:]:
            v = cells.get(c)
            if isinstance(v, tuple):
                long.append({"method": cells["method"], "stage": c, "accuracy": v[0], "std": v[1]})
    multi = [m for m in dict.fromkeys(r["method"] for r in long) if sum(1 for r in long if r["method"] == m) > 2]
    if multi:
        df = pd.DataFrame([r for r in long if r["method"] in multi])
        fig = stage_bars(df, metric="accuracy", group="method", error="std",
                         title=f"{ablation_dir.name}: test accuracy per stage", paper="double")
        rep.figure("stage-accuracy", fig, "test accuracy per stage for the multi-stage methods, mean ± std", df)
    if sig:
        ref = reference or ("cascade" if any(r["method"] == "cascade" for r in rows) else rows[0]["method"])
        against = sig_df[sig_df["baseline"] == ref]
        if not against.empty:
            fig = significance_figure(against, title=f"{ablation_dir.name}: accuracy against {ref}", paper=column)
            rep.figure(f"significance-vs-{ref}", fig, f"accuracy difference to {ref} with 95 % paired-bootstrap intervals "
                                            f"(filled: Holm-adjusted McNemar p_holm < {ALPHA:g})", against)
    else:
        rep.skip("significance figure", "no pair of runs with predictions-test.csv")
    return rep.write_index()
