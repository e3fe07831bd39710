#!/bin/sh
# The convolution of a git revision against the working tree's, in one
# process, call by call (bench/ab/): for a kernel change whose effect is
# smaller than the machine's drift between two benchmark runs.
#
#   bench/ab-conv.sh <revision> [repetitions] [threads]
#
# Builds with g++ -O3 -march=native (OpenBLAS and OpenMP as the library's
# build finds them here: both linked when installed), in a temporary folder.
set -eu
rev=${1:?usage: bench/ab-conv.sh <revision> [repetitions] [threads]}
reps=${2:-21}
threads=${3:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$root" worktree add --detach "$tmp/old" "$rev" >/dev/null 2>&1 || {
    echo "ab-conv.sh: cannot check out revision '$rev'" >&2
    exit 2
}
flags="-O3 -march=native -std=c++20 -DNDEBUG -DXTENSOR_USE_XSIMD -fopenmp"
libs=""
if [ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || [ -e /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; then
    flags="$flags -DFRUGAL_HAS_BLAS=1 -I/usr/include/x86_64-linux-gnu/openblas-pthread"
    libs="-lopenblas"
fi
g++ $flags -I"$tmp/old/include" -Dfrugal=frugal_old -DFRUGAL_AB_SIDE=side_old -c "$root/bench/ab/conv_side.cpp" -o "$tmp/old.o"
g++ $flags -I"$root/include" -DFRUGAL_AB_SIDE=side_new -c "$root/bench/ab/conv_side.cpp" -o "$tmp/new.o"
g++ $flags "$root/bench/ab/conv_main.cpp" "$tmp/old.o" "$tmp/new.o" -o "$tmp/ab_conv" $libs
echo "old: $rev ($(git -C "$root" rev-parse --short "$rev")); new: the working tree"
"$tmp/ab_conv" "$reps" "$threads"
