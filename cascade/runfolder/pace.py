"""How fast a run trains and how long it has left, from the times its log records were written.

Per-step readings jump (a phase's first step compiles, a prefix cache fills, a validation
pauses training), so both the speed and the time left are measured over a window of at
least :data:`WINDOW_STEPS` steps and at least one epoch: the window then holds a
validation, and the speed is images per *wall* second, evaluations included. The time left
adds the training steps to go at the window's pace and the evaluations to go (one
validation per remaining epoch, then the final test and val passes) at the duration of
those already done.
"""
from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_STEPS = 50
FINAL_PASSES = 2     # after the last epoch: the test split, then val again for its predictions file


@dataclass
class Pace:
    step_seconds: float | None = None    # wall seconds per optimiser step, evaluations left out
    eval_seconds: float | None = None    # wall seconds of one validation (mean of those timed)
    images_per_s: float | None = None    # images trained per wall second over the window, evaluations in

    def eta(self, steps_left: int, evals_left: int) -> float | None:
        """Seconds left for ``steps_left`` steps and ``evals_left`` evaluation passes."""
        if self.step_seconds is None:
            return None
        return max(0.0, steps_left * self.step_seconds + evals_left * (self.eval_seconds or 0.0))


@dataclass
class PaceMeter:
    """Fed the step and evaluation records of a ``metrics.jsonl`` in order; :meth:`pace` measures."""

    images_per_step: float | None = None
    steps_per_epoch: int = 0
    eval_images: int | None = None       # images of one validation: its duration before one is timed
    steps: list[tuple[int, float]] = field(default_factory=list)     # (global step, time)
    evals: list[tuple[float, float]] = field(default_factory=list)   # (end time, seconds)

    def step(self, global_step: int, time: float) -> None:
        self.steps.append((int(global_step), float(time)))

    def evaluation(self, time: float) -> None:
        """A validation ended at ``time``; it began when the step before it was logged."""
        if self.steps and time > self.steps[-1][1]:
            self.evals.append((float(time), float(time) - self.steps[-1][1]))

    def pace(self) -> Pace:
        if len(self.steps) < 2:
            return Pace()
        last_step, t_end = self.steps[-1]
        reach = max(WINDOW_STEPS, self.steps_per_epoch)
        first_step, t_start = next((s, t) for s, t in self.steps if s >= last_step - reach)
        if (first_step, t_start) == (last_step, t_end):
            first_step, t_start = self.steps[-2]
        span, done = t_end - t_start, last_step - first_step
        if span <= 0 or done <= 0:
            return Pace()
        in_window = sum(sec for end, sec in self.evals if t_start < end <= t_end)
        training = span - in_window
        step_seconds = training / done if training > 0 else span / done
        if self.evals:
            eval_seconds = sum(sec for _, sec in self.evals) / len(self.evals)
        elif self.eval_images and self.images_per_step:
            # none timed yet: a forward pass per image costs at most what a training step does
            eval_seconds = self.eval_images / self.images_per_step * step_seconds
        else:
            eval_seconds = None
        return Pace(step_seconds=step_seconds, eval_seconds=eval_seconds,
                    images_per_s=done * self.images_per_step / span if self.images_per_step else None)
