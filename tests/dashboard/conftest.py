"""Fixtures for the dashboard tests: demo mode on cascade-tiny, private caches, one tiny run."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app.py"
PAGES = ["pages/overview.py", "pages/train.py", "pages/sigma_tuner.py", "pages/nga_curves.py", "pages/cka.py",
         "pages/inspect_images.py", "pages/compare.py"]
TITLES = {"pages/overview.py": "Overview", "pages/train.py": "Train", "pages/sigma_tuner.py": "σ tuner",
          "pages/nga_curves.py": "NGA curves", "pages/cka.py": "CKA", "pages/inspect_images.py": "Inspect",
          "pages/compare.py": "Compare"}


def demo_env(root: Path, threads: int) -> dict[str, str]:
    """Environment of a dashboard in demo mode: cascade-tiny, no weights check, caches under ``root``."""
    return {
        "CASCADE_TORCH_THREADS": str(threads),  # the dashboard must not change the test process's threads
        "CASCADE_DEMO_MODEL": "cascade-tiny",
        "CASCADE_PRETRAINED": "none",          # never probe the network (CI may be online)
        "CASCADE_DEVICE": "cpu",
        "CASCADE_CACHE_DIR": str(root / "cache"),
        "CASCADE_FEATURE_CACHE": str(root / "features"),
        "CASCADE_SYNTHETIC_SIZE": "120",
        "TQDM_DISABLE": "1",
    }


@pytest.fixture(scope="session")
def dashboard_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture
def dashboard_env(dashboard_root, monkeypatch):
    """Demo-mode environment for one test (undone afterwards, so other test folders never see it)."""
    import torch

    threads = torch.get_num_threads()
    env = demo_env(dashboard_root, threads)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield {"root": dashboard_root, **env}
    torch.set_num_threads(threads)


def tiny_run_config(runs_dir: Path, name: str, num_samples: int = 60):
    from cascade.run_config import validate_run_config

    return validate_run_config({
        "method": "cascade",
        "backbone": {"model_name": "cascade-tiny", "pretrained": "none", "seed": 0},
        "model": {"preset": "b32-4stage", "prompt_tokens": 2},
        "data": {"format": "synthetic", "synthetic": {"num_samples": num_samples, "seed": 0}},
        "train": {"epochs": {"warmup": 1, "unfreeze": 0, "global": 1}, "batch_size": 16, "augment": False,
                  "device": "cpu", "log_every_steps": 1,
                  "lr": {"prompts": 3e-3, "nga": 3e-2, "fusion": 1e-2, "heads": 3e-3, "classifier": 3e-3}},
        "run": {"name": name, "runs_dir": str(runs_dir)},
    })


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> Path:
    """A runs folder holding one finished cascade-tiny run (trained once per session)."""
    from cascade.train import train

    runs = tmp_path_factory.mktemp("runs")
    train(tiny_run_config(runs, "tiny"), quiet=True)
    assert (runs / "tiny" / "eval.json").is_file()
    return runs


@pytest.fixture
def runs_dir(trained_runs, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained runs folder, set as the dashboard's runs folder."""
    target = tmp_path / "runs"
    shutil.copytree(trained_runs, target, ignore=shutil.ignore_patterns("features"))
    monkeypatch.setenv("CASCADE_RUNS_DIR", str(target))
    return target


def png_bytes(color=(200, 40, 40), size=(96, 72), fmt="PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def write_ablation(folder: Path) -> Path:
    """An ablation folder as ``cascade ablate`` writes it (results.json; the numbers are made up)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for m, base in (("zeroshot", 0.30), ("shallow", 0.52), ("cascade", 0.61), ("cascade-no-nga", 0.57)):
        for seed in (0, 1):
            rows.append({"method": m, "seed": seed, "accuracy": base + 0.01 * seed, "macro_f1": base - 0.02,
                         "uar": base - 0.01, "kl": 1.2 - base, "random_weights": True})
    (folder / "results.json").write_text(json.dumps({"methods": [r["method"] for r in rows[::2]], "seeds": [0, 1],
                                                     "random_weights": True, "select_metric": "accuracy",
                                                     "rows": rows}))
    return folder
