#ifndef FRUGAL_COST_ENERGY_HPP
#define FRUGAL_COST_ENERGY_HPP

/// @file
/// Energy per operation, as a value: frugal::energy_table.
///
/// The default is the 45 nm CMOS table of M. Horowitz, "Computing's energy
/// problem (and what we can do about it)", ISSCC 2014 (the table E2-Train,
/// Early-Bird, FracTrain and ShiftAddNet all quote), with bit-shift energies
/// from ShiftAddNet's table. Users load their own (an FPGA's, a newer node's)
/// from JSON. Entries a table does not list are interpolated from the ones it
/// does: quadratically in bit width for multiplications (a b-bit multiplier
/// grows with b^2; an a x b one with a*b), linearly for additions and shifts;
/// every interpolated entry is flagged in reports.
///
/// How counted operations become energy:
/// - a multiply-accumulate of a x b-bit operands = one a x b multiplication
///   plus one addition in the accumulator format (int32 for integer
///   operands, the wider float format for floating-point operands);
/// - additions, comparisons and absolute values = one addition each;
/// - shifts = one shift; multiplications = one multiplication.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "frugal/cost/json.hpp"
#include "frugal/cost/meter.hpp"
#include "frugal/error.hpp"

namespace frugal {

/// Unit operations an energy table prices.
enum class unit_op : std::uint8_t { add = 0, multiply = 1, shift = 2 };

[[nodiscard]] constexpr std::string_view to_string(unit_op o) noexcept {
    switch (o) {
    case unit_op::add: return "add";
    case unit_op::multiply: return "multiply";
    case unit_op::shift: return "shift";
    }
    return "?";
}

/// Parses "int8", "fp32", "fix16" (fix = int) into an op_format.
[[nodiscard]] inline std::optional<op_format> parse_format(std::string_view s) {
    auto digits = [](std::string_view d) -> std::optional<int> {
        if (d.empty() || d.size() > 3) {
            return std::nullopt;
        }
        int v = 0;
        for (char c : d) {
            if (c < '0' || c > '9') {
                return std::nullopt;
            }
            v = v * 10 + (c - '0');
        }
        return (v >= 1 && v <= 64) ? std::optional<int>(v) : std::nullopt;
    };
    if (s.rfind("int", 0) == 0) {
        if (const auto b = digits(s.substr(3))) {
            return op_format::integer(*b);
        }
    } else if (s.rfind("fix", 0) == 0) {
        if (const auto b = digits(s.substr(3))) {
            return op_format::integer(*b);
        }
    } else if (s.rfind("fp", 0) == 0) {
        if (const auto b = digits(s.substr(2))) {
            return op_format::fp(*b);
        }
    }
    return std::nullopt;
}

/// Energy in picojoules per unit operation and format.
class energy_table {
public:
    /// One priced operation.
    struct entry {
        unit_op op;
        op_format format;
        double pj;
    };

    /// A price and whether it was interpolated.
    struct price {
        double pj = 0.0;
        bool interpolated = false;
    };

    energy_table() = default;
    energy_table(std::string name, std::string source) : name_(std::move(name)), source_(std::move(source)) {}

    /// The default: 45 nm CMOS, Horowitz (ISSCC 2014); shifts from ShiftAddNet (NeurIPS 2020).
    [[nodiscard]] static energy_table horowitz_45nm() {
        energy_table t("45nm",
                       "M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014, 45 nm "
                       "CMOS; bit shifts: ShiftAddNet, NeurIPS 2020");
        t.set(unit_op::add, op_format::integer(8), 0.03);
        t.set(unit_op::add, op_format::integer(16), 0.05);
        t.set(unit_op::add, op_format::integer(32), 0.1);
        t.set(unit_op::add, fp16, 0.4);
        t.set(unit_op::add, fp32, 0.9);
        t.set(unit_op::multiply, op_format::integer(8), 0.2);
        t.set(unit_op::multiply, op_format::integer(32), 3.1);
        t.set(unit_op::multiply, fp16, 1.1);
        t.set(unit_op::multiply, fp32, 3.7);
        t.set(unit_op::shift, op_format::integer(8), 0.024);
        t.set(unit_op::shift, op_format::integer(32), 0.13);
        return t;
    }

    /// Reads a table from JSON:
    /// {"name": "...", "source": "...", "unit": "pJ",
    ///  "add": {"int8": 0.03, "fp32": 0.9, ...}, "multiply": {...}, "shift": {...},
    ///  "memory_pj_per_byte": 20.0}  (the last one optional)
    /// Throws frugal::io_error naming the file and the entry that is wrong.
    [[nodiscard]] static energy_table load_json(const std::filesystem::path& file) {
        const json::value doc = json::parse_file(file);
        const std::string where = file.string();
        auto fail = [&](const std::string& what) -> void {
            throw io_error(detail::concat(where, ": ", what));
        };
        if (!doc.is_object()) {
            fail("an energy table must be a JSON object");
        }
        energy_table t;
        if (const auto* n = doc.find("name")) {
            if (!n->is_string()) {
                fail("entry 'name' must be a string");
            }
            t.name_ = n->as_string();
        } else {
            t.name_ = file.stem().string();
        }
        if (const auto* s = doc.find("source")) {
            if (!s->is_string()) {
                fail("entry 'source' must be a string");
            }
            t.source_ = s->as_string();
        }
        if (const auto* u = doc.find("unit")) {
            if (!u->is_string() || u->as_string() != "pJ") {
                fail("entry 'unit' must be \"pJ\" (energies are picojoules per operation)");
            }
        }
        for (const auto& [key, v] : doc.as_object()) {
            if (key == "name" || key == "source" || key == "unit") {
                continue;
            }
            if (key == "memory_pj_per_byte") {
                if (!v.is_number() || !(v.as_number() >= 0.0) || !std::isfinite(v.as_number())) {
                    fail("entry 'memory_pj_per_byte' must be a non-negative number");
                }
                t.memory_pj_per_byte_ = v.as_number();
                continue;
            }
            unit_op op{};
            if (key == "add") {
                op = unit_op::add;
            } else if (key == "multiply") {
                op = unit_op::multiply;
            } else if (key == "shift") {
                op = unit_op::shift;
            } else {
                fail("unknown entry '" + key + "' (expected add, multiply, shift, memory_pj_per_byte, name, source, unit)");
            }
            if (!v.is_object()) {
                fail("entry '" + key + "' must be an object of format: picojoules, e.g. {\"int8\": 0.03}");
            }
            for (const auto& [fmt, pj] : v.as_object()) {
                const auto f = parse_format(fmt);
                if (!f) {
                    fail("entry '" + key + "." + fmt + "': unknown format (use int<bits>, fix<bits> or fp<bits>)");
                }
                if (!pj.is_number() || !std::isfinite(pj.as_number()) || pj.as_number() <= 0.0) {
                    fail("entry '" + key + "." + fmt + "' must be a positive number of picojoules");
                }
                t.set(op, *f, pj.as_number());
            }
        }
        // a usable table prices at least one addition and one multiplication
        if (!t.has(unit_op::add) || !t.has(unit_op::multiply)) {
            fail("the table must price at least one 'add' and one 'multiply' format");
        }
        return t;
    }

    /// The table as JSON (what load_json reads).
    [[nodiscard]] json::value to_json() const {
        json::value v;
        v["name"] = name_;
        v["source"] = source_;
        v["unit"] = "pJ";
        for (const auto& e : entries()) {
            v[std::string(to_string(e.op))][e.format.name()] = e.pj;
        }
        if (memory_pj_per_byte_) {
            v["memory_pj_per_byte"] = *memory_pj_per_byte_;
        }
        return v;
    }

    void set(unit_op op, op_format f, double pj) { table_[key(op, f)] = pj; }
    [[nodiscard]] bool has(unit_op op) const {
        for (const auto& [k, v] : table_) {
            if (k.first == static_cast<int>(op)) {
                return true;
            }
        }
        return false;
    }

    /// Every listed entry.
    [[nodiscard]] std::vector<entry> entries() const {
        std::vector<entry> out;
        for (const auto& [k, v] : table_) {
            out.push_back({static_cast<unit_op>(k.first), unkey(k.second), v});
        }
        return out;
    }

    /// Price of one operation of format a (x b for multiplications).
    [[nodiscard]] price get(unit_op op, op_format a, op_format b) const {
        if (op == unit_op::multiply && a == b) {
            if (const auto it = table_.find(key(op, a)); it != table_.end()) {
                return {it->second, false};
            }
        } else if (op != unit_op::multiply) {
            if (const auto it = table_.find(key(op, a)); it != table_.end()) {
                return {it->second, false};
            }
        }
        return {interpolate(op, a, b), true};
    }
    [[nodiscard]] price get(unit_op op, op_format a) const { return get(op, a, a); }

    /// Energy of one multiply-accumulate of a x b operands, and whether any part was interpolated.
    [[nodiscard]] price mac(op_format a, op_format b) const {
        const price m = get(unit_op::multiply, a, b);
        const price s = get(unit_op::add, accumulator(a, b));
        return {m.pj + s.pj, m.interpolated || s.interpolated};
    }

    /// The accumulator format of a MAC: int32 for integers, the wider float otherwise.
    [[nodiscard]] static op_format accumulator(op_format a, op_format b) noexcept {
        if (!a.floating && !b.floating) {
            return op_format::integer(32);
        }
        const int bits = std::max(a.floating ? a.bits : 0, b.floating ? b.bits : 0);
        return op_format::fp(bits);
    }

    /// Energy of one counted operation.
    [[nodiscard]] price of(const op_key& k) const {
        switch (k.kind) {
        case op_kind::mac: return mac(k.a, k.b);
        case op_kind::multiply: return get(unit_op::multiply, k.a, k.b);
        case op_kind::shift: return get(unit_op::shift, k.a);
        case op_kind::add:
        case op_kind::abs:
        case op_kind::compare: return get(unit_op::add, k.a);
        }
        return {};
    }

    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] const std::string& source() const noexcept { return source_; }
    /// Memory energy per byte moved, when the table has a memory model.
    [[nodiscard]] std::optional<double> memory_pj_per_byte() const noexcept { return memory_pj_per_byte_; }
    void set_memory_pj_per_byte(std::optional<double> v) { memory_pj_per_byte_ = v; }

private:
    using key_t = std::pair<int, int>; // (op, format code)
    static key_t key(unit_op op, op_format f) { return {static_cast<int>(op), f.bits * 2 + (f.floating ? 1 : 0)}; }
    static op_format unkey(int code) { return {static_cast<std::uint8_t>(code / 2), (code % 2) != 0}; }

    /// Known (size, pJ) points for an operation over formats of one kind
    /// (integer or float); size is the bit width, or bits^2 for multiplications.
    [[nodiscard]] std::vector<std::pair<double, double>> points(unit_op op, bool floating) const {
        std::vector<std::pair<double, double>> p;
        for (const auto& [k, v] : table_) {
            if (k.first != static_cast<int>(op)) {
                continue;
            }
            const op_format f = unkey(k.second);
            if (f.floating == floating) {
                const double b = f.bits;
                p.emplace_back(op == unit_op::multiply ? b * b : b, v);
            }
        }
        std::sort(p.begin(), p.end());
        return p;
    }

    [[nodiscard]] double interpolate(unit_op op, op_format a, op_format b) const {
        // multiplications scale with a * b (b^2 for equal widths), the rest with the width
        const bool floating = a.floating || b.floating;
        const double size = op == unit_op::multiply ? static_cast<double>(a.bits) * b.bits : static_cast<double>(a.bits);
        auto p = points(op, floating);
        if (p.empty()) {
            p = points(op, !floating); // e.g. a table of integer shifts asked for a float shift
        }
        if (p.empty()) {
            throw error(detail::concat("frugal::energy_table '", name_, "': no '", to_string(op),
                                       "' entry to interpolate ", a.name(), " from"));
        }
        if (size <= p.front().first) {
            return p.front().second * size / p.front().first; // proportional below the smallest entry
        }
        if (size >= p.back().first) {
            return p.back().second * size / p.back().first; // and above the largest
        }
        for (std::size_t i = 1; i < p.size(); ++i) {
            if (size <= p[i].first) {
                const double t = (size - p[i - 1].first) / (p[i].first - p[i - 1].first);
                return p[i - 1].second + t * (p[i].second - p[i - 1].second);
            }
        }
        return p.back().second;
    }

    std::string name_ = "custom";
    std::string source_;
    std::map<key_t, double> table_;
    std::optional<double> memory_pj_per_byte_;
};

/// Energy of a set of counted operations.
struct energy_estimate {
    double joules = 0.0;
    double memory_joules = 0.0;                ///< only with a memory model
    std::set<std::string> interpolated;        ///< operations priced by interpolation ("mac int4xint10")
};

/// Prices the operations (and, with a memory model, the bytes) of `ops`.
[[nodiscard]] inline energy_estimate estimate(const std::map<op_key, std::uint64_t>& ops, std::uint64_t bytes,
                                              const energy_table& t) {
    energy_estimate e;
    for (const auto& [k, n] : ops) {
        const auto p = t.of(k);
        e.joules += static_cast<double>(n) * p.pj * 1e-12;
        if (p.interpolated) {
            e.interpolated.insert(k.name());
        }
    }
    if (const auto m = t.memory_pj_per_byte()) {
        e.memory_joules = static_cast<double>(bytes) * *m * 1e-12;
    }
    return e;
}

/// Multiply-accumulates of any format.
[[nodiscard]] inline double macs_of(const std::map<op_key, std::uint64_t>& ops) {
    double s = 0.0;
    for (const auto& [k, n] : ops) {
        s += k.kind == op_kind::mac ? static_cast<double>(n) : 0.0;
    }
    return s;
}

/// FLOPs: two per multiply-accumulate, one per other operation.
[[nodiscard]] inline double flops_of(const std::map<op_key, std::uint64_t>& ops) {
    double s = 0.0;
    for (const auto& [k, n] : ops) {
        s += static_cast<double>(n) * (k.kind == op_kind::mac ? 2.0 : 1.0);
    }
    return s;
}

/// Bilinear bit operations (FracTrain's cost model): an a x b-bit MAC counts
/// a * b / 1024 of an fp32 MAC. Returns fp32-MAC equivalents.
[[nodiscard]] inline double bitops_fp32_macs(const std::map<op_key, std::uint64_t>& ops) {
    double s = 0.0;
    for (const auto& [k, n] : ops) {
        if (k.kind == op_kind::mac) {
            s += static_cast<double>(n) * k.a.bits * k.b.bits / 1024.0;
        }
    }
    return s;
}

} // namespace frugal

#endif
