// Float GEMM on the convolution shapes of ResNet-20 (Fashion-MNIST, 28 x 28):
// frugal's xsimd kernel and OpenBLAS's sgemm, single-threaded, GFLOP/s.
//
//   build/bench/bench_gemm

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <frugal/numeric/random.hpp>
#include <frugal/tensor/kernels/gemm.hpp>
#include <frugal/tensor/parallel.hpp>

#include "bench.hpp"

int main() {
    frugal::set_num_threads(1);
    struct shape {
        const char* what;
        std::size_t m, n, k;
    };
    // forward: [out x in*9] x [in*9 x pixels]; weight gradient (NT): [out x pixels] x [pixels x in*9]
    const shape shapes[] = {
        {"stage1 fwd  16x784x144", 16, 784, 144},   {"stage2 fwd  32x392x288", 32, 392, 288},
        {"stage3 fwd  64x294x576", 64, 294, 576},   {"stage1 dx  144x784x16", 144, 784, 16},
        {"stage3 dx  576x294x64", 576, 294, 64},   {"dense    128x120x400", 128, 120, 400},
        {"square   512x512x512", 512, 512, 512},
    };
    frugal::rng g(3);
    std::printf("%-26s %12s %12s\n", "shape (m x n x k)", "frugal GF/s", "OpenBLAS GF/s");
    for (const auto& s : shapes) {
        std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
        for (auto& v : a) v = g.uniform() - 0.5f;
        for (auto& v : b) v = g.uniform() - 0.5f;
        const double flop = 2.0 * static_cast<double>(s.m * s.n * s.k);
        const int reps = std::max(1, static_cast<int>(2e8 / flop));
        const double t_own = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::sgemm_simd(s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f, c.data(), s.n);
            }
        }, 5);
        double t_blas = 0.0;
#if FRUGAL_HAS_BLAS
        t_blas = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(s.m), static_cast<int>(s.n),
                            static_cast<int>(s.k), 1.0f, a.data(), static_cast<int>(s.k), b.data(),
                            static_cast<int>(s.n), 0.0f, c.data(), static_cast<int>(s.n));
            }
        }, 5);
#endif
        std::printf("%-26s %12.1f %12.1f\n", s.what, flop * reps / t_own * 1e-9,
                    t_blas > 0 ? flop * reps / t_blas * 1e-9 : 0.0);
    }
}
