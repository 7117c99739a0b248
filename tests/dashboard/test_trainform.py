from cascade.config import PRESETS
from cascade.dashboard import runs, trainform
from cascade.methods import METHODS
from cascade.run_config import RunConfig, sanitize_run_name


def test_form_lists_follow_methods_and_presets():
    assert trainform.CASCADE_FAMILY == ("cascade", "cascade-no-nga", "nga-no-cascade", "concat-fusion")
    assert trainform.TRAIN_METHODS == ("cascade", "cascade-no-nga", "nga-no-cascade", "concat-fusion", "shallow",
                                       "vpt-deep", "zeroshot", "linear-probe")
    assert set(trainform.TRAIN_METHODS) == set(METHODS)
    assert trainform.TRAIN_PRESETS == ("b32-4stage", "b16-3stage", "shallow", "vpt-deep")
    assert set(trainform.TRAIN_PRESETS) < set(PRESETS)


def test_one_run_name_rule():
    assert runs.sanitize_run_name is sanitize_run_name is trainform.sanitize_run_name
    name = trainform.default_run_name("vpt-deep")
    assert name.endswith("-vpt-deep") and sanitize_run_name(name) == name
    assert RunConfig(method="shallow").default_run_name().endswith("-shallow")
