#ifndef FRUGAL_MODEL_SEQUENTIAL_HPP
#define FRUGAL_MODEL_SEQUENTIAL_HPP

/// @file
/// Compile-time composition of layers.
///
/// - `sequential<L1, L2, ...>`: the layers applied in order; the type lists
///   the layers, the constructor takes their sizes (each layer by value).
/// - `repeated<L>`: a run-time number of layers of one type (the residual
///   blocks of a ResNet stage, whose count is the depth of the network).
///
/// Both model `frugal::layer` themselves, so they nest. Children are named by
/// their position: "3.conv2d" for a leaf, "3" for a composite, "3.1.conv1" for
/// a layer inside the second block of a repeated at position 3.

#include <concepts>
#include <cstddef>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/numeric/quantizer.hpp"

namespace frugal {

namespace detail {
template <class L>
concept leaf_layer = requires(const L& l) { l.kind(); };

template <class L>
void name_child(L& child, const std::string& prefix, std::size_t index) {
    if constexpr (leaf_layer<L>) {
        child.set_name(child_name(prefix, std::to_string(index) + "." + child.kind()));
    } else {
        child.set_name(child_name(prefix, std::to_string(index)));
    }
}

template <class L, class F>
void visit_leaves(L& l, F& f) {
    if constexpr (requires { l.for_each_layer(f); }) {
        l.for_each_layer(f);
    } else {
        f(l);
    }
}
} // namespace detail

template <layer... Ls>
class sequential {
    static_assert(sizeof...(Ls) >= 1, "frugal::sequential: list at least one layer");

public:
    static constexpr std::size_t size = sizeof...(Ls);

    explicit sequential(Ls... layers) : layers_(std::move(layers)...) {
        set_name("");
        set_input_grad(true);
    }

    /// The I-th layer.
    template <std::size_t I>
    [[nodiscard]] auto& get() noexcept {
        return std::get<I>(layers_);
    }
    template <std::size_t I>
    [[nodiscard]] const auto& get() const noexcept {
        return std::get<I>(layers_);
    }

    void set_name(std::string prefix) {
        name_ = std::move(prefix);
        each([&](auto& l, std::size_t i) { detail::name_child(l, name_, i); });
    }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

    /// Whether the first layer computes dx; every later layer must.
    void set_input_grad(bool on) {
        each([&](auto& l, std::size_t i) { l.set_input_grad(i == 0 ? on : true); });
    }

    void reset_parameters(rng& g) {
        each([&](auto& l, std::size_t) { l.reset_parameters(g); });
    }

    [[nodiscard]] shape4 output_shape(shape4 s) const {
        std::apply([&](const auto&... l) { ((s = l.output_shape(s)), ...); }, layers_);
        return s;
    }

    const tensor4& forward(context& ctx, const tensor4& x) {
        const tensor4* h = &x;
        std::apply([&](auto&... l) { ((h = &l.forward(ctx, *h)), ...); }, layers_);
        return *h;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        const tensor4* g = &dy;
        backward_from<size - 1>(ctx, g);
        return *g;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        each([&](auto& l, std::size_t) { l.collect_parameters(ps); });
    }

    void save(archive_writer& a) const {
        a.tag("sequential/1");
        a.u64(size);
        std::apply([&](const auto&... l) { (l.save(a), ...); }, layers_);
    }
    void load(archive_reader& a) {
        a.expect("sequential/1");
        const std::size_t at = a.offset();
        const std::uint64_t n = a.u64();
        if (n != size) {
            a.fail(at, detail::concat(name_.empty() ? "model" : name_, ": the checkpoint holds ", n,
                                      " layers but the model has ", size));
        }
        std::apply([&](auto&... l) { (l.load(a), ...); }, layers_);
    }

    /// Visits every leaf layer, in order.
    template <class F>
    void for_each_layer(F&& f) {
        std::apply([&](auto&... l) { (detail::visit_leaves(l, f), ...); }, layers_);
    }

private:
    template <class F>
    void each(F&& f) {
        [&]<std::size_t... I>(std::index_sequence<I...>) { (f(std::get<I>(layers_), I), ...); }
        (std::make_index_sequence<size>{});
    }

    template <std::size_t I>
    void backward_from(context& ctx, const tensor4*& g) {
        g = &std::get<I>(layers_).backward(ctx, *g);
        if constexpr (I > 0) {
            backward_from<I - 1>(ctx, g);
        }
    }

    std::tuple<Ls...> layers_;
    std::string name_;
};

/// A run-time number of layers of one type, applied in order.
template <layer L>
class repeated {
public:
    repeated() = default;
    explicit repeated(std::vector<L> items) : items_(std::move(items)) {
        if (items_.empty()) {
            throw error("frugal::repeated: needs at least one layer");
        }
        set_name("");
        set_input_grad(true);
    }

    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
    [[nodiscard]] L& operator[](std::size_t i) noexcept { return items_[i]; }
    [[nodiscard]] const L& operator[](std::size_t i) const noexcept { return items_[i]; }
    [[nodiscard]] auto begin() noexcept { return items_.begin(); }
    [[nodiscard]] auto end() noexcept { return items_.end(); }

    void set_name(std::string prefix) {
        name_ = std::move(prefix);
        for (std::size_t i = 0; i < items_.size(); ++i) {
            detail::name_child(items_[i], name_, i);
        }
    }
    void set_input_grad(bool on) {
        for (std::size_t i = 0; i < items_.size(); ++i) {
            items_[i].set_input_grad(i == 0 ? on : true);
        }
    }
    void reset_parameters(rng& g) {
        for (auto& l : items_) {
            l.reset_parameters(g);
        }
    }
    [[nodiscard]] shape4 output_shape(shape4 s) const {
        for (const auto& l : items_) {
            s = l.output_shape(s);
        }
        return s;
    }
    /// Runs the layers in order. Layers that keep the plane ranges of their output and take those
    /// of their input (residual blocks of quantized convolutions) hand them on: the next layer's
    /// quantizer then skips its pass over the tensor.
    const tensor4& forward(context& ctx, const tensor4& x) {
        const tensor4* h = &x;
        if constexpr (hands_on_ranges) {
            const std::vector<value_range>* r = nullptr;
            for (auto& l : items_) {
                h = &l.forward(ctx, *h, r);
                r = l.output_ranges();
            }
        } else {
            for (auto& l : items_) {
                h = &l.forward(ctx, *h);
            }
        }
        return *h;
    }
    const tensor4& backward(context& ctx, const tensor4& dy) {
        const tensor4* g = &dy;
        for (std::size_t i = items_.size(); i-- > 0;) {
            g = &items_[i].backward(ctx, *g);
        }
        return *g;
    }
    void collect_parameters(std::vector<parameter>& ps) {
        for (auto& l : items_) {
            l.collect_parameters(ps);
        }
    }
    void save(archive_writer& a) const {
        a.tag("repeated/1");
        a.u64(items_.size());
        for (const auto& l : items_) {
            l.save(a);
        }
    }
    void load(archive_reader& a) {
        a.expect("repeated/1");
        const std::size_t at = a.offset();
        const std::uint64_t n = a.u64();
        if (n != items_.size()) {
            a.fail(at, detail::concat(name_, ": the checkpoint holds ", n, " repeated layers but the model has ",
                                      items_.size()));
        }
        for (auto& l : items_) {
            l.load(a);
        }
    }
    template <class F>
    void for_each_layer(F&& f) {
        for (auto& l : items_) {
            detail::visit_leaves(l, f);
        }
    }

private:
    static constexpr bool hands_on_ranges =
        requires(L& l, context& ctx, const tensor4& t, const std::vector<value_range>* r) {
            l.forward(ctx, t, r);
            { l.output_ranges() } -> std::convertible_to<const std::vector<value_range>*>;
        };

    std::vector<L> items_;
    std::string name_;
};

} // namespace frugal

#endif
