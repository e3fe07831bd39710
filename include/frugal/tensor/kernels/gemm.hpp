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

#if defined(__AVX__)
#include <immintrin.h>
#endif

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
/// Depth of a k block: a 256 x NR panel of B is 32 KiB with AVX-512.
inline constexpr std::size_t gemm_kc = 256;

/// `v`, held in a vector register. Without it GCC folds a vector that four
/// multiply-adds use into each of them as a memory operand, loading it four
/// times: the dot-product kernel (sgemm_nt_rows) ran at 35 GMAC/s on one
/// AVX-512 core instead of 75-95 (five loads per four multiply-adds, most
/// of them split across cache lines). Only with AVX-512's 32 vector
/// registers: the kernel's 4 x 4 tile holds 16 accumulators, 4 + 1 operands
/// (21 registers), more than SSE2 and AVX2 have; there, and on compilers
/// other than GCC and Clang, the compiler chooses.
inline fbatch in_register(fbatch v) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if constexpr (vw == 16) {
        typename fbatch::register_type r = v;
        asm("" : "+v"(r));
        return fbatch(r);
    } else {
        return v;
    }
#else
    return v;
#endif
}

/// C[MR x NV*W] (+)= alpha * A[MR x K] * B[K x NV*W], where A(r, p) = arows[r][p]
/// and B(p, j) = brows[p][col + j]. Accumulators stay in registers.
template <std::size_t MR, std::size_t NV>
inline void micro(std::size_t k, float alpha, const float* const* arows, const float* const* brows, std::size_t col,
                  float beta, float* c, std::size_t ldc) noexcept {
    std::array<fbatch, MR * NV> acc;
    for (auto& v : acc) {
        v = fbatch(0.0f);
    }
    std::array<const float*, MR> a;
    for (std::size_t r = 0; r < MR; ++r) {
        a[r] = arows[r];
    }
    for (std::size_t p = 0; p < k; ++p) {
        const float* brow = brows[p] + col;
        std::array<fbatch, NV> b;
#pragma GCC unroll 4
        for (std::size_t v = 0; v < NV; ++v) {
            b[v] = fbatch::load_unaligned(brow + v * vw);
        }
        // fully unrolled: with MR x 1 accumulators GCC otherwise kept
        // them on the stack (a load and a store per multiply-add; with
        // AVX-512 the 16-column panel ran at 42 GMAC/s on one core, the
        // 32-column one at ~100)
#pragma GCC unroll 16
        for (std::size_t r = 0; r < MR; ++r) {
            const fbatch av(a[r][p]);
#pragma GCC unroll 4
            for (std::size_t v = 0; v < NV; ++v) {
                acc[r * NV + v] = simd::fma(av, b[v], acc[r * NV + v]);
            }
        }
    }
    const fbatch al(alpha);
    for (std::size_t r = 0; r < MR; ++r) {
        float* crow = c + r * ldc;
        for (std::size_t v = 0; v < NV; ++v) {
            if (beta == 0.0f) {
                (al * acc[r * NV + v]).store_unaligned(crow + v * vw);
            } else {
                simd::fma(al, acc[r * NV + v], fbatch(beta) * fbatch::load_unaligned(crow + v * vw))
                    .store_unaligned(crow + v * vw);
            }
        }
    }
}

template <std::size_t NV, std::size_t... R>
inline void micro_rows(std::size_t rows, std::size_t k, float alpha, const float* const* arows,
                       const float* const* brows, std::size_t col, float beta, float* c, std::size_t ldc,
                       std::index_sequence<R...>) noexcept {
    // rows in [1, MR]: a fold picks the instantiation with that many rows
    (void)((rows == R + 1 ? (micro<R + 1, NV>(k, alpha, arows, brows, col, beta, c, ldc), true) : false) || ...);
}

/// One panel of NV vectors of columns starting at `col`, all rows of C, one k block.
template <std::size_t NV>
inline void panel(std::size_t m, std::size_t kc, float alpha, const float* const* arows, const float* const* brows,
                  std::size_t col, float beta, float* c, std::size_t ldc) noexcept {
    for (std::size_t i0 = 0; i0 < m; i0 += gemm_mr) {
        micro_rows<NV>(std::min(gemm_mr, m - i0), kc, alpha, arows + i0, brows, col, beta, c + i0 * ldc + col, ldc,
                       std::make_index_sequence<gemm_mr>{});
    }
}

/// The general kernel: A(i, p) = arows[i][p], B(p, j) = brows[p][j].
inline void gemm_core(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* const* arows,
                      const float* const* brows, float beta, float* c, std::size_t ldc) {
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
    thread_local std::vector<const float*> ablock;
    ablock.resize(m);
    // Columns in panels of two vectors, then one vector; k in blocks of
    // gemm_kc so that a B panel stays in L1 while every row block of A
    // passes over it.
    const std::size_t full2 = n - n % gemm_nr;
    const std::size_t full1 = n - n % vw;
    for (std::size_t k0 = 0; k0 < k; k0 += gemm_kc) {
        const std::size_t kc = std::min(gemm_kc, k - k0);
        const float b_scale = k0 == 0 ? beta : 1.0f;
        for (std::size_t i = 0; i < m; ++i) {
            ablock[i] = arows[i] + k0;
        }
        for (std::size_t j0 = 0; j0 < full2; j0 += gemm_nr) {
            panel<2>(m, kc, alpha, ablock.data(), brows + k0, j0, b_scale, c, ldc);
        }
        for (std::size_t j0 = full2; j0 < full1; j0 += vw) {
            panel<1>(m, kc, alpha, ablock.data(), brows + k0, j0, b_scale, c, ldc);
        }
    }
    if (full1 < n) {
        // the last n % W columns through a zero-padded copy of B and C
        const std::size_t nr = n - full1;
        thread_local std::vector<float> bt, ct;
        thread_local std::vector<const float*> btrows;
        bt.resize(k * vw);
        btrows.resize(k);
        ct.resize(m * vw);
        for (std::size_t p = 0; p < k; ++p) {
            std::memcpy(bt.data() + p * vw, brows[p] + full1, nr * sizeof(float));
            std::memset(bt.data() + p * vw + nr, 0, (vw - nr) * sizeof(float));
            btrows[p] = bt.data() + p * vw;
        }
        for (std::size_t i = 0; i < m; ++i) {
            if (beta != 0.0f) {
                std::memcpy(ct.data() + i * vw, c + i * ldc + full1, nr * sizeof(float));
            }
        }
        for (std::size_t k0 = 0; k0 < k; k0 += gemm_kc) {
            const std::size_t kc = std::min(gemm_kc, k - k0);
            for (std::size_t i = 0; i < m; ++i) {
                ablock[i] = arows[i] + k0;
            }
            panel<1>(m, kc, alpha, ablock.data(), btrows.data() + k0, 0, k0 == 0 ? beta : 1.0f, ct.data(), vw);
        }
        for (std::size_t i = 0; i < m; ++i) {
            std::memcpy(c + i * ldc + full1, ct.data() + i * vw, nr * sizeof(float));
        }
    }
}

inline void row_table(const float* base, std::size_t rows, std::size_t ld, std::vector<const float*>& out) {
    out.resize(rows);
    for (std::size_t i = 0; i < rows; ++i) {
        out[i] = base + i * ld;
    }
}

} // namespace detail

/// frugal's own kernel with B given by its rows: C[m x n] = alpha * A * B + beta * C,
/// where row p of B (n floats) starts at rows[p]. This is how a convolution
/// reads its input in place ("implicit im2col"): each row is the image
/// shifted by one kernel tap. beta == 0: C is not read.
inline void sgemm_rows(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                       const float* const* rows, float beta, float* c, std::size_t ldc) {
    thread_local std::vector<const float*> arows;
    detail::row_table(a, m, lda, arows);
    detail::gemm_core(m, n, k, alpha, arows.data(), rows, beta, c, ldc);
}

/// frugal's own kernel: C = alpha * A * B + beta * C (beta == 0: C is not read).
inline void sgemm_simd(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                       const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    thread_local std::vector<const float*> arows, brows;
    detail::row_table(a, m, lda, arows);
    detail::row_table(b, k, ldb, brows);
    detail::gemm_core(m, n, k, alpha, arows.data(), brows.data(), beta, c, ldc);
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

/// C = alpha * A * B^T + beta * C, with A given as m rows of k floats (row i
/// at arows[i]) and B as n rows of k floats (row j at brows[j]): every entry is a dot product of a row of A and a row of
/// B, computed in register tiles of 4 x 4 with vector accumulators along k.
/// Built for long k (weight gradients of convolutions: k = output pixels).
/// An edge tile repeats its last row of A or B in the missing places and
/// discards those entries, so it runs at the full tile's speed. (Blocking k
/// to keep the rows in L1 was slower at every size measured, 1200 to 20000.)
inline void sgemm_nt_rows(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* const* arows,
                          const float* const* brows, float beta, float* c, std::size_t ldc) noexcept {
    using detail::fbatch;
    using detail::vw;
    constexpr std::size_t tm = 4, tn = 4;
    const std::size_t kv = k - k % vw;
    for (std::size_t i0 = 0; i0 < m; i0 += tm) {
        const std::size_t mi = std::min(tm, m - i0);
        std::array<const float*, tm> a;
        for (std::size_t r = 0; r < tm; ++r) {
            a[r] = arows[i0 + std::min(r, mi - 1)];
        }
        for (std::size_t j0 = 0; j0 < n; j0 += tn) {
            const std::size_t nj = std::min(tn, n - j0);
            std::array<const float*, tn> b;
            for (std::size_t q = 0; q < tn; ++q) {
                b[q] = brows[j0 + std::min(q, nj - 1)];
            }
            std::array<fbatch, tm * tn> acc;
            for (auto& v : acc) {
                v = fbatch(0.0f);
            }
            for (std::size_t p = 0; p < kv; p += vw) {
                std::array<fbatch, tm> av;
                for (std::size_t r = 0; r < tm; ++r) {
                    av[r] = detail::in_register(fbatch::load_unaligned(a[r] + p));
                }
                for (std::size_t q = 0; q < tn; ++q) {
                    const fbatch bv = detail::in_register(fbatch::load_unaligned(b[q] + p));
                    for (std::size_t r = 0; r < tm; ++r) {
                        acc[r * tn + q] = simd::fma(av[r], bv, acc[r * tn + q]);
                    }
                }
            }
            for (std::size_t r = 0; r < mi; ++r) {
                for (std::size_t q = 0; q < nj; ++q) {
                    float dot = xsimd::hadd(acc[r * tn + q]);
                    for (std::size_t p = kv; p < k; ++p) {
                        dot += a[r][p] * b[q][p];
                    }
                    float& out = c[(i0 + r) * ldc + j0 + q];
                    out = alpha * dot + (beta == 0.0f ? 0.0f : beta * out);
                }
            }
        }
    }
}

/// sgemm_nt_rows with A and B stored row-major (row j of B at b + j * ldb).
inline void sgemm_nt(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                     const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    thread_local std::vector<const float*> arows, brows;
    detail::row_table(a, m, lda, arows);
    detail::row_table(b, n, ldb, brows);
    sgemm_nt_rows(m, n, k, alpha, arows.data(), brows.data(), beta, c, ldc);
}

namespace detail {

/// transpose on rows [i0, i1) and columns [j0, j1) of `in`, in 16 x 16 blocks.
inline void transpose_scalar(std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1, const float* in,
                             std::size_t ldi, float* out, std::size_t ldo) noexcept {
    constexpr std::size_t blk = 16;
    for (std::size_t ib = i0; ib < i1; ib += blk) {
        for (std::size_t jb = j0; jb < j1; jb += blk) {
            const std::size_t ie = std::min(i1, ib + blk), je = std::min(j1, jb + blk);
            for (std::size_t i = ib; i < ie; ++i) {
                for (std::size_t j = jb; j < je; ++j) {
                    out[j * ldo + i] = in[i * ldi + j];
                }
            }
        }
    }
}

#if defined(__AVX__)
/// An 8 x 8 block transposed in registers: pairs of rows interleaved, then
/// pairs of pairs, then the 128-bit halves exchanged (24 shuffles for 64
/// values).
inline void transpose8x8(const float* in, std::size_t ldi, float* out, std::size_t ldo) noexcept {
    __m256 r[8], t[8], u[8];
    for (std::size_t i = 0; i < 8; ++i) {
        r[i] = _mm256_loadu_ps(in + i * ldi);
    }
    for (std::size_t i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);     // a0 b0 a1 b1 | a4 b4 a5 b5
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]); // a2 b2 a3 b3 | a6 b6 a7 b7
    }
    for (std::size_t h = 0; h < 2; ++h) {
        const std::size_t q = 4 * h; // rows 0-3 or 4-7
        u[q + 0] = _mm256_shuffle_ps(t[q + 0], t[q + 2], 0x44); // a0 b0 c0 d0 | a4 b4 c4 d4
        u[q + 1] = _mm256_shuffle_ps(t[q + 0], t[q + 2], 0xEE); // a1 b1 c1 d1 | a5 ...
        u[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44); // a2 ... | a6 ...
        u[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE); // a3 ... | a7 ...
    }
    for (std::size_t j = 0; j < 4; ++j) {
        _mm256_storeu_ps(out + j * ldo, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
        _mm256_storeu_ps(out + (j + 4) * ldo, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
    }
}
#endif

} // namespace detail

/// out[j * ldo + i] = in[i * ldi + j] for an m x n matrix `in`: where AVX is
/// compiled in, 8 x 8 blocks in registers, taken in 32 x 32 tiles (whose
/// rows of both sides stay in L1), the edges element by element. Measured
/// (bench_gemm, one core, ns per value): 0.29–0.31 → 0.06–0.10 on the
/// shapes of a convolution's output gradient and weights, 2.7 → 0.8 on
/// 4608 x 512 (VGG's weight gradient); 8 x 8 blocks without the tiles ran
/// 4608 x 512 at 2.0, slower than the loop.
inline void transpose(std::size_t m, std::size_t n, const float* in, std::size_t ldi, float* out,
                      std::size_t ldo) noexcept {
#if defined(__AVX__)
    constexpr std::size_t tile = 32;
    const std::size_t m8 = m - m % 8, n8 = n - n % 8;
    for (std::size_t it = 0; it < m8; it += tile) {
        for (std::size_t jt = 0; jt < n8; jt += tile) {
            const std::size_t ie = std::min(m8, it + tile), je = std::min(n8, jt + tile);
            for (std::size_t i0 = it; i0 < ie; i0 += 8) {
                for (std::size_t j0 = jt; j0 < je; j0 += 8) {
                    detail::transpose8x8(in + i0 * ldi + j0, ldi, out + j0 * ldo + i0, ldo);
                }
            }
        }
    }
    detail::transpose_scalar(0, m8, n8, n, in, ldi, out, ldo);
    detail::transpose_scalar(m8, m, 0, n, in, ldi, out, ldo);
#else
    detail::transpose_scalar(0, m, 0, n, in, ldi, out, ldo);
#endif
}

/// C = alpha * A * B^T + beta * C as sgemm_nt_rows computes it (A by rows of
/// k floats, B row-major: row j of its n rows at b + j * ldb), on the panel
/// kernel: B is transposed into a [k x n'] copy whose n' - n extra columns
/// are zero, n' = n rounded up to the vector width, so that every column
/// block runs as a full panel; with n' > n the product goes to a padded
/// copy of C first. For the weight gradient of a convolution with few
/// output channels (n), where this beats the dot products when n is close
/// enough to n' (nt_panels_pay).
inline void sgemm_nt_panels(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* const* arows,
                            const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    using detail::vw;
    if (k == 0) { // no products: C = beta * C
        for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t j = 0; j < n; ++j) {
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            }
        }
        return;
    }
    const std::size_t np = (n + vw - 1) / vw * vw;
    thread_local std::vector<float> bt, ct;
    thread_local std::vector<const float*> btrows;
    bt.resize(k * np);
    transpose(n, k, b, ldb, bt.data(), np);
    if (np > n) {
        for (std::size_t p = 0; p < k; ++p) {
            std::fill_n(bt.data() + p * np + n, np - n, 0.0f);
        }
    }
    detail::row_table(bt.data(), k, np, btrows);
    if (np == n) {
        detail::gemm_core(m, n, k, alpha, arows, btrows.data(), beta, c, ldc);
        return;
    }
    ct.resize(m * np);
    detail::gemm_core(m, np, k, alpha, arows, btrows.data(), 0.0f, ct.data(), np);
    for (std::size_t i = 0; i < m; ++i) {
        float* ci = c + i * ldc;
        const float* t = ct.data() + i * np;
        for (std::size_t j = 0; j < n; ++j) {
            ci[j] = t[j] + (beta == 0.0f ? 0.0f : beta * ci[j]);
        }
    }
}

/// Whether sgemm_nt_panels beats the dot products of sgemm_nt_rows for a
/// product with n columns of C (the output channels of a weight gradient):
/// from a two-vector panel's width on (gemm_nr), and above one vector when
/// the padding wastes at most a quarter of the columns. Measured on AVX-512
/// with the layers' own shapes (bench_conv_grad, docs/benchmarks.md): dot
/// products 55-80 GMAC/s on one core; panels 15 (n = 4), 59 (16: one
/// vector, eight accumulators), 51 (19), 62 (24), 67 (26), 75 (30), 78 (32).
[[nodiscard]] constexpr bool nt_panels_pay(std::size_t n) noexcept {
    using detail::vw;
    const std::size_t np = (n + vw - 1) / vw * vw;
    return n >= detail::gemm_nr || (n > vw && 4 * n >= 3 * np);
}

} // namespace frugal::kernels

#endif
