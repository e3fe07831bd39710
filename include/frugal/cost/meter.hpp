#ifndef FRUGAL_COST_METER_HPP
#define FRUGAL_COST_METER_HPP

/// @file
/// frugal::cost_meter: what a run actually executed, and how long it took.
///
/// Every kernel reports, once per call, the operations it executed
/// (multiply-accumulates by operand formats, additions, absolute values,
/// shifts, comparisons) and the bytes it read and wrote, under the layer and
/// phase it ran for: forward, backward to inputs, weight gradient, optimizer
/// update. Layers time each phase with a steady clock. Nothing is recorded
/// for work that did not run: a skipped block, a dropped batch or a pruned
/// channel costs nothing because it executed nothing.
///
/// The meter is carried by the step context (never global); a null meter
/// records nothing and costs nothing.

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace frugal {

/// The four phases of a training step.
enum class phase : std::uint8_t { forward = 0, backward_input = 1, weight_gradient = 2, update = 3 };
inline constexpr std::size_t phase_count = 4;

[[nodiscard]] constexpr std::string_view to_string(phase p) noexcept {
    switch (p) {
    case phase::forward: return "forward";
    case phase::backward_input: return "backward_input";
    case phase::weight_gradient: return "weight_gradient";
    case phase::update: return "update";
    }
    return "?";
}

/// A number format as the meter counts it: a width in bits and whether it is
/// floating point. Narrow integer widths stored in 8 bits are counted at their
/// true width (a 4-bit operand is int4 here even if it sits in an int8_t).
struct op_format {
    std::uint8_t bits = 32;
    bool floating = true;

    [[nodiscard]] static constexpr op_format fp(int bits) noexcept { return {static_cast<std::uint8_t>(bits), true}; }
    [[nodiscard]] static constexpr op_format integer(int bits) noexcept {
        return {static_cast<std::uint8_t>(bits), false};
    }
    [[nodiscard]] std::string name() const { return (floating ? "fp" : "int") + std::to_string(bits); }
    friend constexpr bool operator==(const op_format&, const op_format&) = default;
    friend constexpr auto operator<=>(const op_format&, const op_format&) = default;
};
inline constexpr op_format fp32 = op_format::fp(32);
inline constexpr op_format fp16 = op_format::fp(16);

/// Kinds of counted operations.
enum class op_kind : std::uint8_t { mac = 0, add = 1, abs = 2, shift = 3, compare = 4, multiply = 5 };
inline constexpr std::size_t op_kind_count = 6;

[[nodiscard]] constexpr std::string_view to_string(op_kind k) noexcept {
    switch (k) {
    case op_kind::mac: return "mac";
    case op_kind::add: return "add";
    case op_kind::abs: return "abs";
    case op_kind::shift: return "shift";
    case op_kind::compare: return "compare";
    case op_kind::multiply: return "multiply";
    }
    return "?";
}

/// An operation kind with its operand formats (b is ignored for unary kinds
/// and set equal to a).
struct op_key {
    op_kind kind = op_kind::mac;
    op_format a = fp32;
    op_format b = fp32;
    friend constexpr bool operator==(const op_key&, const op_key&) = default;
    friend constexpr auto operator<=>(const op_key&, const op_key&) = default;
    [[nodiscard]] std::string name() const {
        std::string n(to_string(kind));
        n += ' ';
        n += a.name();
        if (kind == op_kind::mac || kind == op_kind::multiply) {
            n += 'x';
            n += b.name();
        }
        return n;
    }
};

/// counts - before, entry by entry (what an interval added).
[[nodiscard]] inline std::map<op_key, std::uint64_t> difference(const std::map<op_key, std::uint64_t>& counts,
                                                                const std::map<op_key, std::uint64_t>& before) {
    std::map<op_key, std::uint64_t> d;
    for (const auto& [k, v] : counts) {
        const auto it = before.find(k);
        const std::uint64_t b = it == before.end() ? 0 : it->second;
        if (v > b) {
            d[k] = v - b;
        }
    }
    return d;
}

/// Operation counts by kind and format.
using op_counts = std::map<op_key, std::uint64_t>;

/// Counts of one layer in one phase.
struct phase_costs {
    op_counts ops;
    std::uint64_t bytes_read = 0;
    std::uint64_t bytes_written = 0;
    double seconds = 0.0;
    std::uint64_t calls = 0;

    void merge(const phase_costs& o) {
        for (const auto& [k, v] : o.ops) {
            ops[k] += v;
        }
        bytes_read += o.bytes_read;
        bytes_written += o.bytes_written;
        seconds += o.seconds;
        calls += o.calls;
    }
    [[nodiscard]] std::uint64_t count(op_kind k) const {
        std::uint64_t s = 0;
        for (const auto& [key, v] : ops) {
            s += key.kind == k ? v : 0;
        }
        return s;
    }
};

/// Costs of one layer, by phase.
struct layer_costs {
    std::string name;
    std::array<phase_costs, phase_count> phases;

    [[nodiscard]] const phase_costs& operator[](phase p) const noexcept { return phases[static_cast<std::size_t>(p)]; }
    [[nodiscard]] phase_costs& operator[](phase p) noexcept { return phases[static_cast<std::size_t>(p)]; }
};

/// Collects the costs of a run, by layer and phase.
class cost_meter {
public:
    using layer_id = std::uint32_t;

    cost_meter() = default;
    // A copy or an assignment is a different meter for the layers' cached ids
    // (meter_slot): it gets a serial of its own.
    cost_meter(const cost_meter& o) : layers_(o.layers_), index_(o.index_) {}
    cost_meter(cost_meter&& o) noexcept : layers_(std::move(o.layers_)), index_(std::move(o.index_)) {
        o.serial_ = next_serial();
    }
    cost_meter& operator=(const cost_meter& o) {
        if (this != &o) {
            layers_ = o.layers_;
            index_ = o.index_;
            serial_ = next_serial();
        }
        return *this;
    }
    cost_meter& operator=(cost_meter&& o) noexcept {
        if (this != &o) {
            layers_ = std::move(o.layers_);
            index_ = std::move(o.index_);
            serial_ = next_serial();
            o.serial_ = next_serial();
        }
        return *this;
    }
    ~cost_meter() = default;

    /// Identifies this meter among all meters alive or gone: two meters never
    /// share a serial, even when one is built where another was destroyed.
    [[nodiscard]] std::uint64_t serial() const noexcept { return serial_; }

    /// The id of the layer called `name`, added on first use. Names are the
    /// layers' dotted paths in the model ("stage2.block1.conv1").
    layer_id layer(std::string_view name) {
        const auto it = index_.find(std::string(name));
        if (it != index_.end()) {
            return it->second;
        }
        const auto id = static_cast<layer_id>(layers_.size());
        layers_.push_back(layer_costs{std::string(name), {}});
        index_.emplace(std::string(name), id);
        return id;
    }

    /// Records n operations of one kind.
    void count(layer_id l, phase p, op_kind k, op_format a, op_format b, std::uint64_t n) {
        if (n != 0) {
            at(l, p).ops[op_key{k, a, b}] += n;
        }
    }
    void mac(layer_id l, phase p, op_format a, op_format b, std::uint64_t n) { count(l, p, op_kind::mac, a, b, n); }
    void unary(layer_id l, phase p, op_kind k, op_format a, std::uint64_t n) { count(l, p, k, a, a, n); }
    /// Records memory traffic.
    void bytes(layer_id l, phase p, std::uint64_t read, std::uint64_t written) {
        auto& c = at(l, p);
        c.bytes_read += read;
        c.bytes_written += written;
    }
    /// Records wall-clock time of one call.
    void time(layer_id l, phase p, double seconds) {
        auto& c = at(l, p);
        c.seconds += seconds;
        ++c.calls;
    }

    [[nodiscard]] const std::vector<layer_costs>& layers() const noexcept { return layers_; }

    /// Sum over layers, by phase.
    [[nodiscard]] std::array<phase_costs, phase_count> totals() const {
        std::array<phase_costs, phase_count> t;
        for (const auto& l : layers_) {
            for (std::size_t p = 0; p < phase_count; ++p) {
                t[p].merge(l.phases[p]);
            }
        }
        return t;
    }

    /// All operations of every layer and phase.
    [[nodiscard]] op_counts all_ops() const {
        op_counts all;
        for (const auto& l : layers_) {
            for (const auto& p : l.phases) {
                for (const auto& [k, v] : p.ops) {
                    all[k] += v;
                }
            }
        }
        return all;
    }
    /// Bytes read and written by every layer and phase.
    [[nodiscard]] std::uint64_t all_bytes() const {
        std::uint64_t b = 0;
        for (const auto& l : layers_) {
            for (const auto& p : l.phases) {
                b += p.bytes_read + p.bytes_written;
            }
        }
        return b;
    }

    /// Adds another meter's counts (by layer name).
    void merge(const cost_meter& o) {
        for (const auto& l : o.layers_) {
            const layer_id id = layer(l.name);
            for (std::size_t p = 0; p < phase_count; ++p) {
                layers_[id].phases[p].merge(l.phases[p]);
            }
        }
    }

    /// Forgets all counts (the layer names stay).
    void reset() {
        for (auto& l : layers_) {
            l.phases = {};
        }
    }

private:
    phase_costs& at(layer_id l, phase p) {
        if (l >= layers_.size()) {
            throw std::out_of_range("frugal::cost_meter: layer id " + std::to_string(l) + " is not registered (" +
                                    std::to_string(layers_.size()) + " layers)");
        }
        return layers_[l].phases[static_cast<std::size_t>(p)];
    }

    static std::uint64_t next_serial() noexcept {
        static std::atomic<std::uint64_t> counter{0};
        return ++counter;
    }

    std::vector<layer_costs> layers_;
    std::unordered_map<std::string, layer_id> index_;
    std::uint64_t serial_ = next_serial();
};

/// A layer's handle on the meter of the current step: resolves its name once
/// per meter and records through it; does nothing without a meter.
class meter_slot {
public:
    meter_slot() = default;
    explicit meter_slot(std::string name) : name_(std::move(name)) {}

    void rename(std::string name) {
        name_ = std::move(name);
        meter_ = nullptr;
        serial_ = 0;
    }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

    /// The id under `m`, or nullopt-like false when m is null.
    [[nodiscard]] cost_meter* bind(cost_meter* m) {
        if (m != nullptr && (m != meter_ || m->serial() != serial_)) {
            id_ = m->layer(name_);
            meter_ = m;
            serial_ = m->serial();
        }
        return m;
    }
    [[nodiscard]] cost_meter::layer_id id() const noexcept { return id_; }

private:
    std::string name_ = "layer";
    cost_meter* meter_ = nullptr;
    std::uint64_t serial_ = 0;
    cost_meter::layer_id id_ = 0;
};

/// Times a scope and records it under (layer, phase) when a meter is present.
class scoped_timer {
public:
    scoped_timer(cost_meter* m, meter_slot& slot, phase p) : meter_(slot.bind(m)), id_(slot.id()), phase_(p) {
        if (meter_ != nullptr) {
            start_ = std::chrono::steady_clock::now();
        }
    }
    scoped_timer(const scoped_timer&) = delete;
    scoped_timer& operator=(const scoped_timer&) = delete;
    ~scoped_timer() {
        if (meter_ != nullptr) {
            meter_->time(id_, phase_,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
        }
    }

private:
    cost_meter* meter_;
    cost_meter::layer_id id_;
    phase phase_;
    std::chrono::steady_clock::time_point start_{};
};

} // namespace frugal

#endif
