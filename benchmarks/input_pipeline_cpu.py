"""CPU cost of the two input pipelines (``train.input_pipeline``), in one process.

    python benchmarks/input_pipeline_cpu.py                       # 256 Emotion6 JPEGs (or generated ones), 224 px
    python benchmarks/input_pipeline_cpu.py --jpeg-size 256x256    # small JPEGs: little to decode
    python benchmarks/input_pipeline_cpu.py --synthetic 64        # 64-px synthetic faces (rendered, not decoded)

Both pipelines run in this process (no loader workers, one torch thread), so process CPU
time measures their work even on a machine shared with other jobs; wall time is printed
beside it. ``cpu``: decode + the torchvision train transform for every image, every epoch.
``device`` (on the CPU here): decode once into the uint8 store, then the batched
augmentation per epoch. The totals add the store's one-time decode to ``--epochs`` epochs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def clock(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=224, help="model input size")
    ap.add_argument("--synthetic", type=int, default=None, metavar="PX",
                    help="use synthetic faces rendered at PX pixels (and --image-size PX) instead of JPEGs")
    ap.add_argument("--jpeg-size", default=None, metavar="WxH", help="generated JPEGs of this size instead of Emotion6")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=8, help="epochs for the totals (2 are timed)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from cascade.bench.data_bench import _index_of, image_files
    from cascade.data import DataConfig, EmotionDataset, load_index
    from cascade.data.decoded import CacheGeometry, build_store, crop_cache_side
    from cascade.data.transforms import CLIP_MEAN, CLIP_STD, AugmentConfig, train_transform
    from cascade.train.data import ImageSource
    from cascade.train.store_source import StoreSource

    if args.synthetic:
        args.image_size = args.synthetic
        index = load_index(DataConfig(format="synthetic", synthetic={"num_samples": args.images,
                                                                     "image_size": args.synthetic}))
        source = f"{args.images} synthetic faces, {args.synthetic} px"
    elif args.jpeg_size:
        from cascade.bench.jpeg_folder import folder_files, jpeg_folder

        w, h = (int(v) for v in args.jpeg_size.lower().split("x"))
        files = folder_files(jpeg_folder(args.images, width=w, height=h))
        source = f"{args.images} generated {w}x{h} JPEGs"
        index = _index_of(files)
    else:
        files, source = image_files(None, args.images)
        index = _index_of(files)
    items = list(range(len(index)))
    dataset = EmotionDataset(index, items)
    batches = [items[i:i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    n, size = len(items), args.image_size

    old = ImageSource(dataset, train_transform(size), seed=0, random_aug=True, num_workers=0)
    old_epochs = [clock(lambda e=e: [b["image"] for b in old.iterate(batches, e)]) for e in range(2)]

    aug = AugmentConfig()
    build = clock(lambda: setattr(main, "store", build_store(index, items, CacheGeometry(
        "crop", size, crop_cache_side(size, aug)), memory_limit=2**34, threads=1)))
    new = StoreSource(main.store, dataset, torch.device("cpu"), image_size=size, mean=CLIP_MEAN, std=CLIP_STD,
                      augment=aug, seed=0)
    new_epochs = [clock(lambda e=e: [b["image"] for b in new.iterate(batches, e)]) for e in range(2)]

    def per_epoch(rows, k):
        return statistics.median(r[k] for r in rows)

    print(f"input pipelines on the CPU: {source}, {size}-px model input, batch {args.batch_size}, one thread")
    print(f"{'':34} {'img/CPU-s':>10} {'img/s wall':>11}")
    print(f"{'cpu: decode + transform, epoch':34} {n / per_epoch(old_epochs, 0):10.1f} {n / per_epoch(old_epochs, 1):11.1f}")
    print(f"{'device: decode once (store)':34} {n / build[0]:10.1f} {n / build[1]:11.1f}")
    print(f"{'device: augment, epoch':34} {n / per_epoch(new_epochs, 0):10.1f} {n / per_epoch(new_epochs, 1):11.1f}")
    e = args.epochs
    cpu_total = e * per_epoch(old_epochs, 0)
    dev_total = build[0] + e * per_epoch(new_epochs, 0)
    print(f"per epoch: device/cpu = {per_epoch(old_epochs, 0) / per_epoch(new_epochs, 0):.2f}x less CPU time; "
          f"over {e} epochs with the one-time decode: {cpu_total / dev_total:.2f}x "
          f"({cpu_total:.1f} vs {dev_total:.1f} CPU-s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
