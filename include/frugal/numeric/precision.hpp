#ifndef FRUGAL_NUMERIC_PRECISION_HPP
#define FRUGAL_NUMERIC_PRECISION_HPP

/// @file
/// Bit-width triples and compile-time sets of them.
///
/// `precision<W, A, G>` names the bit widths a quantized layer uses for its
/// weights, its input activations and its gradients (errors); 0 means full
/// precision (fp32). A `precision_set<P...>` is a compile-time list of them,
/// and `visit(set, index, f)` calls `f` with the precision at a *runtime*
/// index as a compile-time type: a fold over the list, not a virtual call.
/// This is how dynamic fractional quantization picks, per input, one of a
/// fixed menu of kernels.

#include <cstddef>
#include <cstdio>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "frugal/error.hpp"

namespace frugal {

/// The bit widths one quantized layer uses at run time: input activations,
/// weights, errors (output gradients). 0 everywhere = full precision (fp32).
/// This is data (a schedule changes it between steps); `precision<W, A, G>`
/// below is the same triple as a type.
struct bit_widths {
    int act = 8, weight = 8, error = 8;
    [[nodiscard]] static constexpr bit_widths full() noexcept { return {0, 0, 0}; }
    [[nodiscard]] constexpr bool is_full() const noexcept { return act == 0 && weight == 0 && error == 0; }
    friend constexpr bool operator==(const bit_widths&, const bit_widths&) = default;
    /// "a4w4e6", or "fp32".
    [[nodiscard]] std::string name() const {
        if (is_full()) {
            return "fp32";
        }
        char buf[48];
        std::snprintf(buf, sizeof buf, "a%dw%de%d", act, weight, error);
        return buf;
    }
};

/// Widest activation and weight codes frugal's integer kernels take (8-bit
/// products; narrower widths are stored in 8 bits).
inline constexpr int max_kernel_bits = 8;
/// Widest error codes: 9..16-bit errors run as two 8-bit limbs,
/// code = 256 hi + lo, each limb through the 8-bit products and the two
/// integer results combined exactly (quantized_conv).
inline constexpr int max_error_bits = 16;

/// Throws unless `b` is full precision or its activation and weight widths
/// are in [2, 8] and its error width in [2, 16].
inline void check_kernel_widths(const bit_widths& b, const std::string& where) {
    if (b.is_full()) {
        return;
    }
    auto ok = [](int x, int top) { return x >= 2 && x <= top; };
    if (!ok(b.act, max_kernel_bits) || !ok(b.weight, max_kernel_bits) || !ok(b.error, max_error_bits)) {
        throw error(detail::concat(where, ": bit widths (activations ", b.act, ", weights ", b.weight, ", errors ",
                                   b.error, ") must be in [2, 8] for activations and weights and in [2, 16] for ",
                                   "errors, or all 0 for full precision"));
    }
}

/// Widths (in bits) of weights, activations and gradients; 0 = fp32.
template <int W, int A, int G>
struct precision {
    static_assert(W >= 0 && W <= 32 && A >= 0 && A <= 32 && G >= 0 && G <= 32,
                  "frugal::precision<W, A, G>: each width must be in [0, 32] bits (0 means fp32)");
    static_assert((W == 0 || W >= 2) && (A == 0 || A >= 2) && (G == 0 || G >= 2),
                  "frugal::precision<W, A, G>: a quantized width needs at least 2 bits (0 means fp32)");
    static constexpr int weights = W;
    static constexpr int activations = A;
    static constexpr int gradients = G;
    /// True when all three are full precision.
    static constexpr bool is_full = W == 0 && A == 0 && G == 0;
    /// The same widths as data.
    static constexpr bit_widths widths{A, W, G};

    /// "w4a6g8", with "32" for full precision.
    [[nodiscard]] static std::string name() {
        auto b = [](int x) { return std::to_string(x == 0 ? 32 : x); };
        return "w" + b(W) + "a" + b(A) + "g" + b(G);
    }
};

/// Full precision everywhere.
using fp32_precision = precision<0, 0, 0>;

template <class T>
struct is_precision : std::false_type {};
template <int W, int A, int G>
struct is_precision<precision<W, A, G>> : std::true_type {};

/// A frugal::precision<W, A, G>.
template <class T>
concept precision_type = is_precision<T>::value;

/// A compile-time list of precisions; the runtime choice among them is an index.
template <precision_type... Ps>
struct precision_set {
    static_assert(sizeof...(Ps) >= 1, "frugal::precision_set: list at least one precision");
    static constexpr std::size_t size = sizeof...(Ps);

    template <std::size_t I>
    using at = std::tuple_element_t<I, std::tuple<Ps...>>;

    /// Index of the first element equal to P (size if absent).
    template <precision_type P>
    static constexpr std::size_t index_of = [] {
        std::size_t i = 0;
        const bool found = ((std::is_same_v<P, Ps> ? true : (++i, false)) || ...);
        return found ? i : size;
    }();
};

namespace detail {
template <class Set, class F, std::size_t... I>
decltype(auto) visit_impl(std::size_t index, F&& f, std::index_sequence<I...>) {
    using first = decltype(f(typename Set::template at<0>{}));
    if constexpr (std::is_void_v<first>) {
        (void)((index == I ? (f(typename Set::template at<I>{}), true) : false) || ...);
    } else {
        static_assert((std::is_same_v<first, decltype(f(typename Set::template at<I>{}))> && ...),
                      "frugal::visit: the visitor must return the same type for every precision of the set");
        first result{};
        (void)((index == I ? (result = f(typename Set::template at<I>{}), true) : false) || ...);
        return result;
    }
}
} // namespace detail

/// Calls `f(P{})` where P is element `index` of Set; returns what f returns.
/// Throws frugal::error if index >= Set::size.
template <class Set, class F>
decltype(auto) visit(std::size_t index, F&& f) {
    if (index >= Set::size) {
        throw error(detail::concat("frugal::visit: precision index ", index, " is out of range for a set of ",
                                   Set::size, " precisions"));
    }
    return detail::visit_impl<Set>(index, std::forward<F>(f), std::make_index_sequence<Set::size>{});
}

/// Calls `f(P{})` for every precision of the set, in order.
template <class Set, class F>
void for_each_precision(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (f(typename Set::template at<I>{}), ...);
    }(std::make_index_sequence<Set::size>{});
}

/// Sets the widths of every layer of `model` (anything with
/// `for_each_layer`) that has `set_precision(bit_widths)`; others are left
/// alone.
template <class Model>
void set_model_precision(Model& model, const bit_widths& b) {
    model.for_each_layer([&](auto& l) {
        if constexpr (requires { l.set_precision(b); }) {
            l.set_precision(b);
        }
    });
}

} // namespace frugal

#endif
