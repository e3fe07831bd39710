// The fused passes equal the unfused composition they replace, value for value:
// a batch norm's deferred forward (its map applied by the caller), its backward
// with the ReLU's mask recomputed from the input or with a later ReLU's flags,
// the residual block's single residual pass and flag-gated backward, a
// convolution's output sums, a quantized convolution fed plane by plane, and
// the SIMD helpers they rest on. The finite-difference checks of the same
// layers are in layers.cpp.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/quantized_conv.hpp>
#include <frugal/layers/residual.hpp>
#include <frugal/numeric/simd.hpp>

#include "layers/gradcheck.hpp"

namespace fr = frugal;
using gradcheck::random_tensor;

namespace {
bool same_bits(const fr::tensor4& a, const fr::tensor4& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}
/// The samples `rows` of x, in that order.
fr::tensor4 gather(const fr::tensor4& x, const std::vector<std::size_t>& rows) {
    const fr::shape4 xs = fr::shape_of(x);
    fr::tensor4 xg = fr::tensor4::from_shape({rows.size(), xs.c, xs.h, xs.w});
    for (std::size_t j = 0; j < rows.size(); ++j) {
        std::copy_n(x.data() + rows[j] * xs.per_sample(), xs.per_sample(), xg.data() + j * xs.per_sample());
    }
    return xg;
}
/// gamma with a negative channel (a decreasing map), beta around 0.
void spread_parameters(fr::batchnorm& bn, fr::rng& g) {
    for (std::size_t c = 0; c < bn.channels(); ++c) {
        bn.gamma()(c) = c == 1 ? -0.7f : 0.5f + g.uniform();
        bn.beta()(c) = g.uniform() - 0.5f;
    }
}
} // namespace

TEST_SUITE("layers") {

TEST_CASE("simd::fma rounds once where the instruction set has FMA (AVX-512 too), twice where it has none") {
    // std::fma is the correctly rounded a * b + c. xsimd 8.1 has no fma for
    // AVX-512 and computes a * b + c there, which -ffp-contract=off leaves
    // unfused: simd::fma must not inherit that.
#if defined(__FMA__) || defined(__AVX512F__)
    constexpr bool fused = true;
#else
    constexpr bool fused = false;
#endif
    fr::rng g(3);
    int differ = 0; // cases where one and two roundings give different floats
    for (int i = 0; i < 4000; ++i) {
        const float a = g.uniform() * 2.0f - 1.0f, b = g.uniform() * 2.0f - 1.0f;
        const float c = -(a * b) * (1.0f + (g.uniform() - 0.5f) * 1e-3f); // near-cancellation: the product's rounding shows
        alignas(64) float av[fr::simd::width], bv[fr::simd::width], cv[fr::simd::width], out[fr::simd::width];
        for (std::size_t l = 0; l < fr::simd::width; ++l) {
            av[l] = a * (1.0f + 0.01f * static_cast<float>(l));
            bv[l] = b;
            cv[l] = c;
        }
        fr::simd::fma(fr::simd::fbatch::load_aligned(av), fr::simd::fbatch::load_aligned(bv),
                      fr::simd::fbatch::load_aligned(cv))
            .store_aligned(out);
        for (std::size_t l = 0; l < fr::simd::width; ++l) {
            const float once = std::fma(av[l], bv[l], cv[l]);
            volatile float product = av[l] * bv[l]; // rounded to float, not contracted
            const float twice = product + cv[l];
            differ += once != twice;
            INFO("lane " << l << ": " << av[l] << " * " << bv[l] << " + " << cv[l]);
            REQUIRE(out[l] == (fused ? once : twice));
            REQUIRE(fr::simd::fma1(av[l], bv[l], cv[l]) == (fused ? once : twice)); // the scalar tails' twin
        }
    }
    CHECK(differ > 100); // the inputs do tell one rounding from two
}

TEST_CASE("simd helpers: flags round-trip, paired uniforms are 16-bit cell midpoints") {
    fr::rng g(1);
    // (fma1 against one or two roundings: the test case above)
    alignas(64) float v[fr::simd::width];
    std::uint8_t flags[fr::simd::width];
    for (std::size_t i = 0; i < fr::simd::width; ++i) {
        v[i] = i % 3 == 0 ? 0.0f : (i % 3 == 1 ? 1.5f : -2.0f);
    }
    const fr::simd::fbatch b = fr::simd::fbatch::load_aligned(v);
    fr::simd::store_flags(b > fr::simd::fbatch(0.0f), flags);
    const auto back = fr::simd::load_flags(flags);
    for (std::size_t i = 0; i < fr::simd::width; ++i) {
        CHECK(flags[i] == (v[i] > 0.0f ? 1 : 0));
        CHECK(back.get(i) == (v[i] > 0.0f));
    }
    fr::simd::lane_rng lanes(g);
    double sum_hi = 0.0, sum_lo = 0.0;
    const int draws = 20000;
    for (int i = 0; i < draws; ++i) {
        const auto [hi, lo] = lanes.uniform_pair();
        for (std::size_t l = 0; l < fr::simd::width; ++l) {
            for (const float u : {hi.get(l), lo.get(l)}) {
                REQUIRE(u > 0.0f);
                REQUIRE(u < 1.0f);
                REQUIRE(u * 65536.0f - 0.5f == std::floor(u * 65536.0f)); // a cell's midpoint (k + 1/2) 2^-16
            }
            sum_hi += hi.get(l);
            sum_lo += lo.get(l);
        }
    }
    const double n = static_cast<double>(draws) * static_cast<double>(fr::simd::width);
    // mean 1/2, standard error sqrt(1/12 / n)
    CHECK(std::fabs(sum_hi / n - 0.5) < 4.0 * std::sqrt(1.0 / 12.0 / n));
    CHECK(std::fabs(sum_lo / n - 0.5) < 4.0 * std::sqrt(1.0 / 12.0 / n));
}

TEST_CASE("batchnorm: a deferred forward's map, ranges and backward equal forward's") {
    for (const bool relu : {false, true}) {
        CAPTURE(relu);
        fr::rng g(2);
        fr::batchnorm a(4, 0.1f, 1e-5f, relu), b(4, 0.1f, 1e-5f, relu);
        spread_parameters(a, g);
        b.gamma() = a.gamma();
        b.beta() = a.beta();
        a.keep_ranges(true, false);
        b.keep_ranges(true, false);
        const fr::tensor4 x = random_tensor({3, 4, 5, 7}, g); // 35 values a plane: vector body and tail
        std::vector<fr::value_range> xr(3 * 4);
        for (std::size_t i = 0; i < xr.size(); ++i) {
            const float* p = x.data() + i * 35;
            xr[i] = {*std::min_element(p, p + 35), *std::max_element(p, p + 35)};
        }
        fr::context ctx;
        const fr::tensor4 y = a.forward(ctx, x);
        b.forward_deferred(ctx, x, nullptr, &xr);
        // the running statistics moved the same way
        CHECK(std::equal(a.running_mean().begin(), a.running_mean().end(), b.running_mean().begin()));
        CHECK(std::equal(a.running_var().begin(), a.running_var().end(), b.running_var().begin()));
        std::vector<float> plane(35);
        for (std::size_t i = 0; i < 12; ++i) {
            b.apply_plane(i, plane.data());
            REQUIRE(std::equal(plane.begin(), plane.end(), y.data() + i * 35));
        }
        // the output ranges derived from the input's are the output planes' exact ranges
        REQUIRE(b.output_ranges() != nullptr);
        REQUIRE(a.output_ranges() != nullptr);
        for (std::size_t i = 0; i < 12; ++i) {
            CHECK((*b.output_ranges())[i].lo == (*a.output_ranges())[i].lo);
            CHECK((*b.output_ranges())[i].hi == (*a.output_ranges())[i].hi);
        }
        CHECK(same_bits(b.materialize(), y));
        // backward: the same gradients (with a ReLU, its mask is recomputed from x in both)
        const fr::tensor4 dy = random_tensor(fr::shape_of(x), g);
        const fr::tensor4 da = a.backward(ctx, dy);
        const fr::tensor4 db = b.backward(ctx, dy);
        CHECK(same_bits(da, db));
        CHECK(std::equal(a.gamma_grad().begin(), a.gamma_grad().end(), b.gamma_grad().begin()));
        // the mask is where the output is positive: the gradient of a plane where every output is
        // 0 comes only from the statistics, i.e. it does not depend on that plane's dy
        if (relu) {
            fr::tensor4 dz = dy;
            for (std::size_t i = 0; i < dz.size(); ++i) {
                if (y.data()[i] == 0.0f) {
                    dz.data()[i] = 123.0f; // blocked by the ReLU: must not matter
                }
            }
            CHECK(same_bits(a.backward(ctx, dz), da));
        }
        // a non-finite map gives no output ranges
        b.beta()(2) = std::numeric_limits<float>::infinity();
        b.forward_deferred(ctx, x, nullptr, &xr);
        CHECK(b.output_ranges() == nullptr);
    }
}

TEST_CASE("batchnorm: a backward from plane sums handed over ahead equals the backward") {
    for (const bool relu : {false, true}) {
        CAPTURE(relu);
        fr::rng g(4);
        fr::batchnorm a(3, 0.1f, 1e-5f, relu), b(3, 0.1f, 1e-5f, relu);
        spread_parameters(a, g);
        b.gamma() = a.gamma();
        b.beta() = a.beta();
        const fr::tensor4 x = random_tensor({4, 3, 5, 7}, g); // 35 values a plane: vector body and tail
        const fr::tensor4 dy = random_tensor(fr::shape_of(x), g);
        fr::context ctx;
        (void)a.forward(ctx, x);
        b.forward_deferred(ctx, x);
        const fr::tensor4 da = a.backward(ctx, dy);
        // the planes handed over in a scrambled order, as threads would
        b.begin_plane_sums();
        for (std::size_t k = 0; k < 12; ++k) {
            const std::size_t i = (k * 5) % 12;
            b.plane_sums(i, dy.data() + i * 35);
        }
        const fr::tensor4 db = b.backward_from_plane_sums(ctx, dy);
        CHECK(same_bits(da, db));
        CHECK(std::equal(a.gamma_grad().begin(), a.gamma_grad().end(), b.gamma_grad().begin()));
        std::vector<fr::parameter> pa, pb;
        a.collect_parameters(pa);
        b.collect_parameters(pb);
        REQUIRE(pa.size() == 2);
        CHECK(std::equal(pa[1].grad.begin(), pa[1].grad.end(), pb[1].grad.begin())); // dbeta
        // one backward per begin; a plane left out gives NaN (reported by a trainer), not a stale sum
        CHECK_THROWS_WITH_AS((void)b.backward_from_plane_sums(ctx, dy), doctest::Contains("without begin_plane_sums"),
                             fr::error);
        b.begin_plane_sums();
        for (std::size_t i = 0; i < 12; ++i) {
            if (i != 4) {
                b.plane_sums(i, dy.data() + i * 35);
            }
        }
        (void)b.backward_from_plane_sums(ctx, dy);
        CHECK(std::isnan(b.gamma_grad()(4 % 3)));
        CHECK(!std::isnan(b.gamma_grad()(0)));
        // a forward in between ends the hand-over
        b.begin_plane_sums();
        (void)b.forward(ctx, x);
        CHECK_THROWS_AS((void)b.backward_from_plane_sums(ctx, dy), fr::error);
        fr::batchnorm fresh(3);
        CHECK_THROWS_WITH_AS(fresh.begin_plane_sums(), doctest::Contains("before forward"), fr::error);
    }
}

TEST_CASE("batchnorm: backward_gated is the backward of the gradient the flags let through") {
    fr::rng g(3);
    fr::batchnorm a(3), b(3);
    spread_parameters(a, g);
    b.gamma() = a.gamma();
    b.beta() = a.beta();
    const fr::tensor4 x = random_tensor({2, 3, 6, 5}, g);
    const fr::tensor4 dy = random_tensor(fr::shape_of(x), g);
    std::vector<std::uint8_t> flags(dy.size());
    fr::tensor4 gated = dy;
    for (std::size_t i = 0; i < flags.size(); ++i) {
        flags[i] = g.uniform() < 0.6f ? 1 : 0;
        gated.data()[i] = flags[i] != 0 ? dy.data()[i] : 0.0f;
    }
    fr::context ctx;
    (void)a.forward(ctx, x);
    (void)b.forward(ctx, x);
    const fr::tensor4 want = a.backward(ctx, gated);
    const fr::tensor4 got = b.backward_gated(ctx, dy, flags.data());
    CHECK(same_bits(want, got));
    CHECK(std::equal(a.gamma_grad().begin(), a.gamma_grad().end(), b.gamma_grad().begin()));
    fr::batchnorm r(3, 0.1f, 1e-5f, true);
    (void)r.forward(ctx, x);
    CHECK_THROWS_WITH_AS((void)r.backward_gated(ctx, dy, flags.data()), doctest::Contains("without its own ReLU"),
                         fr::error);
    CHECK_THROWS_WITH_AS((void)b.backward_gated(ctx, dy, nullptr), doctest::Contains("needs the flags"), fr::error);
    // a map is only applied after a forward that has the plane; a failed forward leaves none
    fr::batchnorm fresh(3);
    std::vector<float> plane(30);
    CHECK_THROWS_WITH_AS(fresh.apply_plane(0, plane.data()), doctest::Contains("apply_plane"), fr::error);
    CHECK_THROWS_AS(b.apply_plane(6, plane.data()), fr::error); // 2 samples x 3 channels
    CHECK_THROWS_AS((void)b.forward(ctx, random_tensor({1, 3, 1, 1}, g)), fr::shape_error); // one value a channel
    CHECK_THROWS_WITH_AS((void)b.backward(ctx, dy), doctest::Contains("before forward"), fr::error);
}

TEST_CASE("basic_block: the fused residual pass and the flag-gated backward equal the composition") {
    // forward = relu(forward_body + forward_shortcut); backward = backward_body + backward_shortcut
    // of the gated gradient; bit for bit, with and without a projection, in training (flags) and
    // after an evaluation forward (the gate computed from the output)
    for (const std::size_t stride : {std::size_t{1}, std::size_t{2}}) {
        CAPTURE(stride);
        fr::basic_block<> b(3, stride == 1 ? 3 : 5, stride);
        fr::rng g(4);
        b.reset_parameters(g);
        for (auto* bn : {&b.bn1(), &b.bn2()}) {
            spread_parameters(*bn, g);
        }
        if (b.has_projection()) {
            spread_parameters(b.projection_bn(), g);
        }
        fr::basic_block<> c = b;
        const fr::tensor4 x = random_tensor({3, 3, 9, 7}, g);
        for (const bool train : {true, false}) {
            CAPTURE(train);
            fr::context ctx;
            ctx.mode = train ? fr::run_mode::train : fr::run_mode::eval;
            const fr::tensor4 y = b.forward(ctx, x);
            const fr::tensor4 body = c.forward_body(ctx, x);
            const fr::tensor4 sc = c.forward_shortcut(ctx, x);
            REQUIRE(y.size() == body.size());
            for (std::size_t i = 0; i < y.size(); ++i) {
                REQUIRE(y.data()[i] == std::max(body.data()[i] + sc.data()[i], 0.0f));
            }
            // the deferred body: conv2's output and bn2's map give forward_body's values
            {
                fr::basic_block<> d = b;
                const fr::tensor4 c2 = d.forward_body_deferred(ctx, x);
                const fr::shape4 s = fr::shape_of(c2);
                const std::size_t hw = s.h * s.w;
                for (std::size_t i = 0; i < c2.size(); ++i) {
                    const std::size_t c = (i / hw) % s.c;
                    REQUIRE(fr::simd::fma1(c2.data()[i], d.bn2().affine_scale()[c], d.bn2().affine_shift()[c]) ==
                            body.data()[i]);
                }
            }
            const fr::tensor4 dy = random_tensor(fr::shape_of(y), g);
            fr::tensor4 gated = dy;
            for (std::size_t i = 0; i < gated.size(); ++i) {
                gated.data()[i] = y.data()[i] > 0.0f ? dy.data()[i] : 0.0f;
            }
            const fr::tensor4 dx = b.backward(ctx, dy);
            const fr::tensor4 db = c.backward_body(ctx, gated);
            const fr::tensor4 ds = c.backward_shortcut(ctx, gated);
            for (std::size_t i = 0; i < dx.size(); ++i) {
                REQUIRE(dx.data()[i] == db.data()[i] + ds.data()[i]);
            }
            gradcheck::check_same_gradients(b, c);
        }
    }
}

TEST_CASE("conv2d: the output sums kept on request are the planes' sums, in training only") {
    for (const std::size_t stride : {std::size_t{1}, std::size_t{2}}) {
        CAPTURE(stride);
        fr::conv2d conv(3, 4, 3, {stride, 1, true});
        fr::rng g(5);
        conv.reset_parameters(g);
        const fr::tensor4 x = random_tensor({2, 3, 11, 12}, g); // implicit (stride 1) and im2col paths
        fr::context ctx;
        (void)conv.forward(ctx, x);
        CHECK(conv.output_sums() == nullptr); // off by default
        conv.keep_output_sums(true);
        const fr::tensor4 y = conv.forward(ctx, x);
        REQUIRE(conv.output_sums() != nullptr);
        const fr::shape4 s = fr::shape_of(y);
        const auto& sums = *conv.output_sums();
        REQUIRE(sums.size() == s.n * s.c);
        for (std::size_t i = 0; i < sums.size(); ++i) {
            const auto want = fr::kernels::sum_and_squares(y.data() + i * s.h * s.w, s.h * s.w);
            CHECK(sums[i].first == want.first);
            CHECK(sums[i].second == want.second);
        }
        fr::context ev;
        ev.mode = fr::run_mode::eval;
        (void)conv.forward(ev, x);
        CHECK(conv.output_sums() == nullptr);
    }
}

TEST_CASE("conv2d: forward_rows and its backward equal the layer run on the gathered samples") {
    // (kernel, stride, image side): read in place (3, 1, 11) and on the polyphase canvases (3, 2,
    // 24: 12 output rows, polyphase_min_side); gathered inside (3, 2, 11), (1, 1), (1, 2) and (5,
    // 2); the single-tap path of 1 x 1 images, read in place at any stride (3, 1, 1) and (3, 2, 1)
    static_assert(fr::conv2d::polyphase_min_side <= 12);
    for (const auto& [kernel, stride, side] : {std::tuple<std::size_t, std::size_t, std::size_t>{3, 1, 11},
                                               {3, 2, 24}, {3, 2, 11}, {1, 1, 11}, {1, 2, 11}, {5, 2, 11},
                                               {3, 1, 1}, {3, 2, 1}}) {
        CAPTURE(kernel);
        CAPTURE(stride);
        CAPTURE(side);
        const std::size_t pad = kernel / 2;
        fr::conv2d a(3, 4, kernel, {stride, pad, true}), b(3, 4, kernel, {stride, pad, true});
        fr::rng g(6);
        a.reset_parameters(g);
        b.weight() = a.weight();
        a.keep_output_sums(true);
        b.keep_output_sums(true);
        // 13 samples of side x (side + 1) (or 1 x 1): several canvases of several images each at stride 1
        const fr::tensor4 x = random_tensor({13, 3, side, side == 1 ? std::size_t{1} : side + 1}, g);
        const std::vector<std::size_t> rows{12, 0, 5, 6, 7, 2, 9, 3, 5}; // a sample twice, too
        const fr::tensor4 xg = gather(x, rows);
        fr::context ctx;
        const fr::tensor4 ya = a.forward_rows(ctx, x, rows);
        const fr::tensor4 yb = b.forward(ctx, xg);
        CHECK(same_bits(ya, yb));
        REQUIRE(a.output_sums() != nullptr);
        CHECK(*a.output_sums() == *b.output_sums());
        const fr::tensor4 dy = random_tensor(fr::shape_of(yb), g);
        const fr::tensor4 dxa = a.backward(ctx, dy);
        const fr::tensor4 dxb = b.backward(ctx, dy);
        CHECK(fr::shape_of(dxa) == fr::shape_of(xg));
        CHECK(same_bits(dxa, dxb));
        CHECK(std::equal(a.weight_grad().begin(), a.weight_grad().end(), b.weight_grad().begin()));
        // a plain forward afterwards reads its whole input again, and so does its backward
        const fr::tensor4 yfull = a.forward(ctx, x);
        CHECK(fr::shape_of(yfull).n == 13);
        CHECK(same_bits(yfull, b.forward(ctx, x)));
        const fr::tensor4 dyfull = random_tensor(fr::shape_of(yfull), g);
        CHECK(same_bits(a.backward(ctx, dyfull), b.backward(ctx, dyfull)));
        CHECK(std::equal(a.weight_grad().begin(), a.weight_grad().end(), b.weight_grad().begin()));
        // a row outside the batch is refused with the layer's name
        const std::vector<std::size_t> bad{1, 13};
        CHECK_THROWS_WITH_AS(a.forward_rows(ctx, x, bad), doctest::Contains("row 1 is sample 13 of a batch of 13"),
                             fr::shape_error);
        CHECK_THROWS_AS(a.backward(ctx, dyfull), fr::error); // no backward after a refused forward
    }
}

TEST_CASE("quantized_conv: forward_rows and its backward equal the layer run on the gathered samples") {
    // (kernel, stride, widths): quads (3, 1), the strided integer product (3, 2), 12-bit errors
    // (two limbs), and float mode
    struct cfg {
        std::size_t k, stride;
        fr::bit_widths w;
    };
    for (const cfg& c : {cfg{3, 1, {6, 6, 8}}, cfg{3, 2, {8, 8, 8}}, cfg{3, 1, {6, 4, 12}}, cfg{3, 1, fr::bit_widths::full()}}) {
        CAPTURE(c.k);
        CAPTURE(c.stride);
        CAPTURE(c.w.error);
        fr::rng g(11);
        fr::quantized_conv a(4, 5, c.k, {c.stride, c.k / 2, false}, c.w), b(4, 5, c.k, {c.stride, c.k / 2, false}, c.w);
        a.reset_parameters(g);
        b.weight() = a.weight();
        a.keep_output_sums(true);
        b.keep_output_sums(true);
        const fr::tensor4 x = random_tensor({9, 4, 8, 9}, g);
        const std::vector<std::size_t> rows{7, 0, 3, 3, 8, 1};
        const fr::tensor4 xg = gather(x, rows);
        fr::context ca, cb;
        ca.random = fr::rng(3);
        cb.random = fr::rng(3);
        const fr::tensor4 ya = a.forward_rows(ca, x, rows);
        const fr::tensor4 yb = b.forward(cb, xg);
        CHECK(same_bits(ya, yb));
        if (a.output_sums() != nullptr || b.output_sums() != nullptr) {
            REQUIRE(a.output_sums() != nullptr);
            REQUIRE(b.output_sums() != nullptr);
            CHECK(*a.output_sums() == *b.output_sums());
        }
        const fr::tensor4 dy = random_tensor(fr::shape_of(yb), g);
        const fr::tensor4 dxa = a.backward(ca, dy);
        const fr::tensor4 dxb = b.backward(cb, dy);
        CHECK(fr::shape_of(dxa) == fr::shape_of(xg));
        CHECK(same_bits(dxa, dxb));
        CHECK(same_bits(a.weight_grad(), b.weight_grad()));
        // evaluation with running ranges: the same too
        fr::context ev;
        ev.mode = fr::run_mode::eval;
        CHECK(same_bits(a.forward_rows(ev, x, rows), b.forward(ev, xg)));
        const std::vector<std::size_t> bad{9};
        CHECK_THROWS_WITH_AS(a.forward_rows(ca, x, bad), doctest::Contains("row 0 is sample 9 of a batch of 9"),
                             fr::shape_error);
    }
}

TEST_CASE_TEMPLATE("basic_block: the branch run on chosen rows equals the branch on the gathered samples", Block,
                   fr::basic_block<>, fr::basic_block<fr::quantized_conv_maker>) {
    Block a(4, 4, 1), b(4, 4, 1);
    fr::rng g(12);
    a.reset_parameters(g);
    gradcheck::copy_parameters(a, b);
    const fr::tensor4 x = random_tensor({10, 4, 7, 7}, g);
    const std::vector<std::size_t> rows{9, 2, 5, 0, 6};
    const fr::tensor4 xg = gather(x, rows);
    fr::context ca, cb; // the same random stream (the quantized block's stochastic roundings)
    ca.random = fr::rng(4);
    cb.random = fr::rng(4);
    const fr::tensor4 c1 = a.forward_body_deferred_rows(ca, x, rows);
    const fr::tensor4 c2 = b.forward_body_deferred(cb, xg);
    CHECK(same_bits(c1, c2));
    CHECK(a.bn2().affine_scale() == b.bn2().affine_scale());
    const fr::tensor4 d = random_tensor(fr::shape_of(c2), g);
    CHECK(same_bits(a.backward_body(ca, d), b.backward_body(cb, d)));
    gradcheck::check_same_gradients(a, b);
}

TEST_CASE("quantized_conv: a forward fed plane by plane equals the forward of the tensor") {
    fr::rng g(6);
    fr::quantized_conv a(4, 5, 3, {1, 1, false}, {6, 6, 8}), b(4, 5, 3, {1, 1, false}, {6, 6, 8});
    a.reset_parameters(g);
    b.weight() = a.weight();
    a.keep_output_sums(true);
    a.keep_output_ranges(true);
    b.keep_output_sums(true);
    b.keep_output_ranges(true);
    const fr::tensor4 x = random_tensor({3, 4, 8, 9}, g);
    std::vector<fr::value_range> xr(3 * 4);
    for (std::size_t i = 0; i < xr.size(); ++i) {
        const float* p = x.data() + i * 72;
        xr[i] = {*std::min_element(p, p + 72), *std::max_element(p, p + 72)};
    }
    fr::context ctx;
    {
        // ranges are handed out only from a forward that kept them
        fr::quantized_conv q(4, 5, 3, {1, 1, false}, {8, 8, 8});
        q.reset_parameters(g);
        q.keep_output_sums(true);
        (void)q.forward(ctx, x);
        CHECK(q.output_sums() != nullptr);
        CHECK(q.output_ranges() == nullptr);
        q.keep_output_ranges(true);
        CHECK(q.output_ranges() == nullptr);
        (void)q.forward(ctx, x);
        CHECK(q.output_ranges() != nullptr);
    }
    const fr::tensor4 want = a.forward(ctx, x, &xr);
    int calls = 0;
    const fr::tensor4 got = b.forward_planes(ctx, fr::shape_of(x), xr, [&](std::size_t i, float* buf) {
#pragma omp atomic
        ++calls;
        std::copy(x.data() + i * 72, x.data() + (i + 1) * 72, buf);
        return static_cast<const float*>(buf);
    });
    CHECK(calls == 12); // once per plane
    CHECK(same_bits(want, got));
    // the kept output ranges are the planes' exact ranges
    REQUIRE(b.output_ranges() != nullptr);
    const fr::shape4 s = fr::shape_of(got);
    for (std::size_t i = 0; i < s.n * s.c; ++i) {
        const float* p = got.data() + i * s.h * s.w;
        CHECK((*b.output_ranges())[i].lo == *std::min_element(p, p + s.h * s.w));
        CHECK((*b.output_ranges())[i].hi == *std::max_element(p, p + s.h * s.w));
    }
    // the backward after either forward is the same (the same random stream)
    const fr::tensor4 dy = random_tensor(fr::shape_of(want), g);
    fr::context ca, cb;
    ca.random = fr::rng(9);
    cb.random = fr::rng(9);
    CHECK(same_bits(a.backward(ca, dy), b.backward(cb, dy)));
    CHECK(same_bits(a.weight_grad(), b.weight_grad()));
    // wrong use is refused with a message
    const auto source = [&](std::size_t i, float* buf) {
        std::copy(x.data() + i * 72, x.data() + (i + 1) * 72, buf);
        return static_cast<const float*>(buf);
    };
    std::vector<fr::value_range> few(xr.begin(), xr.begin() + 5);
    CHECK_THROWS_WITH_AS((void)b.forward_planes(ctx, fr::shape_of(x), few, source), doctest::Contains("plane ranges"),
                         fr::shape_error);
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    CHECK_THROWS_WITH_AS((void)b.forward_planes(ev, fr::shape_of(x), xr, source), doctest::Contains("training"),
                         fr::error);
    std::vector<fr::value_range> nan = xr;
    nan[3].hi = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS((void)b.forward_planes(ctx, fr::shape_of(x), nan, source), doctest::Contains("plane 3"),
                         fr::numeric_error);
    b.set_precision(fr::bit_widths::full());
    CHECK_THROWS_WITH_AS((void)b.forward_planes(ctx, fr::shape_of(x), xr, source), doctest::Contains("integer widths"),
                         fr::error);
}

} // TEST_SUITE
