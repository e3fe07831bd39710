#ifndef FRUGAL_TENSOR_KERNELS_GEMM_HPP
#define FRUGAL_TENSOR_KERNELS_GEMM_HPP

/// @file
/// Single-precision matrix multiplication, C = alpha * A * B + beta * C, for
/// row-major matrices with leading dimensions.
///
/// Two implementations behind one interface:
/// - frugal's own xsimd kernel: register-blocked (MR rows x two vectors of
///   columns), no packing of A, B read in place. It is built for the skinny
///   shapes of convolutions on small images (few output channels, a few
///   hundred columns) where a general BLAS spends most of its time packing.
/// - OpenBLAS's cblas_sgemm when frugal was built with a BLAS
///   (FRUGAL_HAS_BLAS): faster for large square products.
/// `sgemm` picks by shape; `sgemm_reference` is the plain triple loop the
/// tests compare both with.
///
/// All functions are single-threaded: frugal parallelizes one level up (over
/// the samples of a batch, or over column blocks with sgemm_parallel).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "frugal/config.hpp"
#include "frugal/numeric/simd.hpp"

#if FRUGAL_HAS_BLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif
#if FRUGAL_HAS_OPENMP
#include <omp.h>
#endif

namespace frugal::kernels {

/// The plain triple loop: the oracle of the tests.
inline void sgemm_reference(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                            const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0.0;
            for (std::size_t p = 0; p < k; ++p) {
                s += static_cast<double>(a[i * lda + p]) * static_cast<double>(b[p * ldb + j]);
            }
            const float prior = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            c[i * ldc + j] = static_cast<float>(alpha * s) + prior;
        }
    }
}

namespace detail {

using simd::fbatch;
inline constexpr std::size_t vw = simd::width;
/// Rows of C per register block: MR x 2 vectors of accumulators.
inline constexpr std::size_t gemm_mr = vw >= 16 ? 8 : (vw == 8 ? 6 : 4);
inline constexpr std::size_t gemm_nv = 2;
inline constexpr std::size_t gemm_nr = gemm_nv * vw;

/// C[MR x NR] (+)= alpha * A[MR x K] * B[K x NR]; row p of B starts at rows[p] + col.
template <std::size_t MR>
inline void micro(std::size_t k, float alpha, const float* a, std::size_t lda, const float* const* rows,
                  std::size_t col, float beta, float* c, std::size_t ldc) noexcept {
    std::array<fbatch, MR * gemm_nv> acc;
    for (auto& v : acc) {
        v = fbatch(0.0f);
    }
    for (std::size_t p = 0; p < k; ++p) {
        const float* brow = rows[p] + col;
        const fbatch b0 = fbatch::load_unaligned(brow);
        const fbatch b1 = fbatch::load_unaligned(brow + vw);
        for (std::size_t r = 0; r < MR; ++r) {
            const fbatch av(a[r * lda + p]);
            acc[r * 2] = xsimd::fma(av, b0, acc[r * 2]);
            acc[r * 2 + 1] = xsimd::fma(av, b1, acc[r * 2 + 1]);
        }
    }
    const fbatch al(alpha);
    for (std::size_t r = 0; r < MR; ++r) {
        float* crow = c + r * ldc;
        if (beta == 0.0f) {
            (al * acc[r * 2]).store_unaligned(crow);
            (al * acc[r * 2 + 1]).store_unaligned(crow + vw);
        } else {
            const fbatch be(beta);
            xsimd::fma(al, acc[r * 2], be * fbatch::load_unaligned(crow)).store_unaligned(crow);
            xsimd::fma(al, acc[r * 2 + 1], be * fbatch::load_unaligned(crow + vw)).store_unaligned(crow + vw);
        }
    }
}

template <std::size_t... R>
inline void micro_rows(std::size_t rows, std::size_t k, float alpha, const float* a, std::size_t lda,
                       const float* const* brows, std::size_t col, float beta, float* c, std::size_t ldc,
                       std::index_sequence<R...>) noexcept {
    // rows in [1, MR]: a fold picks the instantiation with that many rows
    (void)((rows == R + 1 ? (micro<R + 1>(k, alpha, a, lda, brows, col, beta, c, ldc), true) : false) || ...);
}

/// Columns [col, col + nr) of C for all rows, nr < NR: through zero-padded copies.
inline void tail_columns(std::size_t m, std::size_t nr, std::size_t k, float alpha, const float* a, std::size_t lda,
                         const float* const* brows, std::size_t col, float beta, float* c, std::size_t ldc, float* bt,
                         const float** btrows, float* ct) noexcept {
    for (std::size_t p = 0; p < k; ++p) {
        std::memcpy(bt + p * gemm_nr, brows[p] + col, nr * sizeof(float));
        std::memset(bt + p * gemm_nr + nr, 0, (gemm_nr - nr) * sizeof(float));
        btrows[p] = bt + p * gemm_nr;
    }
    for (std::size_t i0 = 0; i0 < m; i0 += gemm_mr) {
        const std::size_t rows = std::min(gemm_mr, m - i0);
        for (std::size_t r = 0; r < rows; ++r) {
            if (beta != 0.0f) {
                std::memcpy(ct + r * gemm_nr, c + (i0 + r) * ldc + col, nr * sizeof(float));
            }
        }
        micro_rows(rows, k, alpha, a + i0 * lda, lda, btrows, 0, beta, ct, gemm_nr,
                   std::make_index_sequence<gemm_mr>{});
        for (std::size_t r = 0; r < rows; ++r) {
            std::memcpy(c + (i0 + r) * ldc + col, ct + r * gemm_nr, nr * sizeof(float));
        }
    }
}

} // namespace detail

/// frugal's own kernel with B given by its rows: C[m x n] = alpha * A * B + beta * C,
/// where row p of B (n floats) starts at rows[p]. This is how a convolution
/// reads its input in place ("implicit im2col"): each row is the image
/// shifted by one kernel tap. beta == 0: C is not read.
inline void sgemm_rows(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                       const float* const* rows, float beta, float* c, std::size_t ldc) {
    using namespace detail;
    if (m == 0 || n == 0) {
        return;
    }
    if (k == 0) {
        for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t j = 0; j < n; ++j) {
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            }
        }
        return;
    }
    const std::size_t full = n - n % gemm_nr;
    for (std::size_t j0 = 0; j0 < full; j0 += gemm_nr) {
        for (std::size_t i0 = 0; i0 < m; i0 += gemm_mr) {
            const std::size_t r = std::min(gemm_mr, m - i0);
            micro_rows(r, k, alpha, a + i0 * lda, lda, rows, j0, beta, c + i0 * ldc + j0, ldc,
                       std::make_index_sequence<gemm_mr>{});
        }
    }
    if (full < n) {
        thread_local std::vector<float> bt, ct;
        thread_local std::vector<const float*> btrows;
        bt.resize(k * gemm_nr);
        btrows.resize(k);
        ct.resize(gemm_mr * gemm_nr);
        tail_columns(m, n - full, k, alpha, a, lda, rows, full, beta, c, ldc, bt.data(), btrows.data(), ct.data());
    }
}

/// frugal's own kernel: C = alpha * A * B + beta * C (beta == 0: C is not read).
inline void sgemm_simd(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                       const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    thread_local std::vector<const float*> rows;
    rows.resize(k);
    for (std::size_t p = 0; p < k; ++p) {
        rows[p] = b + p * ldb;
    }
    sgemm_rows(m, n, k, alpha, a, lda, rows.data(), beta, c, ldc);
}

/// True when OpenBLAS is linked.
inline constexpr bool has_blas = FRUGAL_HAS_BLAS != 0;

/// Single-threaded sgemm: OpenBLAS for large products, frugal's kernel for
/// the skinny ones (measured in bench/gemm; see docs/benchmarks.md).
inline void sgemm(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                  const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
#if FRUGAL_HAS_BLAS
    if (m >= 96 && n >= 96 && k >= 96) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                    static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
                    static_cast<int>(ldc));
        return;
    }
#endif
    sgemm_simd(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// C = alpha * A * B^T + beta * C, with B given as n rows of k floats, row j
/// starting at brows[j]: every entry is a dot product of a row of A and a row of
/// B, computed in register tiles of 4 x 4 with vector accumulators along k.
/// Built for long k (weight gradients of convolutions: k = output pixels).
inline void sgemm_nt_rows(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                          const float* const* brows, float beta, float* c, std::size_t ldc) noexcept {
    using detail::fbatch;
    using detail::vw;
    constexpr std::size_t tm = 4, tn = 4;
    const std::size_t kv = k - k % vw;
    auto finish = [&](std::size_t i, std::size_t j, float dot) {
        float& out = c[i * ldc + j];
        out = alpha * dot + (beta == 0.0f ? 0.0f : beta * out);
    };
    for (std::size_t i0 = 0; i0 < m; i0 += tm) {
        const std::size_t mi = std::min(tm, m - i0);
        for (std::size_t j0 = 0; j0 < n; j0 += tn) {
            const std::size_t nj = std::min(tn, n - j0);
            if (mi == tm && nj == tn) {
                std::array<fbatch, tm * tn> acc;
                for (auto& v : acc) {
                    v = fbatch(0.0f);
                }
                const float* a0 = a + i0 * lda;
                const float* const* b0 = brows + j0;
                for (std::size_t p = 0; p < kv; p += vw) {
                    std::array<fbatch, tm> av;
                    for (std::size_t r = 0; r < tm; ++r) {
                        av[r] = fbatch::load_unaligned(a0 + r * lda + p);
                    }
                    for (std::size_t q = 0; q < tn; ++q) {
                        const fbatch bv = fbatch::load_unaligned(b0[q] + p);
                        for (std::size_t r = 0; r < tm; ++r) {
                            acc[r * tn + q] = xsimd::fma(av[r], bv, acc[r * tn + q]);
                        }
                    }
                }
                for (std::size_t r = 0; r < tm; ++r) {
                    for (std::size_t q = 0; q < tn; ++q) {
                        float dot = xsimd::hadd(acc[r * tn + q]);
                        for (std::size_t p = kv; p < k; ++p) {
                            dot += a0[r * lda + p] * b0[q][p];
                        }
                        finish(i0 + r, j0 + q, dot);
                    }
                }
            } else {
                for (std::size_t r = 0; r < mi; ++r) {
                    for (std::size_t q = 0; q < nj; ++q) {
                        const float* ar = a + (i0 + r) * lda;
                        const float* bq = brows[j0 + q];
                        fbatch acc(0.0f);
                        for (std::size_t p = 0; p < kv; p += vw) {
                            acc = xsimd::fma(fbatch::load_unaligned(ar + p), fbatch::load_unaligned(bq + p), acc);
                        }
                        float dot = xsimd::hadd(acc);
                        for (std::size_t p = kv; p < k; ++p) {
                            dot += ar[p] * bq[p];
                        }
                        finish(i0 + r, j0 + q, dot);
                    }
                }
            }
        }
    }
}

/// sgemm_nt_rows with B stored row-major (row j at b + j * ldb).
inline void sgemm_nt(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                     const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    thread_local std::vector<const float*> rows;
    rows.resize(n);
    for (std::size_t j = 0; j < n; ++j) {
        rows[j] = b + j * ldb;
    }
    sgemm_nt_rows(m, n, k, alpha, a, lda, rows.data(), beta, c, ldc);
}

/// out[j * ldo + i] = in[i * ldi + j] for an m x n matrix `in`.
inline void transpose(std::size_t m, std::size_t n, const float* in, std::size_t ldi, float* out,
                      std::size_t ldo) noexcept {
    constexpr std::size_t blk = 16;
    for (std::size_t i0 = 0; i0 < m; i0 += blk) {
        for (std::size_t j0 = 0; j0 < n; j0 += blk) {
            const std::size_t ie = std::min(m, i0 + blk), je = std::min(n, j0 + blk);
            for (std::size_t i = i0; i < ie; ++i) {
                for (std::size_t j = j0; j < je; ++j) {
                    out[j * ldo + i] = in[i * ldi + j];
                }
            }
        }
    }
}

} // namespace frugal::kernels

#endif
