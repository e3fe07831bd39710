#ifndef FRUGAL_TENSOR_KERNELS_ELEMENTWISE_HPP
#define FRUGAL_TENSOR_KERNELS_ELEMENTWISE_HPP

/// @file
/// Element-wise SIMD kernels on float arrays, single-threaded: callers spread
/// ranges (parallel_chunks) or samples (parallel_for) over the threads.

#include <cstddef>

#include "frugal/numeric/simd.hpp"

namespace frugal::kernels {

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
