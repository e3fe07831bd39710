#ifndef FRUGAL_NUMERIC_BLOCK_FLOAT_HPP
#define FRUGAL_NUMERIC_BLOCK_FLOAT_HPP

/// @file
/// Block floating point: blocks of consecutive values share one exponent and
/// keep a signed M-bit mantissa each (8 by default), the format of 8-bit
/// low-precision training with SWA (SWALP) and of EB Train's low-precision
/// search.
///
/// For a block with largest magnitude m, the shared exponent is
/// `E = floor(log2 m) + 1` (so m < 2^E), the step is `2^(E - M + 1)` and each
/// value is stored as `clamp(round(x / step), -(2^(M-1) - 1), 2^(M-1) - 1)`.
/// An all-zero block has exponent 0 and zero mantissas.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "frugal/error.hpp"
#include "frugal/tensor/tensor.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/numeric/rounding.hpp"

namespace frugal {

/// Mantissas and one exponent per block of `block` consecutive (row-major) values.
template <std::size_t N>
struct block_float_tensor {
    tensor<std::int8_t, N> mantissa;
    std::vector<std::int16_t> exponent; ///< E of each block
    std::size_t block = 0;
    int mantissa_bits = 8;

    /// Step (value of one mantissa unit) of block b.
    [[nodiscard]] float step(std::size_t b) const noexcept {
        return std::ldexp(1.0f, exponent[b] - mantissa_bits + 1);
    }
};

namespace detail {
[[nodiscard]] inline detail::grid block_grid(float max_abs, int mantissa_bits, std::int16_t& exponent) noexcept {
    int e = 0;
    if (max_abs > 0.0f) {
        (void)std::frexp(max_abs, &e); // max_abs = f * 2^e, f in [0.5, 1): floor(log2) + 1 == e
    }
    exponent = static_cast<std::int16_t>(e);
    const float qmax = static_cast<float>((1 << (mantissa_bits - 1)) - 1);
    const float step = std::ldexp(1.0f, e - mantissa_bits + 1);
    return {step, max_abs > 0.0f ? 1.0f / step : 0.0f, 0.0f, -qmax, qmax};
}

inline void check_block(std::size_t block, int mantissa_bits, const char* where) {
    if (block == 0) {
        throw error(concat(where, ": the block size must be at least 1"));
    }
    if (mantissa_bits < 2 || mantissa_bits > 8) {
        throw error(concat(where, ": mantissas of ", mantissa_bits, " bits are not supported (2 to 8)"));
    }
}
} // namespace detail

/// Converts to block floating point with blocks of `block` values (the last
/// block may be shorter). @pre x finite.
template <quant_rounding Rounding = nearest_even, std::size_t N>
[[nodiscard]] block_float_tensor<N> to_block_float(const tensor<float, N>& x, std::size_t block,
                                                   int mantissa_bits = 8, rng* random = nullptr) {
    detail::check_block(block, mantissa_bits, "frugal::to_block_float");
    block_float_tensor<N> r;
    r.mantissa = tensor<std::int8_t, N>::from_shape(x.shape());
    r.block = block;
    r.mantissa_bits = mantissa_bits;
    const std::size_t n = x.size();
    r.exponent.resize((n + block - 1) / block);
    for (std::size_t b = 0; b * block < n; ++b) {
        const std::size_t len = std::min(block, n - b * block);
        const float* src = x.data() + b * block;
        const auto g = detail::block_grid(detail::max_abs(src, len, "frugal::to_block_float"), mantissa_bits,
                                          r.exponent[b]);
        detail::quantize_block<Rounding>(src, len, g, r.mantissa.data() + b * block, random);
    }
    return r;
}

/// Values of a block floating-point tensor.
template <std::size_t N>
[[nodiscard]] tensor<float, N> from_block_float(const block_float_tensor<N>& q) {
    auto out = tensor<float, N>::from_shape(q.mantissa.shape());
    const std::size_t n = out.size();
    for (std::size_t b = 0; b * q.block < n; ++b) {
        const float s = q.step(b);
        const std::size_t end = std::min(n, (b + 1) * q.block);
        for (std::size_t i = b * q.block; i < end; ++i) {
            out.data()[i] = s * static_cast<float>(q.mantissa.data()[i]);
        }
    }
    return out;
}

/// Fake block floating point: out receives the representable values. `out` may alias `x`.
template <quant_rounding Rounding = nearest_even, std::size_t N>
void fake_block_float(const tensor<float, N>& x, tensor<float, N>& out, std::size_t block,
                      int mantissa_bits = 8, rng* random = nullptr) {
    detail::check_block(block, mantissa_bits, "frugal::fake_block_float");
    if (out.shape() != x.shape()) {
        out.resize(x.shape());
    }
    const std::size_t n = x.size();
    for (std::size_t b = 0; b * block < n; ++b) {
        const std::size_t len = std::min(block, n - b * block);
        const float* src = x.data() + b * block;
        std::int16_t e = 0;
        const auto g = detail::block_grid(detail::max_abs(src, len, "frugal::fake_block_float"), mantissa_bits, e);
        detail::quantize_block<Rounding>(src, len, g, out.data() + b * block, random);
    }
}

} // namespace frugal

#endif
