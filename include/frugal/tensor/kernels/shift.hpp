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
#include <type_traits>
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

    /// The same entries grouped into runs of one exponent (`shift_fixed32`):
    /// the runs of row i are [row_run[i], row_run[i+1]); run r holds
    /// run_index[run_start[r] .. run_start[r+1]), positive weights before
    /// run_mid[r], all with exponent run_exponent[r].
    std::vector<std::uint32_t> row_run, run_start, run_mid, run_index;
    std::vector<std::int8_t> run_exponent;
    std::size_t max_run = 0; ///< entries of the longest run

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
        build_runs();
    }

private:
    void build_runs() {
        row_run.assign(rows + 1, 0);
        run_start.clear();
        run_mid.clear();
        run_index.clear();
        run_exponent.clear();
        max_run = 0;
        for (std::size_t i = 0; i < rows; ++i) {
            row_run[i] = static_cast<std::uint32_t>(run_exponent.size());
            std::int8_t lo_e = 127, hi_e = -128;
            for (std::uint32_t t = start[i]; t < start[i + 1]; ++t) {
                lo_e = std::min(lo_e, exponent[t]);
                hi_e = std::max(hi_e, exponent[t]);
            }
            for (int e = lo_e; e <= hi_e; ++e) {
                const std::size_t first = run_index.size();
                std::uint32_t neg = 0;
                for (int pass = 0; pass < 2; ++pass) {
                    if (pass == 1) {
                        neg = static_cast<std::uint32_t>(run_index.size());
                    }
                    const std::uint32_t b = pass == 0 ? start[i] : mid[i], end = pass == 0 ? mid[i] : start[i + 1];
                    for (std::uint32_t t = b; t < end; ++t) {
                        if (exponent[t] == e) {
                            run_index.push_back(index[t]);
                        }
                    }
                }
                if (run_index.size() > first) {
                    run_start.push_back(static_cast<std::uint32_t>(first));
                    run_mid.push_back(neg);
                    run_exponent.push_back(static_cast<std::int8_t>(e));
                    max_run = std::max(max_run, run_index.size() - first);
                }
            }
        }
        row_run[rows] = static_cast<std::uint32_t>(run_exponent.size());
        run_start.push_back(static_cast<std::uint32_t>(run_index.size()));
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
                acc[v] = simd::fma(fbatch::load_unaligned(xr + v * vw), s, acc[v]);
            }
        }
        for (std::size_t v = 0; v < NV; ++v) {
            acc[v].store_unaligned(y + i * ldy + col + v * vw);
        }
    }
}

} // namespace detail

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

namespace detail {

using i32batch = xsimd::batch<std::int32_t, simd::arch>;

/// Every row of Y for NV vectors of columns at `col`: per run (one
/// exponent), the int32 sum of its inputs, then one widening shift into the
/// row's int64 accumulators.
template <std::size_t NV>
inline void shift_fixed32_block(const shift_matrix& w, int lo, const std::int32_t* x, std::size_t ldx,
                                std::size_t col, std::int64_t* y, std::size_t ldy) noexcept {
    constexpr std::size_t vw = i32batch::size, cols = NV * vw;
    alignas(64) std::int32_t part[cols];
    alignas(64) std::int64_t acc[cols];
    for (std::size_t i = 0; i < w.rows; ++i) {
        std::fill(acc, acc + cols, std::int64_t{0});
        for (std::uint32_t r = w.row_run[i]; r < w.row_run[i + 1]; ++r) {
            std::array<i32batch, NV> sum;
            for (auto& v : sum) {
                v = i32batch(std::int32_t{0});
            }
            const std::uint32_t b = w.run_start[r], mid = w.run_mid[r], e = w.run_start[r + 1];
            for (std::uint32_t t = b; t < mid; ++t) {
                const std::int32_t* xr = x + w.run_index[t] * ldx + col;
                for (std::size_t v = 0; v < NV; ++v) {
                    sum[v] += i32batch::load_unaligned(xr + v * vw);
                }
            }
            for (std::uint32_t t = mid; t < e; ++t) {
                const std::int32_t* xr = x + w.run_index[t] * ldx + col;
                for (std::size_t v = 0; v < NV; ++v) {
                    sum[v] -= i32batch::load_unaligned(xr + v * vw);
                }
            }
            for (std::size_t v = 0; v < NV; ++v) {
                sum[v].store_aligned(part + v * vw);
            }
            const int sh = w.run_exponent[r] - lo;
            for (std::size_t c = 0; c < cols; ++c) { // vectorized by the compiler (sign extension, shift, add)
                acc[c] += static_cast<std::int64_t>(part[c]) << sh;
            }
        }
        std::copy(acc, acc + cols, y + i * ldy + col);
    }
}

/// The column loop both fixed-point kernels share: blocks of 4 and 1
/// vectors of T's lanes, then the remaining columns one by one.
template <class T>
inline void shift_fixed_columns(const shift_matrix& w, int lo, std::size_t n, const T* x, std::size_t ldx,
                                std::int64_t* y, std::size_t ldy) noexcept {
    constexpr bool narrow = std::is_same_v<T, std::int32_t>;
    constexpr std::size_t vw = narrow ? i32batch::size : i64batch::size;
    auto block = [&]<std::size_t NV>(std::size_t col) {
        if constexpr (narrow) {
            shift_fixed32_block<NV>(w, lo, x, ldx, col, y, ldy);
        } else {
            shift_fixed_block<NV>(w, lo, x, ldx, col, y, ldy);
        }
    };
    std::size_t j = 0;
    for (; j + 4 * vw <= n; j += 4 * vw) {
        block.template operator()<4>(j);
    }
    for (; j + vw <= n; j += vw) {
        block.template operator()<1>(j);
    }
    for (std::size_t i = 0; i < w.rows && j < n; ++i) {
        for (std::size_t jj = j; jj < n; ++jj) {
            std::int64_t s = 0;
            for (std::uint32_t t = w.start[i]; t < w.start[i + 1]; ++t) {
                const std::int64_t v = static_cast<std::int64_t>(x[w.index[t] * ldx + jj]) << (w.exponent[t] - lo);
                s += t < w.mid[i] ? v : -v;
            }
            y[i * ldy + jj] = s;
        }
    }
}

/// shift_fixed_columns with the columns spread over frugal's threads.
template <class T>
inline void shift_fixed_columns_parallel(const shift_matrix& w, int lo, std::size_t n, const T* x, std::size_t ldx,
                                         std::int64_t* y, std::size_t ldy) {
    constexpr std::size_t vw = std::is_same_v<T, std::int32_t> ? i32batch::size : i64batch::size;
    const std::size_t blocks = (n + vw - 1) / vw;
    parallel_chunks(blocks, [&](std::size_t b, std::size_t e, int) {
        const std::size_t lo_col = b * vw, hi_col = std::min(n, e * vw);
        if (lo_col < hi_col) {
            shift_fixed_columns(w, lo, hi_col - lo_col, x + lo_col, ldx, y + lo_col, ldy);
        }
    });
}

} // namespace detail

/// Y[i][j] = sum over the entries of row i of s * (X[p][j] << (e - lo)), exact
/// (raw integers, int64). Every exponent of w must be >= lo. Single-threaded.
inline void shift_fixed(const shift_matrix& w, int lo, std::size_t n, const std::int64_t* x, std::size_t ldx,
                        std::int64_t* y, std::size_t ldy) noexcept {
    detail::shift_fixed_columns(w, lo, n, x, ldx, y, ldy);
}

/// shift_fixed with the columns spread over frugal's threads.
inline void shift_fixed_parallel(const shift_matrix& w, int lo, std::size_t n, const std::int64_t* x, std::size_t ldx,
                                 std::int64_t* y, std::size_t ldy) {
    detail::shift_fixed_columns_parallel(w, lo, n, x, ldx, y, ldy);
}

/// shift_fixed on int32 inputs, faster: the entries of a row are summed per
/// exponent in int32 lanes (twice as many as int64 ones, and no shift per
/// entry), and each run's sum is shifted once into an int64 accumulator. The
/// result is the same exact integer as shift_fixed's provided every run's sum
/// stays within int32, which holds when `w.max_run * max|x| < 2^31` (the
/// caller checks; `to_fixed_raw32` returns max|x|). Every exponent of w must
/// be >= lo. Single-threaded.
inline void shift_fixed32(const shift_matrix& w, int lo, std::size_t n, const std::int32_t* x, std::size_t ldx,
                          std::int64_t* y, std::size_t ldy) noexcept {
    detail::shift_fixed_columns(w, lo, n, x, ldx, y, ldy);
}

/// shift_fixed32 with the columns spread over frugal's threads.
inline void shift_fixed32_parallel(const shift_matrix& w, int lo, std::size_t n, const std::int32_t* x,
                                   std::size_t ldx, std::int64_t* y, std::size_t ldy) {
    detail::shift_fixed_columns_parallel(w, lo, n, x, ldx, y, ldy);
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

/// to_fixed_raw into int32 (bits <= 32), vectorized. Returns an upper bound
/// of max |raw| (exact, or one more when a value saturates at the top), or
/// -1 when x holds a NaN (the rest of raw is then unspecified).
[[nodiscard]] inline std::int64_t to_fixed_raw32(const float* x, std::size_t n, int frac, int bits,
                                                 std::int32_t* raw) noexcept {
    using simd::fbatch;
    constexpr std::size_t vw = simd::width;
    const std::int64_t hi = (std::int64_t{1} << (bits - 1)) - 1, lo = -(std::int64_t{1} << (bits - 1));
    const float top = std::ldexp(1.0f, bits - 1);    // |lo|, exact
    const float hmax = std::nextafter(top, 0.0f) >= static_cast<float>(hi) ? static_cast<float>(hi)
                                                                              : std::nextafter(top, 0.0f);
    // hmax: the largest float <= hi (hi itself when bits <= 24)
    const fbatch scale(std::ldexp(1.0f, frac)), vlo(-top), vhmax(hmax);
    fbatch most(0.0f);
    bool nan = false;
    std::size_t i = 0;
    for (; i + vw <= n; i += vw) {
        fbatch v = xsimd::nearbyint(fbatch::load_unaligned(x + i) * scale);
        nan = nan || xsimd::any(xsimd::isnan(v)); // (not v != v: an ordered compare, false for NaN)
        v = xsimd::max(v, vlo);
        most = xsimd::max(most, xsimd::min(xsimd::abs(v), fbatch(top)));
        const auto over = v > vhmax;
        xsimd::to_int(xsimd::min(v, vhmax)).store_unaligned(raw + i);
        if (xsimd::any(over)) {
            for (std::size_t l = 0; l < vw; ++l) {
                if (static_cast<double>(x[i + l]) * std::ldexp(1.0, frac) > static_cast<double>(hmax)) {
                    raw[i + l] = static_cast<std::int32_t>(hi);
                }
            }
        }
    }
    std::int64_t m = static_cast<std::int64_t>(simd::hmax(most));
    for (; i < n; ++i) {
        const double v = std::nearbyint(static_cast<double>(x[i]) * std::ldexp(1.0, frac));
        if (v != v) {
            return -1;
        }
        const std::int64_t r = static_cast<std::int64_t>(std::clamp(v, static_cast<double>(lo), static_cast<double>(hi)));
        raw[i] = static_cast<std::int32_t>(r);
        m = std::max(m, r < 0 ? -r : r);
    }
    return nan ? -1 : m;
}

/// y[i] = what from_fixed_raw(to_fixed_raw(x)) gives, bit for bit (the value
/// x rounded to the fixed-point grid, saturated, then to float), computed in
/// float lanes without the integers; a NaN becomes 0 as there.
inline void round_to_fixed(const float* x, std::size_t n, int frac, int bits, float* y) noexcept {
    using simd::fbatch;
    constexpr std::size_t vw = simd::width;
    const std::int64_t hi = (std::int64_t{1} << (bits - 1)) - 1;
    const float top = static_cast<float>(hi); // rounded as from_fixed_raw rounds a saturated raw value
    const fbatch scale(std::ldexp(1.0f, frac)), unscale(std::ldexp(1.0f, -frac)), vlo(-std::ldexp(1.0f, bits - 1)),
        vtop(top), zero(0.0f);
    std::size_t i = 0;
    for (; i + vw <= n; i += vw) {
        fbatch v = xsimd::nearbyint(fbatch::load_unaligned(x + i) * scale) + zero; // -0 -> +0, as an integer 0 gives
        v = xsimd::select(v == v, xsimd::min(xsimd::max(v, vlo), vtop), zero);
        (v * unscale).store_unaligned(y + i);
    }
    for (; i < n; ++i) {
        std::int64_t r = 0;
        (void)to_fixed_raw(x + i, 1, frac, bits, &r);
        from_fixed_raw(&r, 1, frac, y + i);
    }
}

} // namespace frugal::kernels

#endif
