import pytest

from .helpers import tiny_config
from support.threads import _one_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The example synthetic-tiny config as shipped (full size), trained once per session."""
    import time

    from cascade.train import train

    runs = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(runs, "run.name=shipped", small=False)
    t0 = time.perf_counter()
    path = train(cfg, quiet=True)
    return {"path": path, "seconds": time.perf_counter() - t0, "config": cfg}
