#ifndef FRUGAL_TENSOR_KERNELS_SHIFT_HPP
#define FRUGAL_TENSOR_KERNELS_SHIFT_HPP

/// @file
/// The shift "matrix product" of ShiftAddNet: Y = W X where every weight is
/// a signed power of two, W[i][p] = s * 2^e with s in {-1, 0, +1}.
///
/// - Fixed point (`shift_fixed`): X holds the raw integers of a fixed-point
///   format (value = raw * 2^-F) in int64 lanes. With `lo` the smallest
///   exponent, each product is `raw << (e - lo)`, so the result is the raw
///   integer of the exact sum with F - lo fractional bits: only shifts and
///   additions, nothing rounded. The caller keeps the sum within int64
///   (bits of X + max(e) - lo + log2(nonzeros per row) <= 63).
/// - Float (`shift_float`): X float; each product is x times the exact power
///   of two s * 2^e (what ldexp computes), summed in float.
///
/// W is packed once into compressed rows (`shift_matrix`): zero weights are
/// dropped (the kernels skip them), and within a row the positive weights
/// come before the negative ones so that the fixed-point kernel adds and
/// then subtracts without branches or sign flips.
///
/// The kernels are vectorized with xsimd over the columns of X and are
/// single-threaded; the `_parallel` variants split the columns over frugal's
/// threads. `*_reference` are the plain loops from the definition, on dense
/// sign and exponent arrays.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal::kernels {

/// A matrix of signed powers of two in compressed rows (zeros dropped).
struct shift_matrix {
    std::size_t rows = 0, cols = 0;
    /// Entries of row i: [start[i], start[i+1]); positive ones in [start[i], mid[i]).
    std::vector<std::uint32_t> start, mid;
    std::vector<std::uint32_t> index;  ///< column of each entry
    std::vector<std::int8_t> exponent; ///< e of each entry
    std::vector<float> scale;          ///< s * 2^e of each entry (exact)

    [[nodiscard]] std::size_t nonzeros() const noexcept { return index.size(); }

    /// Packs W[i][p] = sign[i*ld + p] * 2^exponent[i*ld + p] (rows x cols),
    /// or its transpose when `transposed` (then the result has `cols` rows).
    void pack(std::size_t r, std::size_t c, const std::int8_t* sign, const std::int8_t* exp, std::size_t ld,
              bool transposed = false) {
        rows = transposed ? c : r;
        cols = transposed ? r : c;
        start.assign(rows + 1, 0);
        mid.assign(rows, 0);
        index.clear();
        exponent.clear();
        scale.clear();
        auto at = [&](std::size_t i, std::size_t p) { return transposed ? p * ld + i : i * ld + p; };
        for (std::size_t i = 0; i < rows; ++i) {
            start[i] = static_cast<std::uint32_t>(index.size());
            for (int pass = 0; pass < 2; ++pass) {
                const std::int8_t want = pass == 0 ? 1 : -1;
                if (pass == 1) {
                    mid[i] = static_cast<std::uint32_t>(index.size());
                }
                for (std::size_t p = 0; p < cols; ++p) {
                    if (sign[at(i, p)] == want) {
                        index.push_back(static_cast<std::uint32_t>(p));
                        exponent.push_back(exp[at(i, p)]);
                        scale.push_back(static_cast<float>(want) * std::ldexp(1.0f, exp[at(i, p)]));
                    }
                }
            }
        }
        start[rows] = static_cast<std::uint32_t>(index.size());
    }
};

// ---------------------------------------------------------------- references

/// Y[i][j] = sum_p s * (X[p][j] << (e - lo)), the exact fixed-point product
/// (raw integers); sign-0 weights contribute nothing.
inline void shift_fixed_reference(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* sign,
                                  const std::int8_t* exp, std::size_t ldw, int lo, const std::int64_t* x,
                                  std::size_t ldx, std::int64_t* y, std::size_t ldy) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            std::int64_t s = 0;
            for (std::size_t p = 0; p < k; ++p) {
                const std::int8_t sg = sign[i * ldw + p];
                if (sg != 0) {
                    const std::int64_t t = x[p * ldx + j] * (std::int64_t{1} << (exp[i * ldw + p] - lo));
                    s += sg > 0 ? t : -t;
                }
            }
            y[i * ldy + j] = s;
        }
    }
}

/// Y[i][j] = sum_p ldexp(s * X[p][j], e), summed in float in order of p.
inline void shift_float_reference(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* sign,
                                  const std::int8_t* exp, std::size_t ldw, const float* x, std::size_t ldx, float* y,
                                  std::size_t ldy) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            float s = 0.0f;
            for (std::size_t p = 0; p < k; ++p) {
                const std::int8_t sg = sign[i * ldw + p];
                if (sg != 0) {
                    s += std::ldexp(static_cast<float>(sg) * x[p * ldx + j], exp[i * ldw + p]);
                }
            }
            y[i * ldy + j] = s;
        }
    }
}

// ---------------------------------------------------------------- vectorized

namespace detail {

using i64batch = xsimd::batch<std::int64_t, simd::arch>;

template <std::size_t NV>
inline void shift_fixed_block(const shift_matrix& w, int lo, const std::int64_t* x, std::size_t ldx, std::size_t col,
                              std::int64_t* y, std::size_t ldy) noexcept {
    constexpr std::size_t vw = i64batch::size;
    for (std::size_t i = 0; i < w.rows; ++i) {
        std::array<i64batch, NV> acc;
        for (auto& a : acc) {
            a = i64batch(std::int64_t{0});
        }
        const std::uint32_t b = w.start[i], mid = w.mid[i], e = w.start[i + 1];
        for (std::uint32_t t = b; t < mid; ++t) {
            const std::int64_t* xr = x + w.index[t] * ldx + col;
            const int sh = w.exponent[t] - lo;
            for (std::size_t v = 0; v < NV; ++v) {
                acc[v] += i64batch::load_unaligned(xr + v * vw) << sh;
            }
        }
        for (std::uint32_t t = mid; t < e; ++t) {
            const std::int64_t* xr = x + w.index[t] * ldx + col;
            const int sh = w.exponent[t] - lo;
            for (std::size_t v = 0; v < NV; ++v) {
                acc[v] -= i64batch::load_unaligned(xr + v * vw) << sh;
            }
        }
        for (std::size_t v = 0; v < NV; ++v) {
            acc[v].store_unaligned(y + i * ldy + col + v * vw);
        }
    }
}

template <std::size_t NV>
inline void shift_float_block(const shift_matrix& w, const float* x, std::size_t ldx, std::size_t col, float* y,
                              std::size_t ldy) noexcept {
    using simd::fbatch;
    constexpr std::size_t vw = simd::width;
    for (std::size_t i = 0; i < w.rows; ++i) {
        std::array<fbatch, NV> acc;
        for (auto& a : acc) {
            a = fbatch(0.0f);
        }
        for (std::uint32_t t = w.start[i]; t < w.start[i + 1]; ++t) {
            const float* xr = x + w.index[t] * ldx + col;
            const fbatch s(w.scale[t]);
            for (std::size_t v = 0; v < NV; ++v) {
                acc[v] = xsimd::fma(fbatch::load_unaligned(xr + v * vw), s, acc[v]);
            }
        }
        for (std::size_t v = 0; v < NV; ++v) {
            acc[v].store_unaligned(y + i * ldy + col + v * vw);
        }
    }
}

} // namespace detail

/// Y[i][j] = sum over the entries of row i of s * (X[p][j] << (e - lo)), exact
/// (raw integers, int64). Every exponent of w must be >= lo. Single-threaded.
inline void shift_fixed(const shift_matrix& w, int lo, std::size_t n, const std::int64_t* x, std::size_t ldx,
                        std::int64_t* y, std::size_t ldy) noexcept {
    constexpr std::size_t vw = detail::i64batch::size;
    std::size_t j = 0;
    for (; j + 4 * vw <= n; j += 4 * vw) {
        detail::shift_fixed_block<4>(w, lo, x, ldx, j, y, ldy);
    }
    for (; j + vw <= n; j += vw) {
        detail::shift_fixed_block<1>(w, lo, x, ldx, j, y, ldy);
    }
    for (std::size_t i = 0; i < w.rows && j < n; ++i) {
        for (std::size_t jj = j; jj < n; ++jj) {
            std::int64_t s = 0;
            for (std::uint32_t t = w.start[i]; t < w.start[i + 1]; ++t) {
                const std::int64_t v = x[w.index[t] * ldx + jj] << (w.exponent[t] - lo);
                s += t < w.mid[i] ? v : -v;
            }
            y[i * ldy + jj] = s;
        }
    }
}

/// Y[i][j] = sum over the entries of row i of (s * 2^e) * X[p][j] in float
/// (the products are exact). Single-threaded.
inline void shift_float(const shift_matrix& w, std::size_t n, const float* x, std::size_t ldx, float* y,
                        std::size_t ldy) noexcept {
    constexpr std::size_t vw = simd::width;
    std::size_t j = 0;
    for (; j + 2 * vw <= n; j += 2 * vw) {
        detail::shift_float_block<2>(w, x, ldx, j, y, ldy);
    }
    for (; j + vw <= n; j += vw) {
        detail::shift_float_block<1>(w, x, ldx, j, y, ldy);
    }
    for (std::size_t i = 0; i < w.rows && j < n; ++i) {
        for (std::size_t jj = j; jj < n; ++jj) {
            float s = 0.0f;
            for (std::uint32_t t = w.start[i]; t < w.start[i + 1]; ++t) {
                s = std::fma(x[w.index[t] * ldx + jj], w.scale[t], s);
            }
            y[i * ldy + jj] = s;
        }
    }
}

/// shift_fixed with the columns spread over frugal's threads.
inline void shift_fixed_parallel(const shift_matrix& w, int lo, std::size_t n, const std::int64_t* x, std::size_t ldx,
                                 std::int64_t* y, std::size_t ldy) {
    constexpr std::size_t vw = detail::i64batch::size;
    const std::size_t blocks = (n + vw - 1) / vw;
    parallel_chunks(blocks, [&](std::size_t b, std::size_t e, int) {
        const std::size_t lo_col = b * vw, hi_col = std::min(n, e * vw);
        if (lo_col < hi_col) {
            shift_fixed(w, lo, hi_col - lo_col, x + lo_col, ldx, y + lo_col, ldy);
        }
    });
}

/// shift_float with the columns spread over frugal's threads.
inline void shift_float_parallel(const shift_matrix& w, std::size_t n, const float* x, std::size_t ldx, float* y,
                                 std::size_t ldy) {
    constexpr std::size_t vw = simd::width;
    const std::size_t blocks = (n + vw - 1) / vw;
    parallel_chunks(blocks, [&](std::size_t b, std::size_t e, int) {
        const std::size_t lo_col = b * vw, hi_col = std::min(n, e * vw);
        if (lo_col < hi_col) {
            shift_float(w, hi_col - lo_col, x + lo_col, ldx, y + lo_col, ldy);
        }
    });
}

/// raw[i] = round(x[i] * 2^frac) (ties to even), saturated to a signed
/// integer of `bits` bits: the fixed-point format fixed<bits - frac, frac>.
/// Returns false (and leaves the rest unspecified) when x holds a NaN.
[[nodiscard]] inline bool to_fixed_raw(const float* x, std::size_t n, int frac, int bits, std::int64_t* raw) noexcept {
    const double hi = std::ldexp(1.0, bits - 1) - 1.0, lo = -std::ldexp(1.0, bits - 1);
    const double s = std::ldexp(1.0, frac);
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) {
        const double v = std::nearbyint(static_cast<double>(x[i]) * s);
        ok = ok && v == v;
        raw[i] = v == v ? static_cast<std::int64_t>(std::clamp(v, lo, hi)) : 0;
    }
    return ok;
}

/// y[i] = raw[i] * 2^-frac, rounded to float (frac <= 126).
inline void from_fixed_raw(const std::int64_t* raw, std::size_t n, int frac, float* y) noexcept {
    const float s = std::ldexp(1.0f, -frac);
    for (std::size_t i = 0; i < n; ++i) {
        y[i] = static_cast<float>(raw[i]) * s; // one rounding; the scaling is exact
    }
}

} // namespace frugal::kernels

#endif
