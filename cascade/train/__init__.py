"""Training: one RunConfig → run folder (progressive schedule, checkpoints, resume, DDP)."""
from .loop import Callback, NonFiniteLossError, StopTraining, Trainer, TrainState, train
from .run_config import (BackboneConfig, EpochsConfig, LearningRates, LossConfig, RunConfig, RunSection,
                         TrainConfig, WeightDecays, load_run_config, sanitize_run_name)
from .runfolder import RunFolder, RunFolderError

__all__ = [
    "BackboneConfig", "Callback", "EpochsConfig", "LearningRates", "LossConfig", "NonFiniteLossError", "RunConfig",
    "RunFolder", "RunFolderError", "RunSection", "StopTraining", "TrainConfig", "TrainState", "Trainer",
    "WeightDecays", "load_run_config", "sanitize_run_name", "train",
]
