// Float GEMM on the convolution shapes of ResNet-20 (Fashion-MNIST, 28 x 28):
// frugal's xsimd kernel and OpenBLAS's sgemm, single-threaded, GFLOP/s.
//
//   build/bench/bench_gemm

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>
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

    // transpositions the convolutions make every step: dy [out x grid] for the
    // panel weight gradient, the weights [out x in*9] for an input gradient,
    // the reduced weight gradient [in*9 x out]; the element loop (the kernel's
    // own edge path, the whole of it before register blocks) against the
    // kernel, alternating run by run; ns per value
    std::printf("\n%-22s %14s %14s %8s\n", "transpose m x n", "element loop", "transpose", "speedup");
    const std::pair<std::size_t, std::size_t> tshapes[] = {{16, 1088}, {32, 560},  {64, 480},   {64, 576},
                                                           {576, 64},  {144, 32},  {4608, 512}, {512, 4608}};
    for (const auto& [m, n] : tshapes) {
        std::vector<float> in(m * n), out(m * n), ref(m * n);
        for (auto& v : in) {
            v = g.uniform();
        }
        const int reps = std::max(1, static_cast<int>(4e6 / static_cast<double>(m * n)));
        std::vector<double> t_loop, t_kernel;
        for (int r = 0; r < 15; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::detail::transpose_scalar(0, m, 0, n, in.data(), n, ref.data(), m);
            }
            const auto t1 = std::chrono::steady_clock::now();
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::transpose(m, n, in.data(), n, out.data(), m);
            }
            const auto t2 = std::chrono::steady_clock::now();
            t_loop.push_back(std::chrono::duration<double>(t1 - t0).count());
            t_kernel.push_back(std::chrono::duration<double>(t2 - t1).count());
        }
        std::sort(t_loop.begin(), t_loop.end());
        std::sort(t_kernel.begin(), t_kernel.end());
        const double per = 1e9 / (static_cast<double>(reps) * static_cast<double>(m * n));
        if (out != ref) {
            std::printf("transpose %zu x %zu: the kernel and the element loop differ\n", m, n);
            return 1;
        }
        char name[32];
        std::snprintf(name, sizeof name, "%zu x %zu", m, n);
        std::printf("%-22s %14.3f %14.3f %7.1fx\n", name, t_loop[7] * per, t_kernel[7] * per, t_loop[7] / t_kernel[7]);
        std::printf("BENCH transpose m=%zu n=%zu loop_ns=%.4f kernel_ns=%.4f\n", m, n, t_loop[7] * per,
                    t_kernel[7] * per);
    }
    return 0;
}
