// Kernels against their plain references on odd shapes.

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include <frugal/numeric/random.hpp>
#include <frugal/tensor/im2col.hpp>
#include <frugal/tensor/kernels/gemm.hpp>
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

TEST_CASE("sgemm_nt equals the reference on odd shapes") {
    fr::rng g(2);
    for (std::size_t m : {1u, 3u, 4u, 17u}) {
        for (std::size_t n : {1u, 5u, 8u, 65u}) {
            for (std::size_t k : {1u, 15u, 16u, 33u, 100u}) {
                const auto a = random_vec(m * k, g), bt = random_vec(n * k, g);
                std::vector<float> b(k * n);
                fr::kernels::transpose(n, k, bt.data(), k, b.data(), n);
                auto c = random_vec(m * n, g), r = c;
                fr::kernels::sgemm_nt(m, n, k, 2.0f, a.data(), k, bt.data(), k, 1.0f, c.data(), n);
                fr::kernels::sgemm_reference(m, n, k, 2.0f, a.data(), k, b.data(), n, 1.0f, r.data(), n);
                INFO(m << "x" << n << "x" << k);
                CHECK(max_diff(c, r) < 1e-4 * static_cast<double>(k));
            }
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

TEST_CASE("parallel_chunks covers every index once") {
    std::vector<int> hits(1001, 0);
    fr::parallel_chunks(hits.size(), [&](std::size_t b, std::size_t e, int) {
        for (std::size_t i = b; i < e; ++i) {
            ++hits[i];
        }
    });
    CHECK(std::count(hits.begin(), hits.end(), 1) == 1001);
}

} // TEST_SUITE
