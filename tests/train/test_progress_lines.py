"""A training run's log off a terminal: plain progress lines, no carriage returns; --quiet silences them."""
from cascade.train import train

from .helpers import read_jsonl, tiny_config


def test_log_has_plain_lines_per_tenth_of_an_epoch(tmp_path, capsys):
    cfg = tiny_config(tmp_path, "run.name=log", "train.batch_size=4")   # 84 train items: 21 steps per epoch
    path = train(cfg)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("epoch 1 warmup: ")]
    assert len(lines) == 10 and lines[-1].startswith("epoch 1 warmup: 100% (21/21 steps)") and "loss=" in lines[-1]
    assert sum("% (" in ln for ln in err.splitlines()) == 30    # three epochs; evaluation adds no lines
    assert any(r["kind"] == "step" for r in read_jsonl(path / "metrics.jsonl"))

    train(tiny_config(tmp_path, "run.name=quiet", "train.batch_size=4"), quiet=True)
    assert capsys.readouterr().err == ""
