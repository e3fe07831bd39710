// Kernels against their plain references on odd shapes.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <frugal/numeric/random.hpp>
#include <frugal/tensor/allocator.hpp>
#include <frugal/tensor/tensor.hpp>
#include <frugal/tensor/im2col.hpp>
#include <frugal/tensor/kernels/elementwise.hpp>
#include <frugal/tensor/kernels/gemm.hpp>
#include <frugal/tensor/kernels/igemm.hpp>
#include <frugal/tensor/parallel.hpp>

namespace fr = frugal;

namespace {
std::vector<float> random_vec(std::size_t n, fr::rng& g) {
    std::vector<float> v(n);
    for (auto& x : v) {
        x = g.uniform() * 2.0f - 1.0f;
    }
    return v;
}
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    }
    return d;
}
} // namespace

TEST_SUITE("tensor/kernels") {

TEST_CASE("sgemm equals the reference on odd shapes") {
    fr::rng g(1);
    const std::size_t sizes[] = {1, 3, 17, 65, 100};
    for (std::size_t m : sizes) {
        for (std::size_t n : sizes) {
            for (std::size_t k : {1u, 3u, 17u, 65u}) {
                for (float beta : {0.0f, 0.5f}) {
                    const auto a = random_vec(m * k, g), b = random_vec(k * n, g);
                    auto c = random_vec(m * n, g), r = c, s = c;
                    fr::kernels::sgemm_simd(m, n, k, 1.5f, a.data(), k, b.data(), n, beta, c.data(), n);
                    fr::kernels::sgemm_reference(m, n, k, 1.5f, a.data(), k, b.data(), n, beta, r.data(), n);
                    fr::kernels::sgemm(m, n, k, 1.5f, a.data(), k, b.data(), n, beta, s.data(), n);
                    INFO(m << "x" << n << "x" << k << " beta " << beta);
                    CHECK(max_diff(c, r) < 1e-4 * static_cast<double>(k));
                    CHECK(max_diff(s, r) < 1e-4 * static_cast<double>(k));
                }
            }
        }
    }
    // leading dimensions larger than the matrix
    const auto a = random_vec(5 * 9, g), b = random_vec(7 * 40, g);
    auto c = random_vec(5 * 33, g), r = c;
    fr::kernels::sgemm_simd(5, 33, 7, 1.0f, a.data(), 9, b.data(), 40, 0.0f, c.data(), 33);
    fr::kernels::sgemm_reference(5, 33, 7, 1.0f, a.data(), 9, b.data(), 40, 0.0f, r.data(), 33);
    CHECK(max_diff(c, r) < 1e-4);
}

namespace {
/// C = alpha * A * B^T + beta * C by `gemm(m, n, k, alpha, a, b_transposed, beta, c, ldc)` (A and B^T
/// row-major with leading dimension k) against the reference on odd shapes: edge tiles of 1-3 rows or
/// columns (m, n not multiples of 4), n below, at and past the vector width, k zero (C = beta C),
/// below, at and past the vector width, and a long k as in a weight gradient.
template <class Gemm>
void check_nt_kernel(Gemm&& gemm, std::uint64_t seed) {
    fr::rng g(seed);
    for (std::size_t m : {1u, 3u, 4u, 17u}) {
        for (std::size_t n : {1u, 5u, 8u, 15u, 16u, 19u, 30u, 32u, 65u}) {
            for (std::size_t k : {0u, 1u, 15u, 16u, 33u, 100u, 1000u}) {
                const auto a = random_vec(m * k, g), bt = random_vec(n * k, g);
                std::vector<float> b(k * n);
                fr::kernels::transpose(n, k, bt.data(), k, b.data(), n);
                auto c = random_vec(m * n, g), r = c;
                gemm(m, n, k, 2.0f, a.data(), bt.data(), 1.0f, c.data(), n);
                fr::kernels::sgemm_reference(m, n, k, 2.0f, a.data(), k, b.data(), n, 1.0f, r.data(), n);
                INFO(m << "x" << n << "x" << k);
                CHECK(max_diff(c, r) <= 1e-4 * static_cast<double>(k)); // k = 0: exactly beta C
                // beta = 0 never reads C (NaN there stays out of the result), and
                // a leading dimension of C past its width leaves the gap alone
                const std::size_t ldc = n + 3;
                std::vector<float> c0(m * ldc, std::numeric_limits<float>::quiet_NaN()), r0(m * n, 0.0f);
                gemm(m, n, k, 1.0f, a.data(), bt.data(), 0.0f, c0.data(), ldc);
                fr::kernels::sgemm_reference(m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, r0.data(), n);
                double worst = 0.0;
                bool gap_untouched = true;
                for (std::size_t i = 0; i < m; ++i) {
                    for (std::size_t j = 0; j < ldc; ++j) {
                        const float v = c0[i * ldc + j];
                        if (j < n) {
                            worst = std::isnan(v) ? 1e30 : std::max(worst, std::abs(static_cast<double>(v - r0[i * n + j])));
                        } else {
                            gap_untouched = gap_untouched && std::isnan(v);
                        }
                    }
                }
                CHECK(worst <= 1e-4 * static_cast<double>(k));
                CHECK(gap_untouched);
            }
        }
    }
}
} // namespace

TEST_CASE("transpose moves every value and nothing else, on blocks and edges") {
    // sides below, at and past the 8 x 8 register block, leading dimensions past the widths
    fr::rng g(4);
    for (std::size_t m : {1u, 7u, 8u, 9u, 16u, 17u, 33u}) {
        for (std::size_t n : {1u, 5u, 8u, 15u, 16u, 40u}) {
            const std::size_t ldi = n + 3, ldo = m + 5;
            const auto in = random_vec(m * ldi, g);
            std::vector<float> out(n * ldo, std::numeric_limits<float>::quiet_NaN());
            fr::kernels::transpose(m, n, in.data(), ldi, out.data(), ldo);
            bool same = true, gap_untouched = true;
            for (std::size_t j = 0; j < n; ++j) {
                for (std::size_t i = 0; i < ldo; ++i) {
                    if (i < m) {
                        same = same && out[j * ldo + i] == in[i * ldi + j];
                    } else {
                        gap_untouched = gap_untouched && std::isnan(out[j * ldo + i]);
                    }
                }
            }
            INFO(m << " x " << n);
            CHECK(same);
            CHECK(gap_untouched);
        }
    }
}

TEST_CASE("sgemm_nt (dot products) equals the reference on odd shapes") {
    check_nt_kernel(
        [](std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, const float* bt, float beta,
           float* c, std::size_t ldc) { fr::kernels::sgemm_nt(m, n, k, alpha, a, k, bt, k, beta, c, ldc); },
        2);
}

TEST_CASE("sgemm_nt_panels (zero-padded panels) equals the reference on odd shapes") {
    check_nt_kernel(
        [](std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, const float* bt, float beta,
           float* c, std::size_t ldc) {
            std::vector<const float*> arows(m);
            for (std::size_t i = 0; i < m; ++i) {
                arows[i] = a + i * k;
            }
            fr::kernels::sgemm_nt_panels(m, n, k, alpha, arows.data(), bt, k, beta, c, ldc);
        },
        3);
}

TEST_CASE("int8 gemm equals the reference exactly on odd shapes") {
    INFO("path " << fr::kernels::igemm_path());
    fr::rng g(5);
    for (std::size_t m : {1u, 2u, 7u, 8u, 9u, 17u, 33u}) {
        for (std::size_t n : {1u, 5u, 16u, 17u, 31u, 32u, 33u, 70u}) {
            for (std::size_t k : {1u, 2u, 3u, 4u, 5u, 9u, 63u, 144u, 301u}) {
                const std::size_t lda = k + 3, ldb = n + 2, ldc = n + 1; // leading dimensions past the width
                std::vector<std::uint8_t> a(m * lda);
                std::vector<std::int8_t> b(k * ldb);
                for (auto& v : a) {
                    v = static_cast<std::uint8_t>(g.below(256));
                }
                for (auto& v : b) {
                    v = static_cast<std::int8_t>(static_cast<int>(g.below(256)) - 128);
                }
                std::vector<std::int32_t> c(m * ldc, 7), ref(m * ldc, 7);
                fr::kernels::packed_s8 p;
                fr::kernels::pack_s8(k, n, b.data(), ldb, p);
                fr::kernels::igemm_u8s8(m, a.data(), lda, p, c.data(), ldc);
                fr::kernels::igemm_reference(m, n, k, a.data(), lda, b.data(), ldb, ref.data(), ldc);
                INFO("m " << m << " n " << n << " k " << k);
                CHECK(c == ref); // the padding column (7) must be left alone as well
                // rows given as pointers (in reverse order), added to C: C + A B
                std::vector<const std::uint8_t*> rows(m);
                std::vector<std::uint8_t> ar(m * lda);
                for (std::size_t i = 0; i < m; ++i) {
                    std::copy(a.begin() + static_cast<std::ptrdiff_t>(i * lda),
                              a.begin() + static_cast<std::ptrdiff_t>((i + 1) * lda),
                              ar.begin() + static_cast<std::ptrdiff_t>((m - 1 - i) * lda));
                    rows[i] = ar.data() + (m - 1 - i) * lda;
                }
                std::vector<std::int32_t> acc(m * ldc, 7);
                fr::kernels::igemm_u8s8_rows_accumulate(m, rows.data(), p, acc.data(), ldc);
                bool added = true;
                for (std::size_t i = 0; i < m; ++i) {
                    for (std::size_t j = 0; j < ldc; ++j) {
                        added = added && acc[i * ldc + j] == (j < n ? ref[i * ldc + j] + 7 : 7);
                    }
                }
                CHECK(added);
                for (std::size_t j = 0; j < n; ++j) {
                    std::int32_t s = 0;
                    for (std::size_t q = 0; q < k; ++q) {
                        s += b[q * ldb + j];
                    }
                    REQUIRE(p.col_sums[j] == s);
                }
            }
        }
    }
}

TEST_CASE("packing unsigned codes (plain and transposed) equals pack_s8 of the shifted codes") {
    fr::rng g(8);
    for (std::size_t k : {1u, 3u, 4u, 6u, 49u, 144u}) {
        for (std::size_t n : {1u, 16u, 17u, 50u}) {
            const std::size_t ld = n + 3, ldt = k + 5;
            std::vector<std::uint8_t> u(k * ld), ut(n * ldt);
            std::vector<std::int8_t> shifted(k * ld);
            for (std::size_t p = 0; p < k; ++p) {
                for (std::size_t j = 0; j < n; ++j) {
                    const auto v = static_cast<std::uint8_t>(g.below(256));
                    u[p * ld + j] = v;
                    ut[j * ldt + p] = v;
                    shifted[p * ld + j] = static_cast<std::int8_t>(static_cast<int>(v) - 128);
                }
            }
            fr::kernels::packed_s8 ref, a, b;
            fr::kernels::pack_s8(k, n, shifted.data(), ld, ref);
            // reuse of a dirty buffer: the padding must be zeroed again
            a.data.assign(ref.data.size() + 200, 99);
            b.data.assign(ref.data.size(), -5);
            fr::kernels::pack_u8_shifted(k, n, u.data(), ld, a);
            fr::kernels::pack_u8_shifted_transposed(k, n, ut.data(), ldt, b);
            INFO("k " << k << " n " << n);
            REQUIRE(a.data.size() == ref.data.size());
            CHECK(a.data == ref.data);
            CHECK(b.data == ref.data);
            CHECK(a.col_sums == ref.col_sums);
            CHECK(b.col_sums == ref.col_sums);
        }
    }
    fr::kernels::packed_s8 p;
    std::vector<std::uint8_t> codes(fr::kernels::igemm_max_k + 1); // as long as the refused inner dimension
    CHECK_THROWS_AS(fr::kernels::pack_u8_shifted(0, 1, codes.data(), 1, p), fr::error);
    CHECK_THROWS_AS(fr::kernels::pack_u8_shifted_transposed(codes.size(), 1, codes.data(), codes.size(), p),
                    fr::error);
}

TEST_CASE("int8 gemm of signed A and unsigned B viewed in place (groups at offsets) equals the reference") {
    fr::rng g(6);
    for (std::size_t m : {1u, 5u, 8u, 13u, 17u}) {
        for (std::size_t n : {1u, 7u, 16u, 33u, 63u, 100u}) {
            for (std::size_t groups : {1u, 3u, 36u}) {
                const std::size_t k = 4 * groups, lda = k + 1;
                // groups scattered through a buffer, in a shuffled order, each 4 n bytes + slack for the kernel
                std::vector<std::size_t> off(groups);
                for (std::size_t q = 0; q < groups; ++q) {
                    off[q] = ((q * 7) % groups) * (4 * n + 80) + 3;
                }
                std::vector<std::uint8_t> buf(groups * (4 * n + 80) + 64);
                for (auto& v : buf) {
                    v = static_cast<std::uint8_t>(g.below(256));
                }
                std::vector<std::int8_t> a(m * lda);
                for (auto& v : a) {
                    v = static_cast<std::int8_t>(static_cast<int>(g.below(256)) - 128);
                }
                std::vector<std::uint8_t> b(k * n); // the same B, explicit
                for (std::size_t q = 0; q < groups; ++q) {
                    for (std::size_t j = 0; j < n; ++j) {
                        for (std::size_t t = 0; t < 4; ++t) {
                            b[(4 * q + t) * n + j] = buf[off[q] + 4 * j + t];
                        }
                    }
                }
                const fr::kernels::detail::offset_cols_u8 view{buf.data(), off.data(), k, n, groups};
                std::vector<std::int32_t> c(m * n, 5), ref(m * n);
                fr::kernels::igemm_s8u8_offsets(m, a.data(), lda, view, c.data(), n);
                fr::kernels::igemm_reference(m, n, k, a.data(), lda, b.data(), n, ref.data(), n);
                INFO("m " << m << " n " << n << " k " << k);
                CHECK(c == ref);
            }
        }
    }
}

TEST_CASE("int8 gemm is exact at the extremes and refuses an inner dimension that could overflow") {
    // every product at its largest magnitude, over the longest allowed k
    const std::size_t k = fr::kernels::igemm_max_k, m = 3, n = 18;
    std::vector<std::uint8_t> a(m * k, 255);
    std::vector<std::int8_t> b(k * n, -128);
    for (std::size_t j = 0; j < n; j += 2) {
        for (std::size_t q = 0; q < k; ++q) {
            b[q * n + j] = 127;
        }
    }
    fr::kernels::packed_s8 p;
    fr::kernels::pack_s8(k, n, b.data(), n, p);
    std::vector<std::int32_t> c(m * n);
    fr::kernels::igemm_u8s8_parallel(m, a.data(), k, p, c.data(), n);
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            const std::int64_t expect = static_cast<std::int64_t>(k) * 255 * (j % 2 == 0 ? 127 : -128);
            REQUIRE(c[i * n + j] == expect);
        }
    }
    try {
        fr::kernels::pack_s8(k + 1, n, b.data(), n, p);
        FAIL("no error");
    } catch (const fr::error& e) {
        CHECK(std::string(e.what()).find("65793") != std::string::npos);
    }
    CHECK_THROWS_AS(fr::kernels::pack_s8(0, n, b.data(), n, p), fr::error);
}

TEST_CASE("int8 gemm of signed A and unsigned B is exact at the extremes over the longest inner dimension") {
    // A at -128 and 127 (alternate rows), B at 255: |sum| = 128 * 255 * 65793, just below 2^31
    const std::size_t k = fr::kernels::igemm_max_k, m = 4, n = 21, groups = (k + 3) / 4, kk = 4 * groups;
    std::vector<std::int8_t> a(m * kk, 0);
    for (std::size_t i = 0; i < m; ++i) {
        std::fill(a.begin() + static_cast<std::ptrdiff_t>(i * kk), a.begin() + static_cast<std::ptrdiff_t>(i * kk + k),
                  static_cast<std::int8_t>(i % 2 == 0 ? -128 : 127));
    }
    std::vector<std::uint8_t> buf(4 * n + 64, 255); // every group the same words
    std::vector<std::size_t> off(groups, 0);
    const fr::kernels::detail::offset_cols_u8 view{buf.data(), off.data(), kk, n, groups};
    std::vector<std::int32_t> c(m * n);
    fr::kernels::igemm_s8u8_offsets(m, a.data(), kk, view, c.data(), n);
    for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            const std::int64_t expect = static_cast<std::int64_t>(k) * 255 * (i % 2 == 0 ? -128 : 127);
            REQUIRE(c[i * n + j] == expect);
        }
    }
}

TEST_CASE("im2col equals the reference and col2im is its adjoint") {
    fr::rng g(3);
    const fr::conv_geometry geos[] = {{3, 7, 9, 3, 1, 1}, {2, 8, 8, 3, 2, 1}, {1, 5, 6, 5, 1, 2},
                                      {4, 6, 6, 1, 2, 0}, {2, 9, 7, 3, 3, 0}, {1, 3, 3, 3, 1, 2}};
    for (const auto& geo : geos) {
        REQUIRE(geo.valid());
        const auto x = random_vec(geo.c * geo.h * geo.w, g);
        const std::size_t ld = geo.cols() + 3;
        std::vector<float> col(geo.rows() * ld, 9.0f), ref(geo.rows() * ld, 9.0f);
        fr::im2col(x.data(), geo, col.data(), ld);
        fr::im2col_reference(x.data(), geo, ref.data(), ld);
        CHECK(max_diff(col, ref) == 0.0);
        // <im2col(x), c> == <x, col2im(c)>
        const auto c = random_vec(geo.rows() * ld, g);
        std::vector<float> back(x.size(), 0.0f);
        fr::col2im(c.data(), geo, ld, back.data());
        double lhs = 0.0, rhs = 0.0;
        for (std::size_t r = 0; r < geo.rows(); ++r) {
            for (std::size_t j = 0; j < geo.cols(); ++j) {
                lhs += static_cast<double>(col[r * ld + j]) * c[r * ld + j];
            }
        }
        for (std::size_t i = 0; i < x.size(); ++i) {
            rhs += static_cast<double>(x[i]) * back[i];
        }
        CHECK(lhs == doctest::Approx(rhs).epsilon(1e-5));
    }
}

TEST_CASE("add_scalar and lane_sum equal their plain references on odd lengths") {
    fr::rng g(21);
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{16}, std::size_t{33},
                                std::size_t{784}}) {
        CAPTURE(n);
        std::vector<float> a(n), b(n), c(n), d(n);
        for (std::size_t i = 0; i < n; ++i) {
            a[i] = g.uniform() - 0.5f;
            b[i] = 2.0f * g.uniform() - 1.0f;
        }
        const float v = 0.375f;
        fr::kernels::add_scalar(a.data(), b.data(), v, c.data(), n);
        fr::kernels::add_scalar(a.data(), nullptr, v, d.data(), n);
        double sum = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            CHECK(c[i] == (a[i] + b[i]) + v); // each element rounded as the scalar expression is
            CHECK(d[i] == a[i] + v);
            sum += a[i];
        }
        // float rounding only: far below any one element's size (|a| ~ 0.25), so a lost or doubled
        // element fails
        CHECK(std::fabs(static_cast<double>(fr::kernels::lane_sum(a.data(), n)) - sum) <= 2e-6 * static_cast<double>(n + 1));
    }
    std::vector<float> p{1.0f, 2.0f, 3.0f}; // in place (c == a), as the gate unit adds into dL/dh
    fr::kernels::add_scalar(p.data(), nullptr, 0.5f, p.data(), p.size());
    CHECK(p == std::vector<float>{1.5f, 2.5f, 3.5f});
}

TEST_CASE("parallel_chunks covers every index once") {
    std::vector<int> hits(1001, 0);
    fr::parallel_chunks(hits.size(), [&](std::size_t b, std::size_t e, int) {
        for (std::size_t i = b; i < e; ++i) {
            ++hits[i];
        }
    });
    CHECK(std::count(hits.begin(), hits.end(), 1) == 1001);
}

TEST_CASE("parallel_dynamic and parallel_spans cover every index once, on valid thread ids") {
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1001}}) {
        CAPTURE(n);
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> bad_thread{0};
        const int threads = fr::num_threads();
        fr::parallel_dynamic(n, [&](std::size_t i, int t) {
            hits[i].fetch_add(1);
            if (t < 0 || t >= threads) {
                bad_thread.fetch_add(1);
            }
        });
        CHECK(bad_thread.load() == 0);
        CHECK(std::count_if(hits.begin(), hits.end(), [](const std::atomic<int>& h) { return h.load() == 1; }) ==
              static_cast<std::ptrdiff_t>(n));
        std::vector<std::atomic<int>> cover(n);
        fr::parallel_spans(n, 64, [&](std::size_t b, std::size_t e) {
            CHECK(e > b);
            CHECK(e - b <= 64);
            for (std::size_t i = b; i < e; ++i) {
                cover[i].fetch_add(1);
            }
        });
        CHECK(std::count_if(cover.begin(), cover.end(), [](const std::atomic<int>& h) { return h.load() == 1; }) ==
              static_cast<std::ptrdiff_t>(n));
    }
}

} // TEST_SUITE

TEST_CASE("tensor_pool rounds to size classes, reuses freed blocks (of a slightly larger class too) and respects its limit") {
    auto& pool = fr::tensor_pool::instance();
    const std::size_t old_limit = pool.statistics().limit_bytes;
    for (std::size_t bytes : {std::size_t{1}, std::size_t{100}, std::size_t{65536}, std::size_t{100000},
                              std::size_t{6422528}, std::size_t{123456789}}) {
        const std::size_t c = fr::tensor_pool::class_bytes(bytes);
        CHECK(c >= bytes);
        CHECK(c % fr::tensor_pool::alignment == 0);
        if (bytes >= fr::tensor_pool::pool_min_bytes) {
            CHECK(static_cast<double>(c) <= 1.125 * static_cast<double>(bytes)); // eight classes per power of two
        }
    }
    pool.release();
    pool.set_limit(std::size_t{64} << 20);
    const std::size_t n = 300000; // bytes: a pooled size
    void* a = pool.allocate(n);
    REQUIRE(a != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(a) % fr::tensor_pool::alignment == 0);
    pool.deallocate(a, n);
    CHECK(pool.statistics().cached_bytes == fr::tensor_pool::class_bytes(n));
    const auto hits = pool.statistics().hits;
    void* b = pool.allocate(n - 1000); // same class: the freed block comes back
    CHECK(b == a);
    CHECK(pool.statistics().hits == hits + 1);
    CHECK(pool.statistics().cached_bytes == 0);
    pool.deallocate(b, n - 1000);
    // a request whose class has no block takes a cached one at most a quarter larger, which
    // goes back to its own class when freed; one more than a quarter larger is not taken
    const std::size_t small = n * 17 / 20; // 255000 bytes: two classes below n's
    REQUIRE(fr::tensor_pool::class_bytes(small) < fr::tensor_pool::class_bytes(n));
    REQUIRE(fr::tensor_pool::class_bytes(n) <= fr::tensor_pool::class_bytes(small) * 5 / 4);
    void* d = pool.allocate(small);
    CHECK(d == a);
    CHECK(pool.statistics().cached_bytes == 0);
    pool.deallocate(d, small);
    CHECK(pool.statistics().cached_bytes == fr::tensor_pool::class_bytes(n));
    void* e = pool.allocate(n / 2); // a quarter is too far: a new block
    CHECK(e != a);
    CHECK(pool.statistics().cached_bytes == fr::tensor_pool::class_bytes(n));
    pool.deallocate(e, n / 2);
    CHECK(pool.statistics().cached_bytes == fr::tensor_pool::class_bytes(n) + fr::tensor_pool::class_bytes(n / 2));
    void* f = pool.allocate(n); // its own class, not the smaller one freed last
    CHECK(f == a);
    pool.deallocate(f, n);
    // a borrowed larger block freed when the cache is full is freed, and counted as its class
    void* h = pool.allocate(small);
    CHECK(h == a);
    const std::size_t cached = pool.statistics().cached_bytes;
    pool.set_limit(cached);
    pool.deallocate(h, small);
    CHECK(pool.statistics().cached_bytes == cached);
    pool.set_limit(std::size_t{64} << 20);
    pool.set_limit(0); // lowering the limit frees the cache, and nothing more is kept
    CHECK(pool.statistics().cached_bytes == 0);
    void* c = pool.allocate(n);
    pool.deallocate(c, n);
    CHECK(pool.statistics().cached_bytes == 0);
    // tensors use it
    fr::tensor4 t = fr::tensor4::from_shape({4, 16, 28, 28});
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % fr::tensor_pool::alignment == 0);
    pool.set_limit(old_limit);
}
