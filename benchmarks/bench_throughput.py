"""Training throughput (images/s) of ViT-B-32 variants on random weights.

Usage:
    python benchmarks/bench_throughput.py [cpu|cuda] [batch] [steps] [amp: none|bf16]
Measures, at one batch size: a full training step (forward, loss, backward, AdamW) of the
cascade (b32-4stage, global phase: everything trains) and of the shallow prompt, and the
plain frozen CLIP image forward (no grad) as the reference.
"""
import sys
import time

import torch

from cascade import CascadeConfig, LossWeights, build_model, cascade_loss, load_backbone
from cascade.data import EMOTION6_CLASSES


def timed(fn, steps, device):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main():
    device = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    amp = sys.argv[4] if len(sys.argv) > 4 else "none"
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp == "bf16" and device.type == "cuda" \
        else (lambda: torch.autocast("cpu", enabled=False))
    bb = load_backbone("ViT-B-32", None, device=device, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, generator=g).to(device)
    y = torch.randint(0, 6, (batch,), generator=g).to(device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"threads {torch.get_num_threads()}, batch {batch}, {steps} timed steps, amp {amp}")

    def plain():
        with torch.no_grad(), ctx():
            bb.model.encode_image(x)

    s = timed(plain, steps, device)
    print(f"plain CLIP forward (no grad):     {batch / s:8.1f} images/s  ({s * 1000:.0f} ms/batch)")
    for name in ("cascade", "shallow"):
        cfg = CascadeConfig.from_preset("b32-4stage" if name == "cascade" else "shallow")
        torch.manual_seed(0)
        model = build_model(bb, list(EMOTION6_CLASSES), cfg)
        params = [p for _, p in model.cascade_named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with ctx():
                out = model(x)
            loss = cascade_loss(out, y, None, LossWeights())["total"]
            loss.backward()
            opt.step()

        s = timed(step, steps, device)
        print(f"{name:8s} train step (all trainable): {batch / s:8.1f} images/s  ({s * 1000:.0f} ms/batch)")

        def infer():
            with torch.no_grad(), ctx():
                model(x)

        s = timed(infer, steps, device)
        print(f"{name:8s} forward (no grad):         {batch / s:8.1f} images/s  ({s * 1000:.0f} ms/batch)")


if __name__ == "__main__":
    main()
