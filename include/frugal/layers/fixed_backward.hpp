#ifndef FRUGAL_LAYERS_FIXED_BACKWARD_HPP
#define FRUGAL_LAYERS_FIXED_BACKWARD_HPP

/// @file
/// Pieces of the fixed-point backward passes of ShiftAddNet's layers
/// (shift and adder layers with `error_bits` > 0, SPEC 4.2 "FIX8"):
///
/// - errors: dY rounded stochastically to signed `bits`-bit codes on one
///   symmetric per-batch grid whose step is a power of two,
///   `se = 2^ceil(log2(max|dY| / (2^(bits-1) - 1)))` (the FIX8 forward's
///   grid rule; WAGEUBN's error scale is a power of two too), so that
///   turning an integer result back into a real number is an exponent
///   adjustment, exact, like the forward's output conversion; each group of
///   images draws from its own stream, seeded from the step's random
///   source, so the result does not depend on the number of threads;
/// - the weight-gradient product both layers reduce to,
///   `acc[o][r] += sum_j e[o][j] * (u[r][j] - z)`, e the error codes and u
///   the unsigned 8-bit input codes with zero point z, run by the exact
///   int8 kernel (`kernels::igemm_u8s8`, AVX-512 VNNI where the target has
///   it) as C = U E^T minus z times the row sums of E, and accumulated in
///   int64.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "frugal/error.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/tensor/kernels/igemm.hpp"

namespace frugal::detail {

/// Largest code of a signed `bits`-bit symmetric grid.
[[nodiscard]] inline float symmetric_qmax(int bits) noexcept { return static_cast<float>((1 << (bits - 1)) - 1); }

/// max |x| over n values.
/// @throws numeric_error naming `where` and `what` when a value is NaN or infinite
[[nodiscard]] inline float max_abs_finite(const float* x, std::size_t n, const std::string& where, const char* what) {
    float m = 0.0f;
    bool finite = true;
    for (std::size_t i = 0; i < n; ++i) {
        finite = finite && std::isfinite(x[i]);
        m = std::max(m, std::fabs(x[i]));
    }
    if (!finite) {
        throw numeric_error(concat(where, ": ", what, " holds a NaN or an infinity"));
    }
    return m;
}

/// Validates an error bit width: 0 (float backward) or 2..8.
inline void check_error_bits(int bits, const char* where) {
    if (bits != 0 && (bits < 2 || bits > 8)) {
        throw error(concat(where, ": error_bits must be 0 (float backward) or in [2, 8], not ", bits));
    }
}

/// The step of the error grid: the power of two 2^ceil(log2(max|dY| / qmax))
/// (max|dY| / step in (qmax / 2, qmax]); 0 when max|dY| is 0.
[[nodiscard]] inline float error_step(float max_abs, int bits) noexcept {
    if (!(max_abs > 0.0f)) {
        return 0.0f;
    }
    return std::ldexp(1.0f, static_cast<int>(std::ceil(std::log2(max_abs / symmetric_qmax(bits)))));
}

/// The symmetric error grid in code units: quantizing with it yields the
/// integer codes themselves (scale 1), `inv_scale = 1 / step`.
[[nodiscard]] inline grid error_code_grid(float step, int bits) noexcept {
    const float qmax = symmetric_qmax(bits);
    return {1.0f, step > 0.0f ? 1.0f / step : 0.0f, 0.0f, -qmax, qmax};
}

/// Stochastic error codes of a group matrix dy [rows x ld]: as floats
/// (integer values) into `codes`, and as int8 transposed [ld x rows] into
/// `codes_t` (the B operand of the weight-gradient product).
inline void error_codes(const float* dy, std::size_t rows, std::size_t ld, const grid& g, rng& r, float* codes,
                        std::int8_t* codes_t) noexcept {
    quantize_stochastic_planes(dy, 1, rows * ld, [&](std::size_t) { return g; }, codes, r);
    for (std::size_t o = 0; o < rows; ++o) {
        const float* src = codes + o * ld;
        for (std::size_t j = 0; j < ld; ++j) {
            codes_t[j * rows + o] = static_cast<std::int8_t>(src[j]);
        }
    }
}

/// Scratch of int8_weight_grad (one per thread).
struct int8_wgrad_scratch {
    kernels::packed_s8 b;
    std::vector<std::int32_t> c;
};

/// acc[o][r] += sum_j e[o][j] * (u[r][j] - z) - (wc ? wc[o][r] * sum_j e[o][j] : 0), exactly:
/// e given transposed as int8 et [ld x out], u as uint8 [kk x ld]. `wc`
/// (int32 [out x kk], optional) subtracts the weight codes (the adder's
/// difference x - w).
/// @throws frugal::error when ld exceeds kernels::igemm_max_k
inline void int8_weight_grad(std::size_t out, std::size_t kk, std::size_t ld, const std::int8_t* et,
                             const std::uint8_t* u, std::int32_t z, const std::int32_t* wc, std::int64_t* acc,
                             int8_wgrad_scratch& s) {
    kernels::pack_s8(ld, out, et, out, s.b); // B = E^T [ld x out], col_sums[o] = sum_j e[o][j]
    s.c.resize(kk * out);
    kernels::igemm_u8s8(kk, u, ld, s.b, s.c.data(), out); // C [kk x out] = U E^T
    const std::int32_t* cs = s.b.col_sums.data();
    for (std::size_t o = 0; o < out; ++o) {
        std::int64_t* row = acc + o * kk;
        const std::int64_t zc = static_cast<std::int64_t>(z) * cs[o];
        for (std::size_t r = 0; r < kk; ++r) {
            std::int64_t v = static_cast<std::int64_t>(s.c[r * out + o]) - zc;
            if (wc != nullptr) {
                v -= static_cast<std::int64_t>(wc[o * kk + r]) * cs[o];
            }
            row[r] += v;
        }
    }
}

/// Plain reference of int8_weight_grad (the tests' oracle).
inline void int8_weight_grad_reference(std::size_t out, std::size_t kk, std::size_t ld, const std::int8_t* et,
                                       const std::uint8_t* u, std::int32_t z, const std::int32_t* wc,
                                       std::int64_t* acc) noexcept {
    for (std::size_t o = 0; o < out; ++o) {
        for (std::size_t r = 0; r < kk; ++r) {
            std::int64_t s = 0;
            for (std::size_t j = 0; j < ld; ++j) {
                const std::int64_t x = static_cast<std::int64_t>(u[r * ld + j]) - z;
                const std::int64_t w = wc != nullptr ? wc[o * kk + r] : 0;
                s += static_cast<std::int64_t>(et[j * out + o]) * (x - w);
            }
            acc[o * kk + r] += s;
        }
    }
}

/// Bits of a signed integer range [-m, m] (m >= 0): what the cost meter counts.
[[nodiscard]] inline int signed_bits(std::int64_t m) noexcept {
    int b = 1;
    while ((std::int64_t{1} << (b - 1)) - 1 < m) {
        ++b;
    }
    return b;
}

} // namespace frugal::detail

#endif
