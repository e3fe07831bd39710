#ifndef FRUGAL_TENSOR_KERNELS_ADDER_HPP
#define FRUGAL_TENSOR_KERNELS_ADDER_HPP

/// @file
/// The adder (L1-distance) "matrix product" of AdderNet / ShiftAddNet and
/// the two backward products an adder layer needs, for row-major matrices
/// with leading dimensions:
///
/// - forward:         C[i][j] = -sum_p |A[i][p] - B[p][j]|
///   (A: weights [m x k], B: im2col columns [k x n]); float, or int32 lanes
///   holding narrow integer codes (the FIX8 mode);
/// - weight gradient: dW[i][p] += sum_j dY[i][j] * f(B[p][j] - A[i][p]),
///   f = identity (AdderNet's full difference) or sign (the true derivative);
/// - input gradient:  dB[p][j] = sum_i dY[i][j] * g(A[i][p] - B[p][j]),
///   g = HardTanh, clamp(z, -c, c) with c = 1 (AdderNet; another bound c
///   serves integer codes, where 1.0 is 1/scale codes) or sign (the true
///   derivative).
///
/// The kernels are vectorized with xsimd over the columns j and are
/// single-threaded; the `_parallel` variants split the columns over frugal's
/// threads. `*_reference` are the plain loops from the definitions, the
/// oracle of the tests and the baseline of the benchmark. The vectorized
/// forward sums in the same order as its reference (each lane accumulates
/// p = 0, 1, ... in turn), so the two agree bit for bit.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal::kernels {

/// What the weight gradient multiplies dY with.
enum class l1_weight_rule : std::uint8_t {
    difference, ///< B - A: AdderNet's full-precision difference (SPEC 4.2)
    sign        ///< sign(B - A): the true derivative of -|A - B| with respect to A
};
/// What the input gradient multiplies dY with.
enum class l1_input_rule : std::uint8_t {
    hardtanh, ///< clamp(A - B, -c, c), c = 1: AdderNet's clipped difference (SPEC 4.2)
    sign      ///< sign(A - B): the true derivative of -|A - B| with respect to B
};

// ---------------------------------------------------------------- references

/// C[i][j] = -sum_p |A[i][p] - B[p][j]|, summed in T in order of p.
template <class T>
inline void l1_distance_reference(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
                                  std::size_t ldb, T* c, std::size_t ldc) noexcept {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, std::int32_t>, "float or int32 lanes");
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            T s = 0;
            for (std::size_t p = 0; p < k; ++p) {
                const T d = a[i * lda + p] - b[p * ldb + j];
                s += d < 0 ? -d : d;
            }
            c[i * ldc + j] = -s;
        }
    }
}

namespace detail {
[[nodiscard]] inline double sign_of(double v) noexcept { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); }
} // namespace detail

/// dW[i][p] += sum_j dY[i][j] * f(B[p][j] - A[i][p]), in double.
inline void l1_weight_grad_reference(std::size_t m, std::size_t k, std::size_t n, const float* dy, std::size_t lddy,
                                     const float* a, std::size_t lda, const float* b, std::size_t ldb, float* dw,
                                     std::size_t lddw, l1_weight_rule rule) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t p = 0; p < k; ++p) {
            double s = 0.0;
            for (std::size_t j = 0; j < n; ++j) {
                const double d = static_cast<double>(b[p * ldb + j]) - static_cast<double>(a[i * lda + p]);
                s += static_cast<double>(dy[i * lddy + j]) * (rule == l1_weight_rule::difference ? d : detail::sign_of(d));
            }
            dw[i * lddw + p] += static_cast<float>(s);
        }
    }
}

/// dB[p][j] = sum_i dY[i][j] * g(A[i][p] - B[p][j]), in double (dB is
/// overwritten); `clip` is the HardTanh bound c.
inline void l1_input_grad_reference(std::size_t k, std::size_t n, std::size_t m, const float* dy, std::size_t lddy,
                                    const float* a, std::size_t lda, const float* b, std::size_t ldb, float* db,
                                    std::size_t lddb, l1_input_rule rule, float clip = 1.0f) noexcept {
    const double c = clip;
    for (std::size_t p = 0; p < k; ++p) {
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0.0;
            for (std::size_t i = 0; i < m; ++i) {
                const double d = static_cast<double>(a[i * lda + p]) - static_cast<double>(b[p * ldb + j]);
                const double g = rule == l1_input_rule::hardtanh ? std::clamp(d, -c, c) : detail::sign_of(d);
                s += static_cast<double>(dy[i * lddy + j]) * g;
            }
            db[p * lddb + j] = static_cast<float>(s);
        }
    }
}

// ---------------------------------------------------------------- vectorized

namespace detail {

template <class T>
using lane_batch = xsimd::batch<T, simd::arch>;

/// C[MR x NV*W] at column `col` = -sum_p |A - B|; accumulators in registers.
template <class T, std::size_t MR, std::size_t NV>
inline void l1_micro(std::size_t k, const T* a, std::size_t lda, const T* b, std::size_t ldb, std::size_t col, T* c,
                     std::size_t ldc) noexcept {
    using V = lane_batch<T>;
    constexpr std::size_t w = V::size;
    std::array<V, MR * NV> acc;
    for (auto& v : acc) {
        v = V(T(0));
    }
    for (std::size_t p = 0; p < k; ++p) {
        const T* brow = b + p * ldb + col;
        std::array<V, NV> bv;
        for (std::size_t v = 0; v < NV; ++v) {
            bv[v] = V::load_unaligned(brow + v * w);
        }
        for (std::size_t r = 0; r < MR; ++r) {
            const V av(a[r * lda + p]);
            for (std::size_t v = 0; v < NV; ++v) {
                acc[r * NV + v] += xsimd::abs(av - bv[v]);
            }
        }
    }
    for (std::size_t r = 0; r < MR; ++r) {
        for (std::size_t v = 0; v < NV; ++v) {
            (-acc[r * NV + v]).store_unaligned(c + r * ldc + col + v * w);
        }
    }
}

template <class T, std::size_t NV>
inline void l1_rows(std::size_t m, std::size_t k, const T* a, std::size_t lda, const T* b, std::size_t ldb,
                    std::size_t col, T* c, std::size_t ldc) noexcept {
    constexpr std::size_t mr = 4;
    std::size_t i = 0;
    for (; i + mr <= m; i += mr) {
        l1_micro<T, mr, NV>(k, a + i * lda, lda, b, ldb, col, c + i * ldc, ldc);
    }
    for (; i < m; ++i) {
        l1_micro<T, 1, NV>(k, a + i * lda, lda, b, ldb, col, c + i * ldc, ldc);
    }
}

} // namespace detail

/// C[i][j] = -sum_p |A[i][p] - B[p][j]| (T = float, or int32 lanes of integer
/// codes; the caller keeps the integer sums within int32). Single-threaded.
template <class T>
inline void l1_distance(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
                        std::size_t ldb, T* c, std::size_t ldc) noexcept {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, std::int32_t>, "float or int32 lanes");
    constexpr std::size_t w = detail::lane_batch<T>::size;
    std::size_t j = 0;
    for (; j + 2 * w <= n; j += 2 * w) {
        detail::l1_rows<T, 2>(m, k, a, lda, b, ldb, j, c, ldc);
    }
    for (; j + w <= n; j += w) {
        detail::l1_rows<T, 1>(m, k, a, lda, b, ldb, j, c, ldc);
    }
    if (j < n) {
        l1_distance_reference(m, n - j, k, a, lda, b + j, ldb, c + j, ldc);
    }
}

namespace detail {

/// dW[IR x PR] += sum_j dY * f(B - A) for IR rows i and PR rows p.
template <std::size_t IR, std::size_t PR, l1_weight_rule Rule>
inline void l1_wgrad_micro(std::size_t n, const float* dy, std::size_t lddy, const float* a, std::size_t lda,
                           const float* b, std::size_t ldb, float* dw, std::size_t lddw) noexcept {
    using simd::fbatch;
    constexpr std::size_t w = simd::width;
    std::array<fbatch, IR * PR> acc, av;
    for (std::size_t r = 0; r < IR; ++r) {
        for (std::size_t q = 0; q < PR; ++q) {
            acc[r * PR + q] = fbatch(0.0f);
            av[r * PR + q] = fbatch(a[r * lda + q]);
        }
    }
    std::size_t j = 0;
    for (; j + w <= n; j += w) {
        std::array<fbatch, PR> bv;
        for (std::size_t q = 0; q < PR; ++q) {
            bv[q] = fbatch::load_unaligned(b + q * ldb + j);
        }
        for (std::size_t r = 0; r < IR; ++r) {
            const fbatch g = fbatch::load_unaligned(dy + r * lddy + j);
            for (std::size_t q = 0; q < PR; ++q) {
                const fbatch d = bv[q] - av[r * PR + q];
                if constexpr (Rule == l1_weight_rule::difference) {
                    acc[r * PR + q] = simd::fma(g, d, acc[r * PR + q]);
                } else {
                    const fbatch s = xsimd::select(d > fbatch(0.0f), fbatch(1.0f), fbatch(0.0f)) -
                                     xsimd::select(d < fbatch(0.0f), fbatch(1.0f), fbatch(0.0f));
                    acc[r * PR + q] = simd::fma(g, s, acc[r * PR + q]);
                }
            }
        }
    }
    for (std::size_t r = 0; r < IR; ++r) {
        for (std::size_t q = 0; q < PR; ++q) {
            float s = xsimd::hadd(acc[r * PR + q]);
            for (std::size_t jj = j; jj < n; ++jj) {
                const float d = b[q * ldb + jj] - a[r * lda + q];
                const float f = Rule == l1_weight_rule::difference ? d : (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f));
                s += dy[r * lddy + jj] * f;
            }
            dw[r * lddw + q] += s;
        }
    }
}

template <l1_weight_rule Rule>
inline void l1_wgrad(std::size_t m, std::size_t k, std::size_t n, const float* dy, std::size_t lddy, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* dw, std::size_t lddw) noexcept {
    constexpr std::size_t ir = simd::width >= 16 ? 4 : 2, pr = 2;
    std::size_t i = 0;
    for (; i + ir <= m; i += ir) {
        std::size_t p = 0;
        for (; p + pr <= k; p += pr) {
            l1_wgrad_micro<ir, pr, Rule>(n, dy + i * lddy, lddy, a + i * lda + p, lda, b + p * ldb, ldb,
                                         dw + i * lddw + p, lddw);
        }
        for (; p < k; ++p) {
            l1_wgrad_micro<ir, 1, Rule>(n, dy + i * lddy, lddy, a + i * lda + p, lda, b + p * ldb, ldb,
                                        dw + i * lddw + p, lddw);
        }
    }
    for (; i < m; ++i) {
        for (std::size_t p = 0; p < k; ++p) {
            l1_wgrad_micro<1, 1, Rule>(n, dy + i * lddy, lddy, a + i * lda + p, lda, b + p * ldb, ldb,
                                       dw + i * lddw + p, lddw);
        }
    }
}

/// dB[PR x NV*W] at column col = sum_i dY * g(A - B), B held in registers.
template <std::size_t PR, std::size_t NV, l1_input_rule Rule>
inline void l1_xgrad_micro(std::size_t m, const float* dy, std::size_t lddy, const float* a, std::size_t lda,
                           const float* b, std::size_t ldb, std::size_t col, float* db, std::size_t lddb,
                           float clip) noexcept {
    using simd::fbatch;
    constexpr std::size_t w = simd::width;
    std::array<fbatch, PR * NV> acc, bv;
    for (std::size_t q = 0; q < PR; ++q) {
        for (std::size_t v = 0; v < NV; ++v) {
            acc[q * NV + v] = fbatch(0.0f);
            bv[q * NV + v] = fbatch::load_unaligned(b + q * ldb + col + v * w);
        }
    }
    const fbatch one(1.0f), hi(clip), lo(-clip), zero(0.0f);
    for (std::size_t i = 0; i < m; ++i) {
        std::array<fbatch, NV> g;
        for (std::size_t v = 0; v < NV; ++v) {
            g[v] = fbatch::load_unaligned(dy + i * lddy + col + v * w);
        }
        for (std::size_t q = 0; q < PR; ++q) {
            const fbatch av(a[i * lda + q]);
            for (std::size_t v = 0; v < NV; ++v) {
                const fbatch d = av - bv[q * NV + v];
                fbatch f;
                if constexpr (Rule == l1_input_rule::hardtanh) {
                    f = xsimd::min(xsimd::max(d, lo), hi);
                } else {
                    f = xsimd::select(d > zero, one, zero) - xsimd::select(d < zero, one, zero);
                }
                acc[q * NV + v] = simd::fma(g[v], f, acc[q * NV + v]);
            }
        }
    }
    for (std::size_t q = 0; q < PR; ++q) {
        for (std::size_t v = 0; v < NV; ++v) {
            acc[q * NV + v].store_unaligned(db + q * lddb + col + v * w);
        }
    }
}

template <std::size_t NV, l1_input_rule Rule>
inline void l1_xgrad_rows(std::size_t k, std::size_t m, const float* dy, std::size_t lddy, const float* a,
                          std::size_t lda, const float* b, std::size_t ldb, std::size_t col, float* db,
                          std::size_t lddb, float clip) noexcept {
    constexpr std::size_t pr = simd::width >= 16 ? 4 : 2;
    std::size_t p = 0;
    for (; p + pr <= k; p += pr) {
        l1_xgrad_micro<pr, NV, Rule>(m, dy, lddy, a + p, lda, b + p * ldb, ldb, col, db + p * lddb, lddb, clip);
    }
    for (; p < k; ++p) {
        l1_xgrad_micro<1, NV, Rule>(m, dy, lddy, a + p, lda, b + p * ldb, ldb, col, db + p * lddb, lddb, clip);
    }
}

template <l1_input_rule Rule>
inline void l1_xgrad(std::size_t k, std::size_t n, std::size_t m, const float* dy, std::size_t lddy, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* db, std::size_t lddb, float clip) noexcept {
    constexpr std::size_t w = simd::width;
    std::size_t j = 0;
    for (; j + 2 * w <= n; j += 2 * w) {
        l1_xgrad_rows<2, Rule>(k, m, dy, lddy, a, lda, b, ldb, j, db, lddb, clip);
    }
    for (; j + w <= n; j += w) {
        l1_xgrad_rows<1, Rule>(k, m, dy, lddy, a, lda, b, ldb, j, db, lddb, clip);
    }
    for (std::size_t p = 0; p < k; ++p) {
        for (std::size_t jj = j; jj < n; ++jj) {
            float s = 0.0f;
            for (std::size_t i = 0; i < m; ++i) {
                const float d = a[i * lda + p] - b[p * ldb + jj];
                const float g = Rule == l1_input_rule::hardtanh ? std::clamp(d, -clip, clip)
                                                                : (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f));
                s += dy[i * lddy + jj] * g;
            }
            db[p * lddb + jj] = s;
        }
    }
}

/// Splits n columns into per-thread ranges aligned to `align`.
template <class F>
inline void column_chunks(std::size_t n, std::size_t align, F&& f) {
    const std::size_t blocks = (n + align - 1) / align;
    parallel_chunks(blocks, [&](std::size_t b, std::size_t e, int) {
        const std::size_t lo = b * align, hi = std::min(n, e * align);
        if (lo < hi) {
            f(lo, hi);
        }
    });
}

} // namespace detail

/// dW[i][p] += sum_j dY[i][j] * f(B[p][j] - A[i][p]). Single-threaded.
inline void l1_weight_grad(std::size_t m, std::size_t k, std::size_t n, const float* dy, std::size_t lddy,
                           const float* a, std::size_t lda, const float* b, std::size_t ldb, float* dw,
                           std::size_t lddw, l1_weight_rule rule) noexcept {
    if (rule == l1_weight_rule::difference) {
        detail::l1_wgrad<l1_weight_rule::difference>(m, k, n, dy, lddy, a, lda, b, ldb, dw, lddw);
    } else {
        detail::l1_wgrad<l1_weight_rule::sign>(m, k, n, dy, lddy, a, lda, b, ldb, dw, lddw);
    }
}

/// dB[p][j] = sum_i dY[i][j] * g(A[i][p] - B[p][j]) (overwrites dB); `clip`
/// is the HardTanh bound c. Single-threaded. On integer-valued operands
/// (codes) the result is exact while every partial sum stays below 2^24 in
/// magnitude, e.g. when m * max|dY| * min(c, max|A - B|) < 2^24.
inline void l1_input_grad(std::size_t k, std::size_t n, std::size_t m, const float* dy, std::size_t lddy,
                          const float* a, std::size_t lda, const float* b, std::size_t ldb, float* db,
                          std::size_t lddb, l1_input_rule rule, float clip = 1.0f) noexcept {
    if (rule == l1_input_rule::hardtanh) {
        detail::l1_xgrad<l1_input_rule::hardtanh>(k, n, m, dy, lddy, a, lda, b, ldb, db, lddb, clip);
    } else {
        detail::l1_xgrad<l1_input_rule::sign>(k, n, m, dy, lddy, a, lda, b, ldb, db, lddb, clip);
    }
}

/// l1_distance with the columns spread over frugal's threads.
template <class T>
inline void l1_distance_parallel(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda, const T* b,
                                 std::size_t ldb, T* c, std::size_t ldc) {
    detail::column_chunks(n, detail::lane_batch<T>::size, [&](std::size_t lo, std::size_t hi) {
        l1_distance(m, hi - lo, k, a, lda, b + lo, ldb, c + lo, ldc);
    });
}

/// l1_input_grad with the columns spread over frugal's threads.
inline void l1_input_grad_parallel(std::size_t k, std::size_t n, std::size_t m, const float* dy, std::size_t lddy,
                                   const float* a, std::size_t lda, const float* b, std::size_t ldb, float* db,
                                   std::size_t lddb, l1_input_rule rule, float clip = 1.0f) {
    detail::column_chunks(n, simd::width, [&](std::size_t lo, std::size_t hi) {
        l1_input_grad(k, hi - lo, m, dy + lo, lddy, a, lda, b + lo, ldb, db + lo, lddb, rule, clip);
    });
}

/// l1_weight_grad with the rows of dW spread over frugal's threads.
inline void l1_weight_grad_parallel(std::size_t m, std::size_t k, std::size_t n, const float* dy, std::size_t lddy,
                                    const float* a, std::size_t lda, const float* b, std::size_t ldb, float* dw,
                                    std::size_t lddw, l1_weight_rule rule) {
    parallel_chunks(m, [&](std::size_t lo, std::size_t hi, int) {
        l1_weight_grad(hi - lo, k, n, dy + lo * lddy, lddy, a + lo * lda, lda, b, ldb, dw + lo * lddw, lddw, rule);
    });
}

} // namespace frugal::kernels

#endif
