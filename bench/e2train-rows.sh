#!/bin/sh
# The rows of docs/e2train.md's table, at a stated scale: FP32 SGD baseline,
# SMD (p = 0.5, 4/3 of the epochs: the paper's 0.67 energy ratio), SLU at
# 20/40/60% target skip, PSG, and SMD + SLU + PSG, for every seed; then
# frugal-report compares each seed's runs against its baseline and writes the
# accuracy-vs-energy plot. Every run writes metrics.csv (train_seconds per
# nominal epoch) and run.json into OUT/<row>-s<seed>; a second call resumes.
#
#   bench/e2train-rows.sh [build-dir] [out] [epochs] [subset] [seeds] [depth]
#   e.g. bench/e2train-rows.sh build/release runs/e2 6 8192 "1 2" 38
set -eu
cd "$(dirname "$0")/.."
build=${1:-build/release}
out=${2:-runs/e2train}
epochs=${3:-6}
subset=${4:-8192}
seeds=${5:-1 2}
depth=${6:-38}
smd_epochs=$(( (4 * epochs + 1) / 3 ))
if [ ! -x "$build/examples/e2train" ] || [ ! -x "$build/examples/frugal-report" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ARCH=native >/dev/null
  cmake --build "$build" -j 2 --target e2train frugal-report
fi
mkdir -p "$out"
common="--depth $depth --subset $subset --test-subset 0"
for s in $seeds; do
  run() { # row, then e2train options
    row=$1; shift
    echo "== $row seed $s"
    "$build/examples/e2train" $common --seed "$s" --out "$out/$row-s$s" "$@" > "$out/$row-s$s.log"
    grep -E "^recipe|^training time|^MACs|^SWA|gated blocks|PSG:" "$out/$row-s$s.log" | tail -n 6
  }
  run base    --recipe baseline --epochs "$epochs"
  run smd     --recipe smd      --epochs "$smd_epochs"
  run slu20   --recipe slu      --epochs "$epochs" --skip 0.2
  run slu40   --recipe slu      --epochs "$epochs" --skip 0.4
  run slu60   --recipe slu      --epochs "$epochs" --skip 0.6
  run psg     --recipe psg      --epochs "$epochs"
  run e2train --recipe e2train  --epochs "$smd_epochs" --skip 0.4
  "$build/examples/frugal-report" --baseline "$out/base-s$s" --plot "$out/comparison-s$s.svg" \
      "$out/base-s$s" "$out/smd-s$s" "$out/slu20-s$s" "$out/slu40-s$s" "$out/slu60-s$s" \
      "$out/psg-s$s" "$out/e2train-s$s"
done
