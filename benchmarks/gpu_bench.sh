#!/usr/bin/env bash
# GPU figures of `cascade bench` and of the trainer on a lent H100/H200. Every step has a timeout.
#
#   bash benchmarks/gpu_bench.sh data               # input pipelines vs the compiled step: about 6 minutes, at most 9.5
#   bash benchmarks/gpu_bench.sh bench compile      # eager figures + compiled step: about 5, at most 9
#   bash benchmarks/gpu_bench.sh trainer            # the trainer end to end: about 3, at most 4
#   bash benchmarks/gpu_bench.sh                    # bench compile trainer: about 8 minutes, at most 13
#
# From the repository root; results in $OUT (default benchmarks/out).
# With the device tool (10 minutes a command): carry [".whl"], command
# "bash benchmarks/gpu_bench.sh data" (one call: the profile's kernel lists print first in its
# section 6, then the loader verdict), then "bench compile", then "trainer".
# The repository's .venv does not travel: the machine's own python3 (with torch) is used.
# When open_clip (or pydantic, ftfy) is missing there, wheels in .whl/ are installed into
# /tmp/site; .whl/ holds open_clip_torch, ftfy, wcwidth, pydantic, pydantic_core,
# annotated_types, typing_inspection (cp312, manylinux) -- see the device README.
set -u
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
say() { echo; echo "== $*"; }
STAGES=" ${*:-bench compile trainer} "
want() { [[ "$STAGES" == *" $1 "* ]]; }

say "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 | tee "$OUT/gpu.txt"

say "python packages"
if ! $PY -c 'import torch, open_clip, pydantic, ftfy' 2>/dev/null; then
  $PY -c 'import torch, open_clip' 2>&1 | tail -1
  if ls .whl/*.whl >/dev/null 2>&1; then
    echo "installing carried wheels from .whl/ into /tmp/site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
if ! $PY -c 'import torch, open_clip; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| open_clip", open_clip.__version__)'; then
  echo "open_clip is not importable with $PY and no usable wheels were carried (.whl/): cannot run the bench."
  echo "Fix: here, pip download the wheels listed above into .whl/ (device README) and carry .whl"
  exit 2
fi
# The package itself: an editable install when pip can do it offline, else the source tree on PYTHONPATH.
timeout 30 $PY -m pip install -q -e . --no-deps --no-build-isolation >/dev/null 2>&1 || echo "(pip install -e . unavailable; using PYTHONPATH)"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY -c 'import cascade, sys; print("cascade", cascade.__version__, "from", cascade.__file__)' || exit 3

if want data; then
  # Figure 4 on 5000 generated 640x480 JPEGs: the cpu loader (16 workers) and the device pipeline
  # (decode once, augment on the GPU), the trainer on those JPEGs with each pipeline (compiled, the
  # share of step time spent waiting for data); figure 6 profiles the step (kernel lists), times it
  # eager and compiled, and the report gives the verdict: device loader >= 1.1x the compiled step.
  say "input pipelines on 5000 JPEGs vs the compiled train step (cascade bench --figures data,cuda)"
  PYTHONWARNINGS=ignore timeout 560 $PY -m cascade bench --device cuda --figures data,cuda --compile reduce-overhead \
    --no-reference --repeats 5 --json "$OUT/bench_data_cuda.json" > "$OUT/bench_data_cuda.txt" 2>&1
  echo "exit $?"; grep -v "^bench: " "$OUT/bench_data_cuda.txt" | tail -120
fi
if want bench; then
  say "cascade bench --device cuda (bf16 autocast; figures at batch 32, MFU at batch 256)"
  timeout 100 $PY -m cascade bench --device cuda --json "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"
fi

# torch.compile takes about a minute per row on an H100 (two rows per mode: autocast and a
# bf16 frozen backbone). One process per mode, so a timeout loses only that mode's rows
# (each JSON also holds the eager rows as its baseline). reduce-overhead adds CUDA graphs,
# which remove the per-kernel launch cost that bounds the eager step.
want compile && for mode in reduce-overhead default; do
  say "MFU with torch.compile (mode $mode)"
  PYTHONWARNINGS=ignore timeout 200 $PY -m cascade bench --device cuda --figures cuda --compile $mode --repeats 5 \
    --no-reference --json "$OUT/bench_cuda_compile_$mode.json" > "$OUT/bench_cuda_compile_$mode.txt" 2>&1
  echo "exit $?"; grep -A 14 "^6\. CUDA" "$OUT/bench_cuda_compile_$mode.txt" | grep -v "^   [A-Z]" || tail -5 "$OUT/bench_cuda_compile_$mode.txt"
done
if want trainer; then
  say "trainer end to end (ViT-B-32, batch 256, synthetic images, prefix cache): eager, bf16, compiled"
  PYTHONWARNINGS=ignore timeout 240 $PY benchmarks/trainer_throughput.py --device cuda --workers 8 \
    --json "$OUT/trainer_throughput.json" 2>&1 | grep -v "^WARNING" | tail -8
fi
echo done
