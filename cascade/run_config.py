"""``RunConfig``: the one object that flows from the CLI or the dashboard into model and trainer.

Sections: ``method`` (a name from :data:`cascade.methods.METHODS`), ``backbone``,
``model`` (:class:`cascade.config.CascadeConfig`), ``data`` (:class:`cascade.data.config.DataConfig`),
``train`` (:class:`TrainConfig`), ``classifier`` (:class:`ClassifierConfig`, stage 1) and
``run`` (:class:`RunSection`).

Loading (:func:`load_run_config`): YAML → relative paths resolved against the YAML's
folder → ``--set key.sub=value`` overrides (paths in overrides resolve against the
current directory) → validation. Every error is a :class:`cascade.config.ConfigError`
whose message starts with the dotted field name.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import PARAM_GROUPS, CascadeConfig, ConfigError, expand_preset
from .data.config import DataConfig, resolve_root
from .methods import METHODS, method_config
from .metrics import higher_is_better

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackboneConfig(_Strict):
    model_name: str = Field("ViT-B-32", description="open_clip model name (ViT-B-32, ViT-B-16, cascade-tiny, "
                                                    "...), or auto: the architecture of the pretrained weights")
    pretrained: str | None = Field("openai", description="open_clip tag, a weights file or transformers folder, "
                                                       "or none for random weights")
    seed: int = Field(0, description="seed of the random initialisation (used when pretrained is none)")
    quick_gelu: bool | None = Field(None, description="force QuickGELU; default: what the pretrained tag needs")

    @field_validator("pretrained")
    @classmethod
    def _none_word(cls, v: str | None) -> str | None:
        if v is None or v.strip().lower() in ("", "none", "null", "random"):
            return None
        return v

    @property
    def random_weights(self) -> bool:
        return self.pretrained is None


RECIPES = ("default", "seed")
# σ and λ learning rates when ``train.lr.nga`` / ``train.lr.fusion`` are left unset. Adam moves
# a parameter by about one learning rate per step whatever its gradient's scale, so 1e-5
# moves log σ by about 1e-4 over a whole Emotion6 run (measured): σ stays 1, λ uniform.
RECIPE_LR: dict[str, dict[str, float]] = {
    "default": {"nga": 1e-2, "fusion": 1e-2},
    "seed": {"nga": 1e-5, "fusion": 1e-5},
}


class LearningRates(_Strict):
    """Learning rate per parameter group (prompts, NGA σ, fusion λ, stage heads, classifier, other).

    1e-4 for prompts. σ and λ (``nga``, ``fusion``): unset means the recipe's
    value (:data:`RECIPE_LR`: 1e-2 for ``train.recipe: default``, the seed's 1e-5 for
    ``seed``). Heads and classifier start from CLIP's projection and text embeddings, so
    they move slowly by default; ``other`` holds the per-stage LayerNorm copies
    (``layernorm: own``).
    """

    prompts: float = Field(1e-4, ge=0)
    nga: float | None = Field(None, ge=0, description="lr of log σ; null: the recipe's (default 1e-2, seed 1e-5)")
    fusion: float | None = Field(None, ge=0, description="lr of the fusion logits; null: the recipe's "
                                                          "(default 1e-2, seed 1e-5)")
    heads: float = Field(1e-5, ge=0)
    classifier: float = Field(1e-5, ge=0)
    other: float = Field(1e-4, ge=0)

    def resolved(self, recipe: str) -> dict[str, float]:
        """Group → learning rate, unset σ/λ rates filled in from the recipe."""
        out = {g: getattr(self, g) for g in PARAM_GROUPS}
        for g, v in RECIPE_LR[recipe].items():
            if out[g] is None:
                out[g] = v
        return out


class WeightDecays(_Strict):
    """AdamW weight decay per parameter group (decoupled; never applied to frozen parameters)."""

    prompts: float = Field(0.0, ge=0)
    nga: float = Field(0.0, ge=0)
    fusion: float = Field(0.0, ge=0)
    heads: float = Field(0.0, ge=0)
    classifier: float = Field(0.0, ge=0)
    other: float = Field(0.0, ge=0)


class EpochsConfig(_Strict):
    """Epochs per phase of the progressive schedule (warm-up, unfreeze, global)."""

    warmup: int = Field(2, ge=0, description="only the deepest stage, its head and the classifier train")
    unfreeze: int = Field(3, ge=0, description="the other stages join one at a time, deep to shallow")
    global_: int = Field(3, ge=0, alias="global", description="everything trains: prompts, σ, λ, heads, classifier")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @property
    def total(self) -> int:
        return self.warmup + self.unfreeze + self.global_


class LossConfig(_Strict):
    lambda_dist: float = Field(1.0, ge=0, description="weight of KL(p ‖ softmax(ℓ))")
    alpha: float = Field(0.1, ge=0, description="weight of the stage-consistency term")
    stage_ce: float = Field(0.0, ge=0, description="weight of CE on every stage's logits (deep supervision)")
    distill: float = Field(0.0, ge=0, description="weight of 1 - cos(e_s, frozen CLIP embedding)")
    label_smoothing: float | None = Field(
        None, ge=0, lt=1, description="kept for old configs: must equal data.label_smoothing, the one setting of "
                                      "the targets of label-only data (loss and evaluation alike)")


class DriftConfig(_Strict):
    every_k_steps: int = Field(0, ge=0, description="measure stage drift (1 - CKA vs frozen CLIP) every K steps; 0: off")
    threshold: float = Field(0.5, ge=0, le=2, description="warn when a stage has lost this share of its step-0 "
                                                           "alignment with frozen CLIP (1 - CKA_t / CKA_0)")
    probe_size: int | None = Field(256, ge=4, description="fixed val images the drift is measured on (null: the "
                                                          "whole val split); the debiased CKA is noisy below a few "
                                                          "hundred")
    which: Literal["z", "embedding"] = Field("z", description="compare stage features Z_s, or embeddings e_s")
    per_block: bool = Field(True, description="also log prompted-vs-frozen drift of every block")


class PseudoConfig(_Strict):
    """Label-free training (``train.supervision: pseudo``): a teacher, the frozen backbone with
    a frozen copy of the stage-1 classifier, labels each training image from its unaugmented
    view (resize, centre crop); the model learns those labels from a strongly augmented view."""

    threshold: float = Field(0.0, ge=0, lt=1, description="drop pseudo-labels whose teacher confidence (top "
                                                          "softmax probability) is below this; 0 keeps all")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing of the cross-entropy to the "
                                                                "pseudo-labels")
    train_layernorms: bool = Field(False, description="also train the LayerNorms of the visual tower (as LaFTer "
                                                      "does); they are saved with the checkpoints")
    strong_view: bool = Field(True, description="with train.augment: the student sees the strong view (random "
                                                "resized crop 0.2-1, flip, colour jitter 0.4/0.4/0.4/0.1 with p "
                                                "0.8, grayscale p 0.2, Gaussian blur); false: the usual augmentation")


class TrainConfig(_Strict):
    recipe: Literal["default", "seed"] = Field(
        "default", description="default: σ and λ of a stage train from the phase its prompts train in, at their "
                               "own learning rates (train.lr.nga/fusion, 1e-2 unless set); seed: the reference "
                               "recipe, σ and λ train only in the global phase at 1e-5 (they barely move)")
    epochs: EpochsConfig = Field(default_factory=EpochsConfig)
    batch_size: int = Field(32, ge=1, description="global batch size (split across DDP ranks)")
    eval_batch_size: int | None = Field(None, ge=1, description="default: 2 × batch_size")
    lr: LearningRates = Field(default_factory=LearningRates)
    weight_decay: WeightDecays = Field(default_factory=WeightDecays)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of each group's lr")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null disables clipping")
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: bool = Field(True, description="random augmentation of training images")
    supervision: Literal["labels", "pseudo"] = Field(
        "labels", description="labels: train on the training labels (and vote distributions); pseudo: label-free, "
                              "on the pseudo-labels a frozen teacher gives each training image (train.pseudo); "
                              "training labels are then never read")
    pseudo: PseudoConfig = Field(default_factory=PseudoConfig)
    input_pipeline: Literal["auto", "cpu", "device"] = Field(
        "auto", description="cpu: DataLoader workers decode and augment every image every epoch; device: decode "
                            "each image once into a uint8 store (num_workers threads; 0: one per CPU), augment "
                            "batches on the training device; auto: device for runs of two epochs or more on "
                            "images whose store fits input_cache_gb or the disk")
    input_cache_gb: float = Field(8.0, gt=0, description="host memory the decoded images may take "
                                                         "(input_pipeline: device); beyond it they spill to a "
                                                         "memory-mapped file in the run folder's cache/")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["bf16", "fp16", "none"] = Field("none", description="autocast on CUDA; ignored on CPU")
    frozen_dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="store the frozen ViT blocks in this dtype (trainable parameters, heads and losses "
                            "stay float32); bf16 skips autocast's per-step weight casts on GPUs; auto: bf16 on "
                            "CUDA GPUs with bf16, else fp32 (the run folder's config.yaml records the result)")
    compile: Literal["auto", "none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "auto", description="torch.compile the training forward with this mode (reduce-overhead adds CUDA "
                            "graphs); recompiles once per phase; evaluation stays eager; auto: reduce-overhead "
                            "on CUDA for each phase whose steps pay back its compilation, else none")
    compile_backend: str = Field("inductor", description="torch.compile backend (modes other than default "
                                                         "need inductor)")
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = Field(True, description="pinned host memory (CUDA only)")
    cache_prefix: bool = Field(False, description="compute the frozen prefix blocks once per image and reuse it")
    cache_device: Literal["auto", "host", "device"] = Field(
        "auto", description="where the prefix cache (or the decoded images of input_pipeline: device) lives; "
                            "auto: on the GPU when it takes at most a quarter of the free GPU memory, else in "
                            "host memory")
    select_metric: str = Field("accuracy", description="val metric that picks the best checkpoint, e.g. accuracy, macro_f1, kl")
    save_every_steps: int = Field(0, ge=0, description="also write checkpoints/last every N steps (0: epoch ends only)")
    log_every_steps: int = Field(10, ge=1, description="a metrics.jsonl line every N training steps")
    tensorboard: bool = Field(True, description="also write TensorBoard event files (losses, lr, σ, λ, val/test "
                                                "metrics, drift) into the run folder")
    keep_epoch_checkpoints: bool = Field(False, description="also keep checkpoints/epoch-<k> at every epoch's end "
                                                            "(drift and σ across training, from the checkpoints)")
    eval_stages: bool = Field(True, description="metrics for every stage, not only the fused prediction")
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @field_validator("select_metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        higher_is_better(v)
        return v

    @model_validator(mode="after")
    def _compile_backend_known(self) -> "TrainConfig":
        if self.compile == "none" or (self.compile == "auto" and self.compile_backend == "inductor"):
            return self
        import torch._dynamo

        known = torch._dynamo.list_backends(exclude_tags=())
        if self.compile_backend not in known:
            raise ValueError(f"compile_backend: unknown torch.compile backend {self.compile_backend!r}; "
                             f"choose one of {', '.join(sorted(known))}")
        if self.compile_backend != "inductor" and self.compile not in ("default", "auto"):
            raise ValueError(f"compile: mode {self.compile!r} needs compile_backend: inductor "
                             f"(got {self.compile_backend!r}); use compile: default with other backends")
        return self

    @model_validator(mode="after")
    def _cache_needs_fixed_inputs(self) -> "TrainConfig":
        if self.cache_prefix and self.augment:
            raise ValueError("cache_prefix: needs augment: false (augmented images change every epoch, "
                             "so their prefix output cannot be reused)")
        if self.cache_prefix and self.input_pipeline == "device":
            raise ValueError("input_pipeline: device decodes images once to augment them every epoch; with "
                             "cache_prefix the prefix tokens are computed once instead: use input_pipeline: auto")
        return self

    @model_validator(mode="after")
    def _layernorms_in_fp32(self) -> "TrainConfig":
        if self.supervision == "pseudo" and self.pseudo.train_layernorms and self.frozen_dtype in ("bf16", "fp16"):
            raise ValueError(f"frozen_dtype: pseudo.train_layernorms trains the visual LayerNorms, which need "
                             f"float32 weights; set frozen_dtype: fp32 or auto (got {self.frozen_dtype})")
        return self

    @property
    def total_epochs(self) -> int:
        return self.epochs.total

    def learning_rates(self) -> dict[str, float]:
        """Group → base learning rate, with the recipe's σ/λ rates where ``lr`` leaves them unset."""
        return self.lr.resolved(self.recipe)

    def eval_bs(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size


class ClassifierConfig(_Strict):
    """Stage 1: how the shared classifier is initialised before any prompted image is seen.

    ``templates`` averages CLIP text embeddings of prompt templates around each class name.
    ``descriptions`` trains the classifier on text embeddings of many sentences per class
    (plus the templates), full batch, with Gaussian noise on the normalised embeddings and
    label smoothing: the two-stage recipe of LaFTer, whose defaults these are. ``shots``
    fits a linear probe on ``shots`` labelled training images per class (frozen CLIP image
    embeddings) and starts the classifier from it.
    """

    init: Literal["templates", "descriptions", "shots"] = Field(
        "templates", description="templates: class-name prompts only; descriptions: train on sentences per class "
                                 "(classifier.descriptions); shots: a linear probe on classifier.shots labelled "
                                 "training images per class")
    descriptions: str | None = Field(
        None, description="JSON {class: [sentence, ...]} or CSV/TSV with class and sentence columns; null: the "
                          "sentences shipped for the run's classes")
    noise_std: float = Field(0.1, ge=0, description="std of the Gaussian noise added to the normalised embeddings "
                                                     "(texts, or the shots' images) at every step of stage 1")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing of stage 1's loss")
    lr: float = Field(5e-4, gt=0, description="AdamW learning rate of stage 1 (stage 2's is train.lr.classifier)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay of stage 1")
    steps: int = Field(500, ge=1, description="full-batch steps of the text training (or of the k-shot probe)")
    shots: int = Field(4, ge=1, description="labelled training images per class for init: shots")
    seed: int | None = Field(None, description="seed of the noise and of the shot selection; null: train.seed")

    @field_validator("descriptions")
    @classmethod
    def _none_word(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "none", "null") else v

    def resolved_seed(self, train_seed: int) -> int:
        """The stage-1 seed: ``seed`` when set, else the run's ``train.seed``."""
        return train_seed if self.seed is None else self.seed


class RunNameError(ValueError):
    """A run name that cannot be used safely."""


def sanitize_run_name(name: str) -> str:
    """The one run-name rule: letters, digits, '.', '_' and '-' only (others become '-'), no
    leading dots (no traversal), at most 120 characters; :class:`RunNameError` if nothing is left."""
    cleaned = _NAME_OK.sub("-", str(name).strip()).lstrip(".-").rstrip("-")
    if not cleaned or set(cleaned) <= {".", "-"}:
        raise RunNameError(f"{name!r} has no usable characters (allowed: letters, digits, '.', '_', '-')")
    return cleaned[:120]


def default_run_name(method: str = "cascade") -> str:
    """``<date>-<time>-<method>``: the run folder's name when none is given."""
    return sanitize_run_name(f"{time.strftime('%Y%m%d-%H%M%S')}-{method}")


class RunSection(_Strict):
    name: str | None = Field(None, description="folder name under runs_dir; default: <time>-<method>")
    runs_dir: str = Field("runs", description="parent folder of run folders")

    @field_validator("name")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return None if v is None else sanitize_run_name(v)


class RunConfig(_Strict):
    method: str = Field("cascade", description="one of " + ", ".join(METHODS))
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    model: CascadeConfig = Field(default_factory=lambda: CascadeConfig.from_preset("b32-4stage"))
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    run: RunSection = Field(default_factory=RunSection)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown method {v!r}; choose from {', '.join(METHODS)}")
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _expand_preset(cls, v: Any) -> Any:
        # ``model: {preset: b16-3stage, prompt_tokens: 8}``: the preset's values under the explicit ones
        return expand_preset(v) if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _one_label_smoothing(self) -> "RunConfig":
        # Two settings once shaped the targets of label-only data, the loss's and the
        # metrics'; they could silently differ. data.label_smoothing is now the one.
        old = self.train.loss.label_smoothing
        if old is not None and old != self.data.label_smoothing:
            raise ValueError(f"train: loss.label_smoothing ({old:g}) differs from data.label_smoothing "
                             f"({self.data.label_smoothing:g}), so training and evaluation targets would differ; "
                             "set data.label_smoothing alone (it shapes both)")
        return self

    # ---- derived ----------------------------------------------------------------------
    def model_config_for_method(self) -> CascadeConfig:
        """The model config this run trains: ``model`` as the base, changed by ``method``."""
        return self.model if self.method == "cascade" else method_config(self.method, self.model)

    def default_run_name(self) -> str:
        return default_run_name(self.method)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", by_alias=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def with_overrides(self, overrides: list[str] | dict[str, Any], base_dir: str | os.PathLike | None = None) -> "RunConfig":
        raw = self.model_dump(mode="json", by_alias=True)
        return validate_run_config(apply_overrides(raw, overrides, base_dir or os.getcwd()))


# ---- loading ---------------------------------------------------------------------------
_PATH_FIELDS = (("data", "root"), ("data", "splits_file"), ("backbone", "pretrained"),
                ("classifier", "descriptions"))


def _looks_like_path(key: tuple[str, str], value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    if key == ("backbone", "pretrained"):
        # A tag ('openai', 'laion2b_s34b_b79k') has no separator and no weights suffix.
        return any(sep in value for sep in ("/", "\\")) or value.endswith((".safetensors", ".pt", ".pth", ".bin"))
    return True


def resolve_paths(raw: dict[str, Any], base_dir: str | os.PathLike) -> dict[str, Any]:
    """Make the relative path fields of a raw config absolute against ``base_dir``."""
    base = Path(base_dir)
    for key in _PATH_FIELDS:
        section = raw.get(key[0])
        if key == ("data", "root") and isinstance(section, dict) and "root" in section:
            section["root"] = resolve_root(section.get("root"), base)   # URLs and per-split mappings too
        elif isinstance(section, dict) and _looks_like_path(key, section.get(key[1])):
            p = Path(os.path.expanduser(section[key[1]]))
            if not p.is_absolute():
                section[key[1]] = os.path.normpath(str(base / p))
    return raw


def _parse_value(text: str) -> Any:
    """A ``--set`` value: YAML for lists, mappings and null; anything else stays a string so
    pydantic coerces it to the field's type ('1e-4' → float, 'true' → bool, '007' → str)."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if parsed is None or isinstance(parsed, (list, dict)):
        return parsed
    return text


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.sub=value, e.g. train.batch_size=16")
    key, value = item.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {item!r}: empty part in key {key!r}")
    return path, _parse_value(value.strip())


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any] | None,
                    base_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Set dotted keys in a raw config dict; path fields in overrides resolve against ``base_dir``."""
    if not overrides:
        return raw
    items = list(overrides.items()) if isinstance(overrides, dict) else [parse_override(o) for o in overrides]
    for key, value in items:
        path = key.split(".") if isinstance(key, str) else key
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path[:i + 1])}: is a value, cannot set {'.'.join(path)}")
            node = child
        if path[-1] == "epochs" and len(path) == 2 and path[0] == "train" and not isinstance(value, dict):
            raise ConfigError("train.epochs: set train.epochs.warmup / .unfreeze / .global")
        node[path[-1]] = value
        if base_dir is not None and tuple(path[:2]) == ("data", "root"):
            node[path[-1]] = resolve_root(value, base_dir)
        elif base_dir is not None and len(path) == 2 and tuple(path) in _PATH_FIELDS:
            if _looks_like_path(tuple(path), value):
                p = Path(os.path.expanduser(value))
                if not p.is_absolute():
                    node[path[-1]] = os.path.normpath(str(Path(base_dir) / p))
    return raw


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        loc = loc.replace("global_", "global")
        msg = err["msg"].removeprefix("Value error, ")
        inner = re.match(r"^([A-Za-z_][A-Za-z0-9_]*): (.*)$", msg, re.S)
        if inner and loc and not loc.endswith(inner.group(1)):
            # A section-level validator names the field itself: "train" + "cache_prefix: ..."
            loc, msg = f"{loc}.{inner.group(1)}", inner.group(2)
        elif inner and loc.endswith(inner.group(1)):
            msg = inner.group(2)
        name = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "config")
        if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            lines.append(f"{name}: {msg} (got {err['input']!r})")
        else:
            lines.append(f"{name}: {msg}")
    return "\n".join(lines)


def validate_run_config(raw: dict[str, Any]) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except ConfigError as exc:
        raise ConfigError(f"model.{exc}") from None


def load_run_config(path: str | os.PathLike | None = None, overrides: list[str] | dict[str, Any] | None = None,
                    ) -> RunConfig:
    """Read a YAML file (or start from defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config: no such file {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {path} is not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config: {path} must hold a mapping of sections")
        resolve_paths(raw, path.resolve().parent)
    raw = apply_overrides(raw, overrides, os.getcwd())
    return validate_run_config(raw)
