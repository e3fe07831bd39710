// 8-bit integer GEMM (uint8 x int8 -> int32, exact) against float GEMM on the
// convolution shapes of ResNet-20 on Fashion-MNIST (28 x 28), single-threaded,
// in the same run. A convolution is [pixels x Cin*9] x [Cin*9 x Cout] (one row
// per output pixel, 8 samples) or its transpose [Cout x Cin*9] x [Cin*9 x
// pixels]; the float baseline is the faster of the two orientations with
// frugal's sgemm (OpenBLAS where it wins). The int8 time includes packing B
// (the weights) on every call, as a layer does.
//
//   build/bench/bench_igemm [runs]

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <frugal/numeric/random.hpp>
#include <frugal/tensor/kernels/gemm.hpp>
#include <frugal/tensor/kernels/igemm.hpp>
#include <frugal/tensor/parallel.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
    frugal::set_num_threads(1);
    struct shape {
        const char* what;
        std::size_t pixels, k, cout;
    };
    const std::size_t samples = 8;
    const shape shapes[] = {
        {"stage1 3x3 16->16", samples * 28 * 28, 16 * 9, 16},
        {"stage2 3x3 32->32", samples * 14 * 14, 32 * 9, 32},
        {"stage3 3x3 64->64", samples * 7 * 7, 64 * 9, 64},
        {"stage2 entry 16->32 s2", samples * 14 * 14, 16 * 9, 32},
        {"stage3 entry 32->64 s2", samples * 7 * 7, 32 * 9, 64},
    };
    frugal::rng g(3);
    std::printf("int8 path: %s; %d runs, median\n", frugal::kernels::igemm_path(), runs);
    std::printf("%-24s %8s %8s %10s %10s %8s\n", "shape (pixels x k x n)", "", "", "float GF/s", "int8 GOP/s", "ratio");
    std::vector<double> ratios;
    for (const auto& s : shapes) {
        const std::size_t m = s.pixels, k = s.k, n = s.cout;
        std::vector<float> af(m * k), bf(k * n), at(k * m), bt(n * k), c(m * n);
        std::vector<std::uint8_t> a8(m * k);
        std::vector<std::int8_t> b8(k * n);
        for (std::size_t i = 0; i < m * k; ++i) {
            a8[i] = static_cast<std::uint8_t>(g.below(256));
            af[i] = static_cast<float>(a8[i]);
        }
        for (std::size_t i = 0; i < k * n; ++i) {
            b8[i] = static_cast<std::int8_t>(static_cast<int>(g.below(256)) - 128);
            bf[i] = static_cast<float>(b8[i]);
        }
        for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t p = 0; p < k; ++p) {
                at[p * m + i] = af[i * k + p];
            }
        }
        for (std::size_t p = 0; p < k; ++p) {
            for (std::size_t j = 0; j < n; ++j) {
                bt[j * k + p] = bf[p * n + j];
            }
        }
        const double ops = 2.0 * static_cast<double>(m * n * k);
        const int reps = std::max(1, static_cast<int>(4e8 / ops));
        const double t_rows = bench::median_seconds([&] {
            for (int r = 0; r < reps; ++r) {
                frugal::kernels::sgemm(m, n, k, 1.0f, af.data(), k, bf.data(), n, 0.0f, c.data(), n);
            }
            bench::keep(c);
        }, runs);
        const double t_cols = bench::median_seconds([&] {
            for (int r = 0; r < reps; ++r) {
                frugal::kernels::sgemm(n, m, k, 1.0f, bt.data(), k, at.data(), m, 0.0f, c.data(), m);
            }
            bench::keep(c);
        }, runs);
        std::vector<std::int32_t> ci(m * n);
        frugal::kernels::packed_s8 packed;
        const double t_int = bench::median_seconds([&] {
            for (int r = 0; r < reps; ++r) {
                frugal::kernels::pack_s8(k, n, b8.data(), n, packed);
                frugal::kernels::igemm_u8s8(m, a8.data(), k, packed, ci.data(), n);
            }
            bench::keep(ci);
        }, runs);
        // the float result is exact here (integers below 2^24), so both must agree
        bool same = true;
        frugal::kernels::sgemm(m, n, k, 1.0f, af.data(), k, bf.data(), n, 0.0f, c.data(), n);
        for (std::size_t i = 0; i < m * n && same; ++i) {
            same = static_cast<double>(ci[i]) == static_cast<double>(c[i]) ||
                   std::abs(static_cast<double>(ci[i]) - c[i]) <= 1e-6 * std::abs(static_cast<double>(ci[i])) + 64;
        }
        const double t_float = std::min(t_rows, t_cols);
        const double ratio = t_float / t_int;
        ratios.push_back(ratio);
        std::printf("%-24s %5zux%zux%zu %10.1f %10.1f %7.2fx%s\n", s.what, m, k, n, ops * reps / t_float / 1e9,
                    ops * reps / t_int / 1e9, ratio, same ? "" : "  MISMATCH");
    }
    std::sort(ratios.begin(), ratios.end());
    std::printf("median int8 / float throughput ratio: %.2fx (min %.2fx)\n", ratios[ratios.size() / 2], ratios.front());
    return 0;
}
