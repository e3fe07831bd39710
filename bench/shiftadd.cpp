// ShiftAddNet kernels and layers, median of several runs:
// 1. the adder (L1-distance) and shift kernels against their plain scalar
//    references, on the ResNet-20 stage shapes (Fashion-MNIST, 28 x 28),
//    single-threaded and on every thread;
// 2. an adder convolution against a float convolution of the same ResNet-20
//    shape (forward, and forward + backward), and the shift convolution.
//
//   build/bench/bench_shiftadd [runs]

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <frugal/layers/adder.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/shift.hpp>
#include <frugal/numeric/random.hpp>
#include <frugal/tensor/kernels/adder.hpp>
#include <frugal/tensor/kernels/shift.hpp>
#include <frugal/tensor/parallel.hpp>

#include "bench.hpp"

namespace {

std::vector<float> random_floats(std::size_t n, frugal::rng& g) {
    std::vector<float> v(n);
    for (auto& x : v) {
        x = 2.0f * g.uniform() - 1.0f;
    }
    return v;
}

struct shape {
    const char* what;
    std::size_t m, n, k; // out channels, columns (pixels), in * 3 * 3
};

} // namespace

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::atoi(argv[1]) : 5;
    const int all = frugal::num_threads();
    frugal::rng g(3);
    // one image of each ResNet-20 stage: [out x in*9] against [in*9 x pixels]
    const shape shapes[] = {
        {"stage1 16x784x144", 16, 784, 144}, {"stage2 32x196x288", 32, 196, 288}, {"stage3 64x49x576", 64, 49, 576}};
    std::printf("threads available: %d, SIMD width %zu floats, %d runs (median)\n\n", all, frugal::simd::width, runs);

    std::printf("%-20s %-22s %12s %12s %12s %8s %8s\n", "kernel", "shape m x n x k", "ref Gop/s", "simd Gop/s",
                "simd MT Gop/s", "x (1t)", "x (MT)");
    for (const auto& s : shapes) {
        const double ops = static_cast<double>(s.m * s.n * s.k); // one |a - b| (or one shift-add) per op
        const auto a = random_floats(s.m * s.k, g), b = random_floats(s.k * s.n, g);
        std::vector<float> c(s.m * s.n);
        const int reps = std::max(1, static_cast<int>(3e7 / ops));
        frugal::set_num_threads(1);
        const double t_ref = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::l1_distance_reference(s.m, s.n, s.k, a.data(), s.k, b.data(), s.n, c.data(), s.n);
            }
            bench::keep(c);
        }, runs);
        const double t_one = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::l1_distance(s.m, s.n, s.k, a.data(), s.k, b.data(), s.n, c.data(), s.n);
            }
            bench::keep(c);
        }, runs);
        frugal::set_num_threads(all);
        const double t_mt = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::l1_distance_parallel(s.m, s.n, s.k, a.data(), s.k, b.data(), s.n, c.data(), s.n);
            }
            bench::keep(c);
        }, runs);
        std::printf("%-20s %-22s %12.2f %12.2f %12.2f %8.1f %8.1f\n", "adder fp32 fwd", s.what, ops * reps / t_ref * 1e-9,
                    ops * reps / t_one * 1e-9, ops * reps / t_mt * 1e-9, t_ref / t_one, t_ref / t_mt);

        // the shift kernel, fixed point (int64 lanes) and float, half the weights zero
        std::vector<std::int8_t> sign(s.m * s.k), exp(s.m * s.k);
        for (std::size_t i = 0; i < sign.size(); ++i) {
            sign[i] = static_cast<std::int8_t>(static_cast<int>(g.below(3)) - 1);
            exp[i] = static_cast<std::int8_t>(-static_cast<int>(g.below(15)));
        }
        frugal::kernels::shift_matrix w;
        w.pack(s.m, s.k, sign.data(), exp.data(), s.k);
        const double sops = static_cast<double>(w.nonzeros() * s.n); // shift-adds executed
        std::vector<std::int64_t> x(s.k * s.n), y(s.m * s.n);
        for (auto& v : x) {
            v = static_cast<std::int32_t>(g() >> 32);
        }
        frugal::set_num_threads(1);
        const double f_ref = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_fixed_reference(s.m, s.n, s.k, sign.data(), exp.data(), s.k, -14, x.data(), s.n,
                                                       y.data(), s.n);
            }
            bench::keep(y);
        }, runs);
        const double f_one = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_fixed(w, -14, s.n, x.data(), s.n, y.data(), s.n);
            }
            bench::keep(y);
        }, runs);
        frugal::set_num_threads(all);
        const double f_mt = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_fixed_parallel(w, -14, s.n, x.data(), s.n, y.data(), s.n);
            }
            bench::keep(y);
        }, runs);
        std::printf("%-20s %-22s %12.2f %12.2f %12.2f %8.1f %8.1f\n", "shift fixed fwd", s.what,
                    sops * reps / f_ref * 1e-9, sops * reps / f_one * 1e-9, sops * reps / f_mt * 1e-9, f_ref / f_one,
                    f_ref / f_mt);
        // the int32 kernel (exponent runs), on inputs small enough for it: max_run * max|x| < 2^31,
        // against the same reference (its time does not depend on the values)
        const std::int64_t bound = ((std::int64_t{1} << 31) - 1) / static_cast<std::int64_t>(std::max<std::size_t>(1, w.max_run));
        std::vector<std::int32_t> x32(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            x32[i] = static_cast<std::int32_t>(x[i] % (bound + 1));
        }
        frugal::set_num_threads(1);
        const double h_one = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_fixed32(w, -14, s.n, x32.data(), s.n, y.data(), s.n);
            }
            bench::keep(y);
        }, runs);
        frugal::set_num_threads(all);
        const double h_mt = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_fixed32_parallel(w, -14, s.n, x32.data(), s.n, y.data(), s.n);
            }
            bench::keep(y);
        }, runs);
        std::printf("%-20s %-22s %12.2f %12.2f %12.2f %8.1f %8.1f   (int64 kernel: x%.2f, 1 thread)\n",
                    "shift fixed32 fwd", s.what, sops * reps / f_ref * 1e-9, sops * reps / h_one * 1e-9,
                    sops * reps / h_mt * 1e-9, f_ref / h_one, f_ref / h_mt, f_one / h_one);
        frugal::set_num_threads(1);
        const double l_ref = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_float_reference(s.m, s.n, s.k, sign.data(), exp.data(), s.k, b.data(), s.n,
                                                       c.data(), s.n);
            }
            bench::keep(c);
        }, runs);
        const double l_one = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_float(w, s.n, b.data(), s.n, c.data(), s.n);
            }
            bench::keep(c);
        }, runs);
        frugal::set_num_threads(all);
        const double l_mt = bench::median_seconds([&] {
            for (int i = 0; i < reps; ++i) {
                frugal::kernels::shift_float_parallel(w, s.n, b.data(), s.n, c.data(), s.n);
            }
            bench::keep(c);
        }, runs);
        std::printf("%-20s %-22s %12.2f %12.2f %12.2f %8.1f %8.1f\n", "shift float", s.what, sops * reps / l_ref * 1e-9,
                    sops * reps / l_one * 1e-9, sops * reps / l_mt * 1e-9, l_ref / l_one, l_ref / l_mt);
    }

    // layers on a batch of 128 at each ResNet-20 stage shape, every thread
    frugal::set_num_threads(all);
    std::printf("\n%-34s %12s %12s %12s %12s\n", "layer (batch 128, 3x3, pad 1)", "conv fwd ms", "adder fwd ms",
                "conv f+b ms", "adder f+b ms");
    struct layer_shape {
        const char* what;
        std::size_t c, hw;
    };
    const layer_shape ls[] = {{"stage1 16->16 28x28", 16, 28}, {"stage2 32->32 14x14", 32, 14}, {"stage3 64->64 7x7", 64, 7}};
    for (const auto& l : ls) {
        frugal::tensor4 x = frugal::tensor4::from_shape({128, l.c, l.hw, l.hw});
        for (auto& v : x) {
            v = 2.0f * g.uniform() - 1.0f;
        }
        frugal::conv2d conv(l.c, l.c, 3, {1, 1, false});
        frugal::adder_conv2d add(l.c, l.c, 3, {1, 1});
        frugal::shift_conv2d sh(l.c, l.c, 3, {1, 1});
        // fixed-point training (the FIX8 ShiftAddNet): FIX8 adder forward, 8-bit errors in both backward passes
        frugal::adder_options q8;
        q8.padding = 1;
        q8.precision = frugal::adder_precision::fix8;
        q8.error_bits = 8;
        frugal::adder_conv2d add8(l.c, l.c, 3, q8);
        frugal::shift_options s8;
        s8.padding = 1;
        s8.error_bits = 8;
        frugal::shift_conv2d sh8(l.c, l.c, 3, s8);
        conv.reset_parameters(g);
        add.reset_parameters(g);
        sh.reset_parameters(g);
        add8.reset_parameters(g);
        sh8.reset_parameters(g);
        frugal::context ctx;
        auto fwd = [&](auto& layer) {
            return bench::median_seconds([&] { bench::keep(layer.forward(ctx, x)); }, runs);
        };
        auto both = [&](auto& layer) {
            return bench::median_seconds([&] {
                const frugal::tensor4& y = layer.forward(ctx, x);
                bench::keep(layer.backward(ctx, y));
            }, runs);
        };
        const double cf = fwd(conv), af = fwd(add), sf = fwd(sh);
        const double cb = both(conv), ab = both(add), sb = both(sh);
        const double a8f = fwd(add8), a8b = both(add8), s8b = both(sh8);
        std::printf("%-34s %12.2f %12.2f %12.2f %12.2f   (shift conv: fwd %.2f ms, f+b %.2f ms)\n", l.what, cf * 1e3,
                    af * 1e3, cb * 1e3, ab * 1e3, sf * 1e3, sb * 1e3);
        std::printf("%-34s %12s %12.2f %12s %12.2f   (shift conv, 8-bit errors: f+b %.2f ms)\n", "  FIX8 training", "",
                    a8f * 1e3, "", a8b * 1e3, s8b * 1e3);
    }
    return 0;
}
