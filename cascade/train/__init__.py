"""Training: one RunConfig → run folder (progressive schedule, checkpoints, resume, DDP)."""
from .loop import Callback, NonFiniteLossError, StopTraining, Trainer, TrainerView, train

__all__ = ["Callback", "NonFiniteLossError", "StopTraining", "Trainer", "TrainerView", "train"]
