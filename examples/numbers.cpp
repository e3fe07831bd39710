// frugal's number formats at work: exact fixed-point arithmetic, the
// rounding and overflow policies, and an 8-bit quantizer on a tensor.

#include <frugal/frugal.hpp>

#include <iostream>

int main() {
    using namespace frugal;
    using q4_12 = fixed<4, 12>;               // 16 bits: range [-8, 8), step 2^-12
    constexpr q4_12 a = 1.2345;
    constexpr q4_12 b = -3.5;
    constexpr auto p = a * b;                  // fixed<8, 24>: exact, no rounding
    std::cout << a << " * " << b << " = " << p << "   (format " << decltype(p)::format.name() << ")\n";

    const q4_12 back = p;                      // narrowing: nearest-even, saturate
    std::cout << "stored back in " << q4_12::format.name() << ": " << back << '\n';
    std::cout << "7 * 3 saturates to " << q4_12(q4_12(7.0) * q4_12(3.0)) << ", wraps to "
              << fixed<4, 12, frugal::truncate, wrap>(q4_12(7.0) * q4_12(3.0)) << '\n';
    try {
        fixed<4, 12, nearest_even, trap> t = q4_12(7.0) * q4_12(3.0);
        (void)t;
    } catch (const numeric_error& e) {
        std::cout << "trap: " << e.what() << '\n';
    }

    rng g(1);
    frugal::tensor<float, 1> x = {0.8f, -0.31f, 0.05f, 0.5f, -1.2f};
    const auto q = quantize_symmetric(x, 8);
    const auto deq = dequantize(q);
    std::cout << "\nint8 per-tensor quantization, scale " << q.scale[0] << ":\n";
    for (std::size_t i = 0; i < x.size(); ++i) {
        std::cout << "  " << x(i) << " -> " << static_cast<int>(q.values(i)) << " -> " << deq(i) << '\n';
    }
    const auto split = split_msb(q, 4);
    std::cout << "top 4 bits of each code:";
    for (auto v : split.msb.values) {
        std::cout << ' ' << static_cast<int>(v);
    }
    std::cout << "\nfrugal is ready: the training examples arrive with the training core.\n";
    return 0;
}
