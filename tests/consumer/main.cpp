// A user program that knows frugal only through find_package(frugal).
#include <frugal/frugal.hpp>

#include <iostream>

int main() {
    using q = frugal::fixed<4, 12>;
    constexpr q a = 1.25;
    constexpr q b = -0.5;
    constexpr auto p = a * b; // fixed<8, 24>, exact
    static_assert(p.to_double() == -0.625);
    std::cout << a << " * " << b << " = " << p << '\n';
    return p.to_double() == -0.625 ? 0 : 1;
}
