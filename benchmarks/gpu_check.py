"""CUDA checks of the trainer (not collected by pytest): bf16/fp16 autocast, pinned memory
with workers, the prefix cache and resume on a GPU. Usage: python benchmarks/gpu_check.py OUTDIR"""
import json
import shutil
import sys
import time
from pathlib import Path

# the repository (for cascade) and its tests folder (for the tiny test config)
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from cascade.train import train  # noqa: E402
from train.helpers import tiny_config  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_check")
shutil.rmtree(out, ignore_errors=True)
report = {}


def run(name, *overrides, callbacks=(), small=False):
    t0 = time.perf_counter()
    path = train(tiny_config(out, *overrides, f"run.name={name}", small=small), callbacks=callbacks, quiet=True)
    ev = json.loads((path / "eval.json").read_text())
    env = json.loads((path / "env.json").read_text())
    report[name] = {"seconds": round(time.perf_counter() - t0, 2), "device": env["device"], "amp": env["amp"],
                    "val_acc": ev["val"]["fused"]["accuracy"], "test_acc": ev["test"]["fused"]["accuracy"],
                    "test_kl": ev["test"]["fused"]["kl"]}
    print(name, report[name], flush=True)
    return ev


CUDA = ["train.device=cuda"]
run("bf16-workers-pinned", *CUDA, "train.amp=bf16", "train.augment=true", "train.cache_prefix=false",
    "train.num_workers=2", "train.pin_memory=true")
run("fp32-shipped", *CUDA, "train.amp=none")
run("fp16-cache-b16like", *CUDA, "train.amp=fp16", "model.preset=custom", "model.stages=6-8,9-11,12",
    "model.prompt_tokens=4", small=True)
run("fp16-nocache-b16like", *CUDA, "train.amp=fp16", "model.preset=custom", "model.stages=6-8,9-11,12",
    "model.prompt_tokens=4", "train.cache_prefix=false", small=True)


class CrashAt:
    def on_step_end(self, state):
        if state.global_step == 9:
            raise RuntimeError("injected")


ref = run("resume-ref", *CUDA, "train.amp=bf16", "train.save_every_steps=2", small=True)
try:
    train(tiny_config(out, *CUDA, "train.amp=bf16", "train.save_every_steps=2", "run.name=resume-b"),
          callbacks=[CrashAt()], quiet=True)
except RuntimeError:
    pass
train(resume=out / "resume-b", quiet=True)
res = json.loads((out / "resume-b" / "eval.json").read_text())
report["resume_max_abs_diff"] = max(abs(ref[s]["fused"][k] - res[s]["fused"][k])
                                    for s in ("val", "test") for k in ref[s]["fused"])
print("resume max abs diff", report["resume_max_abs_diff"], flush=True)
# The device input pipeline on the GPU: augmented batches from a GPU-resident store, the
# defaults (frozen_dtype/compile auto), and the GPU's batched crops against the CPU's per-image ones.
run("device-pipeline-auto", *CUDA, "train.augment=true", "train.cache_prefix=false", "train.input_pipeline=device",
    small=True)
start = json.loads((out / "device-pipeline-auto" / "metrics.jsonl").read_text().splitlines()[0])
report["device-pipeline-auto"].update(input_pipeline=start["input_pipeline"], compile_plan=start["compile_plan"],
                                      frozen_dtype=start["frozen_dtype"])
print("device pipeline", start["input_pipeline"], start["compile_plan"]["modes"], start["frozen_dtype"], flush=True)

import torch  # noqa: E402
from cascade.data import DataConfig, EmotionDataset, load_index  # noqa: E402
from cascade.data.decoded import CacheGeometry, build_store, crop_cache_side  # noqa: E402
from cascade.data.transforms import CLIP_MEAN, CLIP_STD, AugmentConfig  # noqa: E402
from cascade.train.store_source import StoreSource  # noqa: E402

index = load_index(DataConfig(format="synthetic", synthetic={"num_samples": 64, "image_size": 96}))
items = list(range(64))
aug = AugmentConfig(hue=0.05)
store = build_store(index, items, CacheGeometry("crop", 64, crop_cache_side(64, aug)), memory_limit=2**30)
images = {}
for dev in ("cpu", "cuda"):
    src = StoreSource(store, EmotionDataset(index, items), torch.device(dev), image_size=64, mean=CLIP_MEAN,
                      std=CLIP_STD, augment=aug, pixels_on=torch.device(dev))
    images[dev] = next(src.iterate([items], epoch=1))["image"].cpu()
std = torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255
diff = ((images["cpu"] - images["cuda"]) * std).abs()
report["gpu_vs_cpu_crops_levels"] = {"mean": float(diff.mean()), "max": float(diff.max())}
print("GPU vs CPU augmented crops (0..255 levels)", report["gpu_vs_cpu_crops_levels"], flush=True)
Path(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
