#ifndef FRUGAL_TENSOR_TENSOR_HPP
#define FRUGAL_TENSOR_TENSOR_HPP

/// @file
/// Tensor aliases. frugal stores activations as NCHW float tensors in
/// row-major xtensor containers; kernels work on their contiguous data
/// through raw pointers, layers and users through xtensor expressions.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include <xtensor/xtensor.hpp>

#include "frugal/error.hpp"
#include "frugal/tensor/allocator.hpp"

namespace frugal {

/// A dense row-major tensor of fixed rank, stored with tensor_allocator
/// (64-byte aligned; large blocks reused: tensor/allocator.hpp).
template <class T, std::size_t Rank>
using tensor = xt::xtensor_container<xt::uvector<T, tensor_allocator<T>>, Rank, xt::layout_type::row_major>;

using tensor1 = tensor<float, 1>;
using tensor2 = tensor<float, 2>;
/// Activations: batch, channels, height, width.
using tensor4 = tensor<float, 4>;
using itensor1 = tensor<std::int32_t, 1>;
using i8tensor2 = tensor<std::int8_t, 2>;
using i8tensor4 = tensor<std::int8_t, 4>;
using u8tensor4 = tensor<std::uint8_t, 4>;

/// Shape of an NCHW tensor.
struct shape4 {
    std::size_t n = 0, c = 0, h = 0, w = 0;
    [[nodiscard]] constexpr std::size_t size() const noexcept { return n * c * h * w; }
    [[nodiscard]] constexpr std::size_t per_sample() const noexcept { return c * h * w; }
    friend constexpr bool operator==(const shape4&, const shape4&) = default;
};

template <class E>
[[nodiscard]] shape4 shape_of(const E& t) {
    return {t.shape()[0], t.shape()[1], t.shape()[2], t.shape()[3]};
}

[[nodiscard]] inline std::string to_string(const shape4& s) {
    return detail::concat('[', s.n, ", ", s.c, ", ", s.h, ", ", s.w, ']');
}

/// Throws frugal::shape_error naming `where` unless `got == expected`
/// (a zero in `expected` matches any size).
inline void expect_shape(const shape4& got, const shape4& expected, const char* where) {
    const bool ok = (expected.n == 0 || got.n == expected.n) && (expected.c == 0 || got.c == expected.c) &&
                    (expected.h == 0 || got.h == expected.h) && (expected.w == 0 || got.w == expected.w);
    if (!ok) {
        throw shape_error(detail::concat(where, ": expected an input of shape ", to_string(expected),
                                         " (0 = any), got ", to_string(got)));
    }
}

} // namespace frugal

#endif
