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
//
// Only the calls into frugal are templates; the oracle side is ordinary code,
// which keeps this file quick to compile.

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <frugal/numeric/fixed.hpp>

#include "numeric/fixed_oracle.hpp"

namespace {

using frugal::basic_fixed;

enum class op { add, sub, mul };
const char* op_name(op o) { return o == op::add ? "+" : o == op::sub ? "-" : "*"; }

/// A format and its policies, as data for the oracle.
struct format_desc {
    bool is_signed;
    int int_bits;
    int frac_bits;
    oracle::rounding rounding; // stochastic_down stands for "stochastic"
    oracle::overflow overflow;
    std::string name;

    std::int64_t raw_min() const { return is_signed ? -(std::int64_t{1} << (int_bits + frac_bits - 1)) : 0; }
    std::int64_t raw_max() const {
        return (std::int64_t{1} << (int_bits + frac_bits - (is_signed ? 1 : 0))) - 1;
    }
};

template <class T>
format_desc describe() {
    constexpr bool random = frugal::random_rounding<typename T::rounding>;
    oracle::rounding r = oracle::rounding::stochastic_down;
    if constexpr (!random) {
        r = oracle::rounding_of<typename T::rounding>();
    }
    return {T::is_signed, T::int_bits, T::frac_bits, r, oracle::overflow_of<typename T::overflow>(),
            T::format.name() + " " + std::string(T::rounding::name) + "/" + std::string(T::overflow::name)};
}

struct tally {
    std::uint64_t checked = 0;
    std::uint64_t narrowed = 0; // of `checked`, the narrowings (phase 2)
    std::uint64_t failed = 0;
    std::string first;

    template <class Describe>
    void expect(bool ok, Describe&& describe_failure) {
        ++checked;
        if (!ok) {
            if (failed == 0) {
                first = describe_failure();
            }
            ++failed;
        }
    }
};

// ------------------------------------------------------------------ library side (templates)

/// Raw results of a O b for every pair (a major), as int64.
template <class A, class B, op O>
std::vector<std::int64_t> library_results() {
    std::vector<std::int64_t> out;
    out.reserve(static_cast<std::size_t>((static_cast<std::int64_t>(A::raw_max()) - A::raw_min() + 1) *
                                         (static_cast<std::int64_t>(B::raw_max()) - B::raw_min() + 1)));
    for (std::int64_t ra = A::raw_min(); ra <= static_cast<std::int64_t>(A::raw_max()); ++ra) {
        const A a = A::from_raw(static_cast<typename A::rep>(ra));
        for (std::int64_t rb = B::raw_min(); rb <= static_cast<std::int64_t>(B::raw_max()); ++rb) {
            const B b = B::from_raw(static_cast<typename B::rep>(rb));
            if constexpr (O == op::add) {
                out.push_back(static_cast<std::int64_t>((a + b).raw()));
            } else if constexpr (O == op::sub) {
                out.push_back(static_cast<std::int64_t>((a - b).raw()));
            } else {
                out.push_back(static_cast<std::int64_t>((a * b).raw()));
            }
        }
    }
    return out;
}

template <class A, class B, op O>
struct result_of;
template <class A, class B>
struct result_of<A, B, op::add> {
    using type = frugal::sum_t<A, B>;
};
template <class A, class B>
struct result_of<A, B, op::sub> {
    using type = frugal::difference_t<A, B>;
};
template <class A, class B>
struct result_of<A, B, op::mul> {
    using type = frugal::product_t<A, B>;
};

/// Stores each input raw of format R into T: the raw result, or nullopt if it threw.
template <class T, class R>
std::vector<std::optional<std::int64_t>> library_narrow(const std::vector<std::int64_t>& inputs) {
    std::vector<std::optional<std::int64_t>> out;
    out.reserve(inputs.size());
    std::mt19937_64 rng(12345);
    for (const std::int64_t raw : inputs) {
        const R r = R::from_raw(static_cast<typename R::rep>(raw));
        try {
            if constexpr (frugal::random_rounding<typename T::rounding>) {
                out.emplace_back(static_cast<std::int64_t>(frugal::fixed_cast<T>(r, rng).raw()));
            } else {
                out.emplace_back(static_cast<std::int64_t>(T(r).raw()));
            }
        } catch (const frugal::numeric_error&) {
            out.emplace_back(std::nullopt);
        }
    }
    return out;
}

// ------------------------------------------------------------------ oracle side (plain code)

/// Phase 1: compares every pair's result with the oracle.
void check_exact(const format_desc& a, const format_desc& b, op o, int result_frac,
                                      const std::vector<std::int64_t>& results, tally& t) {
    std::vector<oracle::value> vb;
    for (std::int64_t rb = b.raw_min(); rb <= b.raw_max(); ++rb) {
        vb.push_back({oracle::big(rb), b.frac_bits});
    }
    std::size_t k = 0;
    for (std::int64_t ra = a.raw_min(); ra <= a.raw_max(); ++ra) {
        const oracle::value va{oracle::big(ra), a.frac_bits};
        for (const auto& b_value : vb) {
            const oracle::value expected = o == op::add   ? oracle::add(va, b_value)
                                           : o == op::sub ? oracle::sub(va, b_value)
                                                          : oracle::mul(va, b_value);
            const std::int64_t got = results[k++];
            t.expect(oracle::equal({oracle::big(got), result_frac}, expected), [&] {
                return a.name + " raw " + std::to_string(ra) + " " + op_name(o) + " " + b.name + " raw " +
                       b_value.n.str() + " gave raw " + std::to_string(got);
            });
        }
    }
}

/// The distinct result raws in increasing order (phase 2's inputs: a wrong
/// result fails phase 1, so phase 2 may take the library's values).
std::vector<std::int64_t> distinct_values(const std::vector<std::int64_t>& results) {
    if (results.empty()) {
        return {};
    }
    const auto [lo_it, hi_it] = std::minmax_element(results.begin(), results.end());
    const std::int64_t lo = *lo_it, hi = *hi_it;
    std::vector<bool> seen(static_cast<std::size_t>(hi - lo + 1));
    for (const std::int64_t r : results) {
        seen[static_cast<std::size_t>(r - lo)] = true;
    }
    std::vector<std::int64_t> distinct;
    for (std::size_t i = 0; i < seen.size(); ++i) {
        if (seen[i]) {
            distinct.push_back(lo + static_cast<std::int64_t>(i));
        }
    }
    return distinct;
}

/// What the oracle allows for storing value raw/2^from_frac into `to`.
struct allowed {
    std::optional<oracle::big> down, up; // nullopt: throws
};

/// Phase 2, step 1: the oracle's answers, and the inputs the library must run on.
std::vector<allowed> oracle_narrow(const std::vector<std::int64_t>& inputs, int from_frac, const format_desc& to,
                                   bool every_trap, std::vector<std::int64_t>& run) {
    const oracle::narrower narrow(from_frac, to.is_signed, to.int_bits, to.frac_bits, to.overflow);
    const bool random = to.rounding == oracle::rounding::stochastic_down;
    std::vector<allowed> out;
    run.clear();
    for (const std::int64_t raw : inputs) {
        allowed a;
        a.down = narrow(oracle::big(raw), random ? oracle::rounding::stochastic_down : to.rounding);
        a.up = random ? narrow(oracle::big(raw), oracle::rounding::stochastic_up) : a.down;
        if (!a.down && !a.up && !every_trap && raw % 31 != 0) {
            continue; // sampled: see the note at the top
        }
        out.push_back(a);
        run.push_back(raw);
    }
    return out;
}

/// Phase 2, step 2: compares the library's narrowing with the oracle's.
void check_narrow(const std::vector<std::int64_t>& run, const std::vector<allowed>& expected,
                  const std::vector<std::optional<std::int64_t>>& got, const format_desc& to, tally& t) {
    for (std::size_t i = 0; i < run.size(); ++i) {
        const allowed& e = expected[i];
        const auto& g = got[i];
        bool ok = false;
        if (g) {
            ok = (e.down && *e.down == *g) || (e.up && *e.up == *g);
        } else {
            ok = !e.down || !e.up;
        }
        t.expect(ok, [&] {
            return "raw " + std::to_string(run[i]) + " -> " + to.name + " gave " +
                   (g ? "raw " + std::to_string(*g) : std::string("a throw")) + ", expected " +
                   (e.down ? e.down->str() : std::string("a throw")) +
                   (e.up != e.down ? " or " + (e.up ? e.up->str() : std::string("a throw")) : "");
        });
    }
}

// ------------------------------------------------------------------ glue

template <class A, class R, class Rounding, class Overflow>
void narrowing_case(const std::vector<std::int64_t>& distinct, bool every_trap, tally& t) {
    using T = basic_fixed<A::is_signed, A::int_bits, A::frac_bits, Rounding, Overflow>;
    const format_desc to = describe<T>();
    std::vector<std::int64_t> run;
    const auto expected = oracle_narrow(distinct, R::frac_bits, to, every_trap, run);
    check_narrow(run, expected, library_narrow<T, R>(run), to, t);
}

template <class A, class R, class Rounding>
void narrowing_rounding(const std::vector<std::int64_t>& distinct, bool every_trap, tally& t) {
    narrowing_case<A, R, Rounding, frugal::saturate>(distinct, every_trap, t);
    narrowing_case<A, R, Rounding, frugal::wrap>(distinct, every_trap, t);
    narrowing_case<A, R, Rounding, frugal::trap>(distinct, every_trap, t);
}

/// The parts of a sweep: phase 1, and phase 2 per rounding (each with its
/// three overflow policies). The widest product sweep takes one test case
/// per part, so that ctest spreads it over the cores.
enum part : unsigned {
    exact = 1,
    narrow_truncate = 2,
    narrow_toward_zero = 4,
    narrow_nearest_even = 8,
    narrow_stochastic = 16,
    every_part = 31
};

template <class A, class B, op O>
void exhaustive_op(tally& t, unsigned parts) {
    using R = typename result_of<A, B, O>::type;
    const auto results = library_results<A, B, O>();
    if ((parts & exact) != 0) {
        check_exact(describe<A>(), describe<B>(), O, R::frac_bits, results, t);
    }
    if ((parts & ~unsigned{exact}) == 0) {
        return;
    }
    const auto distinct = distinct_values(results);
    const bool every_trap = A::width <= 8 && B::width <= 8;
    const std::uint64_t before = t.checked;
    if ((parts & narrow_truncate) != 0) {
        narrowing_rounding<A, R, frugal::truncate>(distinct, every_trap, t);
    }
    if ((parts & narrow_toward_zero) != 0) {
        narrowing_rounding<A, R, frugal::toward_zero>(distinct, every_trap, t);
    }
    if ((parts & narrow_nearest_even) != 0) {
        narrowing_rounding<A, R, frugal::nearest_even>(distinct, every_trap, t);
    }
    if ((parts & narrow_stochastic) != 0) {
        narrowing_rounding<A, R, frugal::stochastic>(distinct, every_trap, t);
    }
    t.narrowed += t.checked - before;
}

/// Every pair of A and B values through the operations `Ops` (all three by
/// default; the 12-bit x 12-bit formats take one test case per operation, so
/// that ctest runs them on different cores), the parts `parts` of each.
template <class A, class B, op... Ops>
void exhaustive(const char* what, unsigned parts = every_part) {
    tally t;
    if constexpr (sizeof...(Ops) == 0) {
        exhaustive_op<A, B, op::add>(t, parts);
        exhaustive_op<A, B, op::sub>(t, parts);
        exhaustive_op<A, B, op::mul>(t, parts);
    } else {
        (exhaustive_op<A, B, Ops>(t, parts), ...);
    }
    const std::uint64_t ops = sizeof...(Ops) == 0 ? 3 : sizeof...(Ops);
    const std::uint64_t pairs = static_cast<std::uint64_t>(static_cast<std::int64_t>(A::raw_max()) - A::raw_min() + 1) *
                                static_cast<std::uint64_t>(static_cast<std::int64_t>(B::raw_max()) - B::raw_min() + 1);
    INFO(std::string(what) << ": " << t.checked << " checks, " << t.failed << " failed; first: " << t.first);
    CHECK(t.failed == 0);
    if ((parts & exact) != 0) {
        CHECK(t.checked >= ops * pairs);
    }
    if ((parts & ~unsigned{exact}) != 0) {
        // phase 2 narrows every distinct result (at least B's range of them:
        // one value of A with every value of B) under saturate and wrap, per
        // rounding and operation
        const std::uint64_t roundings = static_cast<std::uint64_t>(std::popcount(parts & ~unsigned{exact}));
        const std::uint64_t range_b =
            static_cast<std::uint64_t>(static_cast<std::int64_t>(B::raw_max()) - B::raw_min() + 1);
        CHECK(t.narrowed >= 2 * roundings * ops * range_b);
    }
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

TEST_CASE("every pair of fixed<1:11> values: sum and difference") {
    exhaustive<frugal::fixed<1, 11>, frugal::fixed<1, 11>, op::add, op::sub>("fixed<1,11> x fixed<1,11>");
}

TEST_CASE("every pair of fixed<1:11> values: product") {
    exhaustive<frugal::fixed<1, 11>, frugal::fixed<1, 11>, op::mul>("fixed<1,11> x fixed<1,11>");
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values: sum") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>, op::add>("ufixed<4,8> x fixed<12,0>");
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values: difference") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>, op::sub>("ufixed<4,8> x fixed<12,0>");
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values: product, exact and narrowed by truncation") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>, op::mul>("ufixed<4,8> x fixed<12,0>",
                                                                   exact | narrow_truncate);
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values: product, narrowed toward zero") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>, op::mul>("ufixed<4,8> x fixed<12,0>",
                                                                   narrow_toward_zero);
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values: product, narrowed to nearest even") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>, op::mul>("ufixed<4,8> x fixed<12,0>",
                                                                   narrow_nearest_even);
}

TEST_CASE("every pair of ufixed<4:8> and fixed<12:0> values: product, narrowed stochastically") {
    exhaustive<frugal::ufixed<4, 8>, frugal::fixed<12, 0>, op::mul>("ufixed<4,8> x fixed<12,0>",
                                                                   narrow_stochastic);
}

} // TEST_SUITE
