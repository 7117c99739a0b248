"""The run folder ``runs/<name>/``: the one owner of its format.

What a run folder holds (the trainer writes it; everything else reads it through here)::

    config.yaml          the resolved RunConfig (frozen dtype and device included)
    splits.json          the split, item by key
    data_report.json     what the data scan found and skipped
    env.json             versions, device, host, git commit
    metrics.jsonl        one record per start, phase, step, eval, test (appended while training)
    drift.jsonl          representation drift logged while training (train.drift)
    state.json           running / finished / stopped / failed, with a heartbeat
    eval.json            the final report (val-selected checkpoint, test metrics)
    predictions-*.csv    per-item predictions of val and test
    checkpoints/         best, last, σ checkpoints (+ JSON), resume states, a probe
    features/            cached per-block features of the analysis tools

Modules: :mod:`.folder` (file names, :class:`RunFolder`, :class:`MetricsLog`, tolerant
JSON/JSON-lines readers), :mod:`.checkpoints` (listing and name-or-path resolution),
:mod:`.status` (``state.json``), :mod:`.progress` (curves and progress from the metrics log;
:mod:`.pace`: its speed and time left),
:mod:`.load` (:func:`load_run`: the run's model as it was trained).
"""
from .checkpoints import (PROBE_FILE, TRAINER_NAMES, MissingCheckpointError, checkpoint_names, checkpoint_path,
                          checkpoint_run_dir, is_model_checkpoint, is_sigma_checkpoint, iter_checkpoints,
                          resolve_checkpoint, run_classnames, sigma_tuned_on, training_checkpoints)
from .folder import (CHECKPOINTS, CONFIG, DATA_REPORT, DRIFT, ENV, EVAL, FEATURES, MARKERS, METRICS, SPLITS, STATE,
                     TRAIN_LOG, MetricsLog, RunFolder, RunFolderError, environment, git_commit, predictions_path,
                     read_json, read_jsonl, read_metrics)
from .load import LoadedModel, load_run, run_backbone, run_frozen_dtype
from .progress import AblationProgress, RunProgress, format_duration, read_ablation_progress, read_progress
from .status import PARTIAL_NOTE, RANDOM_WEIGHTS_NOTE, RunState, StateWriter, read_run_state, result_warnings

__all__ = [
    "AblationProgress", "CHECKPOINTS", "CONFIG", "DATA_REPORT", "DRIFT", "ENV", "EVAL", "FEATURES", "LoadedModel",
    "MARKERS", "METRICS", "MetricsLog", "MissingCheckpointError", "PARTIAL_NOTE", "PROBE_FILE", "RANDOM_WEIGHTS_NOTE",
    "RunFolder", "RunFolderError", "RunProgress", "RunState", "SPLITS", "STATE", "StateWriter", "TRAINER_NAMES",
    "TRAIN_LOG", "checkpoint_names", "checkpoint_path", "checkpoint_run_dir", "environment", "format_duration",
    "git_commit", "is_model_checkpoint", "is_sigma_checkpoint", "iter_checkpoints", "load_run", "predictions_path",
    "read_ablation_progress", "read_json", "read_jsonl", "read_metrics", "read_progress", "read_run_state",
    "resolve_checkpoint", "result_warnings", "run_backbone", "run_classnames", "run_frozen_dtype", "sigma_tuned_on",
    "training_checkpoints",
]
