"""The trainer: progressive schedule, AdamW per group, checkpoints, resume, DDP, callbacks.

Entry point: :func:`train` (``train(run_config, callbacks=[...]) -> run_dir``).
"""
from __future__ import annotations

import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..backbone import load_backbone
from ..checkpoint import load_into, save_checkpoint
from ..devices import device_kind, resolve_device
from ..fileio import atomic_write_text, write_json
from ..flops import cascade_flops
from ..losses import LossWeights, cascade_loss
from ..metrics import format_metrics, higher_is_better
from ..methods import METHODS
from ..model import build_model, compile_model
from ..plugins import configured_callbacks
from ..progress import Progress
from ..run_config import RunConfig, load_run_config
from ..runfolder import (DATA_REPORT, ENV, EVAL, METRICS, RANDOM_WEIGHTS_NOTE, SPLITS, MetricsLog, RunFolder,
                         StateWriter, environment, predictions_path, result_warnings)
from .batches import num_batches, rank_batches
from .data import DataBundle, build_prefix_cache, cache_placement, describe_sizes, frozen_embedding, save_split_file
from .distributed import DistContext, all_reduce_grads, init_distributed
from .evaluation import autocast_context, evaluate_model, metric_value, model_inputs
from .fastpath import GraphSteps, plan_compile, resolve_run_frozen_dtype
from .label_draw import LabelDraw
from .optim import build_optimizer, load_optimizer_state, mask_frozen_grads, optimizer_state_tensors, set_lr
from .learned import learned_parameters, nga_now
from .linear_probe_run import run_linear_probe
from .pipeline import WaitClock, build_pipeline
from .predictions import PredictionCollector, write_predictions
from .pseudo import PseudoSupervision
from .resume import capture_rng, load_train_state, restore_rng, save_train_state
from .schedule import PhaseInfo, TrainableSets, apply_phase, hold_masked, lr_factor, phase_for_epoch
from .shared_data import load_shared_data
from .signals import StopSignals
from .stage1 import KIND as STAGE1_KIND
from .stage1 import Stage1, run_stage1
from .tensorboard import TensorBoardSink



class NonFiniteLossError(RuntimeError):
    """Training produced NaN/inf; the message names the epoch, step and term."""


class StopTraining(Exception):
    """Raise from a callback (or set ``state.should_stop``) to end training cleanly:
    ``last`` is written and the best checkpoint is evaluated on test."""


class Callback:
    """Hooks the trainer calls (every method optional; duck typing works too)."""

    def on_train_start(self, state: "TrainerView") -> None: ...
    def on_step_end(self, state: "TrainerView") -> None: ...
    def on_epoch_end(self, state: "TrainerView") -> None: ...
    def on_train_end(self, state: "TrainerView") -> None: ...


@dataclass
class TrainerView:
    """What callbacks see of the trainer as it runs. Epochs and steps here are 0-based counters; logs are 1-based."""

    config: RunConfig
    run_dir: Path
    model: Any
    optimizer: Any = None
    epoch: int = 0                  # current epoch (0-based)
    step_in_epoch: int = 0          # batches finished in the current epoch
    global_step: int = 0            # optimiser steps taken
    steps_per_epoch: int = 0
    total_steps: int = 0
    phase: PhaseInfo | None = None
    loss: dict[str, float] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    val_metrics: dict[str, Any] | None = None
    best_value: float | None = None
    best_epoch: int | None = None   # 1-based epoch of the best checkpoint
    test_metrics: dict[str, Any] | None = None
    should_stop: bool = False
    stop_reason: str | None = None   # set with should_stop: why the run stopped early
    rank: int = 0
    world_size: int = 1
    batch: dict[str, Any] | None = None   # the last batch (CPU tensors), for analysis hooks
    metrics_log: Any = None          # callbacks log through it so resume bookkeeping stays right
    data: Any = None                 # the DataBundle (index and splits)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, config: RunConfig, folder: RunFolder, *, callbacks: Iterable[Any] = (), quiet: bool = False,
                 ctx: DistContext | None = None, resume: bool = False, restart: bool = False,
                 stop_signals: StopSignals | None = None):
        self.config = config
        self.folder = folder
        self.callbacks = list(callbacks)
        self.stop_signals = stop_signals or StopSignals(())
        self.quiet = quiet
        self.ctx = ctx or DistContext()
        self.resume = resume
        tc = config.train
        self.tc = tc
        self.device = resolve_device(tc.device, self.ctx.local_rank if self.ctx.enabled else None)
        self.amp = tc.amp if self.device.type == "cuda" else "none"
        self.method = METHODS[config.method]
        # frozen_dtype: auto is resolved once; config.yaml records the result for eval, predict, resume
        # and ablate's reuse check. The linear probe keeps float32 weights (see below).
        frozen = resolve_run_frozen_dtype(config)
        if frozen != tc.frozen_dtype:
            self.config = config = config.with_overrides({"train.frozen_dtype": frozen})
            self.tc = tc = config.train
        self.metric_name = tc.select_metric
        self.higher_better = higher_is_better(tc.select_metric)
        self.loss_weights = LossWeights(lambda_dist=tc.loss.lambda_dist, alpha=tc.loss.alpha,
                                        stage_ce=tc.loss.stage_ce, distill=tc.loss.distill)
        _seed_everything(tc.seed)

        # ---- data
        # A resumed or restarted run keeps the split it was given.
        splits_file = folder / SPLITS if resume or (restart and (folder / SPLITS).is_file()) else None
        self.data: DataBundle = load_shared_data(config.data, splits_file, self.ctx)
        self.has_dist = self.data.index.has_distributions
        self.label_draw = LabelDraw.for_data(config.data, self.data.index, tc.seed)
        unlabelled = self.data.index.unlabelled(self.data.splits["train"])
        if unlabelled and tc.supervision == "labels" and (self.method.trains or self.method.linear_probe):
            raise ValueError(f"train.supervision: labels trains on labels, but {unlabelled} of "
                             f"{len(self.data.splits['train'])} training items have none; set "
                             "train.supervision: pseudo for label-free training")

        # ---- model (prompts are drawn from the global RNG: seed right before)
        bb = config.backbone
        self.backbone = load_backbone(bb.model_name, bb.pretrained, device=self.device, seed=bb.seed,
                                      quick_gelu=bb.quick_gelu)
        if bb.quick_gelu is None and not bb.model_name.endswith("-quickgelu"):
            # config.yaml records the activation the run really used, so every reload builds the same
            # backbone even if the tag's default or the weights file's open_clip_config.json changes.
            config = self.config = config.model_copy(deep=True)
            config.backbone.quick_gelu = self.backbone.info.quick_gelu
        _seed_everything(tc.seed)
        self.model = build_model(self.backbone, self.data.classnames, config.model_config_for_method())
        # The linear probe runs open_clip's encode_image, whose float32 ln_post/proj would
        # meet low-precision block outputs: it keeps float32 weights (it trains nothing in them).
        if tc.frozen_dtype != "fp32" and not self.method.linear_probe:
            self.model.set_frozen_dtype(tc.frozen_dtype)
        self.forward_train = self.model
        self._compiled_rows: int | None = None
        self._compile_pending = False
        self._compile_mode = "none"
        self._graph_trainable: frozenset[str] | None = None
        self.random_weights = self.backbone.info.random_weights

        # ---- run folder (rank 0 writes)
        self.metrics_log = MetricsLog(folder / METRICS, enabled=self.ctx.is_main)
        if restart:
            self.metrics_log.truncate(0)
        if not resume and self.ctx.is_main:
            if not restart:
                folder.create()
            atomic_write_text(folder.config, config.to_yaml())
            save_split_file(folder / SPLITS, self.data)
            self.data.index.report.write(folder / DATA_REPORT)
            write_json(folder / ENV, environment(self.device, self.amp, self.ctx.world_size))
        self.run_state = StateWriter(folder.path, enabled=self.ctx.is_main)
        self.ctx.barrier()

        # ---- sources (train.input_pipeline)
        trains = self.method.trains and not self.method.linear_probe
        self.pipeline = build_pipeline(self.data, self.model, tc, self.device,
                                       trains_on_images=trains and not tc.cache_prefix,
                                       total_epochs=tc.total_epochs if trains else 0, run_dir=folder.path,
                                       ctx=self.ctx, log=self.say)
        self.sources = self.pipeline.sources
        self.data_clock = WaitClock()
        self.cache_seconds = 0.0
        self.cache_bytes, self.cache_device = 0, None
        if tc.cache_prefix and self.method.trains and not self.method.linear_probe:
            t0 = time.perf_counter()
            # Under the training autocast, so cached tokens are what the direct path computes (bit for bit).
            with autocast_context(self.device, self.amp):
                self.sources = {k: build_prefix_cache(self.model, s, self.device, tc.eval_bs(),
                                                      with_frozen=self.loss_weights.distill > 0)
                                for k, s in self.sources.items()}
            self.cache_seconds = time.perf_counter() - t0
            nbytes = sum(src.nbytes() for src in self.sources.values())
            self.cache_device = cache_placement(tc.cache_device, self.device, nbytes)
            for src in self.sources.values():
                src.to(self.cache_device)
            self.cache_bytes = nbytes

        # ---- stage 1: the shared classifier before any prompted image (classifier.init); the
        # linear probe has its own head and needs it only as the label-free teacher
        self.stage1 = None if self.method.linear_probe and tc.supervision != "pseudo" else self._stage1(resume)

        # ---- label-free training: the teacher labels every training image once
        self.pseudo = PseudoSupervision(self) if tc.supervision == "pseudo" and self.method.trains \
            and not self.method.linear_probe else None
        if self.pseudo is not None and tc.pseudo.train_layernorms:
            self.model.train_visual_layernorms()

        # ---- schedule and optimiser
        self.sets = TrainableSets.from_model(self.model, tc.recipe)
        self._masks: dict[str, torch.Tensor] = {}
        self.nga_init = nga_now(self.model)
        self.optimizer, self.named_params = build_optimizer(self.model, tc, self.sets.capable)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        n_train = len(self.data.splits["train"])
        self.steps_per_epoch = num_batches(n_train, tc.batch_size)
        self.total_epochs = tc.total_epochs if self.method.trains else 0
        self.state = TrainerView(config=config, run_dir=folder.path, model=self.model, optimizer=self.optimizer,
                                 steps_per_epoch=self.steps_per_epoch,
                                 total_steps=self.steps_per_epoch * self.total_epochs,
                                 rank=self.ctx.rank, world_size=self.ctx.world_size,
                                 metrics_log=self.metrics_log, data=self.data)
        self.start_epoch, self.start_step = 0, 0
        self.last_saved_step: int | None = None
        if resume:
            self._load_state()
        if tc.tensorboard and self.ctx.is_main:
            self.metrics_log.add_sink(TensorBoardSink(folder.path, self.state.global_step + 1 if resume else None))
        self.compile_plan = self._plan_compile()

    # ---- helpers ----------------------------------------------------------------------
    def _plan_compile(self):
        """``train.compile`` per graph for the steps this run has left (see :mod:`.fastpath`)."""
        tc = self.tc
        graphs: dict[frozenset[str], GraphSteps] = {}
        flops = None
        if tc.compile == "auto" and self.device.type == "cuda" and self.method.trains \
                and not self.method.linear_probe:
            full = len(self.data.splits["train"]) // tc.batch_size     # the short last batch runs eagerly
            for epoch in range(self.start_epoch, self.total_epochs):
                phase = phase_for_epoch(epoch, tc.epochs, self.model.num_stages)
                names = frozenset(self.sets.names_for(self.model, phase))
                g = graphs.setdefault(names, GraphSteps(names, [], 0))
                g.steps += max(0, full - (self.start_step if epoch == self.start_epoch else 0))
                label = phase.name if phase.name != "unfreeze" else f"unfreeze@{epoch + 1}"
                if label not in g.phases:
                    g.phases.append(label)
            rows = math.ceil(tc.batch_size / self.ctx.world_size)
            flops = cascade_flops(self.model, batch_size=rows).train_step * rows
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else ""
        return plan_compile(tc.compile, device=self.device, graphs=list(graphs.values()), flops_per_step=flops,
                            device_name=name, backend=tc.compile_backend)

    def _forward_for(self, rows: int):
        """The compiled forward for the batch size it was compiled for; eager for the rest.

        Only an epoch's short last batch differs, once per epoch: running it eagerly costs
        far less than a second compilation (about a minute per graph with inductor on GPUs).
        """
        if self.forward_train is self.model:
            return self.model
        if self._compiled_rows is None:
            self._compiled_rows = rows
        return self.forward_train if rows == self._compiled_rows else self.model

    def _new_phase_graphs(self, trainable: frozenset[str]) -> None:
        """A phase changes which parameters need gradients, so the compiled graphs of the
        previous phase can never run again: drop them instead of filling dynamo's cache
        (whose size limit would otherwise silently fall back to eager). Epochs of the same
        phase keep their graphs.

        Only the training forward is compiled: evaluation batches differ in size and run
        without gradients, and would only add graphs. The compiled module shares the
        model's parameters, so checkpoints, σ and evaluation see the same state.
        """
        if trainable == self._graph_trainable:
            return
        had_graphs = self.forward_train is not self.model
        self._graph_trainable = trainable
        mode = self.compile_plan.mode_for(trainable)
        if had_graphs:
            torch._dynamo.reset()
        self.forward_train = self.model if mode == "none" else compile_model(self.model, mode, self.tc.compile_backend)
        self._compile_mode = mode
        self._compile_pending = mode != "none"

    def _compile_failed(self, exc: Exception) -> None:
        """Once per run: warn, naming the setting, and train eagerly from here on."""
        tc, s = self.tc, self.state
        what = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:500]
        msg = (f"WARNING: train.compile={tc.compile} ({self._compile_mode}, backend {tc.compile_backend}): compiling "
               f"the training step failed in phase {s.phase.name} ({what}); training continues eagerly. "
               "Set train.compile: none to skip compiling.")
        if self.ctx.is_main:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        self.metrics_log.write({"kind": "compile_fallback", "phase": s.phase.name, "epoch": s.epoch + 1,
                                "global_step": s.global_step + 1, "mode": self._compile_mode,
                                "backend": tc.compile_backend, "error": what})
        self.compile_plan.disable(what)
        self.forward_train = self.model
        self._compile_pending = False
        torch._dynamo.reset()

    def say(self, msg: str) -> None:
        if not self.quiet and self.ctx.is_main:
            print(msg, file=sys.stderr, flush=True)

    def _callbacks(self, hook: str) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self.state)

    def _eval(self, split: str, desc: str | None = None, predictions=None) -> dict[str, Any]:
        return evaluate_model(self.model, self.sources[split], device=self.device, batch_size=self.tc.eval_bs(),
                              ctx=self.ctx, amp=self.amp, stages=self.tc.eval_stages, loss_weights=self.loss_weights,
                              has_distributions=self.has_dist,
                              progress=not self.quiet and self.ctx.is_main, desc=desc or split,
                              predictions=predictions)

    def _better(self, value: float) -> bool:
        best = self.state.best_value
        if math.isnan(value):
            return best is None
        if best is None or math.isnan(best):
            return True
        return value > best if self.higher_better else value < best

    def _extra(self) -> dict[str, Any]:
        s = self.state
        return {"method": self.config.method, "epoch": s.epoch + 1, "global_step": s.global_step,
                "select_metric": self.metric_name, "best_value": s.best_value, "best_epoch": s.best_epoch,
                "random_weights": self.random_weights}

    def _check_params_finite(self, where: str) -> None:
        bad = [n for n, p in self.named_params.items() if not bool(torch.isfinite(p.detach()).all())]
        if bad:
            raise NonFiniteLossError(f"{where}: parameters became non-finite ({', '.join(bad[:5])}); "
                                     f"checkpoint not written; {self._kept()}")

    def _kept(self) -> str:
        if self.last_saved_step is None:
            return "no checkpoint had been written yet"
        return (f"the last good checkpoint (global step {self.last_saved_step}) is kept in "
                f"{self.folder.checkpoints} (resume with --resume {self.folder.path})")

    def save_last(self, epoch: int, step_in_epoch: int) -> None:
        """Write ``last`` (+ training state) at position (epoch, step_in_epoch), 0-based."""
        s = self.state
        self._check_params_finite(f"epoch {epoch + 1} step {step_in_epoch}")
        if not self.ctx.is_main:
            return
        tensors = {f"model.{k}": v for k, v in self.model.trainable_state_dict().items()}
        opt_tensors, opt_meta = optimizer_state_tensors(self.optimizer)
        tensors.update(opt_tensors)
        rng_tensors, rng_meta = capture_rng()
        tensors.update(rng_tensors)
        scalars = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": s.global_step,
                   "steps_per_epoch": self.steps_per_epoch, "best_value": s.best_value, "best_epoch": s.best_epoch,
                   "metrics_lines": self.metrics_log.lines, "rng": rng_meta, "optimizer": opt_meta,
                   "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                   "world_size": self.ctx.world_size, "note": "epoch/step are 0-based: resume starts there"}
        save_train_state(self.folder.train_state, tensors, scalars)
        save_checkpoint(self.model, self.folder.checkpoint("last"), extra=self._extra())
        self.last_saved_step = s.global_step

    def _load_state(self) -> None:
        tensors, scalars = load_train_state(self.folder.train_state)
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        own = self.model.trainable_state_dict()
        missing = sorted(set(own) - set(model_state))
        if missing:
            raise ValueError(f"{self.folder.train_state}: model tensors missing {missing[:5]}")
        self.model.load_state_dict(model_state, strict=False)
        if scalars.get("steps_per_epoch") != self.steps_per_epoch:
            raise ValueError(f"resume: {scalars.get('steps_per_epoch')} steps per epoch recorded, "
                             f"{self.steps_per_epoch} now (did the data or train.batch_size change?)")
        load_optimizer_state(self.optimizer, tensors)
        restore_rng(tensors, scalars.get("rng", {}))
        if self.scaler is not None and scalars.get("scaler"):
            self.scaler.load_state_dict(scalars["scaler"])
        s = self.state
        s.global_step = int(scalars["global_step"])
        s.best_value, s.best_epoch = scalars.get("best_value"), scalars.get("best_epoch")
        self.start_epoch, self.start_step = int(scalars["epoch"]), int(scalars["step_in_epoch"])
        self.last_saved_step = s.global_step
        self.metrics_log.truncate(int(scalars.get("metrics_lines", 0)))
        self.say(f"resuming {self.folder.path} at epoch {self.start_epoch + 1}, step {self.start_step} "
                 f"(global step {s.global_step})")

    def _stage1(self, resume: bool) -> Stage1:
        """Fit the classifier as ``classifier.init`` says, on every rank (rank 0's result is
        kept by all). A resumed run fits again, since a frozen teacher copies the classifier
        before the checkpoint is loaded, and reports the accuracies it logged the first time."""
        logged = [r for r in self.metrics_log.records() if r.get("kind") == STAGE1_KIND] if resume else []
        result = run_stage1(self, measure=self.ctx.is_main and not logged, note=self.say)
        if self.ctx.enabled:
            weight = self.ctx.broadcast_object(self.model.classifier.weight.detach().cpu())
            with torch.no_grad():
                self.model.classifier.weight.copy_(weight.to(self.device))
        if logged:
            result.accuracy = {split: (logged[0].get(split) or {}).get("accuracy") for split in ("val", "test")}
        self.say(result.describe())
        return result

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> Path:
        s = self.state
        self.say(f"run {self.folder.path}: {self.config.method} on {self.backbone.info.describe()}, "
                 f"{describe_sizes(self.data)}, device {self.device}"
                 + (f", {self.ctx.world_size} processes" if self.ctx.enabled else ""))
        if self.random_weights:
            self.say(f"WARNING: {RANDOM_WEIGHTS_NOTE}")
        if self.tc.amp != "none" and self.amp == "none":
            self.say(f"note: train.amp={self.tc.amp} applies to CUDA only; running in float32 on {self.device}")
        self.say(f"frozen backbone in {self.tc.frozen_dtype}; {self.compile_plan.summary()}")
        self.say(self.pipeline.describe())
        if self.pseudo is not None:
            self.say(self.pseudo.describe())
        if not self.has_dist and self.pseudo is None:
            self.say(f"note: the data has labels only, so the distribution metrics (KL, Chebyshev, Clark, Canberra, "
                     f"cosine, intersection) are n/a, and with one-hot targets KL(p‖q) is the cross-entropy: the "
                     f"dual-task loss is (1 + λ_dist)·CE = {1 + self.loss_weights.lambda_dist:g}·CE"
                     + (f" (targets smoothed by data.label_smoothing={self.config.data.label_smoothing:g})"
                        if self.config.data.label_smoothing else "") + " plus α·consistency")
        if self.label_draw is not None:
            self.say("note: FER+ protocol probability: each epoch trains every face on one label drawn from its "
                     "kept votes (validation and test use the votes' argmax)")
        if self.cache_seconds:
            self.say(f"prefix cache: {self.model.frozen_prefix} frozen block(s) computed once in {self.cache_seconds:.1f}s "
                     f"({self.cache_bytes / 2**20:.0f} MiB, in {'host' if self.cache_device.type == 'cpu' else 'GPU'} "
                     "memory)")
        if not self.resume:
            self.metrics_log.write({"kind": "start", "method": self.config.method,
                                    "parameters": self.model.parameter_report(),
                                    "steps_per_epoch": self.steps_per_epoch, "total_steps": s.total_steps,
                                    "sizes": self.data.sizes(), "random_weights": self.random_weights,
                                    "prefix_cache": bool(self.tc.cache_prefix and self.method.trains),
                                    "frozen_dtype": self.tc.frozen_dtype, "compile": self.tc.compile,
                                    "recipe": self.tc.recipe, "lr": self.tc.learning_rates(),
                                    "targets": "distributions" if self.has_dist else "labels only",
                                    "compile_plan": self.compile_plan.record(),
                                    "input_pipeline": self.pipeline.record(),
                                    "supervision": self.tc.supervision,
                                    **({"pseudo_labels": self.pseudo.summary} if self.pseudo is not None else {}),
                                    **{f"{k}_init": v for k, v in self.nga_init.items()}})
        if not self.resume and self.stage1 is not None:
            self.metrics_log.write(self.stage1.record())
        self.run_state.start(epoch=self.start_epoch + 1, step=self.start_step, steps_per_epoch=self.steps_per_epoch,
                             global_step=s.global_step, total_steps=s.total_steps)
        self._callbacks("on_train_start")
        if self.method.linear_probe:
            return self._linear_probe()
        if self.total_epochs == 0:
            if self.ctx.is_main and not self.folder.checkpoint("best").exists():
                save_checkpoint(self.model, self.folder.checkpoint("best"), extra=self._extra())
                save_checkpoint(self.model, self.folder.checkpoint("last"), extra=self._extra())
            val = self._eval("val")
            s.val_metrics = val
            s.best_value = metric_value(val, self.metric_name) if val["num_samples"] else None
            self.metrics_log.write({"kind": "eval", "split": "val", "epoch": 0, "global_step": 0, "metrics": val,
                                    "best": True})
            return self._finish(val_best=val)

        for epoch in range(self.start_epoch, self.total_epochs):
            s.epoch = epoch
            if self._train_epoch(epoch, self.start_step if epoch == self.start_epoch else 0):
                break
        if self.stop_signals.stopped:
            return self._suspend()
        return self._finish()

    def _suspend(self) -> Path:
        """End a run stopped by a signal: ``last`` and its resume state are on disk already;
        record the state and return at once (no test evaluation: a scheduler's grace period
        is short, and ``--resume`` evaluates when the run has trained to its end)."""
        s = self.state
        self.ctx.barrier()
        self.run_state.end("stopped", s.stop_reason, epoch=s.epoch + 1, step=s.step_in_epoch,
                           global_step=s.global_step)
        self.say(f"run {self.run_state.state.label()} ({s.stop_reason}); continue it with "
                 f"`cascade train --resume {self.folder.path}`")
        self.pipeline.close()
        self._callbacks("on_train_end")
        self.metrics_log.close()
        return self.folder.path

    def _train_epoch(self, epoch: int, start_step: int) -> bool:
        s, tc = self.state, self.tc
        phase = phase_for_epoch(epoch, tc.epochs, self.model.num_stages)
        s.phase = phase
        names = self.sets.names_for(self.model, phase)
        self._masks = self.sets.masks_for(self.model, phase)
        counts = apply_phase(self.model, names)
        self._new_phase_graphs(frozenset(names))
        active = [p for n, p in self.named_params.items() if n in names]
        if start_step == 0:
            self.metrics_log.write({"kind": "phase", "phase": phase.name, "epoch": epoch + 1,
                                    "stages": [x + 1 for x in sorted(phase.active_stages)],
                                    "trainable": counts, "global_step": s.global_step})
        self.say(f"epoch {epoch + 1}/{self.total_epochs}: {self.sets.describe(self.model, phase)}, "
                 f"{sum(counts.values())} trainable parameters")
        self.model.train()
        self.model.visual.eval()
        batches = list(rank_batches(len(self.data.splits["train"]), tc.batch_size, tc.seed, epoch,
                                    self.ctx.rank, self.ctx.world_size, start=start_step))
        local_lists = [b[0] for b in batches]
        bar = Progress(self.steps_per_epoch, f"epoch {epoch + 1} {phase.name}", initial=start_step, unit="steps",
                       enabled=not self.quiet and self.ctx.is_main)
        window_images, window_start = 0, time.perf_counter()
        s.step_in_epoch = start_step
        stop = False
        try:
            train_batches = self.data_clock.wrap(self.sources["train"].iterate(local_lists, epoch))
            for (local, n_global, weight), batch in zip(batches, train_batches):
                terms = self._step(batch, weight, active, epoch)
                s.global_step += 1
                s.step_in_epoch += 1
                s.loss = terms
                window_images += n_global
                if bar is not None:
                    bar.update(1)
                if s.global_step % tc.log_every_steps == 0 or s.step_in_epoch == self.steps_per_epoch:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    s.images_per_s = window_images / elapsed
                    self.metrics_log.write({"kind": "step", "phase": phase.name, "epoch": epoch + 1,
                                            "step": s.step_in_epoch, "global_step": s.global_step, "lr": s.lr,
                                            "loss": terms, "images_per_s": round(s.images_per_s, 2),
                                            **nga_now(self.model), "data_wait": self.data_clock.fraction(elapsed),
                                            "time": time.time()})
                    self.run_state.update(epoch=epoch + 1, step=s.step_in_epoch, global_step=s.global_step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{terms['total']:.4f}", lr=f"{max(s.lr.values(), default=0):.2e}",
                                        img_s=f"{s.images_per_s:.1f}")
                    window_images, window_start = 0, time.perf_counter()
                if tc.save_every_steps and s.global_step % tc.save_every_steps == 0:
                    self.save_last(epoch, s.step_in_epoch)
                s.batch = {k: v for k, v in batch.items() if k != "image" and k != "prefix"}
                try:
                    self._callbacks("on_step_end")
                except StopTraining:
                    s.should_stop = True
                if self._agree_to_stop():
                    stop = True
                    break
        finally:
            if bar is not None:
                bar.close()
        if stop:
            self.save_last(epoch, s.step_in_epoch)
            self.say(f"stopped{' (' + s.stop_reason + ')' if s.stop_reason else ''} at epoch {epoch + 1}, "
                     f"step {s.step_in_epoch}/{self.steps_per_epoch}")
            return True

        val = self._eval("val", desc=f"val epoch {epoch + 1}")
        s.val_metrics = val
        value = metric_value(val, self.metric_name) if val["num_samples"] else float("nan")
        improved = True if self.pseudo is not None and self.pseudo.select_last else self._better(value)
        if improved:
            s.best_value, s.best_epoch = value, epoch + 1
            if self.ctx.is_main:
                save_checkpoint(self.model, self.folder.checkpoint("best"),
                                extra={**self._extra(), "val_metrics": val})
        self.metrics_log.write({"kind": "eval", "split": "val", "phase": phase.name, "epoch": epoch + 1,
                                "global_step": s.global_step, "metrics": val, "select_metric": self.metric_name,
                                "value": value, "best": improved, **nga_now(self.model), "time": time.time(),
                                **({"pseudo": self.pseudo.epoch_record(self.ctx, self.device)}
                                   if self.pseudo is not None else {})})
        self.say(f"epoch {epoch + 1} val: {format_metrics(val['fused'])}" + ("  (best)" if improved else ""))
        self.save_last(epoch + 1, 0)
        if tc.keep_epoch_checkpoints and self.ctx.is_main:
            save_checkpoint(self.model, self.folder.checkpoint(f"epoch-{epoch + 1}"), extra=self._extra())
        try:
            self._callbacks("on_epoch_end")
        except StopTraining:
            s.should_stop = True
        return self._agree_to_stop()

    def _agree_to_stop(self) -> bool:
        """Whether to stop now: a callback asked, or a stop signal arrived (on any rank).

        Under DDP one all-reduce of the flags makes every rank stop after the same step,
        however far apart the signal reached them.
        """
        s, signals = self.state, self.stop_signals
        asked, signalled = s.should_stop, signals.received is not None
        if self.ctx.enabled:
            flags = torch.tensor([float(asked), float(signalled)], device=self.device)
            asked, signalled = (bool(v > 0) for v in self.ctx.all_reduce_(flags).tolist())
        if signalled and not signals.stopped:
            signals.stopped = True
            s.should_stop = True
            s.stop_reason = signals.reason or "a stop signal reached another process of this run"
        elif asked:
            s.should_stop = True
        return s.should_stop

    def _step(self, batch: dict[str, Any], weight: float, active: list[torch.nn.Parameter],
              epoch: int) -> dict[str, float]:
        s, tc = self.state, self.tc
        self.optimizer.zero_grad(set_to_none=True)
        if self.pseudo is None:
            if self.label_draw is not None:
                batch = self.label_draw(batch, epoch)
            labels = batch["label"].to(self.device, non_blocking=True)
            dists = batch["dist"].to(self.device, non_blocking=True)
        frozen = None
        if self.loss_weights.distill > 0:
            frozen = batch.get("frozen")
            if frozen is None:
                frozen = frozen_embedding(self.model, images=batch["image"].to(self.device))
            frozen = frozen.to(self.device)
        forward = self._forward_for(len(batch["pos"]))
        compiling = forward is not self.model and self._compile_pending
        if forward is not self.model:
            # A new iteration for CUDA graph trees (mode reduce-overhead): last step's graph
            # outputs are no longer read, so their memory may be reused.
            torch.compiler.cudagraph_mark_step_begin()
        if compiling:
            self.say(f"compiling the training step for phase {s.phase.name} (torch.compile {self._compile_mode}) ...")
            t_compile = time.perf_counter()
        try:
            with autocast_context(self.device, self.amp):
                out = forward(**model_inputs(batch, self.device))
            if self.pseudo is not None:
                terms = self.pseudo.loss(out, batch, self.loss_weights, self.device, weight, frozen)
            else:
                terms = cascade_loss(out, labels, dists, self.loss_weights, frozen_embedding=frozen)
            keys = list(terms)
            values = torch.stack([terms[k].detach().float() * weight for k in keys])
            self.ctx.all_reduce_(values)
            loss = terms["total"] * weight
            # The backward graph is compiled on its first call too.
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        except Exception as exc:
            if not compiling:
                raise
            self._compile_failed(exc)
            self.optimizer.zero_grad(set_to_none=True)
            return self._step(batch, weight, active, epoch)
        mask_frozen_grads(self.optimizer)
        all_reduce_grads(active, self.ctx)
        restore_masked = hold_masked(self.named_params, self._masks)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        with_grad = [p for p in active if p.grad is not None]
        norm = None
        if with_grad:
            max_norm = tc.grad_clip if tc.grad_clip is not None else float("inf")
            norm = torch.nn.utils.clip_grad_norm_(with_grad, max_norm)
        # One device-to-host copy per step (loss terms and gradient norm together): each
        # sync stalls the host until the GPU drains. Both checks still precede the update.
        stats = values if norm is None else torch.cat([values, norm.detach().float().view(1).to(values.device)])
        stats = stats.cpu().tolist()
        values = stats[:len(keys)]
        where = f"epoch {epoch + 1}, step {s.step_in_epoch + 1} (global step {s.global_step + 1})"
        bad = [k for k, v in zip(keys, values) if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at {where}: term(s) {', '.join(bad)} = "
                + ", ".join(f"{values[keys.index(k)]}" for k in bad)
                + f". Training stopped; {self._kept()}. Lower the learning rates (train.lr.*) or check the data.")
        if norm is not None and not math.isfinite(stats[-1]) and self.scaler is None:
            raise NonFiniteLossError(f"non-finite gradient norm ({stats[-1]}) at {where}; training stopped; "
                                     f"{self._kept()}")
        s.lr = set_lr(self.optimizer, lr_factor(s.global_step, s.total_steps, tc.warmup_steps, tc.schedule,
                                                tc.min_lr_ratio))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        restore_masked()
        if compiling:
            self._compile_pending = False
            seconds = time.perf_counter() - t_compile
            self.metrics_log.write({"kind": "compile", "phase": s.phase.name, "epoch": epoch + 1,
                                    "global_step": s.global_step + 1, "mode": self._compile_mode,
                                    "backend": tc.compile_backend, "first_step_seconds": round(seconds, 3)})
            self.say(f"compiled in {seconds:.1f}s (first step of the phase, compilation included)")
        return {k: float(v) for k, v in zip(keys, values)}

    # ---- the end --------------------------------------------------------------------------
    def _finish(self, val_best: dict[str, Any] | None = None) -> Path:
        s = self.state
        best_path = self.folder.checkpoint("best")
        self.ctx.barrier()
        last_nga, best_nga, checkpoint = nga_now(self.model), None, "last"
        if best_path.exists():
            meta = load_into(self.model, best_path)
            best_nga, checkpoint = nga_now(self.model), "best"
            if val_best is None:
                val_best = (meta.get("extra") or {}).get("val_metrics")
        collected = {split: PredictionCollector() for split in ("val", "test")}
        test = self._eval("test", predictions=collected["test"])
        val_now = self._eval("val", predictions=collected["val"])   # the best checkpoint's per-image predictions
        if val_best is None:
            val_best = val_now
        if self.ctx.is_main:
            for split, pred in collected.items():
                write_predictions(predictions_path(self.folder.path, split), self.data.index, self.data.classnames,
                                  *pred.arrays())
        s.test_metrics = test
        self.metrics_log.write({"kind": "test", "split": "test", "checkpoint": checkpoint, "best_epoch": s.best_epoch,
                                "global_step": s.global_step, "metrics": test, "time": time.time()})
        final = self.run_state.closing("stopped" if s.should_stop else "finished",
                                       s.stop_reason if s.should_stop else None,
                                       epoch=s.epoch + 1 if self.total_epochs else None,
                                       step=s.step_in_epoch if self.total_epochs else None, global_step=s.global_step)
        nga = learned_parameters(self.model, self.nga_init, last_nga, best_nga,
                                 sigma_trainable="nga.log_sigma" in self.sets.capable) \
            if self.method.trains and self.total_epochs else None
        report = self.report(val_best, test, checkpoint=checkpoint, nga=nga)
        if self.ctx.is_main:
            write_json(self.folder / EVAL, report)
        self.run_state.flush()
        if test["num_samples"]:
            which = (f"best checkpoint, epoch {s.best_epoch}" if checkpoint == "best"
                     else "the model as it stopped: no epoch had ended, so no checkpoint was selected on val")
            self.say(f"test ({which}): {format_metrics(test['fused'])}")
        for warning in report.get("warnings", []):
            self.say(f"WARNING: {warning}")
        if final.partial:
            self.say(f"run {final.label()}")
        self.say(f"run folder: {self.folder.path}")
        self.pipeline.close()
        self._callbacks("on_train_end")
        self.metrics_log.close()
        return self.folder.path

    def report(self, val: dict[str, Any] | None, test: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        """eval.json: what was evaluated, on what, and every warning a reader needs."""
        s = self.state
        state = self.run_state.state
        out = {"method": self.config.method, "run": self.folder.name,
               "backbone": self.backbone.info.to_dict(), "random_weights": self.random_weights,
               "trained": self.method.trains and not self.method.linear_probe,
               "select_metric": self.metric_name, "best_epoch": s.best_epoch, "best_value": s.best_value,
               "checkpoint": "best", "classnames": self.data.classnames, "sizes": self.data.sizes(),
               "targets": "distributions" if self.has_dist else "labels only",
               "state": state.to_dict(), "partial": state.partial,
               "parameters": self.model.parameter_report(),
               "stage1": self.stage1.block() if self.stage1 is not None else None, "val": val, "test": test,
               "supervision": self.tc.supervision}
        if self.pseudo is not None:
            out["selection"] = self.pseudo.selection
            out["pseudo_labels"] = self.pseudo.summary
        out.update(extra)
        if self.random_weights:
            out["warning"] = RANDOM_WEIGHTS_NOTE
        warnings = result_warnings(state, self.random_weights)
        if (out.get("nga") or {}).get("warning"):
            warnings.append(out["nga"]["warning"])
        out["warnings"] = warnings
        return out

    def _linear_probe(self) -> Path:
        return run_linear_probe(self)


def train(config: RunConfig | str | Path | None = None, callbacks: Iterable[Any] = (), *,
          run_dir: str | Path | None = None, resume: str | Path | None = None, quiet: bool = False,
          overrides: list[str] | None = None, stop_signals: StopSignals | None = None) -> Path:
    """Train (or, for zero-shot / linear probe, just evaluate) one run; returns its folder.

    ``config`` is a :class:`RunConfig` or a YAML path; ``resume`` is a run folder to
    continue from its ``checkpoints/last`` (its ``config.yaml`` is used, ``config`` ignored).
    A run that was stopped or killed before it wrote any checkpoint restarts from its saved
    config and split. Under ``torchrun`` every process calls this; only rank 0 writes.
    ``state.json`` in the folder records how the run ended (:mod:`cascade.runfolder.status`).

    While it trains, SIGTERM and SIGUSR1 stop the run after the current step, resumable
    (:mod:`.signals`); pass your own ``stop_signals`` to learn afterwards whether one did
    (``stop_signals.stopped``).
    """
    restart = False
    if resume is not None:
        folder = RunFolder(resume)
        folder.require()
        cfg = load_run_config(folder.config, overrides)
        restart = not folder.train_state.is_file()
    else:
        if config is None:
            raise ValueError("train: give a RunConfig (or a YAML path) or resume=<run folder>")
        cfg = config if isinstance(config, RunConfig) else load_run_config(config, overrides)
        if isinstance(config, RunConfig) and overrides:
            cfg = cfg.with_overrides(overrides)
        folder = RunFolder.for_config(cfg, run_dir)
    ctx = init_distributed(device_kind(cfg.train.device))
    trainer = None
    try:
        if ctx.enabled and resume is None:
            folder = RunFolder(ctx.broadcast_object(str(folder.path)))
        callbacks = [*callbacks, *configured_callbacks(cfg)]
        if restart and not quiet and ctx.is_main:
            print(f"{folder.path} never wrote a checkpoint: restarting it from its saved config and split",
                  file=sys.stderr, flush=True)
        signals = stop_signals or StopSignals()
        with signals:
            trainer = Trainer(cfg, folder, callbacks=callbacks, quiet=quiet, ctx=ctx,
                              resume=resume is not None and not restart, restart=restart, stop_signals=signals)
            return trainer.run()
    except BaseException as exc:
        if trainer is not None and trainer.run_state.state.state == "running":
            reason = "interrupted (KeyboardInterrupt)" if isinstance(exc, KeyboardInterrupt) \
                else f"{exc.__class__.__name__}: {exc}"
            trainer.run_state.end("failed", reason)
        raise
    finally:
        ctx.close()
