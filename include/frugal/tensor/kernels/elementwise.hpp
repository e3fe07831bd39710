#ifndef FRUGAL_TENSOR_KERNELS_ELEMENTWISE_HPP
#define FRUGAL_TENSOR_KERNELS_ELEMENTWISE_HPP

/// @file
/// Element-wise SIMD kernels on float arrays, single-threaded: callers spread
/// ranges (parallel_chunks) or samples (parallel_for) over the threads.

#include <cstddef>
#include <limits>
#include <utility>

#include "frugal/numeric/simd.hpp"

namespace frugal::kernels {

/// (sum of v, sum of v^2) over n floats, vectorized. What a batch norm's statistics are built
/// from, plane by plane: a layer that writes a plane may compute them while it is in cache and
/// hand them on (the same function on the same values gives the same sums).
inline std::pair<float, float> sum_and_squares(const float* v, std::size_t n) noexcept {
    using simd::fbatch;
    fbatch s(0.0f), q(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch x = fbatch::load_unaligned(v + i);
        s += x;
        q = simd::fma(x, x, q);
    }
    float a = xsimd::hadd(s), b = xsimd::hadd(q);
    for (; i < n; ++i) {
        a += v[i];
        b = simd::fma1(v[i], v[i], b); // explicit: the same bits wherever this is inlined
    }
    return {a, b};
}

/// Sum, sum of squares, minimum and maximum of n floats in one pass.
struct moments {
    float sum, squares, lo, hi;
};
inline moments sum_squares_min_max(const float* v, std::size_t n) noexcept {
    using simd::fbatch;
    fbatch s(0.0f), q(0.0f), lo(std::numeric_limits<float>::max()), hi(std::numeric_limits<float>::lowest());
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch x = fbatch::load_unaligned(v + i);
        s += x;
        q = simd::fma(x, x, q);
        lo = xsimd::min(lo, x);
        hi = xsimd::max(hi, x);
    }
    moments m{xsimd::hadd(s), xsimd::hadd(q), simd::hmin(lo), simd::hmax(hi)};
    for (; i < n; ++i) {
        m.sum += v[i];
        m.squares = simd::fma1(v[i], v[i], m.squares);
        m.lo = std::min(m.lo, v[i]);
        m.hi = std::max(m.hi, v[i]);
    }
    return m;
}

/// c = max(fma(v, a, b) + s, 0): a batch norm's map (lane for lane as batchnorm computes it;
/// simd::fma1 in the tail) added to a shortcut, then the ReLU.
inline void affine_add_relu(const float* v, float a, float b, const float* s, float* c, std::size_t n) noexcept {
    using simd::fbatch;
    const fbatch av(a), bv(b), zero(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch r = simd::fma(fbatch::load_unaligned(v + i), av, bv) + fbatch::load_unaligned(s + i);
        xsimd::max(r, zero).store_unaligned(c + i);
    }
    for (; i < n; ++i) {
        const float r = simd::fma1(v[i], a, b) + s[i];
        c[i] = r > 0.0f ? r : 0.0f;
    }
}

/// c = max(a + b, 0)
inline void add_relu(const float* a, const float* b, float* c, std::size_t n) noexcept {
    using simd::fbatch;
    const fbatch zero(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        xsimd::max(fbatch::load_unaligned(a + i) + fbatch::load_unaligned(b + i), zero).store_unaligned(c + i);
    }
    for (; i < n; ++i) {
        const float v = a[i] + b[i];
        c[i] = v > 0.0f ? v : 0.0f;
    }
}

/// c = a + b
inline void add(const float* a, const float* b, float* c, std::size_t n) noexcept {
    using simd::fbatch;
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        (fbatch::load_unaligned(a + i) + fbatch::load_unaligned(b + i)).store_unaligned(c + i);
    }
    for (; i < n; ++i) {
        c[i] = a[i] + b[i];
    }
}

/// c = (a + b) + v: a sum with a value added to every element (a plane's share of a pooled
/// gradient); b == nullptr: c = a + v.
inline void add_scalar(const float* a, const float* b, float v, float* c, std::size_t n) noexcept {
    using simd::fbatch;
    const fbatch vb(v);
    std::size_t i = 0;
    if (b != nullptr) {
        for (; i + simd::width <= n; i += simd::width) {
            ((fbatch::load_unaligned(a + i) + fbatch::load_unaligned(b + i)) + vb).store_unaligned(c + i);
        }
        for (; i < n; ++i) {
            c[i] = (a[i] + b[i]) + v;
        }
        return;
    }
    for (; i + simd::width <= n; i += simd::width) {
        (fbatch::load_unaligned(a + i) + vb).store_unaligned(c + i);
    }
    for (; i < n; ++i) {
        c[i] = a[i] + v;
    }
}

/// Sum of n floats in SIMD lanes (two accumulators; the order differs from a serial sum): the
/// global average pool of the gate units, and what a pass that writes a plane computes for them.
inline float lane_sum(const float* p, std::size_t n) noexcept {
    using simd::fbatch;
    fbatch a0(0.0f), a1(0.0f);
    std::size_t i = 0;
    for (; i + 2 * simd::width <= n; i += 2 * simd::width) {
        a0 += fbatch::load_unaligned(p + i);
        a1 += fbatch::load_unaligned(p + i + simd::width);
    }
    float acc = xsimd::hadd(a0 + a1);
    for (; i < n; ++i) {
        acc += p[i];
    }
    return acc;
}

/// dx = y > 0 ? dy : 0 (the ReLU's backward from its output y)
inline void relu_gate(const float* y, const float* dy, float* dx, std::size_t n) noexcept {
    using simd::fbatch;
    const fbatch zero(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const auto on = fbatch::load_unaligned(y + i) > zero;
        xsimd::select(on, fbatch::load_unaligned(dy + i), zero).store_unaligned(dx + i);
    }
    for (; i < n; ++i) {
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

} // namespace frugal::kernels

#endif
