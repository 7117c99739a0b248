import pytest


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """cascade-tiny trained on 240 synthetic faces (36 validation images), once per session."""
    from cascade.train import train
    from support.threads import one_thread
    from train.helpers import tiny_config

    runs = tmp_path_factory.mktemp("explain-runs")
    with one_thread():
        return train(tiny_config(runs, "data.synthetic.num_samples=240", "run.name=faces"), quiet=True)


@pytest.fixture(scope="module", autouse=True)
def _close_export_browser():
    """Each module's figure exports share one Chromium; it is closed when the module is done."""
    yield
    try:
        from analysis.export import close_browser

        close_browser()
    except Exception:  # noqa: BLE001 - best effort, the browser may never have started
        pass
