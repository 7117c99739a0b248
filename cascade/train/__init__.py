"""Training: one RunConfig → run folder (progressive schedule, checkpoints, resume, DDP)."""
from .loop import Callback, NonFiniteLossError, StopTraining, Trainer, TrainState, train

__all__ = ["Callback", "NonFiniteLossError", "StopTraining", "TrainState", "Trainer", "train"]
