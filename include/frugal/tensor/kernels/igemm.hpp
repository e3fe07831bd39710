#ifndef FRUGAL_TENSOR_KERNELS_IGEMM_HPP
#define FRUGAL_TENSOR_KERNELS_IGEMM_HPP

/// @file
/// Exact 8-bit integer matrix multiplication: C (int32) = A (uint8) * B (int8)
/// or A (int8) * B (uint8), row-major, the product every quantized layer of
/// frugal reduces to.
///
/// The operand types follow the quantizers: range quantization (SPEC §0)
/// gives unsigned codes 0..2^b-1 (activations, errors after the zero point is
/// moved out), symmetric quantization gives signed codes (weights). A layer
/// that has unsigned codes on both sides shifts one of them by -128 and adds
/// 128 * (column sums) back; `packed_s8::col_sums` holds those sums. A
/// product of signed weights and unsigned codes takes the weights as A
/// (`igemm_s8u8_offsets`): the codes then stay as they are and the zero-point
/// correction needs only the weights' row sums.
///
/// B is packed once per call site (`pack_s8`): groups of four rows are
/// interleaved per column, [k/4][n rounded up to 16][4], which is the operand
/// layout of AVX-512 VNNI's `vpdpbusd` (four u8 x s8 products summed into an
/// int32 lane, without saturation). Paths:
/// - AVX-512 VNNI (compiled when the target has avx512vnni and avx512bw,
///   e.g. FRUGAL_ARCH=native on Ice Lake / Cascade Lake or later): 8 rows x
///   32 columns of int32 accumulators per register block (16 columns when B
///   has no more; a remainder of up to 4 rows joins the last block), 64 MACs
///   per instruction;
/// - every other target: the same blocking in plain C++ with int32
///   accumulators, which the compiler vectorizes for its instruction set.
/// Both are exact: the sum of k products |a*b| <= 255*128 fits int32 for
/// k <= 65793, and longer products are refused with an error.
///
/// Single-threaded like sgemm: callers split rows or samples over threads
/// (`igemm_u8s8_parallel` splits rows).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "frugal/error.hpp"
#include "frugal/tensor/parallel.hpp"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512F__)
#include <immintrin.h>
#define FRUGAL_IGEMM_VNNI 1
#else
#define FRUGAL_IGEMM_VNNI 0
#endif

namespace frugal::kernels {

/// Longest inner dimension whose int32 sums cannot overflow: 255 * 128 * k < 2^31.
inline constexpr std::size_t igemm_max_k = 65793;

/// The plain triple loop in int64, for either pairing of 8-bit operands (uint8 A x int8 B, as
/// igemm_u8s8; int8 A x uint8 B, as igemm_s8u8_offsets): the oracle of the tests.
template <class TA, class TB>
inline void igemm_reference(std::size_t m, std::size_t n, std::size_t k, const TA* a, std::size_t lda, const TB* b,
                            std::size_t ldb, std::int32_t* c, std::size_t ldc) noexcept {
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            std::int64_t s = 0;
            for (std::size_t p = 0; p < k; ++p) {
                s += static_cast<std::int64_t>(a[i * lda + p]) * static_cast<std::int64_t>(b[p * ldb + j]);
            }
            c[i * ldc + j] = static_cast<std::int32_t>(s);
        }
    }
}

/// B (k x n, int8) in the kernel's layout, with its column sums.
struct packed_s8 {
    using byte = std::int8_t;                    ///< signed codes
    static constexpr std::size_t col_block = 16; ///< columns are padded to a multiple of this
    std::size_t k = 0, n = 0;
    std::size_t groups = 0;  ///< ceil(k / 4)
    std::size_t stride = 0;  ///< n rounded up to col_block
    std::vector<std::int8_t, xsimd::aligned_allocator<std::int8_t, 64>> data; ///< [groups][stride][4], zero padded
    std::vector<std::int32_t> col_sums; ///< sum over k of each column

    [[nodiscard]] const std::int8_t* group(std::size_t g) const noexcept { return data.data() + g * stride * 4; }
};

/// Packs B (k x n, int8, row-major with leading dimension ldb).
/// @throws frugal::error when k exceeds igemm_max_k (int32 sums could overflow) or is 0
inline void pack_s8(std::size_t k, std::size_t n, const std::int8_t* b, std::size_t ldb, packed_s8& out) {
    if (k == 0 || k > igemm_max_k) {
        throw error(frugal::detail::concat("frugal::kernels::pack_s8: inner dimension ", k, " must be in [1, ", igemm_max_k,
                                   "] (int32 sums of 8-bit products)"));
    }
    out.k = k;
    out.n = n;
    out.groups = (k + 3) / 4;
    out.stride = (n + packed_s8::col_block - 1) / packed_s8::col_block * packed_s8::col_block;
    // + 64 bytes: the kernel may load one vector past the last column block
    out.data.assign(out.groups * out.stride * 4 + 64, 0);
    out.col_sums.assign(n, 0);
    for (std::size_t p = 0; p < k; ++p) {
        const std::size_t g = p / 4, t = p % 4;
        std::int8_t* dst = out.data.data() + g * out.stride * 4 + t;
        const std::int8_t* src = b + p * ldb;
        for (std::size_t j = 0; j < n; ++j) {
            dst[j * 4] = src[j];
            out.col_sums[j] += src[j];
        }
    }
}

namespace detail {
inline void check_pack_k(std::size_t k, const char* where) {
    if (k == 0 || k > igemm_max_k) {
        throw error(frugal::detail::concat(where, ": inner dimension ", k, " must be in [1, ", igemm_max_k,
                                           "] (int32 sums of 8-bit products)"));
    }
}
/// Sizes `out` for k x n; zeroes only what the packers do not write (the
/// padding columns, the rows past k in the last group, the tail), and the
/// column sums (left empty without `sums`).
inline void pack_layout(std::size_t k, std::size_t n, packed_s8& out, bool sums = true) {
    out.k = k;
    out.n = n;
    out.groups = (k + 3) / 4;
    out.stride = (n + packed_s8::col_block - 1) / packed_s8::col_block * packed_s8::col_block;
    out.data.resize(out.groups * out.stride * 4 + 64);
    std::int8_t* d = out.data.data();
    for (std::size_t g = 0; g < out.groups; ++g) {
        std::memset(d + (g * out.stride + n) * 4, 0, (out.stride - n) * 4);
    }
    if (k % 4 != 0) {
        std::memset(d + (out.groups - 1) * out.stride * 4, 0, out.stride * 4);
    }
    std::memset(d + out.groups * out.stride * 4, 0, 64);
    if (sums) {
        out.col_sums.assign(n, 0);
    } else {
        out.col_sums.clear();
    }
}
/// Four rows of n bytes interleaved into n 4-byte words, as they are.
inline void interleave4(const std::uint8_t* __restrict r0, const std::uint8_t* __restrict r1,
                        const std::uint8_t* __restrict r2, const std::uint8_t* __restrict r3, std::size_t n,
                        std::uint8_t* __restrict d) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        d[4 * i] = r0[i];
        d[4 * i + 1] = r1[i];
        d[4 * i + 2] = r2[i];
        d[4 * i + 3] = r3[i];
    }
}
} // namespace detail

/// Packs B = (codes - 128) for unsigned codes (k x n, row-major, leading
/// dimension ldb): how a layer turns an unsigned operand into the kernel's
/// signed one (the caller adds 128 * (row sums of A) back).
inline void pack_u8_shifted(std::size_t k, std::size_t n, const std::uint8_t* b, std::size_t ldb, packed_s8& out) {
    detail::check_pack_k(k, "frugal::kernels::pack_u8_shifted");
    detail::pack_layout(k, n, out);
    std::int32_t* sums = out.col_sums.data();
    for (std::size_t g = 0; g < out.groups; ++g) {
        // four rows at a time: one 32-bit word per column, the -128 shift as a xor
        const std::size_t rows = std::min<std::size_t>(4, k - 4 * g);
        const std::uint8_t* r[4];
        for (std::size_t t = 0; t < 4; ++t) {
            r[t] = t < rows ? b + (4 * g + t) * ldb : nullptr;
        }
        std::int8_t* dst = out.data.data() + g * out.stride * 4;
        if (rows == 4) {
            const std::uint8_t *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
            for (std::size_t j = 0; j < n; ++j) {
                const std::uint32_t v = static_cast<std::uint32_t>(r0[j]) | (static_cast<std::uint32_t>(r1[j]) << 8) |
                                        (static_cast<std::uint32_t>(r2[j]) << 16) |
                                        (static_cast<std::uint32_t>(r3[j]) << 24);
                const std::uint32_t shifted = v ^ 0x80808080u;
                std::memcpy(dst + 4 * j, &shifted, 4);
                sums[j] += static_cast<std::int32_t>(r0[j]) + static_cast<std::int32_t>(r1[j]) +
                           static_cast<std::int32_t>(r2[j]) + static_cast<std::int32_t>(r3[j]) - 512;
            }
        } else {
            for (std::size_t t = 0; t < rows; ++t) {
                for (std::size_t j = 0; j < n; ++j) {
                    const auto v = static_cast<std::int8_t>(static_cast<int>(r[t][j]) - 128);
                    dst[j * 4 + t] = v;
                    sums[j] += v;
                }
            }
        }
    }
}

/// As pack_u8_shifted for B given transposed: bt is n x k (row j holds
/// column j of B), leading dimension ldt. Four consecutive k of a column are
/// one 32-bit store.
inline void pack_u8_shifted_transposed(std::size_t k, std::size_t n, const std::uint8_t* bt, std::size_t ldt,
                                       packed_s8& out) {
    detail::check_pack_k(k, "frugal::kernels::pack_u8_shifted_transposed");
    detail::pack_layout(k, n, out);
    const std::size_t full = k / 4;
    std::int8_t* d = out.data.data();
    const std::size_t stride = out.stride;
    // the full groups: word g of row j goes to (g, j), a transposition of 4-byte words
    const auto word = [&](const std::uint8_t* src, std::size_t g, std::size_t j) {
        std::uint32_t v;
        std::memcpy(&v, src + 4 * g, 4);
        v ^= 0x80808080u; // u - 128 in each byte, as int8
        std::memcpy(d + (g * stride + j) * 4, &v, 4);
    };
    std::size_t j0 = 0;
#if defined(__SSE2__)
    // blocks of 4 rows x 4 words, transposed in registers (two rounds of unpacks)
    const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
    for (; j0 + 4 <= n; j0 += 4) {
        const std::uint8_t* s0 = bt + j0 * ldt;
        std::size_t g = 0;
        for (; g + 4 <= full; g += 4) {
            const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + 4 * g));
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + ldt + 4 * g));
            const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + 2 * ldt + 4 * g));
            const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + 3 * ldt + 4 * g));
            const __m128i ab_lo = _mm_unpacklo_epi32(a, b), ce_lo = _mm_unpacklo_epi32(c, e);
            const __m128i ab_hi = _mm_unpackhi_epi32(a, b), ce_hi = _mm_unpackhi_epi32(c, e);
            const __m128i w[4] = {_mm_unpacklo_epi64(ab_lo, ce_lo), _mm_unpackhi_epi64(ab_lo, ce_lo),
                                  _mm_unpacklo_epi64(ab_hi, ce_hi), _mm_unpackhi_epi64(ab_hi, ce_hi)};
            for (std::size_t t = 0; t < 4; ++t) {
                _mm_storeu_si128(reinterpret_cast<__m128i*>(d + ((g + t) * stride + j0) * 4), _mm_xor_si128(w[t], flip));
            }
        }
        for (; g < full; ++g) {
            for (std::size_t t = 0; t < 4; ++t) {
                word(s0 + t * ldt, g, j0 + t);
            }
        }
    }
#endif
    for (std::size_t j = j0; j < n; ++j) {
        for (std::size_t g = 0; g < full; ++g) {
            word(bt + j * ldt, g, j);
        }
    }
    for (std::size_t j = 0; j < n; ++j) {
        const std::uint8_t* src = bt + j * ldt;
        std::int32_t sum = 0;
        for (std::size_t p = full * 4; p < k; ++p) {
            out.data[(p / 4 * out.stride + j) * 4 + p % 4] = static_cast<std::int8_t>(static_cast<int>(src[p]) - 128);
        }
        for (std::size_t p = 0; p < k; ++p) {
            sum += static_cast<std::int32_t>(src[p]);
        }
        out.col_sums[j] = sum - 128 * static_cast<std::int32_t>(k);
    }
}

namespace detail {

/// Four consecutive bytes of a row from group g on, zero past k, as one int32.
inline std::int32_t load4(const void* row, std::size_t g, std::size_t k) noexcept {
    std::int32_t v = 0;
    const std::size_t at = g * 4;
    std::memcpy(&v, static_cast<const std::uint8_t*>(row) + at, std::min<std::size_t>(4, k - at));
    return v;
}

/// Rows of A at a fixed distance (a row-major matrix) of `Byte`s: uint8 (unsigned codes, B then
/// signed) or int8 (signed codes, B then unsigned).
template <class Byte>
struct basic_strided_rows {
    using byte = Byte;
    const Byte* a;
    std::size_t lda;
    [[nodiscard]] const Byte* row(std::size_t r) const noexcept { return a + r * lda; }
    [[nodiscard]] basic_strided_rows from(std::size_t i) const noexcept { return {a + i * lda, lda}; }
};
using strided_rows = basic_strided_rows<std::uint8_t>;
/// B given as groups of four rows anywhere: group g (four `Byte`s per column, columns contiguous)
/// at base + off[g] (an implicit packing, e.g. channel quads of interleaved codes viewed at a tap's
/// offset). The VNNI path reads no column past n (masked loads); the
/// portable path reads whole blocks of 16 columns, up to 60 bytes past a
/// group's last column.
template <class Byte>
struct basic_offset_cols {
    using byte = Byte;
    const Byte* base;
    const std::size_t* off;
    std::size_t k = 0, n = 0, groups = 0; ///< k = 4 groups
    [[nodiscard]] const Byte* group(std::size_t g) const noexcept { return base + off[g]; }
};
using offset_cols_u8 = basic_offset_cols<std::uint8_t>;
/// Rows of A anywhere (an implicit im2col: each row a view into the codes).
struct pointer_rows {
    using byte = std::uint8_t;
    const std::uint8_t* const* p;
    [[nodiscard]] const std::uint8_t* row(std::size_t r) const noexcept { return p[r]; }
    [[nodiscard]] pointer_rows from(std::size_t i) const noexcept { return {p + i}; }
};

/// Whether A holds the signed operand (int8 rows, unsigned B) rather than the unsigned one.
template <class Rows, class Cols>
inline constexpr bool signed_rows = std::is_same_v<typename Rows::byte, std::int8_t>;
template <class Rows, class Cols>
inline constexpr bool operands_ok =
    std::is_same_v<typename Rows::byte, std::uint8_t> != std::is_same_v<typename Cols::byte, std::uint8_t> &&
    (std::is_same_v<typename Rows::byte, std::uint8_t> || std::is_same_v<typename Rows::byte, std::int8_t>) &&
    (std::is_same_v<typename Cols::byte, std::uint8_t> || std::is_same_v<typename Cols::byte, std::int8_t>);

#if FRUGAL_IGEMM_VNNI
/// R rows (R <= 12) x up to 16 V columns (V = 1 or 2 vectors) starting at column j0; Acc: C += instead
/// of C =. vpdpbusd multiplies unsigned bytes (its first operand) by signed ones (its second):
/// A's broadcast word is the first when A is unsigned, the second when A is signed.
template <int R, int V, bool Acc, class Rows, class Cols>
inline void igemm_vnni_block(Rows a, const Cols& b, std::size_t j0, std::size_t cols, std::int32_t* c,
                             std::size_t ldc) noexcept {
    static_assert(operands_ok<Rows, Cols>, "one operand of the 8-bit product is uint8, the other int8");
    const auto dot = [](__m512i acc, __m512i av, __m512i bv) {
        if constexpr (signed_rows<Rows, Cols>) {
            return _mm512_dpbusd_epi32(acc, bv, av);
        } else {
            return _mm512_dpbusd_epi32(acc, av, bv);
        }
    };
    __mmask16 mask[V];
    for (int v = 0; v < V; ++v) {
        const std::size_t lo = 16 * static_cast<std::size_t>(v);
        mask[v] = cols >= lo + 16 ? __mmask16(0xFFFF)
                                  : (cols <= lo ? __mmask16(0) : static_cast<__mmask16>((1u << (cols - lo)) - 1u));
    }
    __m512i acc[R][V];
    const typename Rows::byte* ar[R];
    for (int r = 0; r < R; ++r) {
        ar[r] = a.row(static_cast<std::size_t>(r));
        for (int v = 0; v < V; ++v) {
            if constexpr (Acc) {
                acc[r][v] = _mm512_maskz_loadu_epi32(mask[v], c + r * ldc + j0 + 16 * v);
            } else {
                acc[r][v] = _mm512_setzero_si512();
            }
        }
    }
    const std::size_t full = b.k / 4; // groups with four real bytes in every row
    __m512i bv[V];
    // B is loaded whole for a full block of columns and masked for the last, partial one, so that
    // no load reaches past the last column (masked loads in the whole loop cost a quarter of the
    // kernel's speed on this CPU)
    const auto groups = [&](auto load) {
        for (std::size_t g = 0; g < full; ++g) {
            const auto* bp = b.group(g) + j0 * 4;
            for (int v = 0; v < V; ++v) {
                bv[v] = load(bp + 64 * v, v);
            }
            for (int r = 0; r < R; ++r) {
                std::int32_t x;
                std::memcpy(&x, ar[r] + g * 4, 4);
                const __m512i av = _mm512_set1_epi32(x);
                for (int v = 0; v < V; ++v) {
                    acc[r][v] = dot(acc[r][v], av, bv[v]);
                }
            }
        }
    };
    if (cols >= 16 * static_cast<std::size_t>(V)) {
        groups([](const void* p, int) { return _mm512_loadu_si512(p); });
    } else {
        groups([&](const void* p, int v) { return _mm512_maskz_loadu_epi32(mask[v], p); });
    }
    if (full < b.groups) { // the last, partial group
        const auto* bp = b.group(full) + j0 * 4;
        for (int v = 0; v < V; ++v) {
            bv[v] = _mm512_maskz_loadu_epi32(mask[v], bp + 64 * v); // never past the last column
        }
        for (int r = 0; r < R; ++r) {
            const __m512i av = _mm512_set1_epi32(load4(ar[r], full, b.k));
            for (int v = 0; v < V; ++v) {
                acc[r][v] = dot(acc[r][v], av, bv[v]);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        for (int v = 0; v < V; ++v) {
            if (mask[v] != 0) {
                _mm512_mask_storeu_epi32(c + r * ldc + j0 + 16 * v, mask[v], acc[r][v]);
            }
        }
    }
}
#endif

/// The portable path: R rows x up to 16 columns, int32 accumulators.
template <int R, bool Acc, class Rows, class Cols>
inline void igemm_generic_block(Rows a, const Cols& b, std::size_t j0, std::size_t cols, std::int32_t* c,
                                std::size_t ldc) noexcept {
    static_assert(operands_ok<Rows, Cols>, "one operand of the 8-bit product is uint8, the other int8");
    constexpr std::size_t nb = packed_s8::col_block;
    std::int32_t acc[R][nb] = {};
    for (std::size_t g = 0; g < b.groups; ++g) {
        const auto* bp = b.group(g) + j0 * 4;
        for (int r = 0; r < R; ++r) {
            typename Rows::byte av[4];
            const std::int32_t v = load4(a.row(static_cast<std::size_t>(r)), g, b.k);
            std::memcpy(av, &v, 4);
            for (std::size_t j = 0; j < nb; ++j) {
                acc[r][j] += static_cast<std::int32_t>(av[0]) * static_cast<std::int32_t>(bp[j * 4]) +
                             static_cast<std::int32_t>(av[1]) * static_cast<std::int32_t>(bp[j * 4 + 1]) +
                             static_cast<std::int32_t>(av[2]) * static_cast<std::int32_t>(bp[j * 4 + 2]) +
                             static_cast<std::int32_t>(av[3]) * static_cast<std::int32_t>(bp[j * 4 + 3]);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        std::int32_t* cr = c + r * ldc + j0;
        const std::size_t n = std::min(cols, nb);
        for (std::size_t j = 0; j < n; ++j) {
            cr[j] = Acc ? cr[j] + acc[r][j] : acc[r][j];
        }
    }
}

} // namespace detail

namespace detail {

/// Calls f(std::integral_constant<int, R>) for R == rows, 1 <= rows <= Max.
template <int Max, class F>
inline void with_rows(std::size_t rows, F&& f) {
    if constexpr (Max > 0) {
        if (rows == static_cast<std::size_t>(Max)) {
            f(std::integral_constant<int, Max>{});
        } else {
            with_rows<Max - 1>(rows, f);
        }
    }
}

/// Tiles C into Mr x Nr blocks; block(rows, a, j0, cols, c) computes one. A remainder of at most
/// Mr / 2 rows joins the last full block (e.g. 17 rows: 8 + 9, not 8 + 8 + 1), since a block of
/// one row reloads B for a single row's products.
template <int Mr, std::size_t Nr, class Rows, class Cols, class Block>
inline void igemm_tiles(std::size_t m, Rows a, const Cols& b, std::int32_t* c, std::size_t ldc, Block&& block) {
    for (std::size_t j0 = 0; j0 < b.n; j0 += Nr) {
        const std::size_t cols = std::min(Nr, b.n - j0);
        std::size_t i = 0;
        for (; i + Mr <= m; i += Mr) {
            const std::size_t rest = m - i - Mr;
            if (rest > 0 && rest <= static_cast<std::size_t>(Mr / 2)) {
                with_rows<Mr + Mr / 2>(m - i, [&](auto rows) { block(rows, a.from(i), j0, cols, c + i * ldc); });
                i = m;
                break;
            }
            block(std::integral_constant<int, Mr>{}, a.from(i), j0, cols, c + i * ldc);
        }
        if (i < m) {
            with_rows<Mr - 1>(m - i, [&](auto rows) { block(rows, a.from(i), j0, cols, c + i * ldc); });
        }
    }
}

/// C (m x b.n) = (or += with Acc) the rows of A times B.
template <bool Acc, class Rows, class Cols>
inline void igemm_rows(std::size_t m, Rows a, const Cols& b, std::int32_t* c, std::size_t ldc) noexcept {
#if FRUGAL_IGEMM_VNNI
    if (b.n <= 16) { // one vector of columns: the second would be all mask
        igemm_tiles<8, 16>(m, a, b, c, ldc, [&](auto rows, Rows ar, std::size_t j0, std::size_t cols, std::int32_t* cr) {
            igemm_vnni_block<decltype(rows)::value, 1, Acc>(ar, b, j0, cols, cr, ldc);
        });
        return;
    }
    igemm_tiles<8, 32>(m, a, b, c, ldc, [&](auto rows, Rows ar, std::size_t j0, std::size_t cols, std::int32_t* cr) {
        igemm_vnni_block<decltype(rows)::value, 2, Acc>(ar, b, j0, cols, cr, ldc);
    });
#else
    igemm_tiles<4, packed_s8::col_block>(m, a, b, c, ldc,
                                         [&](auto rows, Rows ar, std::size_t j0, std::size_t cols, std::int32_t* cr) {
                                             igemm_generic_block<decltype(rows)::value, Acc>(ar, b, j0, cols, cr, ldc);
                                         });
#endif
}

} // namespace detail

/// C (m x b.n, int32, leading dimension ldc) = A (m x b.k, uint8, leading
/// dimension lda) * B (packed), exactly.
inline void igemm_u8s8(std::size_t m, const std::uint8_t* a, std::size_t lda, const packed_s8& b, std::int32_t* c,
                       std::size_t ldc) noexcept {
    detail::igemm_rows<false>(m, detail::strided_rows{a, lda}, b, c, ldc);
}

/// C (m x b.n) += A x B where row i of A (b.k codes) starts at rows[i]: an
/// implicit matrix, e.g. the rows of an im2col that are views into padded
/// codes. Exact like igemm_u8s8 as long as C's sums stay in int32 (the
/// caller bounds the total inner length by igemm_max_k).
inline void igemm_u8s8_rows_accumulate(std::size_t m, const std::uint8_t* const* rows, const packed_s8& b,
                                       std::int32_t* c, std::size_t ldc) noexcept {
    detail::igemm_rows<true>(m, detail::pointer_rows{rows}, b, c, ldc);
}

/// C (m x b.n, leading dimension ldc) = A (m x b.k, int8: signed codes, leading dimension lda) * B
/// (uint8: unsigned codes) where B is not packed but viewed in place (detail::offset_cols_u8:
/// group g of four rows at base + off[g], 4-byte words per column, b.k a multiple of 4), exactly
/// (|a b| <= 128 * 255 as for igemm_u8s8). With the signed weights as A and the unsigned codes
/// as they are in B, a layer's zero-point correction needs only A's row sums (no shifted operand,
/// no column sums). The portable path may read 60 bytes past a group's last column (see
/// detail::basic_offset_cols).
inline void igemm_s8u8_offsets(std::size_t m, const std::int8_t* a, std::size_t lda, const detail::offset_cols_u8& b,
                               std::int32_t* c, std::size_t ldc) noexcept {
    detail::igemm_rows<false>(m, detail::basic_strided_rows<std::int8_t>{a, lda}, b, c, ldc);
}

/// igemm_u8s8 with the rows of A and C split over frugal's threads.
inline void igemm_u8s8_parallel(std::size_t m, const std::uint8_t* a, std::size_t lda, const packed_s8& b,
                                std::int32_t* c, std::size_t ldc) {
    parallel_chunks(m, [&](std::size_t lo, std::size_t hi, int) {
        igemm_u8s8(hi - lo, a + lo * lda, lda, b, c + lo * ldc, ldc);
    });
}

/// Which path igemm_u8s8 was compiled with.
[[nodiscard]] constexpr const char* igemm_path() noexcept { return FRUGAL_IGEMM_VNNI ? "avx512-vnni" : "generic"; }

} // namespace frugal::kernels

#endif
