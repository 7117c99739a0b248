"""cascade.progress: a bar on a terminal, one plain line per 10 % elsewhere, nothing when disabled."""
import io

from cascade.progress import Progress, track


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_tenth_with_postfix():
    out = io.StringIO()
    bar = Progress(20, "epoch 1 warmup", unit="steps", stream=out)
    assert bar.mode == "lines"
    for i in range(20):
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 10
    assert lines[0].startswith("epoch 1 warmup:  10% (2/20 steps)") and "loss=0.500" in lines[0]
    assert lines[-1].startswith("epoch 1 warmup: 100% (20/20 steps)") and "loss=0.050" in lines[-1]
    assert "<" in lines[0] and "<" not in lines[-1]   # time left, until the end


def test_short_loops_and_resume():
    out = io.StringIO()
    with Progress(3, "val", stream=out) as bar:
        for _ in range(3):
            bar.update()
    assert len(out.getvalue().splitlines()) == 3          # fewer steps than tenths: a line per step
    out = io.StringIO()
    with Progress(20, "epoch 2", initial=7, stream=out) as bar:
        for _ in range(13):
            bar.update()
    lines = out.getvalue().splitlines()
    assert [ln.split("(")[1].split()[0] for ln in lines] == ["8/20", "10/20", "12/20", "14/20", "16/20", "18/20",
                                                            "20/20"]


def test_silent_modes_and_terminal_bar():
    out = io.StringIO()
    assert list(track(range(5), 5, "eval", plain=False, stream=out)) == list(range(5))
    assert list(track(range(5), 5, "eval", enabled=False, stream=out)) == list(range(5))
    assert out.getvalue() == ""
    tty = _Terminal()
    bar = Progress(4, "epoch 1", stream=tty)
    assert bar.mode == "bar"
    for _ in range(4):
        bar.update()
    bar.close()
    assert "\r" in tty.getvalue() and "epoch 1:" in tty.getvalue() and "% (" not in tty.getvalue()
