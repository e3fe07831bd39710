// quantized_conv: the integer forward, input-gradient and weight-gradient
// products against a plain double-precision reference built from the
// documented quantizers (recomputed here, element by element), the
// straight-through gradients against the float convolution's, the
// full-precision path, the meter's formats and the error messages.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include <frugal/cost/meter.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/quantized_conv.hpp>
#include <frugal/numeric/random.hpp>

#include "layers/gradcheck.hpp"

namespace fr = frugal;

namespace {

fr::tensor4 random_input(const fr::shape4& s, fr::rng& g, float lo, float hi) {
    fr::tensor4 t = fr::tensor4::from_shape({s.n, s.c, s.h, s.w});
    for (auto& v : t) {
        v = lo + (hi - lo) * g.uniform();
    }
    return t;
}

/// The documented activation quantizer, scalar: range widened to contain 0,
/// zero point rounded to an integer, nearest rounding.
std::vector<double> dequantized_activations(const fr::tensor4& x, int bits) {
    float lo = 0.0f, hi = 0.0f;
    for (float v : x) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    const float levels = static_cast<float>((1 << bits) - 1);
    const float s = std::max(hi - lo, 1e-8f) / levels;
    const float z = std::clamp(std::nearbyint(-lo / s), 0.0f, levels);
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const float q = std::clamp(std::nearbyint((x.data()[i] + z * s) * (1.0f / s)), 0.0f, levels);
        out[i] = static_cast<double>(s) * (static_cast<double>(q) - static_cast<double>(z));
    }
    return out;
}

/// Symmetric per-output-channel weights.
std::vector<double> dequantized_weights(const fr::tensor4& w, int bits) {
    const std::size_t out = w.shape()[0], kk = w.size() / out;
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    std::vector<double> r(w.size());
    for (std::size_t o = 0; o < out; ++o) {
        float m = 0.0f;
        for (std::size_t j = 0; j < kk; ++j) {
            m = std::max(m, std::fabs(w.data()[o * kk + j]));
        }
        const float s = m / qmax;
        for (std::size_t j = 0; j < kk; ++j) {
            const float q = s > 0 ? std::clamp(std::nearbyint(w.data()[o * kk + j] * (qmax / m)), -qmax, qmax) : 0.0f;
            r[o * kk + j] = static_cast<double>(s) * static_cast<double>(q);
        }
    }
    return r;
}

/// The per-channel weights re-quantized per tensor (what dx uses).
std::vector<double> per_tensor_requantized(const std::vector<double>& wc, int bits) {
    const double qmax = (1 << (bits - 1)) - 1;
    float m = 0.0f;
    for (double v : wc) {
        m = std::max(m, std::fabs(static_cast<float>(v)));
    }
    const float s = m / static_cast<float>(qmax), inv = m > 0 ? static_cast<float>(qmax) / m : 0.0f;
    std::vector<double> r(wc.size());
    for (std::size_t i = 0; i < wc.size(); ++i) {
        const float q = std::clamp(std::nearbyint(static_cast<float>(wc[i]) * inv), -static_cast<float>(qmax),
                                   static_cast<float>(qmax));
        r[i] = static_cast<double>(s) * static_cast<double>(q);
    }
    return r;
}

struct geom {
    std::size_t n, c, h, w, out, k, stride, pad;
    [[nodiscard]] std::size_t ho() const { return (h + 2 * pad - k) / stride + 1; }
    [[nodiscard]] std::size_t wo() const { return (w + 2 * pad - k) / stride + 1; }
};

/// Calls f(y index, x index, w index) for every product of the convolution
/// (zero padding: taps outside the image are left out).
template <class F>
void for_each_tap(const geom& G, F&& f) {
    const auto h = static_cast<std::ptrdiff_t>(G.h), w = static_cast<std::ptrdiff_t>(G.w);
    for (std::size_t n = 0; n < G.n; ++n)
        for (std::size_t o = 0; o < G.out; ++o)
            for (std::size_t oy = 0; oy < G.ho(); ++oy)
                for (std::size_t ox = 0; ox < G.wo(); ++ox)
                    for (std::size_t c = 0; c < G.c; ++c)
                        for (std::size_t ky = 0; ky < G.k; ++ky)
                            for (std::size_t kx = 0; kx < G.k; ++kx) {
                                const auto iy = static_cast<std::ptrdiff_t>(oy * G.stride + ky) - static_cast<std::ptrdiff_t>(G.pad);
                                const auto ix = static_cast<std::ptrdiff_t>(ox * G.stride + kx) - static_cast<std::ptrdiff_t>(G.pad);
                                if (iy < 0 || ix < 0 || iy >= h || ix >= w) {
                                    continue;
                                }
                                f(((n * G.out + o) * G.ho() + oy) * G.wo() + ox,
                                  ((n * G.c + c) * G.h + static_cast<std::size_t>(iy)) * G.w + static_cast<std::size_t>(ix),
                                  ((o * G.c + c) * G.k + ky) * G.k + kx);
                            }
}

/// Direct convolution in double.
std::vector<double> conv_ref(const geom& G, const std::vector<double>& x, const std::vector<double>& w) {
    std::vector<double> y(G.n * G.out * G.ho() * G.wo(), 0.0);
    for_each_tap(G, [&](std::size_t yi, std::size_t xi, std::size_t wi) { y[yi] += x[xi] * w[wi]; });
    return y;
}

/// dx and dW of the convolution in double for an output gradient d.
void conv_grads_ref(const geom& G, const std::vector<double>& x, const std::vector<double>& w,
                    const std::vector<double>& d, std::vector<double>& dx, std::vector<double>& dw) {
    dx.assign(G.n * G.c * G.h * G.w, 0.0);
    dw.assign(G.out * G.c * G.k * G.k, 0.0);
    for_each_tap(G, [&](std::size_t yi, std::size_t xi, std::size_t wi) {
        dx[xi] += d[yi] * w[wi];
        dw[wi] += d[yi] * x[xi];
    });
}

double max_abs_of(const std::vector<double>& v) {
    double m = 0.0;
    for (double x : v) {
        m = std::max(m, std::fabs(x));
    }
    return m;
}

} // namespace

TEST_CASE("quantized_conv: forward, dx and dW equal the integer-exact reference on odd shapes") {
    const geom shapes[] = {
        {3, 5, 7, 6, 6, 3, 1, 1},   // odd channels and sizes, padding
        {2, 3, 9, 9, 5, 3, 2, 1},   // stride 2
        {4, 16, 7, 7, 8, 3, 1, 1},  // small images: several samples per product
        {2, 6, 5, 5, 3, 1, 1, 0},   // 1x1
        {1, 4, 12, 10, 17, 5, 1, 2}, // 5x5, more outputs than a column block
    };
    for (const bool bias : {false, true}) {
        for (const auto& G : shapes) {
            CAPTURE(G.n);
            CAPTURE(G.c);
            CAPTURE(G.k);
            CAPTURE(G.stride);
            CAPTURE(bias);
            for (const fr::precision prec : {fr::precision{8, 8, 8}, fr::precision{4, 3, 6}, fr::precision{2, 2, 2}}) {
                CAPTURE(prec.act);
                fr::quantized_conv q(G.c, G.out, G.k, {G.stride, G.pad, bias}, prec);
                q.set_name("qc");
                fr::rng g(11);
                q.reset_parameters(g);
                if (bias) {
                    for (auto& b : q.bias()) {
                        b = g.uniform() - 0.5f;
                    }
                }
                // inputs with a negative part, so the zero point is inside the range
                const fr::tensor4 x = random_input({G.n, G.c, G.h, G.w}, g, -0.7f, 1.3f);
                fr::context ctx;
                const fr::tensor4 y = q.forward(ctx, x);
                const auto xr = dequantized_activations(x, prec.act);
                const auto wr = dequantized_weights(q.weight(), prec.weight);
                auto yr = conv_ref(G, xr, wr);
                if (bias) {
                    const std::size_t p = G.ho() * G.wo();
                    for (std::size_t i = 0; i < yr.size(); ++i) {
                        yr[i] += static_cast<double>(q.bias()((i / p) % G.out));
                    }
                }
                REQUIRE(y.size() == yr.size());
                const double ymax = max_abs_of(yr);
                for (std::size_t i = 0; i < yr.size(); ++i) {
                    REQUIRE(std::fabs(static_cast<double>(y.data()[i]) - yr[i]) <= 1e-5 * ymax + 1e-6);
                }

                // an output gradient that lies on its grid exactly: integers spanning
                // [-(2^(b-1) - 1), 2^(b-1)] make scale 1 and zero point 2^(b-1) - 1, so
                // stochastic rounding leaves every value unchanged
                const int lo = -((1 << (prec.error - 1)) - 1), hi = 1 << (prec.error - 1);
                fr::tensor4 d = fr::tensor4::from_shape({G.n, G.out, G.ho(), G.wo()});
                for (auto& v : d) {
                    v = static_cast<float>(lo + static_cast<int>(g.uniform() * static_cast<float>(hi - lo + 1)));
                    v = std::min(v, static_cast<float>(hi));
                }
                d.data()[0] = static_cast<float>(lo);
                d.data()[d.size() - 1] = static_cast<float>(hi);
                const fr::tensor4 dx = q.backward(ctx, d);
                std::vector<double> dd(d.begin(), d.end()), dxr, dwr, unused;
                conv_grads_ref(G, xr, per_tensor_requantized(wr, prec.weight), dd, dxr, unused);
                conv_grads_ref(G, xr, wr, dd, unused, dwr);
                const double dxmax = max_abs_of(dxr), dwmax = max_abs_of(dwr);
                for (std::size_t i = 0; i < dxr.size(); ++i) {
                    REQUIRE(std::fabs(static_cast<double>(dx.data()[i]) - dxr[i]) <= 1e-5 * dxmax + 1e-6);
                }
                const fr::tensor4& dw = q.weight_grad();
                for (std::size_t i = 0; i < dwr.size(); ++i) {
                    REQUIRE(std::fabs(static_cast<double>(dw.data()[i]) - dwr[i]) <= 1e-5 * dwmax + 1e-6);
                }
                if (bias) {
                    std::vector<fr::parameter> ps;
                    q.collect_parameters(ps);
                    REQUIRE(ps.size() == 2);
                    const std::size_t p = G.ho() * G.wo();
                    for (std::size_t o = 0; o < G.out; ++o) {
                        double s = 0.0;
                        for (std::size_t n = 0; n < G.n; ++n) {
                            for (std::size_t j = 0; j < p; ++j) {
                                s += dd[(n * G.out + o) * p + j];
                            }
                        }
                        CHECK(ps[1].grad[o] == doctest::Approx(s).epsilon(1e-6));
                    }
                }
            }
        }
    }
}

TEST_CASE("quantized_conv: 8-bit straight-through gradients agree with the float convolution's") {
    // the float convolution's backward is itself checked by finite differences
    // (tests/layers); at 8 bits the quantized products differ from it by the
    // quantization error only
    const geom G{4, 8, 10, 10, 12, 3, 1, 1};
    fr::quantized_conv q(G.c, G.out, G.k, {1, 1, false}, {8, 8, 8});
    fr::conv2d f(G.c, G.out, G.k, {1, 1, false});
    fr::rng g(3);
    q.reset_parameters(g);
    std::copy(q.weight().begin(), q.weight().end(), f.weight().begin());
    const fr::tensor4 x = random_input({G.n, G.c, G.h, G.w}, g, 0.0f, 1.0f);
    fr::tensor4 d = random_input({G.n, G.out, G.h, G.w}, g, -1.0f, 1.0f);
    fr::context ctx;
    const fr::tensor4 yq = q.forward(ctx, x);
    const fr::tensor4 yf = f.forward(ctx, x);
    const fr::tensor4 dxq = q.backward(ctx, d);
    const fr::tensor4 dxf = f.backward(ctx, d);
    auto rel = [](const auto& a, const auto& b) {
        double num = 0.0, den = 0.0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            num += std::pow(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i]), 2);
            den += std::pow(static_cast<double>(b.data()[i]), 2);
        }
        return std::sqrt(num / den);
    };
    CHECK(rel(yq, yf) < 0.01);
    CHECK(rel(dxq, dxf) < 0.02);
    CHECK(rel(q.weight_grad(), f.weight_grad()) < 0.02);
    CHECK(rel(yq, yf) > 0.0); // it did quantize
}

TEST_CASE("quantized_conv: full precision is the float convolution; bad widths are refused") {
    fr::quantized_conv q(3, 4, 3, {1, 1, true}, fr::precision::full());
    fr::conv2d f(3, 4, 3, {1, 1, true});
    fr::rng g(5);
    q.reset_parameters(g);
    std::copy(q.weight().begin(), q.weight().end(), f.weight().begin());
    const fr::tensor4 x = random_input({2, 3, 6, 6}, g, -1.0f, 1.0f);
    fr::context ctx;
    const fr::tensor4 yq = q.forward(ctx, x);
    const fr::tensor4 yf = f.forward(ctx, x);
    for (std::size_t i = 0; i < yq.size(); ++i) {
        REQUIRE(yq.data()[i] == yf.data()[i]);
    }
    const fr::tensor4 d = random_input(fr::shape_of(yq), g, -1.0f, 1.0f);
    const fr::tensor4 dxq = q.backward(ctx, d);
    const fr::tensor4 dxf = f.backward(ctx, d);
    for (std::size_t i = 0; i < dxq.size(); ++i) {
        REQUIRE(dxq.data()[i] == dxf.data()[i]);
    }
    for (std::size_t i = 0; i < q.weight_grad().size(); ++i) {
        REQUIRE(q.weight_grad().data()[i] == f.weight_grad().data()[i]);
    }
    CHECK_THROWS_WITH_AS(q.set_precision({9, 8, 8}), doctest::Contains("must each be in [2, 8]"), fr::error);
    CHECK_THROWS_WITH_AS(q.set_precision({8, 1, 8}), doctest::Contains("weights 1"), fr::error);
    CHECK_THROWS_AS(fr::quantized_conv(3, 4, 3, {}, {0, 8, 8}), fr::error);

    // bad input at 8 bits: a NaN (in the activations or the output gradient) and a wrong shape
    fr::quantized_conv q8(3, 4, 3, {1, 1, false}, {8, 8, 8});
    q8.reset_parameters(g);
    fr::tensor4 bad = x;
    bad.data()[5] = std::nanf("");
    CHECK_THROWS_AS((void)q8.forward(ctx, bad), fr::numeric_error);
    const fr::tensor4 y8 = q8.forward(ctx, x);
    fr::tensor4 dbad = random_input(fr::shape_of(y8), g, -1.0f, 1.0f);
    dbad.data()[0] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_AS((void)q8.backward(ctx, dbad), fr::numeric_error);
    CHECK_THROWS_AS((void)q8.forward(ctx, random_input({2, 5, 6, 6}, g, 0.0f, 1.0f)), fr::shape_error);
    CHECK_THROWS_AS((void)q8.forward(ctx, bad), fr::numeric_error);
    CHECK_THROWS_WITH_AS((void)q8.backward(ctx, dbad), doctest::Contains("before forward"), fr::error);
    (void)q8.forward(ctx, x);
    CHECK_THROWS_AS((void)q8.backward(ctx, random_input({2, 4, 5, 6}, g, 0.0f, 1.0f)), fr::shape_error);
}

TEST_CASE("quantized_conv: the meter counts each product at its own widths; eval uses the running range") {
    fr::quantized_conv q(4, 6, 3, {1, 1, false}, {4, 3, 6});
    q.set_name("qc");
    fr::rng g(9);
    q.reset_parameters(g);
    const fr::tensor4 x = random_input({2, 4, 5, 5}, g, 0.0f, 2.0f);
    fr::cost_meter m;
    fr::context ctx;
    ctx.meter = &m;
    const fr::tensor4 y = q.forward(ctx, x);
    (void)q.backward(ctx, random_input(fr::shape_of(y), g, -1.0f, 1.0f));
    const std::uint64_t macs = 2ull * 6 * 25 * 36;
    const auto& l = m.layers().at(m.layer("qc"));
    using fr::op_format;
    const auto ops = [&](fr::phase p, op_format a, op_format b) {
        const auto& c = l.phases[static_cast<std::size_t>(p)].ops;
        const auto it = c.find(fr::op_key{fr::op_kind::mac, a, b});
        return it == c.end() ? std::uint64_t{0} : it->second;
    };
    CHECK(ops(fr::phase::forward, op_format::integer(4), op_format::integer(3)) == macs);
    CHECK(ops(fr::phase::backward_input, op_format::integer(3), op_format::integer(6)) == macs);
    CHECK(ops(fr::phase::weight_gradient, op_format::integer(4), op_format::integer(6)) == macs);

    // the first training batch sets the running range; evaluation then uses it
    const fr::value_range r = q.running_range();
    CHECK(r.lo >= 0.0f);
    CHECK(r.hi <= 2.0f);
    CHECK(r.hi > 1.5f);
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    fr::tensor4 big = x;
    big *= 10.0f;
    fr::tensor4 clipped = big;
    for (auto& v : clipped) {
        v = std::min(v, r.hi); // what the running range's top code stands for
    }
    // with the running range both inputs have the same codes; with their own
    // batch ranges ([0, 20] and [0, 2]) they would not
    const fr::tensor4 yb = q.forward(ev, big);
    const fr::tensor4 yc = q.forward(ev, clipped);
    for (std::size_t i = 0; i < yb.size(); ++i) {
        REQUIRE(yb.data()[i] == yc.data()[i]);
    }
    CHECK(q.running_range().hi == r.hi); // evaluation does not move it
}

TEST_CASE("quantized_conv: the straight-through gradient passes a finite-difference check at 8 bits") {
    // the forward is piecewise constant in steps of 1/255 of the range; a
    // difference step of many quantization steps sees the slope underneath
    fr::quantized_conv q(3, 4, 3, {1, 1, true}, {8, 8, 8});
    q.set_name("qc");
    fr::rng g(21);
    q.reset_parameters(g);
    const fr::tensor4 x = random_input({2, 3, 6, 6}, g, 0.0f, 1.0f);
    gradcheck::options o;
    o.h = 0.05;
    o.rtol = 0.1;
    o.atol = 0.05;
    gradcheck::check(q, x, o);
}
