// Exhaustive comparison of frugal::fixed against the Boost.Multiprecision
// oracle: for every format in the lists below (all up to 12 bits), every pair
// of values, the exact results of + - * and the narrowing of each result back
// into the operand's format under every rounding and overflow policy.
//
// Phase 1 checks the exact result of every pair. Narrowing is a function of
// the result's value alone, so phase 2 checks it once per distinct result
// value that phase 1 produced, under all 12 policy pairs. For the trap policy
// an out-of-range result must throw: for formats up to 8 bits checked for
// every such value, for wider formats for every value whose raw integer is a
// multiple of 31 (a throw costs microseconds and there are millions of
// distinct out-of-range products).

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <frugal/numeric/fixed.hpp>

#include "numeric/fixed_oracle.hpp"

namespace {

using frugal::basic_fixed;

struct tally {
    std::uint64_t checked = 0;
    std::uint64_t failed = 0;
    std::string first;

    /// Counts one check; `describe` (called only on failure) says what failed.
    template <class Describe>
    void expect(bool ok, Describe&& describe) {
        ++checked;
        if (!ok) {
            if (failed == 0) {
                first = describe();
            }
            ++failed;
        }
    }
};

template <class T>
std::vector<T> all_values() {
    std::vector<T> v;
    const auto lo = static_cast<std::int64_t>(T::raw_min());
    const auto hi = static_cast<std::int64_t>(T::raw_max());
    v.reserve(static_cast<std::size_t>(hi - lo + 1));
    for (std::int64_t r = lo; r <= hi; ++r) {
        v.push_back(T::from_raw(static_cast<typename T::rep>(r)));
    }
    return v;
}

template <class T>
std::string show(const T& x) {
    std::ostringstream s;
    s << x << " (" << T::format.name() << ")";
    return s.str();
}

enum class op { add, sub, mul };
constexpr const char* op_name(op o) { return o == op::add ? "+" : o == op::sub ? "-" : "*"; }

template <op O, class A, class B>
auto apply(const A& a, const B& b) {
    if constexpr (O == op::add) {
        return a + b;
    } else if constexpr (O == op::sub) {
        return a - b;
    } else {
        return a * b;
    }
}

inline oracle::value apply_oracle(op o, const oracle::value& a, const oracle::value& b) {
    return o == op::add ? oracle::add(a, b) : o == op::sub ? oracle::sub(a, b) : oracle::mul(a, b);
}

/// Phase 1: the exact result of every pair under operator O, against the
/// oracle; returns which result values occurred (indexed by raw - raw_min).
template <class A, class B, op O>
std::vector<bool> check_exact(const std::vector<A>& as, const std::vector<B>& bs, tally& t) {
    using R = decltype(apply<O>(as[0], bs[0]));
    const auto lo = static_cast<std::int64_t>(R::raw_min());
    std::vector<bool> seen(static_cast<std::size_t>(static_cast<std::int64_t>(R::raw_max()) - lo + 1));
    std::vector<oracle::value> vb;
    vb.reserve(bs.size());
    for (const auto& b : bs) {
        vb.push_back(oracle::of(b));
    }
    for (const auto& a : as) {
        const oracle::value va = oracle::of(a);
        for (std::size_t j = 0; j < bs.size(); ++j) {
            const R r = apply<O>(a, bs[j]);
            t.expect(oracle::equal(oracle::of(r), apply_oracle(O, va, vb[j])),
                     [&] { return show(a) + " " + op_name(O) + " " + show(bs[j]) + " gave " + show(r); });
            seen[static_cast<std::size_t>(static_cast<std::int64_t>(r.raw()) - lo)] = true;
        }
    }
    return seen;
}

/// Phase 2: every result value that phase 1 produced, stored into format T
/// (T's rounding and overflow), against the oracle.
template <class T, class R>
void check_narrowing(const std::vector<bool>& seen, bool every_trap, tally& t) {
    constexpr bool random = frugal::random_rounding<typename T::rounding>;
    oracle::rounding mode_down{};
    oracle::rounding mode_up{};
    if constexpr (random) {
        mode_down = oracle::rounding::stochastic_down;
        mode_up = oracle::rounding::stochastic_up;
    } else {
        mode_down = mode_up = oracle::rounding_of<typename T::rounding>();
    }
    const oracle::narrower narrow(R::frac_bits, T::is_signed, T::int_bits, T::frac_bits,
                                  oracle::overflow_of<typename T::overflow>());
    const auto lo = static_cast<std::int64_t>(R::raw_min());
    std::mt19937_64 rng(12345);
    for (std::size_t i = 0; i < seen.size(); ++i) {
        if (!seen[i]) {
            continue;
        }
        const auto key = lo + static_cast<std::int64_t>(i);
        const R r = R::from_raw(static_cast<typename R::rep>(key));
        const oracle::big exact = oracle::of(r).n;
        const auto down = narrow(exact, mode_down);
        const auto up = random ? narrow(exact, mode_up) : down;
        if (!down && !up && !every_trap && key % 31 != 0) {
            continue; // sampled: see the note at the top
        }
        try {
            T got;
            if constexpr (random) {
                got = frugal::fixed_cast<T>(r, rng);
            } else {
                got = T(r);
            }
            const oracle::big g = oracle::of(got).n;
            t.expect((down && g == *down) || (up && g == *up), [&] {
                return show(r) + " -> " + T::format.name() + " (" + std::string(T::rounding::name) + ", " +
                       std::string(T::overflow::name) + ") gave " + show(got);
            });
        } catch (const frugal::numeric_error&) {
            t.expect(!down || !up, [&] { return show(r) + " -> " + T::format.name() + " threw but fits"; });
        }
    }
}

template <class A, class R, class O>
using retyped = basic_fixed<A::is_signed, A::int_bits, A::frac_bits, R, O>;

template <class A, class R, class... Rs>
void narrowing_all_policies(const std::vector<bool>& seen, bool every_trap, tally& t) {
    (check_narrowing<retyped<A, Rs, frugal::saturate>, R>(seen, every_trap, t), ...);
    (check_narrowing<retyped<A, Rs, frugal::wrap>, R>(seen, every_trap, t), ...);
    (check_narrowing<retyped<A, Rs, frugal::trap>, R>(seen, every_trap, t), ...);
}

template <class A, class B, op O>
void exhaustive_op(const std::vector<A>& as, const std::vector<B>& bs, tally& t) {
    using R = decltype(apply<O>(as[0], bs[0]));
    const auto seen = check_exact<A, B, O>(as, bs, t);
    const bool every_trap = A::width <= 8 && B::width <= 8;
    narrowing_all_policies<A, R, frugal::truncate, frugal::toward_zero, frugal::nearest_even, frugal::stochastic>(
        seen, every_trap, t);
}

template <class A, class B>
void exhaustive(const char* what) {
    const auto as = all_values<A>();
    const auto bs = all_values<B>();
    tally t;
    exhaustive_op<A, B, op::add>(as, bs, t);
    exhaustive_op<A, B, op::sub>(as, bs, t);
    exhaustive_op<A, B, op::mul>(as, bs, t);
    INFO(what << ": " << t.checked << " checks, " << t.failed << " failed; first: " << t.first);
    CHECK(t.failed == 0);
    CHECK(t.checked >= 3 * as.size() * bs.size());
}

} // namespace

TEST_SUITE("numeric/fixed exhaustive") {

TEST_CASE("every pair of values of formats up to 8 bits") {
    using namespace frugal;
    exhaustive<fixed<1, 3>, fixed<1, 3>>("fixed<1,3> x fixed<1,3>");
    exhaustive<fixed<4, 0>, fixed<2, 2>>("fixed<4,0> x fixed<2,2>");
    exhaustive<fixed<2, 5>, fixed<3, 4>>("fixed<2,5> x fixed<3,4>");
    exhaustive<fixed<8, 0>, fixed<8, 0>>("fixed<8,0> x fixed<8,0>");
    exhaustive<fixed<1, 7>, fixed<1, 7>>("fixed<1,7> x fixed<1,7>");
    exhaustive<fixed<-1, 6>, fixed<3, 2>>("fixed<-1,6> x fixed<3,2>");
    exhaustive<ufixed<0, 4>, ufixed<2, 2>>("ufixed<0,4> x ufixed<2,2>");
    exhaustive<ufixed<3, 3>, fixed<2, 4>>("ufixed<3,3> x fixed<2,4>");
    exhaustive<ufixed<0, 8>, ufixed<0, 8>>("ufixed<0,8> x ufixed<0,8>");
    exhaustive<fixed<4, 4>, ufixed<8, 0>>("fixed<4,4> x ufixed<8,0>");
}

TEST_CASE("every pair of 10-bit values") {
    using namespace frugal;
    exhaustive<fixed<5, 5>, fixed<5, 5>>("fixed<5,5> x fixed<5,5>");
    exhaustive<ufixed<2, 8>, fixed<3, 7>>("ufixed<2,8> x fixed<3,7>");
}

TEST_CASE("every pair of fixed<6:6> values") {
    exhaustive<frugal::fixed<6, 6>, frugal::fixed<6, 6>>("fixed<6,6> x fixed<6,6>");
}

TEST_CASE("every pair of fixed<1:11> values") {
    exhaustive<frugal::fixed<1, 11>, frugal::fixed<1, 11>>("fixed<1,11> x fixed<1,11>");
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>>("ufixed<4,8> x fixed<12,0>");
}

} // TEST_SUITE
