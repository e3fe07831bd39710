// quantized_conv: the integer forward, input-gradient and weight-gradient
// products against a plain double-precision reference built from the
// documented quantizers (recomputed here, element by element), the
// straight-through gradients against the float convolution's, the
// full-precision path, the meter's formats and the error messages.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include <frugal/cost/meter.hpp>
#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/quantized_conv.hpp>
#include <frugal/layers/residual.hpp>
#include <frugal/model/sequential.hpp>
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

/// The per-output-channel scales of the symmetric weight grid.
std::vector<float> weight_scales(const fr::tensor4& w, int bits) {
    const std::size_t out = w.shape()[0], kk = w.size() / out;
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    std::vector<float> sc(out);
    for (std::size_t o = 0; o < out; ++o) {
        float m = 0.0f;
        for (std::size_t j = 0; j < kk; ++j) {
            m = std::max(m, std::fabs(w.data()[o * kk + j]));
        }
        sc[o] = m / qmax;
    }
    return sc;
}

/// The integer weight codes q = w_dequantized / s (exact: w_dequantized = s q in double).
std::vector<double> weight_codes(const std::vector<double>& wr, const std::vector<float>& sc) {
    const std::size_t kk = wr.size() / sc.size();
    std::vector<double> q(wr.size());
    for (std::size_t i = 0; i < wr.size(); ++i) {
        q[i] = sc[i / kk] > 0 ? wr[i] / static_cast<double>(sc[i / kk]) : 0.0;
    }
    return q;
}

/// dy[o, p] = n[o, p] / s_o: the output gradient whose scaled error s_o dy (what dx quantizes) is the
/// integer tensor n, on its grid (stochastic rounding then leaves it unchanged).
fr::tensor4 unscaled(const fr::tensor4& n, const std::vector<float>& sc) {
    fr::tensor4 d = n;
    const std::size_t out = sc.size(), p = n.size() / n.shape()[0] / out;
    for (std::size_t i = 0; i < d.size(); ++i) {
        d.data()[i] = n.data()[i] / sc[(i / p) % out];
    }
    return d;
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
        {2, 3, 10, 8, 4, 3, 2, 1},  // stride 2 with a last input row no output reaches
        {2, 4, 8, 7, 5, 1, 2, 0},   // 1x1 stride 2 (a projection shortcut)
        {2, 3, 11, 10, 4, 3, 3, 1}, // stride 3: nine phase planes, one tap each
        {1, 5, 9, 8, 3, 5, 2, 2},   // 5x5 stride 2: up to nine taps per phase plane
        {2, 2, 9, 7, 3, 2, 3, 0},   // stride wider than the kernel: four phases built, of nine
        {1, 2, 5, 6, 3, 1, 1, 1},   // padding wider than the kernel: border outputs see only padding
        {3, 1, 190, 190, 2, 3, 1, 1}, // large images: dW's int32 products split into several groups
        {1, 1, 256, 256, 1, 3, 1, 1}, // wider than one int32-exact product: dW per image, not "wide"
    };
    for (const bool bias : {false, true}) {
        for (const auto& G : shapes) {
            CAPTURE(G.n);
            CAPTURE(G.c);
            CAPTURE(G.k);
            CAPTURE(G.stride);
            CAPTURE(bias);
            // errors of 12 and 16 bits run as two 8-bit limbs (16: codes up to 65535, limbs 0..255)
            for (const fr::bit_widths prec : {fr::bit_widths{8, 8, 8}, fr::bit_widths{4, 3, 6}, fr::bit_widths{2, 2, 2},
                                              fr::bit_widths{4, 4, 12}, fr::bit_widths{8, 8, 16}}) {
                CAPTURE(prec.act);
                CAPTURE(prec.error);
                if (G.h >= 100 && (prec.act != 8 || prec.error != 8) && !(G.n == 3 && prec.error == 16)) {
                    continue; // the large images at 8 bits, and the int32-split dW once with 16-bit errors
                }
                fr::quantized_conv q(G.c, G.out, G.k, {G.stride, G.pad, bias}, prec);
                q.set_name("qc");
                fr::rng g(11);
                q.reset_parameters(g);
                {
                    // weights on their grid with per-channel scale 2^-7 exactly (codes k, |k| <= m, m
                    // reached in every channel): then s_w (d / s_w) = d and e's per-channel grid are
                    // exact, so the error quantization of dx below leaves every integer unchanged
                    const int m = (1 << (prec.weight - 1)) - 1;
                    const std::size_t per = G.c * G.k * G.k;
                    for (std::size_t i = 0; i < q.weight().size(); ++i) {
                        const float u = q.weight().data()[i] * 4.0f; // roughly [-1, 1]
                        const float code = i % per == 0 ? static_cast<float>(m)
                                                        : std::clamp(std::round(u * static_cast<float>(m)),
                                                                     -static_cast<float>(m), static_cast<float>(m));
                        q.weight().data()[i] = code * 0x1.0p-7f;
                    }
                }
                if (bias) {
                    for (auto& b : q.bias()) {
                        b = g.uniform() - 0.5f;
                    }
                }
                // inputs with a negative part, so the zero point is inside the range
                fr::tensor4 x = random_input({G.n, G.c, G.h, G.w}, g, -0.7f, 1.3f);
                if (G.h >= 100) {
                    // large: integers -100..155 (scale 1, zero point 100 at 8 bits), so that no value sits
                    // near a rounding tie where the reference's double arithmetic and the layer's float
                    // arithmetic could pick different codes (one in 10^5 random values does)
                    for (auto& v : x) {
                        v = std::clamp(std::round(v * 127.5f - 10.0f), -100.0f, 155.0f);
                    }
                    x.data()[0] = -100.0f;
                    x.data()[1] = 155.0f;
                }
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
                // dx first, from dy = d / s_w: dx = sum_o codes[o, j] d[o, p]
                const auto sc = weight_scales(q.weight(), prec.weight);
                const fr::tensor4 dx = q.backward(ctx, unscaled(d, sc));
                std::vector<double> dd(d.begin(), d.end()), dxr, dwr, unused;
                conv_grads_ref(G, xr, weight_codes(wr, sc), dd, dxr, unused);
                const double dxmax = max_abs_of(dxr);
                for (std::size_t i = 0; i < dxr.size(); ++i) {
                    REQUIRE(std::fabs(static_cast<double>(dx.data()[i]) - dxr[i]) <= 1e-5 * dxmax + 1e-6);
                }
                // then dW from dy = d (a second backward of the same forward)
                (void)q.backward(ctx, d);
                conv_grads_ref(G, xr, wr, dd, unused, dwr);
                const double dwmax = max_abs_of(dwr);
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
    fr::quantized_conv q(3, 4, 3, {1, 1, true}, fr::bit_widths::full());
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
    CHECK_THROWS_WITH_AS(q.set_precision({9, 8, 8}), doctest::Contains("must be in [2, 8] for activations and weights"), fr::error);
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

TEST_CASE("quantized_conv: the backward's plane hook sees every plane of dx once, as written") {
    // 8-bit errors (the hook inside the dequantization), 12-bit errors (two limbs), full precision
    // (the float path), strides 1 and 2, a precision group split; the gradients equal those of a
    // backward without the hook, bit for bit
    struct config {
        fr::bit_widths widths;
        std::size_t stride;
        bool groups;
        std::size_t side; // image side: 18 makes rows of 16 or more (dequantized row by row)
    };
    for (const config cf : {config{{8, 8, 8}, 1, false, 9}, config{{6, 5, 8}, 2, false, 9},
                            config{{8, 8, 12}, 1, false, 9}, config{fr::bit_widths::full(), 1, false, 9},
                            config{{8, 8, 8}, 1, true, 9}, config{{8, 8, 8}, 1, false, 18}}) {
        CAPTURE(cf.widths.name());
        CAPTURE(cf.stride);
        CAPTURE(cf.groups);
        CAPTURE(cf.side);
        fr::quantized_conv a(5, 6, 3, {cf.stride, 1, false}, cf.widths);
        fr::rng g(31);
        a.reset_parameters(g);
        fr::quantized_conv b = a;
        if (cf.groups) {
            a.set_groups({{2, {8, 8, 8}}, {1, {4, 8, 6}}});
            b.set_groups({{2, {8, 8, 8}}, {1, {4, 8, 6}}});
        }
        const fr::tensor4 x = random_input({3, 5, cf.side, cf.side}, g, -1.0f, 1.0f);
        fr::context ca, cb;
        ca.random = fr::rng(3);
        cb.random = fr::rng(3);
        const fr::tensor4 y = a.forward(ca, x);
        (void)b.forward(cb, x);
        const fr::tensor4 dy = random_input(fr::shape_of(y), g, -1.0f, 1.0f);
        const std::size_t planes = 3 * 5, hw = cf.side * cf.side;
        std::vector<int> calls(planes, 0);
        std::vector<float> seen(planes * hw, -99.0f);
        std::atomic<int> out_of_range{0}; // (no assertion inside the parallel region)
        const fr::tensor4& dx = a.backward(ca, dy, nullptr, [&](std::size_t i, const float* v) {
            if (i >= planes) {
                ++out_of_range;
                return;
            }
            ++calls[i]; // distinct planes: no two threads write the same entry
            std::copy(v, v + hw, seen.begin() + static_cast<std::ptrdiff_t>(i * hw));
        });
        CHECK(out_of_range.load() == 0);
        CHECK(std::all_of(calls.begin(), calls.end(), [](int c) { return c == 1; }));
        REQUIRE(dx.size() == seen.size());
        CHECK(std::equal(seen.begin(), seen.end(), dx.data()));
        const fr::tensor4& dxb = b.backward(cb, dy);
        CHECK(std::equal(dxb.begin(), dxb.end(), dx.data()));
        CHECK(std::equal(b.weight_grad().begin(), b.weight_grad().end(), a.weight_grad().begin()));
    }
}

TEST_CASE("quantized_conv: products longer than int32 holds exactly are refused before any work") {
    fr::context ctx;
    {
        // 9 x 7312 = 65808 > 65793 products per output of the forward
        fr::quantized_conv q(7312, 1, 3, {1, 1, false}, fr::bit_widths{8, 8, 8});
        q.set_name("wide_in");
        const fr::tensor4 x = fr::tensor4::from_shape({1, 7312, 1, 1});
        CHECK_THROWS_WITH_AS(q.forward(ctx, x), doctest::Contains("forward product would sum 65808"), fr::error);
        CHECK_THROWS_AS(q.backward(ctx, fr::tensor4::from_shape({1, 1, 1, 1})), fr::error); // no forward
    }
    {
        // 257 x 257 output pixels = 66049 per image in dW
        fr::quantized_conv q(1, 1, 3, {1, 1, false}, fr::bit_widths{8, 8, 8});
        q.set_name("big_image");
        const fr::tensor4 x = fr::tensor4::from_shape({1, 1, 257, 257});
        CHECK_THROWS_WITH_AS(q.forward(ctx, x), doctest::Contains("weight gradient"), fr::error);
    }
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

TEST_CASE("quantized_conv: precision groups run each slice of the batch at its own widths, exactly") {
    // DFQ sorts a batch by the gate's choice; each group must equal the layer run on that slice alone
    const geom G{8, 5, 7, 7, 5, 3, 1, 1};
    const std::vector<fr::precision_group> groups{
        {2, {4, 4, 6}}, {0, {3, 4, 6}}, {3, {6, 4, 8}}, {1, {3, 4, 6}}, {2, {6, 4, 12}}}; // 12: two limbs
    fr::quantized_conv q(G.c, G.out, G.k, {1, 1, false}, {8, 8, 8});
    q.set_name("qc");
    fr::rng g(21);
    q.reset_parameters(g);
    {
        // 4-bit weights on their grid with per-channel scale 2^-7 exactly (as in the first test): then
        // e = s_w (d / s_w) = d exactly and the errors' stochastic rounding leaves every integer where
        // it is (with an inexact scale, t lands up to ~1e-4 above an integer at 12 bits, and rounds
        // up with that probability)
        const std::size_t per = G.c * G.k * G.k;
        for (std::size_t i = 0; i < q.weight().size(); ++i) {
            const float u = q.weight().data()[i] * 4.0f;
            const float code = i % per == 0 ? 7.0f : std::clamp(std::round(u * 7.0f), -7.0f, 7.0f);
            q.weight().data()[i] = code * 0x1.0p-7f;
        }
    }
    q.set_groups(groups);
    const fr::tensor4 x = random_input({G.n, G.c, G.h, G.w}, g, -0.6f, 1.4f);
    // an output gradient on each group's grid (see the first test): integers of the group's error range
    fr::tensor4 d = fr::tensor4::from_shape({G.n, G.out, G.ho(), G.wo()});
    const std::size_t per_x = G.c * G.h * G.w, per_y = G.out * G.ho() * G.wo();
    {
        std::size_t s0 = 0;
        for (const auto& gr : groups) {
            const int lo = -((1 << (gr.widths.error - 1)) - 1), hi = 1 << (gr.widths.error - 1);
            for (std::size_t i = s0 * per_y; i < (s0 + gr.count) * per_y; ++i) {
                d.data()[i] = std::min(static_cast<float>(lo + static_cast<int>(g.uniform() * static_cast<float>(hi - lo + 1))),
                                       static_cast<float>(hi));
            }
            if (gr.count > 0) {
                d.data()[s0 * per_y] = static_cast<float>(lo);
                d.data()[(s0 + gr.count) * per_y - 1] = static_cast<float>(hi);
            }
            s0 += gr.count;
        }
    }
    fr::cost_meter m;
    fr::context ctx;
    ctx.meter = &m;
    const fr::tensor4 y = q.forward(ctx, x);
    const auto wr = dequantized_weights(q.weight(), 4);
    const auto sc = weight_scales(q.weight(), 4);
    const auto codes = weight_codes(wr, sc);
    const fr::tensor4 dx = q.backward(ctx, unscaled(d, sc)); // dx from s_w dy = d (see the first test)
    (void)q.backward(ctx, d);                                // dW from dy = d
    std::vector<double> dw_total(q.weight().size(), 0.0);
    std::size_t s0 = 0;
    for (const auto& gr : groups) {
        if (gr.count == 0) {
            continue;
        }
        CAPTURE(s0);
        geom S = G;
        S.n = gr.count;
        fr::tensor4 xs = fr::tensor4::from_shape({S.n, S.c, S.h, S.w});
        std::copy(x.data() + s0 * per_x, x.data() + (s0 + S.n) * per_x, xs.data());
        const auto xr = dequantized_activations(xs, gr.widths.act); // the group's own range
        const auto yr = conv_ref(S, xr, wr);
        const double ymax = max_abs_of(yr);
        for (std::size_t i = 0; i < yr.size(); ++i) {
            REQUIRE(std::fabs(static_cast<double>(y.data()[s0 * per_y + i]) - yr[i]) <= 1e-5 * ymax + 1e-6);
        }
        std::vector<double> dd(d.data() + s0 * per_y, d.data() + (s0 + S.n) * per_y), dxr, dwr, unused;
        conv_grads_ref(S, xr, codes, dd, dxr, unused);
        conv_grads_ref(S, xr, wr, dd, unused, dwr);
        const double dxmax = max_abs_of(dxr);
        for (std::size_t i = 0; i < dxr.size(); ++i) {
            REQUIRE(std::fabs(static_cast<double>(dx.data()[s0 * per_x + i]) - dxr[i]) <= 1e-5 * dxmax + 1e-6);
        }
        for (std::size_t i = 0; i < dwr.size(); ++i) {
            dw_total[i] += dwr[i];
        }
        s0 += gr.count;
    }
    const double dwmax = max_abs_of(dw_total);
    for (std::size_t i = 0; i < dw_total.size(); ++i) {
        REQUIRE(std::fabs(static_cast<double>(q.weight_grad().data()[i]) - dw_total[i]) <= 1e-5 * dwmax + 1e-6);
    }
    // the meter counts each group at its widths: 3 samples a3, 2 a4, 5 a6 (the empty group adds nothing)
    const std::uint64_t per_sample = static_cast<std::uint64_t>(G.out) * G.ho() * G.wo() * G.c * G.k * G.k;
    const auto& l = m.layers().at(m.layer("qc"));
    const auto ops = [&](fr::phase p, int a, int b) {
        const auto& c = l.phases[static_cast<std::size_t>(p)].ops;
        const auto it = c.find(fr::op_key{fr::op_kind::mac, fr::op_format::integer(a), fr::op_format::integer(b)});
        return it == c.end() ? std::uint64_t{0} : it->second;
    };
    CHECK(ops(fr::phase::forward, 4, 4) == 2 * per_sample);
    CHECK(ops(fr::phase::forward, 3, 4) == 1 * per_sample);
    CHECK(ops(fr::phase::forward, 6, 4) == 5 * per_sample);
    // (two backward passes ran)
    CHECK(ops(fr::phase::weight_gradient, 6, 8) == 2 * 3 * per_sample);
    CHECK(ops(fr::phase::backward_input, 4, 6) == 2 * 3 * per_sample);
    CHECK(ops(fr::phase::backward_input, 4, 8) == 2 * 3 * per_sample);
    CHECK(ops(fr::phase::weight_gradient, 6, 12) == 2 * 2 * per_sample); // counted at 12 bits
    CHECK(ops(fr::phase::backward_input, 4, 12) == 2 * 2 * per_sample);

    // bad groups: not covering the batch, two weight widths, a full-precision group
    q.set_groups({{2, {4, 4, 6}}, {3, {6, 4, 8}}});
    CHECK_THROWS_WITH_AS(q.forward(ctx, x), doctest::Contains("cover 5 samples, the batch has 8"), fr::shape_error);
    CHECK_THROWS_WITH_AS(q.set_groups({{2, {4, 4, 6}}, {4, {6, 8, 8}}}), doctest::Contains("one weight width"),
                         fr::error);
    CHECK_THROWS_WITH_AS(q.set_groups({{6, fr::bit_widths::full()}}), doctest::Contains("full precision"), fr::error);
    CHECK_THROWS_WITH_AS(q.set_groups({{6, {9, 4, 4}}}), doctest::Contains("[2, 8]"), fr::error);
    CHECK_THROWS_WITH_AS(q.set_groups({{6, {4, 4, 17}}}), doctest::Contains("[2, 16] for errors"), fr::error);
}

TEST_CASE("quantized_conv: the straight-through gradient passes a finite-difference check at 8 bits") {
    // the forward is piecewise constant in steps of 1/255 of the range; a
    // difference step of many quantization steps sees the slope underneath;
    // errors of 8 bits and of 16 (two limbs) alike
    for (const int error_bits : {8, 16}) {
        CAPTURE(error_bits);
        fr::quantized_conv q(3, 4, 3, {1, 1, true}, {8, 8, error_bits});
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
}

TEST_CASE("quantized_conv in a basic block: the batch norms' plane ranges give the result of measuring them") {
    // basic_block<quantized_conv_maker> hands bn1's output ranges to conv2's forward, conv1's input
    // ranges to the projection, and each batch norm's input-gradient ranges to the convolution
    // before it; conv2 hands bn1 the planes of its input gradient (bn1's first backward pass) and
    // an identity block adds its shortcut's gradient into conv1's input gradient plane by plane;
    // the same block run step by step without any of it (every convolution measures its own
    // ranges) must give bit-identical results, at 8-bit and 12-bit (two-limb) errors and at full
    // precision (the float path's hook)
    for (const fr::bit_widths widths : {fr::bit_widths{8, 8, 8}, fr::bit_widths{6, 8, 12}, fr::bit_widths::full()})
    for (const std::size_t stride : {std::size_t{1}, std::size_t{2}}) {
        CAPTURE(widths.name());
        CAPTURE(stride);
        using block = fr::basic_block<fr::quantized_conv_maker>;
        block b(4, stride == 1 ? 4 : 8, stride);
        fr::rng g(5);
        b.reset_parameters(g);
        for (auto& v : b.bn1().beta()) {
            v = 0.3f * (g.uniform() - 0.5f);
        }
        b.conv1().set_precision(widths);
        b.conv2().set_precision(widths);
        if (b.has_projection()) {
            b.projection_conv().set_precision(widths);
        }
        block c = b; // the same weights, run without the ranges
        const fr::tensor4 x = random_input({3, 4, 9, 9}, g, -0.5f, 1.5f);
        fr::context ca, cb;
        ca.random = fr::rng(17);
        cb.random = fr::rng(17);
        const fr::tensor4 y1 = b.forward(ca, x);
        const bool integer = !widths.is_full(); // (full precision: float convolutions, no ranges handed over)
        REQUIRE(b.bn1().output_ranges() != nullptr);
        REQUIRE((b.conv1().input_ranges() != nullptr) == integer); // what the projection was handed
        // the kept ranges are the planes' exact [min, max]
        {
            const fr::tensor4& a = b.bn1().forward(cb, b.conv1().forward(cb, x)); // recompute on b itself
            const fr::shape4 s = fr::shape_of(a);
            const auto& r = *b.bn1().output_ranges();
            REQUIRE(r.size() == s.n * s.c);
            for (std::size_t i = 0; i < r.size(); ++i) {
                const float* p = a.data() + i * s.h * s.w;
                CHECK(r[i].lo == *std::min_element(p, p + s.h * s.w));
                CHECK(r[i].hi == *std::max_element(p, p + s.h * s.w));
            }
        }
        cb.random = fr::rng(17);
        const fr::tensor4& a = c.bn1().forward(cb, c.conv1().forward(cb, x));
        const fr::tensor4 z = c.bn2().forward(cb, c.conv2().forward(cb, a)); // conv2 measures
        fr::tensor4 s = x;
        if (c.has_projection()) {
            s = c.projection_bn().forward(cb, c.projection_conv().forward(cb, x));
        }
        REQUIRE(y1.size() == z.size());
        for (std::size_t i = 0; i < z.size(); ++i) {
            REQUIRE(y1.data()[i] == std::max(z.data()[i] + s.data()[i], 0.0f));
        }
        // backward: the same random stream on both sides
        const fr::tensor4 dy = random_input(fr::shape_of(y1), g, -1.0f, 1.0f);
        ca.random = fr::rng(23);
        cb.random = fr::rng(23);
        const fr::tensor4 dx1 = b.backward(ca, dy);
        // what a caller adds a gate's gradient into: the tensor backward returned (with an identity
        // shortcut, conv1's input gradient with the shortcut's added plane by plane)
        CHECK(std::equal(dx1.begin(), dx1.end(), b.input_grad_buffer().begin()));
        REQUIRE(b.bn2().input_grad_ranges() != nullptr);
        REQUIRE(b.bn1().input_grad_ranges() != nullptr);
        CAPTURE(integer);
        fr::tensor4 gated = dy;
        for (std::size_t i = 0; i < gated.size(); ++i) {
            gated.data()[i] = y1.data()[i] > 0.0f ? dy.data()[i] : 0.0f;
        }
        const fr::tensor4& d2 = c.bn2().backward(cb, gated);
        const fr::tensor4& gr = c.conv2().backward(cb, d2);
        const fr::tensor4 db = c.conv1().backward(cb, c.bn1().backward(cb, gr));
        fr::tensor4 ds = gated;
        if (c.has_projection()) {
            ds = c.projection_conv().backward(cb, c.projection_bn().backward(cb, gated));
        }
        REQUIRE(dx1.size() == db.size());
        for (std::size_t i = 0; i < db.size(); ++i) {
            REQUIRE(dx1.data()[i] == db.data()[i] + ds.data()[i]);
        }
        for (std::size_t i = 0; i < b.conv1().weight_grad().size(); ++i) {
            REQUIRE(b.conv1().weight_grad().data()[i] == c.conv1().weight_grad().data()[i]);
        }
        for (std::size_t i = 0; i < b.conv2().weight_grad().size(); ++i) {
            REQUIRE(b.conv2().weight_grad().data()[i] == c.conv2().weight_grad().data()[i]);
        }
        // bn1's gradients (its first pass from conv2's planes) and bn2's
        CHECK(std::equal(b.bn1().gamma_grad().begin(), b.bn1().gamma_grad().end(), c.bn1().gamma_grad().begin()));
        CHECK(std::equal(b.bn2().gamma_grad().begin(), b.bn2().gamma_grad().end(), c.bn2().gamma_grad().begin()));
        std::vector<fr::parameter> pb, pc;
        b.bn1().collect_parameters(pb);
        c.bn1().collect_parameters(pc);
        CHECK(std::equal(pb[1].grad.begin(), pb[1].grad.end(), pc[1].grad.begin())); // dbeta
        // after an evaluation forward (no gate flags kept) the backward computes the gate and adds
        // the shortcut in a pass of its own: what it returns is again input_grad_buffer()
        fr::context ev;
        ev.mode = fr::run_mode::eval;
        (void)b.forward(ev, x);
        const fr::tensor4 dxe = b.backward(ev, dy);
        CHECK(std::equal(dxe.begin(), dxe.end(), b.input_grad_buffer().begin()));
        CHECK(b.input_grad_buffer().data() != b.conv1().input_grad_buffer().data());
    }
}

TEST_CASE("quantized_conv in a basic block: a non-finite batch-norm output is still reported by the convolution") {
    fr::basic_block<fr::quantized_conv_maker> b(4, 4, 1);
    fr::rng g(8);
    b.reset_parameters(g);
    b.bn1().beta()(1) = std::numeric_limits<float>::infinity(); // bn1's output: +inf in channel 1
    const fr::tensor4 x = random_input({2, 4, 6, 6}, g, -1.0f, 1.0f);
    fr::context ctx;
    CHECK_THROWS_WITH_AS((void)b.forward(ctx, x), doctest::Contains("NaN or infinity"), fr::numeric_error);
    CHECK(b.bn1().output_ranges() == nullptr);
}

TEST_CASE("quantized_conv: input ranges are handed on only from a forward that measured them") {
    fr::quantized_conv q(3, 4, 3, {1, 1, false}, {8, 8, 8});
    fr::rng g(9);
    q.reset_parameters(g);
    const fr::tensor4 x = random_input({2, 3, 6, 6}, g, -1.0f, 1.0f);
    fr::context ctx;
    CHECK(q.input_ranges() == nullptr);
    (void)q.forward(ctx, x);
    REQUIRE(q.input_ranges() != nullptr);
    CHECK(q.input_ranges()->size() == 2 * 3);
    CHECK((*q.input_ranges())[1].hi == *std::max_element(x.data() + 36, x.data() + 72));
    // full precision: the float convolution measures nothing, and stale ranges must not survive
    q.set_precision(fr::bit_widths::full());
    (void)q.forward(ctx, x);
    CHECK(q.input_ranges() == nullptr);
    // a backward reuses the buffer for dy's ranges
    q.set_precision({8, 8, 8});
    const fr::tensor4& y = q.forward(ctx, x);
    REQUIRE(q.input_ranges() != nullptr);
    (void)q.backward(ctx, random_input(fr::shape_of(y), g, -1.0f, 1.0f));
    CHECK(q.input_ranges() == nullptr);
}

TEST_CASE("quantized_conv blocks in a stack: each block hands its output's plane ranges to the next") {
    // repeated<basic_block<quantized_conv_maker>> passes block i's output ranges (found in its
    // residual pass) to block i + 1; the same blocks run one by one without them must give
    // bit-identical outputs, and the kept ranges must be the planes' exact [min, max]
    using block = fr::basic_block<fr::quantized_conv_maker>;
    fr::rng g(12);
    std::vector<block> blocks;
    blocks.emplace_back(4, 4, 1);
    blocks.emplace_back(4, 8, 2);
    blocks.emplace_back(8, 8, 1);
    for (auto& b : blocks) {
        b.reset_parameters(g);
    }
    std::vector<block> copies = blocks;
    fr::repeated<block> stack(std::move(blocks));
    const fr::tensor4 x = random_input({3, 4, 10, 10}, g, -0.5f, 1.5f);
    fr::context ca, cb;
    ca.random = fr::rng(31);
    cb.random = fr::rng(31);
    const fr::tensor4 y1 = stack.forward(ca, x);
    const fr::tensor4* h = &x;
    for (std::size_t i = 0; i < copies.size(); ++i) {
        h = &copies[i].forward(cb, *h); // every convolution measures its own input
        REQUIRE(stack[i].output_ranges() != nullptr);
        const auto& r = *stack[i].output_ranges();
        const fr::shape4 s = fr::shape_of(*h);
        REQUIRE(r.size() == s.n * s.c);
        for (std::size_t p = 0; p < r.size(); ++p) {
            const float* v = h->data() + p * s.h * s.w;
            CHECK(r[p].lo == *std::min_element(v, v + s.h * s.w));
            CHECK(r[p].hi == *std::max_element(v, v + s.h * s.w));
        }
    }
    REQUIRE(y1.size() == h->size());
    for (std::size_t i = 0; i < y1.size(); ++i) {
        REQUIRE(y1.data()[i] == h->data()[i]);
    }
    // evaluation keeps nothing (the convolutions use their running ranges)
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    (void)stack.forward(ev, x);
    CHECK(stack[0].output_ranges() == nullptr);
}

TEST_CASE("quantized_conv blocks in a stack: a NaN in a residual sum is reported, not hidden by the ReLU") {
    using block = fr::basic_block<fr::quantized_conv_maker>;
    fr::rng g(13);
    std::vector<block> blocks;
    blocks.emplace_back(4, 4, 1);
    blocks.emplace_back(4, 4, 1);
    for (auto& b : blocks) {
        b.reset_parameters(g);
    }
    blocks[0].bn2().beta()(2) = std::numeric_limits<float>::quiet_NaN(); // block 0's sum: NaN in channel 2
    fr::repeated<block> stack(std::move(blocks));
    const fr::tensor4 x = random_input({2, 4, 6, 6}, g, -1.0f, 1.0f);
    fr::context ctx;
    CHECK_THROWS_WITH_AS((void)stack.forward(ctx, x), doctest::Contains("residual sum contains NaN or infinity"),
                         fr::numeric_error);
    CHECK(stack[0].output_ranges() == nullptr);
}

TEST_CASE("quantized_conv: the output's plane sums, kept on request in training, are the planes' sums") {
    for (const std::size_t stride : {std::size_t{1}, std::size_t{2}}) {
        CAPTURE(stride);
        fr::quantized_conv q(3, 5, 3, {stride, 1, true}, {8, 8, 8});
        fr::rng g(10);
        q.reset_parameters(g);
        const fr::tensor4 x = random_input({3, 3, 7, 9}, g, -1.0f, 1.0f);
        fr::context ctx;
        (void)q.forward(ctx, x);
        CHECK(q.output_sums() == nullptr); // off by default
        q.keep_output_sums(true);
        const fr::tensor4 y = q.forward(ctx, x);
        REQUIRE(q.output_sums() != nullptr);
        const fr::shape4 s = fr::shape_of(y);
        const auto& sums = *q.output_sums();
        REQUIRE(sums.size() == s.n * s.c);
        const std::size_t hw = s.h * s.w;
        for (std::size_t p = 0; p < sums.size(); ++p) {
            double sum = 0.0, sq = 0.0, mag = 0.0;
            for (std::size_t i = 0; i < hw; ++i) {
                const double v = y.data()[p * hw + i];
                sum += v;
                sq += v * v;
                mag += std::abs(v);
            }
            CHECK(std::abs(sums[p].first - sum) <= 1e-5 * (mag + 1.0));
            CHECK(std::abs(sums[p].second - sq) <= 1e-5 * (sq + 1.0));
        }
        // a batch norm given the sums computes what it computes without them, bit for bit
        fr::batchnorm a(5), b(5);
        const fr::tensor4 ya = a.forward(ctx, y, q.output_sums());
        const fr::tensor4& yb = b.forward(ctx, y);
        for (std::size_t i = 0; i < ya.size(); ++i) {
            REQUIRE(ya.data()[i] == yb.data()[i]);
        }
        for (std::size_t c = 0; c < 5; ++c) {
            CHECK(a.running_mean()(c) == b.running_mean()(c));
            CHECK(a.running_var()(c) == b.running_var()(c));
        }
        // evaluation and full precision keep none
        fr::context ev;
        ev.mode = fr::run_mode::eval;
        (void)q.forward(ev, x);
        CHECK(q.output_sums() == nullptr);
        q.set_precision(fr::bit_widths::full());
        (void)q.forward(ctx, x);
        CHECK(q.output_sums() == nullptr);
    }
}
