#ifndef FRUGAL_NUMERIC_MSB_HPP
#define FRUGAL_NUMERIC_MSB_HPP

/// @file
/// Most- and least-significant-bit splits, what predictive sign gradient
/// descent needs: the sign of a gradient is predicted from a product of the
/// top bits of the operands, the exact product is formed only where the
/// prediction is unsure.
///
/// For a value x of width W, `msb<K>(x)` keeps its top K bits (the low W - K
/// bits are dropped, i.e. rounded toward minus infinity, as hardware that
/// reads the upper part of a register does) and `lsb<K>(x)` is what was
/// dropped, so that `msb<K>(x) + lsb<K>(x) == x` exactly and lsb >= 0.

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xtensor/xtensor.hpp>

#include "frugal/error.hpp"
#include "frugal/tensor/tensor.hpp"
#include "frugal/numeric/fixed.hpp"
#include "frugal/numeric/quantizer.hpp"

namespace frugal {

/// The top K bits of x: for x of format fixed<I, F>, a fixed<I, K - I>
/// (ufixed for ufixed) holding floor(x / 2^(I - K)) * 2^(I - K).
template <int K, fixed_point T>
[[nodiscard]] constexpr auto msb(const T& x) {
    static_assert(K >= T::int_bits, "frugal::msb<K>: K must keep all integer bits (K >= IntBits)");
    static_assert(K <= T::width, "frugal::msb<K>: K must not exceed the width of the value");
    using R = basic_fixed<T::is_signed, T::int_bits, K - T::int_bits, truncate, typename T::overflow>;
    return R::from_raw(detail::int_cast<typename R::rep>(detail::floor_shift(
        detail::int_cast<detail::signed_int_t<T::width + 1>>(x.raw()), T::width - K)));
}

/// The low W - K bits of x: x - msb<K>(x), a non-negative ufixed<I - K, F>.
template <int K, fixed_point T>
[[nodiscard]] constexpr auto lsb(const T& x) {
    static_assert(K >= T::int_bits && K < T::width, "frugal::lsb<K>: need IntBits <= K < width");
    using R = basic_fixed<false, T::int_bits - K, T::frac_bits, truncate, typename T::overflow>;
    return R::from_raw(detail::int_cast<typename R::rep>(
        detail::low_bits(detail::int_cast<detail::signed_int_t<T::width + 1>>(x.raw()), T::width - K)));
}

/// The split of a tensor of b-bit codes into its top k bits and the rest.
template <class Int, std::size_t N>
struct msb_split {
    quantized_tensor<Int, N> msb; ///< codes floor(q / 2^(b-k)), k bits, scale * 2^(b-k), same offsets
    quantized_tensor<Int, N> lsb; ///< codes q - msb * 2^(b-k) in [0, 2^(b-k)), scale unchanged, offset 0
};

/// Splits quantized codes into their top k bits and the remainder, so that
/// dequantize(msb) + dequantize(lsb) == dequantize(q) in exact arithmetic.
/// @pre 1 <= k < q.bits
template <class Int, std::size_t N>
[[nodiscard]] msb_split<Int, N> split_msb(const quantized_tensor<Int, N>& q, int k) {
    if (k < 1 || k >= q.bits) {
        throw error(detail::concat("frugal::split_msb: cannot keep ", k, " of ", q.bits, " bits (need 1 <= k < bits)"));
    }
    const int drop = q.bits - k;
    msb_split<Int, N> s;
    s.msb.values = tensor<Int, N>::from_shape(q.values.shape());
    s.lsb.values = tensor<Int, N>::from_shape(q.values.shape());
    s.msb.bits = k;
    s.lsb.bits = drop;
    s.msb.offset = q.offset;
    s.lsb.offset.assign(q.offset.size(), 0.0f);
    s.msb.scale.resize(q.scale.size());
    s.lsb.scale = q.scale;
    for (std::size_t c = 0; c < q.scale.size(); ++c) {
        s.msb.scale[c] = q.scale[c] * static_cast<float>(1 << drop);
    }
    const Int* src = q.values.data();
    Int* hi = s.msb.values.data();
    Int* lo = s.lsb.values.data();
    const std::size_t n = q.values.size();
    const int mask = (1 << drop) - 1;
    for (std::size_t i = 0; i < n; ++i) { // plain loop: the compiler vectorizes shifts and masks
        const int v = src[i];
        hi[i] = static_cast<Int>(v >> drop); // arithmetic shift: floor
        lo[i] = static_cast<Int>(v & mask);
    }
    return s;
}

} // namespace frugal

#endif
