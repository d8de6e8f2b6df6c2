#!/usr/bin/env bash
# The data path at ImageNet's shape. Makes an image-folder tree of synthetic 256x256 RGB JPEGs
# (1000 classes, PER images each, fixed seed), converts it with
#   dpdata convert folder --size 224x224 --channels 3   (uint8 HDF5, as for a real ImageNet)
# and measures
#   1. the pipeline alone on that file (build/benchmarks/bench_pipeline: random crop with pad 2,
#      flip, normalization into float32 batches of 128, WORKERS worker threads):
#        RESULT pipeline224_img_per_s=X
#   2. where dptrain has a CUDA device: configs/resnet50.cfg trained from the file on the GPU
#      (bf16, batch 256, EPOCHS epochs, the first one not counted), from metrics.jsonl's epoch
#      records: the training rate and the share of the step time spent waiting for data:
#        RESULT gpu224_train_img_per_s=Y gpu224_data_wait_frac=Z
#      (otherwise "SKIP: ..." for this part). The ResNet-50 target is PyTorch's rate on the same
#      card (benchmarks/gpu_resnet50.sh), so the pipeline must deliver at least that: X >= Y and
#      Z near 0.
# usage: benchmarks/data_path_224.sh [images per class (3)] [workers (CPUs - 1)] [epochs (4)]
#   DP_BUILD_DIR (build), DP_BENCH_TMP (a directory with ~1 GB free; default: mktemp -d)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${DP_BUILD_DIR:-build}
per=${1:-3}
workers=${2:-}
epochs=${3:-4}
for v in "$per" "$epochs" ${workers:+"$workers"}; do
  case $v in
  '' | *[!0-9]* | 0)
    echo "data_path_224: counts must be positive integers, not '$v'" >&2
    exit 2
    ;;
  esac
done
for exe in dpdata dptrain benchmarks/bench_pipeline; do
  [ -x "$build/$exe" ] || {
    echo "data_path_224: no $build/$exe (build first, or set DP_BUILD_DIR)" >&2
    exit 1
  }
done
work=${DP_BENCH_TMP:-$(mktemp -d)}
[ -n "${DP_BENCH_TMP:-}" ] || trap 'rm -rf "$work"' EXIT
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
  "cpus=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg) images/class=$per"

# Synthetic photographs: a per-image colour, stripes of a per-class period and noise, so JPEG
# decoding and the file's size are those of natural images rather than of flat colour.
/usr/bin/python3 - "$work/src" "$per" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root, per = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
for c in range(1000):
    d = os.path.join(root, "train", f"c{c:04d}")
    t = os.path.join(root, "test", f"c{c:04d}")
    os.makedirs(d)
    os.makedirs(t)
    stripes = 40.0 * np.sin((xx + 0.5 * yy) / (3.0 + c % 17))[:, :, None]
    for i in range(per + 1):
        base = rng.integers(40, 216, 3).astype(np.float32)
        img = base + stripes + rng.normal(0.0, 12.0, (256, 256, 3)).astype(np.float32)
        out = os.path.join(t if i == per else d, f"{i}.jpg")
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(out, quality=90)
PY
"$build/dpdata" convert folder --src "$work/src/train" --test-src "$work/src/test" \
  --out "$work/img224" --size 224x224 --channels 3 >/dev/null
rm -rf "$work/src"
"$build/dpdata" info "$work/img224-train.h5" | sed -n 1,4p

echo "== the pipeline alone"
"$build/benchmarks/bench_pipeline" "$work/img224-train.h5" ${workers:+"$workers"} | tee "$work/pipe.log"
pipe=$(sed -n 's/^RESULT pipeline_img_per_s=//p' "$work/pipe.log")
echo "RESULT pipeline224_img_per_s=$pipe"

echo "== ResNet-50 on the GPU, fed from the file"
version=$("$build/dptrain" --version)
if ! grep -Eq '^ +cuda: +yes \(runtime [^)]*\), [1-9][0-9]* device' <<<"$version"; then
  echo "SKIP: dptrain has no usable CUDA device: $(grep -E '^ +cuda:' <<<"$version" || echo '?')"
  exit 0
fi
"$build/dptrain" configs/resnet50.cfg --out "$work/run" \
  --set data.source=hdf5 --set "data.train=$work/img224-train.h5" \
  --set "data.test=$work/img224-test.h5" --set train.backend=cuda --set train.precision=bf16 \
  --set "train.epochs=$epochs" --set train.log_every=4 ${workers:+--set "data.workers=$workers"} |
  grep -E '^(epoch .* done|final:)'
/usr/bin/python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
eps = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "epoch"]
if len(eps) < 2:
    sys.exit("data_path_224: fewer than 2 epochs in metrics.jsonl")
eps = eps[1:]  # the first epoch plans cuDNN and fills the pipeline
rate = sum(r["img_per_s"] for r in eps) / len(eps)
wait = sum(r["data_wait"] for r in eps) / len(eps)
print(f"RESULT gpu224_train_img_per_s={rate:.0f} gpu224_data_wait_frac={wait:.4f}")
PY
