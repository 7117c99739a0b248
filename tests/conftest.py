import logging
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EMOTION6 = Path(os.environ.get("CASCADE_EMOTION6", REPO.parent / "shared" / "datasets" / "Emotion6"))

logging.getLogger().setLevel(logging.ERROR)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_backbone():
    from cascade import load_backbone

    return load_backbone("cascade-tiny", None, seed=0)


@pytest.fixture(scope="session")
def emotion6_root():
    if not (EMOTION6 / "ground_truth.txt").is_file():
        pytest.skip(f"Emotion6 not found at {EMOTION6}")
    return EMOTION6
