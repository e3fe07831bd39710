// The convolution's backward pass on the shapes of ResNet-20 and of its
// pruned tickets (Fashion-MNIST padded to 32 x 32, batch 128): a layer
// whose output channels were pruned should cost about its share of the
// dense layer's MACs. For each stage, the dense layer (the baseline,
// measured in the same run) and pruned widths; forward, backward, and the
// backward split into weight gradient and input gradient (the layer's
// metered phases: the wall time split as its first thread spent it). Then
// the two weight-gradient kernels the layer chooses between (dot products,
// sgemm_nt_rows; panels on zero-padded columns, sgemm_nt_panels, with the
// transposition of dy it does) on one sample group of each stage and a
// sweep of output widths, one thread, and which one the layer takes
// (nt_panels_pay).
//
//   build/release/bench/bench_conv_grad [runs] [threads]

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <frugal/cost/meter.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/numeric/random.hpp>
#include <frugal/numeric/simd.hpp>
#include <frugal/tensor/kernels/gemm.hpp>
#include <frugal/tensor/parallel.hpp>

#include "bench.hpp"

namespace {

struct layer_times {
    double forward = 0, backward = 0, wgrad = 0, dx = 0;
};

layer_times time_layer(std::size_t in, std::size_t out, std::size_t hw, int runs, frugal::rng& g) {
    frugal::conv2d c(in, out, 3, frugal::conv_options{.stride = 1, .padding = 1, .bias = false});
    for (auto& v : c.weight()) {
        v = g.uniform() - 0.5f;
    }
    frugal::tensor4 x = frugal::tensor4::from_shape({128, in, hw, hw});
    for (auto& v : x) {
        v = g.uniform() - 0.5f;
    }
    frugal::context ctx;
    const frugal::tensor4& y = c.forward(ctx, x);
    frugal::tensor4 dy = frugal::tensor4::from_shape({y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]});
    for (auto& v : dy) {
        v = g.uniform() - 0.5f;
    }
    layer_times t;
    t.forward = bench::median_seconds([&] { bench::keep(c.forward(ctx, x)); }, runs);
    t.backward = bench::median_seconds([&] { bench::keep(c.backward(ctx, dy)); }, runs);
    // the split: the layer's own phase times over `runs` metered calls
    frugal::cost_meter m;
    ctx.meter = &m;
    for (int r = 0; r < runs; ++r) {
        c.backward(ctx, dy);
    }
    for (const auto& l : m.layers()) {
        t.wgrad += l[frugal::phase::weight_gradient].seconds / runs;
        t.dx += l[frugal::phase::backward_input].seconds / runs;
    }
    return t;
}

} // namespace

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 9;
    const int threads = argc > 2 ? std::max(1, std::atoi(argv[2])) : 2;
    frugal::set_num_threads(threads);
    frugal::rng g(7);

    struct stage {
        std::size_t in, hw;
        std::vector<std::size_t> outs;  // the first is the dense width
        std::vector<std::size_t> sweep; // the kernel table's widths
    };
    const stage stages[] = {{16, 32, {16, 11, 8}, {4, 8, 11, 12, 13, 14, 15, 16}},
                            {32, 16, {32, 26, 19, 15}, {15, 17, 19, 22, 24, 26, 28, 30, 32}},
                            {64, 8, {64, 45, 30}, {30, 36, 45, 48, 64}}};
    std::printf("conv2d 3x3, batch 128, %d threads, forward and backward: median of %d (ms); dW and dx: the\n"
                "backward's wall time split as the layer's first thread spent it (its metered phases), mean of %d\n",
                threads, runs, runs);
    std::printf("%-22s %8s %8s %8s %8s %10s %10s\n", "layer", "forward", "backward", "dW", "dx", "MACs/dense",
                "bwd/dense");
    for (const auto& s : stages) {
        double dense_backward = 0;
        for (std::size_t out : s.outs) {
            const layer_times t = time_layer(s.in, out, s.hw, runs, g);
            if (out == s.outs.front()) {
                dense_backward = t.backward;
            }
            const double mac_share = static_cast<double>(out) / static_cast<double>(s.outs.front());
            char name[64];
            std::snprintf(name, sizeof name, "%zu->%zu, %zux%zu", s.in, out, s.hw, s.hw);
            std::printf("%-22s %8.2f %8.2f %8.2f %8.2f %10.2f %10.2f\n", name, t.forward * 1e3, t.backward * 1e3,
                        t.wgrad * 1e3, t.dx * 1e3, mac_share, t.backward / dense_backward);
            std::printf("BENCH conv_grad in=%zu out=%zu hw=%zu forward_ms=%.3f backward_ms=%.3f wgrad_ms=%.3f dx_ms=%.3f "
                        "macs_vs_dense=%.3f backward_vs_dense=%.3f\n",
                        s.in, out, s.hw, t.forward * 1e3, t.backward * 1e3, t.wgrad * 1e3, t.dx * 1e3, mac_share,
                        t.backward / dense_backward);
        }
    }

    // the two weight-gradient kernels on one sample group of each stage, as
    // the layer calls them: [in*9 x out] += shifted canvases [in*9 x cols]
    // x dy^T [cols x out]; the canvas as conv2d lays it out (images side by
    // side with one shared padding row/column, enough images for >= 384
    // positions; cols rounded up to the vector width), one thread
    frugal::set_num_threads(1);
    std::printf("\nweight-gradient kernels on one sample group, one thread, GMAC/s\n");
    std::printf("%-24s %14s %16s %8s\n", "in*9 x out, cols", "sgemm_nt_rows", "sgemm_nt_panels", "layer");
    for (const auto& s : stages) {
        const std::size_t hw = s.hw, tile = (hw + 1) * (hw + 1);
        const std::size_t count = std::max<std::size_t>(1, std::min<std::size_t>(128, (384 + tile - 1) / tile));
        std::size_t tiles_x = 1;
        while (tiles_x * tiles_x < count) {
            ++tiles_x;
        }
        const std::size_t tiles_y = (count + tiles_x - 1) / tiles_x;
        const std::size_t width = 1 + tiles_x * (hw + 1), height = 1 + tiles_y * (hw + 1), plane = width * height;
        const std::size_t last = count - 1;
        const std::size_t out_origin = (1 + (last / tiles_x) * (hw + 1)) * width + 1 + (last % tiles_x) * (hw + 1) -
                                       width - 1;
        const std::size_t vw = frugal::simd::width;
        const std::size_t cols = (out_origin - out_origin % width + hw * width + vw - 1) / vw * vw;
        const std::size_t kk = s.in * 9;
        std::vector<float> xc(s.in * plane + 3 * width + cols);
        for (auto& v : xc) {
            v = g.uniform() - 0.5f;
        }
        std::vector<const float*> rows(kk);
        for (std::size_t ci = 0; ci < s.in; ++ci) {
            for (std::size_t t = 0; t < 9; ++t) {
                rows[ci * 9 + t] = xc.data() + ci * plane + (t / 3) * width + t % 3;
            }
        }
        for (std::size_t out : s.sweep) {
            std::vector<float> dy(out * cols), c(kk * out);
            for (auto& v : dy) {
                v = g.uniform() - 0.5f;
            }
            std::vector<const float*> dyrows(out);
            for (std::size_t o = 0; o < out; ++o) {
                dyrows[o] = dy.data() + o * cols;
            }
            const double macs = static_cast<double>(kk * out * cols);
            const int reps = std::max(1, static_cast<int>(2e7 / macs));
            const double t_nt = bench::median_seconds(
                                    [&] {
                                        for (int i = 0; i < reps; ++i) {
                                            frugal::kernels::sgemm_nt_rows(kk, out, cols, 1.0f, rows.data(),
                                                                           dyrows.data(), 1.0f, c.data(), out);
                                        }
                                    },
                                    runs) /
                                reps;
            const double t_pa = bench::median_seconds(
                                    [&] {
                                        for (int i = 0; i < reps; ++i) {
                                            frugal::kernels::sgemm_nt_panels(kk, out, cols, 1.0f, rows.data(),
                                                                             dy.data(), cols, 1.0f, c.data(), out);
                                        }
                                    },
                                    runs) /
                                reps;
            bench::keep(c);
            const bool panels = frugal::kernels::nt_panels_pay(out);
            char name[64];
            std::snprintf(name, sizeof name, "%zu x %zu, %zu", kk, out, cols);
            std::printf("%-24s %14.1f %16.1f %8s\n", name, macs / t_nt * 1e-9, macs / t_pa * 1e-9,
                        panels ? "panels" : "dots");
            std::printf("BENCH conv_grad_kernel kk=%zu out=%zu cols=%zu nt_gmacs=%.2f panels_gmacs=%.2f layer=%s\n", kk,
                        out, cols, macs / t_nt * 1e-9, macs / t_pa * 1e-9, panels ? "panels" : "dots");
        }
    }
    return 0;
}
