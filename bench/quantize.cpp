// 8-bit per-tensor symmetric quantization of 2^20 floats: frugal's xsimd
// kernel against the plain scalar loop, measured in the same run.
//
//   build/bench/bench_quantize [runs]

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <xsimd/xsimd.hpp>

#include <frugal/numeric/quantizer.hpp>

#include "bench.hpp"

int main(int argc, char** argv) {
    const int runs = argc > 1 ? std::atoi(argv[1]) : 15;
    const std::size_t n = std::size_t{1} << 20;
    frugal::rng g(1);
    frugal::tensor<float, 1> x = frugal::tensor<float, 1>::from_shape({n});
    for (auto& v : x) {
        v = (g.uniform() * 2.0f - 1.0f) * 4.0f;
    }
    std::vector<std::int8_t> ref(n);
    frugal::quantized_tensor<std::int8_t, 1> q;
    frugal::tensor<float, 1> fake = frugal::tensor<float, 1>::from_shape({n});

    const double t_scalar = bench::median_seconds([&] {
        bench::keep(frugal::detail::quantize_symmetric_reference(x.data(), n, 8, ref.data()));
    }, runs);
    const double t_simd = bench::median_seconds([&] {
        frugal::quantize_symmetric(x, 8, q);
        bench::keep(q.values.data()[0]);
    }, runs);
    const double t_fake = bench::median_seconds([&] {
        frugal::fake_quantize_symmetric(x, fake, 8);
        bench::keep(fake.data()[0]);
    }, runs);
    const double t_stoch = bench::median_seconds([&] {
        frugal::fake_quantize_symmetric<frugal::per_tensor, frugal::stochastic>(x, fake, 8, &g);
        bench::keep(fake.data()[0]);
    }, runs);

    const double m = static_cast<double>(n) / 1e6;
    std::printf("quantize int8 per-tensor, 2^20 floats, xsimd arch %s, median of %d runs\n",
                xsimd::default_arch::name(), runs);
    std::printf("  scalar reference loop      %8.1f Melem/s\n", m / t_scalar);
    std::printf("  frugal quantize_symmetric  %8.1f Melem/s  (%.1fx scalar)\n", m / t_simd, t_scalar / t_simd);
    std::printf("  frugal fake_quantize       %8.1f Melem/s  (%.1fx scalar)\n", m / t_fake, t_scalar / t_fake);
    std::printf("  fake_quantize stochastic   %8.1f Melem/s  (%.1fx scalar)\n", m / t_stoch, t_scalar / t_stoch);
    return 0;
}
