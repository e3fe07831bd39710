// Finite-difference checks of every layer's backward (input and parameters),
// hand-computed forward cases, shape errors, and save/load round trips.

#include <doctest/doctest.h>

#include <algorithm>

#include <cmath>

#include <frugal/layers/activation.hpp>
#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/dense.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/layers/pool.hpp>
#include <frugal/layers/residual.hpp>

#include "layers/gradcheck.hpp"

namespace fr = frugal;
using gradcheck::random_tensor;

namespace {
template <class L>
void init(L& l, std::uint64_t seed = 3) {
    fr::rng g(seed);
    l.reset_parameters(g);
}

template <class L>
void round_trip(L& a, L& b) {
    fr::archive_writer w;
    a.save(w);
    fr::archive_reader r(w.bytes(), "test archive");
    b.load(r);
    CHECK(r.remaining() == 0);
    std::vector<fr::parameter> pa, pb;
    a.collect_parameters(pa);
    b.collect_parameters(pb);
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
        CHECK(std::equal(pa[i].value.begin(), pa[i].value.end(), pb[i].value.begin()));
    }
}
} // namespace

TEST_SUITE("layers") {

TEST_CASE("conv2d gradients on odd shapes strides and paddings") {
    struct cfg {
        std::size_t n, cin, cout, h, w, k, stride, pad;
        bool bias;
    };
    // covers the implicit (stride 1, >= 10x10 outputs), the polyphase (stride 2, 3 x 3, padding 1,
    // outputs of polyphase_min_side and more: odd and even sides; several images per canvas) and
    // the im2col paths (the smaller strided ones)
    constexpr std::size_t ps = 2 * fr::conv2d::polyphase_min_side;
    const cfg cases[] = {
        {2, 2, 3, ps, ps + 1, 3, 2, 1, true}, {3, 1, 2, ps + 3, ps, 3, 2, 1, false}, {2, 2, 3, 9, 9, 5, 2, 2, true},
        {2, 3, 5, 12, 11, 3, 1, 1, true},  {3, 2, 4, 7, 9, 3, 2, 1, false}, {2, 1, 6, 12, 12, 5, 1, 2, true},
        {2, 3, 3, 14, 13, 5, 1, 0, true},  {2, 4, 5, 6, 6, 1, 2, 0, false}, {1, 2, 3, 5, 5, 1, 1, 0, true},
        {3, 3, 2, 4, 5, 2, 1, 0, true},    {2, 2, 17, 3, 3, 3, 1, 1, true}, {13, 2, 3, 5, 5, 3, 1, 1, true},
        {7, 3, 33, 6, 7, 3, 1, 1, false}, // several stacked images per product, odd channel counts
        // 1 x 1 images, 1 x 1 outputs: the single-tap path (two sample groups in the second)
        {5, 3, 40, 1, 1, 3, 1, 1, true},  {35, 4, 6, 1, 1, 5, 1, 2, false}, {3, 2, 3, 1, 1, 3, 2, 1, true},
    };
    for (const auto& c : cases) {
        CAPTURE(c.n);
        CAPTURE(c.cin);
        CAPTURE(c.cout);
        CAPTURE(c.h);
        CAPTURE(c.w);
        CAPTURE(c.k);
        CAPTURE(c.stride);
        CAPTURE(c.pad);
        fr::conv2d conv(c.cin, c.cout, c.k, {c.stride, c.pad, c.bias});
        init(conv);
        fr::rng g(11);
        gradcheck::check(conv, random_tensor({c.n, c.cin, c.h, c.w}, g));
    }
}

TEST_CASE("conv2d forward equals a direct convolution") {
    fr::rng g(5);
    // the last three: 1 x 1 images (the single-tap path)
    // (3, 2, 1, 24 / 25): the polyphase path (fr::conv2d::polyphase_min_side = 12 outputs a side)
    static_assert(fr::conv2d::polyphase_min_side <= 12);
    for (const auto& [k, s, p, h] : {std::tuple{3, 1, 1, 12}, {3, 2, 1, 9}, {3, 2, 1, 24}, {3, 2, 1, 25}, {3, 2, 1, 2},
                                     {5, 1, 2, 11}, {1, 2, 0, 8}, {5, 2, 2, 9}, {3, 1, 1, 1},
                                     {5, 1, 2, 1}, {3, 2, 1, 1}}) {
        fr::conv2d conv(3, 4, static_cast<std::size_t>(k), {static_cast<std::size_t>(s), static_cast<std::size_t>(p), true});
        init(conv);
        const auto x = random_tensor({2, 3, static_cast<std::size_t>(h), static_cast<std::size_t>(h)}, g);
        fr::context ctx;
        const auto& y = conv.forward(ctx, x);
        const auto ho = y.shape()[2], wo = y.shape()[3];
        double worst = 0.0;
        for (std::size_t n = 0; n < 2; ++n) {
            for (std::size_t o = 0; o < 4; ++o) {
                for (std::size_t oy = 0; oy < ho; ++oy) {
                    for (std::size_t ox = 0; ox < wo; ++ox) {
                        double ref = conv.bias()(o);
                        for (std::size_t c = 0; c < 3; ++c) {
                            for (int ky = 0; ky < k; ++ky) {
                                for (int kx = 0; kx < k; ++kx) {
                                    const int iy = static_cast<int>(oy) * s - p + ky, ix = static_cast<int>(ox) * s - p + kx;
                                    if (iy >= 0 && ix >= 0 && iy < h && ix < h) {
                                        ref += static_cast<double>(conv.weight()(o, c, ky, kx)) * x(n, c, iy, ix);
                                    }
                                }
                            }
                        }
                        worst = std::max(worst, std::fabs(ref - y(n, o, oy, ox)));
                    }
                }
            }
        }
        CHECK(worst < 1e-4);
    }
}

TEST_CASE("conv2d skips the input gradient when told to") {
    fr::conv2d conv(2, 3, 3, {1, 1, true});
    init(conv);
    fr::rng g(1);
    const auto x = random_tensor({2, 2, 12, 12}, g);
    fr::context ctx;
    const auto y = conv.forward(ctx, x);
    conv.set_input_grad(false);
    const auto& dx = conv.backward(ctx, y);
    CHECK(dx.size() == 0);
    CHECK(conv.weight_grad()(0, 0, 0, 0) != 0.0f); // the weight gradient is still there
}

TEST_CASE("conv2d weight gradient equals a direct sum for channel counts around the kernel's panel") {
    // Pruned layers have any channel count: below, at and past the matrix
    // kernel's panel width (gemm_nr), with a remainder of one vector or less.
    constexpr std::size_t nr = fr::kernels::detail::gemm_nr, vw = fr::kernels::detail::vw;
    fr::rng g(17);
    for (const std::size_t cout : {nr - 1, nr, nr + 1, nr + vw - 1, 2 * nr + 7}) {
        // (24, 2): the polyphase path
        for (const auto& [h, stride] : {std::pair<std::size_t, std::size_t>{3, 1}, {9, 1}, {6, 2}, {24, 2}, {1, 1}}) {
            CAPTURE(cout);
            CAPTURE(h);
            CAPTURE(stride);
            // 1 x 1 images: 70 samples, three groups of the single-tap path, so that a thread
            // adds a second group into its partial gradient
            const std::size_t n = h == 1 ? 70 : 5, cin = 3, k = 3;
            fr::conv2d conv(cin, cout, k, {stride, 1, true});
            init(conv);
            const auto x = random_tensor({n, cin, h, h}, g);
            fr::context ctx;
            const fr::tensor4 y = conv.forward(ctx, x);
            const auto dy = random_tensor(fr::shape_of(y), g);
            (void)conv.backward(ctx, dy);
            const std::size_t ho = y.shape()[2];
            std::vector<fr::parameter> ps;
            conv.collect_parameters(ps);
            REQUIRE(ps.size() == 2);
            REQUIRE(ps[1].role == fr::param_role::bias);
            double worst = 0.0, worst_bias = 0.0;
            for (std::size_t o = 0; o < cout; ++o) {
                double db = 0.0;
                for (std::size_t s = 0; s < n; ++s) {
                    for (std::size_t oy = 0; oy < ho; ++oy) {
                        for (std::size_t ox = 0; ox < ho; ++ox) {
                            db += dy(s, o, oy, ox);
                        }
                    }
                }
                worst_bias = std::max(worst_bias, std::fabs(db - ps[1].grad[o]));
                for (std::size_t c = 0; c < cin; ++c) {
                    for (std::size_t ky = 0; ky < k; ++ky) {
                        for (std::size_t kx = 0; kx < k; ++kx) {
                            double ref = 0.0;
                            for (std::size_t s = 0; s < n; ++s) {
                                for (std::size_t oy = 0; oy < ho; ++oy) {
                                    for (std::size_t ox = 0; ox < ho; ++ox) {
                                        const long iy = static_cast<long>(oy * stride + ky) - 1;
                                        const long ix = static_cast<long>(ox * stride + kx) - 1;
                                        if (iy >= 0 && ix >= 0 && iy < static_cast<long>(h) && ix < static_cast<long>(h)) {
                                            ref += static_cast<double>(dy(s, o, oy, ox)) *
                                                   x(s, c, static_cast<std::size_t>(iy), static_cast<std::size_t>(ix));
                                        }
                                    }
                                }
                            }
                            worst = std::max(worst, std::fabs(ref - conv.weight_grad()(o, c, ky, kx)));
                        }
                    }
                }
            }
            CHECK(worst < 1e-4);
            CHECK(worst_bias < 1e-4);
        }
    }
}

TEST_CASE("conv2d backward after assume_input equals backward after forward") {
    fr::rng g(3);
    for (const std::size_t stride : {1, 2}) { // the implicit and the im2col paths
        CAPTURE(stride);
        fr::conv2d a(3, 4, 3, {stride, 1, false}), b(3, 4, 3, {stride, 1, false});
        init(a);
        std::copy(a.weight().begin(), a.weight().end(), b.weight().begin());
        const auto x = random_tensor({3, 3, 9, 7}, g);
        fr::context ctx;
        const fr::tensor4 y = a.forward(ctx, x);
        const auto dy = random_tensor(fr::shape_of(y), g);
        const fr::tensor4 dxa = a.backward(ctx, dy);
        b.assume_input(x); // no forward
        const fr::tensor4 dxb = b.backward(ctx, dy);
        CHECK(std::equal(dxa.begin(), dxa.end(), dxb.begin(), dxb.end()));
        CHECK(std::equal(a.weight_grad().begin(), a.weight_grad().end(), b.weight_grad().begin(),
                         b.weight_grad().end()));
        // a gradient of the wrong shape is still refused, and so is an input of the wrong channels
        CHECK_THROWS_AS((void)b.backward(ctx, random_tensor({3, 4, 2, 2}, g)), fr::shape_error);
        CHECK_THROWS_AS(b.assume_input(random_tensor({1, 2, 9, 7}, g)), fr::shape_error);
    }
}

TEST_CASE("dense gradients and hand-computed forward") {
    fr::dense d(5, 3);
    init(d);
    fr::rng g(2);
    gradcheck::check(d, random_tensor({4, 5, 1, 1}, g));
    fr::dense d2(6, 2);
    init(d2);
    gradcheck::check(d2, random_tensor({3, 2, 1, 3}, g)); // flattens 2x1x3 implicitly

    fr::dense h(2, 1);
    h.weight()(0, 0) = 2.0f;
    h.weight()(0, 1) = -1.0f;
    h.bias()(0) = 0.5f;
    fr::tensor4 x = fr::tensor4::from_shape({1, 2, 1, 1});
    x(0, 0, 0, 0) = 3.0f;
    x(0, 1, 0, 0) = 4.0f;
    fr::context ctx;
    CHECK(h.forward(ctx, x)(0, 0, 0, 0) == doctest::Approx(2.5f));
}

TEST_CASE("batchnorm gradients in training and evaluation mode") {
    fr::batchnorm bn(3);
    fr::rng g(4);
    for (auto& v : bn.gamma()) {
        v = 0.5f + g.uniform();
    }
    for (auto& v : bn.beta()) {
        v = g.uniform() - 0.5f;
    }
    gradcheck::options o;
    o.rtol = 3e-2;
    gradcheck::check(bn, random_tensor({4, 3, 3, 2}, g), o);
    o.train = false;
    bn.running_mean().fill(0.2f);
    bn.running_var().fill(1.5f);
    gradcheck::check(bn, random_tensor({2, 3, 2, 2}, g), o);
}

TEST_CASE("batchnorm normalizes and tracks running statistics") {
    fr::batchnorm bn(1, 0.1f);
    fr::tensor4 x = fr::tensor4::from_shape({4, 1, 1, 1});
    x(0, 0, 0, 0) = 1;
    x(1, 0, 0, 0) = 2;
    x(2, 0, 0, 0) = 3;
    x(3, 0, 0, 0) = 6; // mean 3, biased var 3.5, unbiased 14/3
    fr::context ctx;
    const auto& y = bn.forward(ctx, x);
    CHECK(y(3, 0, 0, 0) == doctest::Approx(3.0 / std::sqrt(3.5 + 1e-5)));
    CHECK(bn.running_mean()(0) == doctest::Approx(0.3f));
    CHECK(bn.running_var()(0) == doctest::Approx(0.9f + 0.1f * 14.0f / 3.0f));
    ctx.mode = fr::run_mode::eval;
    const auto& e = bn.forward(ctx, x);
    CHECK(e(0, 0, 0, 0) == doctest::Approx((1.0 - 0.3) / std::sqrt(bn.running_var()(0) + 1e-5)).epsilon(1e-5));
}

TEST_CASE("relu and pooling gradients") {
    fr::rng g(6);
    fr::relu r;
    gradcheck::options o;
    o.h = 1e-3;
    gradcheck::check(r, random_tensor({2, 3, 4, 5}, g, 1.0f, 0.05f), o);
    // distinct values so that the max of every window is unique
    fr::tensor4 x = fr::tensor4::from_shape({2, 2, 6, 7});
    for (std::size_t i = 0; i < x.size(); ++i) {
        x.data()[i] = static_cast<float>((i * 37) % 101) * 0.1f;
    }
    fr::max_pool mp(2);
    gradcheck::check(mp, x, o);
    fr::max_pool mp3(3, 2);
    gradcheck::check(mp3, x, o);
    fr::avg_pool ap(2);
    gradcheck::check(ap, random_tensor({2, 3, 4, 6}, g));
    fr::global_avg_pool gp;
    gradcheck::check(gp, random_tensor({3, 4, 3, 5}, g));
    fr::flatten fl;
    gradcheck::check(fl, random_tensor({2, 3, 2, 2}, g));
}

TEST_CASE("max pooling of a hand-made image") {
    fr::tensor4 x = fr::tensor4::from_shape({1, 1, 2, 4});
    const float v[] = {1, 5, 2, 0, 3, 4, 7, 8};
    std::copy(v, v + 8, x.data());
    fr::max_pool mp(2);
    fr::context ctx;
    const auto& y = mp.forward(ctx, x);
    REQUIRE(y.shape()[3] == 2);
    CHECK(y(0, 0, 0, 0) == 5.0f);
    CHECK(y(0, 0, 0, 1) == 8.0f);
    fr::tensor4 dy = fr::tensor4::from_shape({1, 1, 1, 2});
    dy(0, 0, 0, 0) = 1.0f;
    dy(0, 0, 0, 1) = 2.0f;
    const auto& dx = mp.backward(ctx, dy);
    CHECK(dx(0, 0, 0, 1) == 1.0f);
    CHECK(dx(0, 0, 1, 3) == 2.0f);
    CHECK(dx(0, 0, 0, 0) == 0.0f);
}

TEST_CASE("residual blocks with identity and projection shortcuts") {
    fr::rng g(8);
    gradcheck::options o;
    o.h = 1e-3; // the two ReLUs: a larger step crosses their kinks
    fr::basic_block<> same(3, 3, 1);
    CHECK(!same.has_projection());
    init(same, 9);
    gradcheck::check(same, random_tensor({3, 3, 5, 5}, g), o);
    fr::basic_block<> down(2, 4, 2);
    CHECK(down.has_projection());
    init(down, 10);
    gradcheck::check(down, random_tensor({3, 2, 6, 6}, g), o);
}

TEST_CASE("softmax cross-entropy gradient and value") {
    fr::rng g(12);
    fr::tensor4 z = random_tensor({3, 4, 1, 1}, g, 2.0f);
    frugal::tensor<std::int32_t, 1> y = {1, 3, 0};
    fr::softmax_cross_entropy loss;
    const float l = loss.forward(z, y);
    const fr::tensor4 grad = loss.backward();
    // value by hand for sample 0
    double total = 0.0;
    for (std::size_t n = 0; n < 3; ++n) {
        double s = 0.0;
        for (std::size_t j = 0; j < 4; ++j) {
            s += std::exp(static_cast<double>(z(n, j, 0, 0)));
        }
        total += std::log(s) - z(n, static_cast<std::size_t>(y(n)), 0, 0);
    }
    CHECK(l == doctest::Approx(total / 3.0).epsilon(1e-5));
    const double h = 1e-3;
    for (std::size_t i = 0; i < z.size(); ++i) {
        const float keep = z.data()[i];
        z.data()[i] = static_cast<float>(keep + h);
        const double up = loss.forward(z, y);
        z.data()[i] = static_cast<float>(keep - h);
        const double down = loss.forward(z, y);
        z.data()[i] = keep;
        CHECK(grad.data()[i] == doctest::Approx((up - down) / (2 * h)).epsilon(1e-2));
    }
    y(0) = 4;
    CHECK_THROWS_AS((void)loss.forward(z, y), fr::error);
}

TEST_CASE("wrong shapes give clear errors") {
    fr::context ctx;
    fr::conv2d conv(3, 4, 3, {1, 1, true});
    const fr::tensor4 x = fr::tensor4::from_shape({2, 2, 8, 8});
    CHECK_THROWS_AS((void)conv.forward(ctx, x), fr::shape_error);
    try {
        (void)conv.forward(ctx, x);
    } catch (const fr::shape_error& e) {
        CHECK(std::string(e.what()).find("[2, 2, 8, 8]") != std::string::npos);
    }
    fr::dense d(10, 2);
    CHECK_THROWS_AS((void)d.forward(ctx, x), fr::shape_error);
    fr::batchnorm bn(5);
    CHECK_THROWS_AS((void)bn.forward(ctx, x), fr::shape_error);
    fr::max_pool mp(9);
    CHECK_THROWS_AS((void)mp.forward(ctx, x), fr::shape_error);
    CHECK_THROWS_AS(fr::conv2d(0, 1, 3), fr::error);
}

TEST_CASE("layers save and load their parameters") {
    fr::conv2d a(2, 3, 3, {1, 1, true}), b(2, 3, 3, {1, 1, true});
    init(a, 1);
    init(b, 2);
    round_trip(a, b);
    fr::batchnorm c(4), d(4);
    c.gamma()(1) = 3.0f;
    c.running_var()(2) = 7.0f;
    round_trip(c, d);
    CHECK(d.running_var()(2) == 7.0f);
    fr::basic_block<> e(2, 4, 2), f(2, 4, 2);
    init(e, 3);
    round_trip(e, f);
    // a checkpoint of another shape is refused with a message naming both
    fr::conv2d other(2, 5, 3, {1, 1, true});
    fr::archive_writer w;
    a.save(w);
    fr::archive_reader r(w.bytes(), "ckpt");
    CHECK_THROWS_AS(other.load(r), fr::io_error);
}

} // TEST_SUITE

TEST_SUITE("layers") {
TEST_CASE("batchnorm with a fused relu") {
    fr::batchnorm bn(3, 0.1f, 1e-5f, true);
    fr::rng g(14);
    for (auto& v : bn.beta()) {
        v = g.uniform() - 0.5f;
    }
    gradcheck::options o;
    o.h = 1e-3;
    gradcheck::check(bn, random_tensor({4, 3, 3, 3}, g), o);
    // equals batchnorm followed by relu
    fr::batchnorm plain(3);
    plain.beta() = bn.beta();
    fr::relu r;
    fr::context ctx;
    const auto x = random_tensor({2, 3, 4, 4}, g);
    const fr::tensor4 fused = bn.forward(ctx, x);
    const fr::tensor4& sep = r.forward(ctx, plain.forward(ctx, x));
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(fused.data()[i] == doctest::Approx(sep.data()[i]));
    }
}
} // TEST_SUITE
