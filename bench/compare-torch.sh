#!/bin/sh
# Training throughput of frugal against PyTorch (Debian's python3-torch, CPU)
# on the identical models, data, batch size (128) and thread count (2):
# frugal and torch runs alternate, `rounds` times each, and every program
# prints the median of its own 3 timed runs. frugal runs with its cost meter
# on, as fit() does. Debian's interpreter (/usr/bin/python3) runs the peer, so
# that a python3 of pyenv or a venv earlier in PATH does not hide its torch.
#
#   bench/compare-torch.sh [build-dir] [rounds]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build/test}
rounds=${2:-3}
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-numpy >/dev/null
fi
if [ ! -x "$build/bench/bench_train_throughput" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ARCH=native >/dev/null
  cmake --build "$build" -j 2 --target bench_train_throughput
fi
for model in lenet5 resnet20; do
  if [ "$model" = lenet5 ]; then steps=200; else steps=20; fi
  r=1
  while [ "$r" -le "$rounds" ]; do
    "$build/bench/bench_train_throughput" "$model" "$steps" 3 2 meter
    /usr/bin/python3 bench/peers/torch_train.py --model "$model" --steps "$steps" --runs 3 --threads 2
    r=$((r + 1))
  done
done
