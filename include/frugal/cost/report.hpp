#ifndef FRUGAL_COST_REPORT_HPP
#define FRUGAL_COST_REPORT_HPP

/// @file
/// What a run reports, and how runs are compared.
///
/// A run folder holds:
/// - run.json: the run's summary (accuracy, wall time, every counted
///   operation by kind and format, per-epoch metrics and costs, per-layer
///   and per-phase costs, the energy under the table used), read back by
///   frugal-report;
/// - epochs.csv: one line per epoch (loss, accuracy, time, MACs, FLOPs,
///   BitOPs, energy, cumulative energy);
/// - layers.csv: one line per layer, phase and operation (count, energy, time);
/// - curves.svg: loss and accuracy against epoch and against cumulative energy;
/// - layer-energy.svg: energy per layer, stacked by phase.
/// `print_comparison` puts several runs side by side with the saving of each
/// against a named baseline.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "frugal/cost/energy.hpp"
#include "frugal/cost/json.hpp"
#include "frugal/cost/meter.hpp"
#include "frugal/cost/svg.hpp"
#include "frugal/error.hpp"

namespace frugal {

/// One epoch of a run, as reports see it.
struct epoch_costs {
    std::uint64_t epoch = 0;
    double train_loss = 0.0, train_accuracy = 0.0, test_loss = 0.0, test_accuracy = 0.0;
    double train_seconds = 0.0;
    std::uint64_t executed = 0, nominal = 0;
    op_counts ops;
    std::uint64_t bytes = 0;
};

/// Costs of one layer in one phase, as reports see them.
struct layer_phase_costs {
    std::string layer;
    phase ph = phase::forward;
    op_counts ops;
    std::uint64_t bytes = 0;
    double seconds = 0.0;
};

/// A finished run: what frugal-report compares.
struct run_report {
    std::string name;                           ///< "fp32", "smd+slu+psg", ...
    std::string model;
    std::map<std::string, std::string> settings; ///< the recipe, as text
    std::vector<epoch_costs> epochs;
    std::vector<layer_phase_costs> layers;      ///< may cover only the epochs of the last (resumed) call

    [[nodiscard]] double test_accuracy() const { return epochs.empty() ? 0.0 : epochs.back().test_accuracy; }
    [[nodiscard]] double best_accuracy() const {
        double b = 0.0;
        for (const auto& e : epochs) {
            b = std::max(b, e.test_accuracy);
        }
        return b;
    }
    [[nodiscard]] double train_seconds() const {
        double s = 0.0;
        for (const auto& e : epochs) {
            s += e.train_seconds;
        }
        return s;
    }
    [[nodiscard]] op_counts ops() const {
        op_counts all;
        for (const auto& e : epochs) {
            for (const auto& [k, v] : e.ops) {
                all[k] += v;
            }
        }
        return all;
    }
    [[nodiscard]] std::uint64_t bytes() const {
        std::uint64_t b = 0;
        for (const auto& e : epochs) {
            b += e.bytes;
        }
        return b;
    }
};

/// A report from a run's history and meter (any type with the fields of
/// frugal::epoch_record: the trainer's records).
template <class History>
[[nodiscard]] run_report make_report(std::string name, std::string model, const History& history,
                                     const cost_meter& meter, std::map<std::string, std::string> settings = {}) {
    run_report r;
    r.name = std::move(name);
    r.model = std::move(model);
    r.settings = std::move(settings);
    for (const auto& h : history) {
        epoch_costs e;
        e.epoch = h.epoch;
        e.train_loss = h.train_loss;
        e.train_accuracy = h.train_accuracy;
        e.test_loss = h.test_loss;
        e.test_accuracy = h.test_accuracy;
        e.train_seconds = h.train_seconds;
        e.executed = h.executed;
        e.nominal = h.nominal;
        e.ops = h.ops;
        e.bytes = h.bytes;
        r.epochs.push_back(std::move(e));
    }
    for (const auto& l : meter.layers()) {
        for (std::size_t p = 0; p < phase_count; ++p) {
            const auto& c = l.phases[p];
            if (c.ops.empty() && c.seconds == 0.0 && c.bytes_read + c.bytes_written == 0) {
                continue;
            }
            r.layers.push_back({l.name, static_cast<phase>(p), c.ops, c.bytes_read + c.bytes_written, c.seconds});
        }
    }
    return r;
}

namespace detail {

inline json::value ops_to_json(const op_counts& ops) {
    json::value a;
    a = json::value(json::array{});
    for (const auto& [k, n] : ops) {
        json::value e;
        e["kind"] = std::string(to_string(k.kind));
        e["a"] = k.a.name();
        e["b"] = k.b.name();
        e["count"] = static_cast<double>(n);
        a.push_back(std::move(e));
    }
    return a;
}

inline op_kind parse_kind(const std::string& s, const std::string& where) {
    for (std::size_t i = 0; i < op_kind_count; ++i) {
        if (to_string(static_cast<op_kind>(i)) == s) {
            return static_cast<op_kind>(i);
        }
    }
    throw io_error(concat(where, ": unknown operation kind '", s, "'"));
}

inline op_counts ops_from_json(const json::value& a, const std::string& where) {
    op_counts ops;
    for (const auto& e : a.as_array()) {
        const auto fa = parse_format(e.at("a").as_string());
        const auto fb = parse_format(e.at("b").as_string());
        if (!fa || !fb) {
            throw io_error(concat(where, ": unknown number format '", e.at("a").as_string(), "' or '",
                                  e.at("b").as_string(), "'"));
        }
        const double n = e.at("count").as_number();
        if (!(n >= 0.0)) {
            throw io_error(concat(where, ": negative operation count"));
        }
        ops[op_key{parse_kind(e.at("kind").as_string(), where), *fa, *fb}] += static_cast<std::uint64_t>(n);
    }
    return ops;
}

inline std::string si(double v, const char* unit) {
    const char* prefixes[] = {"", "k", "M", "G", "T", "P", "E"};
    int i = 0;
    while (std::fabs(v) >= 1000.0 && i < 6) {
        v /= 1000.0;
        ++i;
    }
    char b[64];
    std::snprintf(b, sizeof b, "%.3g %s%s", v, prefixes[i], unit);
    return b;
}

inline std::string joules(double j) {
    char b[64];
    if (j >= 1.0) {
        std::snprintf(b, sizeof b, "%.3g J", j);
    } else if (j >= 1e-3) {
        std::snprintf(b, sizeof b, "%.3g mJ", j * 1e3);
    } else {
        std::snprintf(b, sizeof b, "%.3g uJ", j * 1e6);
    }
    return b;
}

inline void write_text(const std::filesystem::path& file, const std::string& text) {
    const std::filesystem::path tmp = file.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out) {
            throw io_error(concat(file.string(), ": cannot write"));
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) {
        throw io_error(concat(file.string(), ": cannot write: ", ec.message()));
    }
}

} // namespace detail

/// The report as JSON; energies are computed with `table` (and can be
/// recomputed from the counts with another one).
[[nodiscard]] inline json::value to_json(const run_report& r, const energy_table& table) {
    json::value v;
    v["format"] = "frugal-run/1";
    v["name"] = r.name;
    v["model"] = r.model;
    json::value settings;
    settings = json::value(json::object{});
    for (const auto& [k, s] : r.settings) {
        settings[k] = s;
    }
    v["settings"] = std::move(settings);
    const op_counts ops = r.ops();
    const energy_estimate e = estimate(ops, r.bytes(), table);
    json::value summary;
    summary["test_accuracy"] = r.test_accuracy();
    summary["best_test_accuracy"] = r.best_accuracy();
    summary["train_seconds"] = r.train_seconds();
    summary["epochs"] = static_cast<double>(r.epochs.size());
    summary["macs"] = macs_of(ops);
    summary["flops"] = flops_of(ops);
    summary["bitops_fp32_macs"] = bitops_fp32_macs(ops);
    summary["energy_joules"] = e.joules;
    if (table.memory_pj_per_byte()) {
        summary["memory_energy_joules"] = e.memory_joules;
    }
    summary["bytes"] = static_cast<double>(r.bytes());
    json::value interp;
    interp = json::value(json::array{});
    for (const auto& s : e.interpolated) {
        interp.push_back(s);
    }
    summary["interpolated_energy_entries"] = std::move(interp);
    v["summary"] = std::move(summary);
    v["energy_table"] = table.to_json();
    v["ops"] = detail::ops_to_json(ops);
    json::value epochs;
    epochs = json::value(json::array{});
    for (const auto& ep : r.epochs) {
        json::value j;
        j["epoch"] = static_cast<double>(ep.epoch);
        j["train_loss"] = ep.train_loss;
        j["train_accuracy"] = ep.train_accuracy;
        j["test_loss"] = ep.test_loss;
        j["test_accuracy"] = ep.test_accuracy;
        j["train_seconds"] = ep.train_seconds;
        j["executed_batches"] = static_cast<double>(ep.executed);
        j["nominal_batches"] = static_cast<double>(ep.nominal);
        j["bytes"] = static_cast<double>(ep.bytes);
        j["ops"] = detail::ops_to_json(ep.ops);
        epochs.push_back(std::move(j));
    }
    v["epochs"] = std::move(epochs);
    json::value layers;
    layers = json::value(json::array{});
    for (const auto& l : r.layers) {
        json::value j;
        j["layer"] = l.layer;
        j["phase"] = std::string(to_string(l.ph));
        j["seconds"] = l.seconds;
        j["bytes"] = static_cast<double>(l.bytes);
        j["ops"] = detail::ops_to_json(l.ops);
        layers.push_back(std::move(j));
    }
    v["layers"] = std::move(layers);
    return v;
}

/// Reads a report written by to_json; `source` names it in errors.
[[nodiscard]] inline run_report report_from_json(const json::value& v, const std::string& source) {
    try {
        if (!v.is_object() || v.find("format") == nullptr || v.at("format").as_string() != "frugal-run/1") {
            throw io_error(detail::concat(source, ": not a frugal run report (missing \"format\": \"frugal-run/1\")"));
        }
        run_report r;
        r.name = v.at("name").as_string();
        r.model = v.at("model").as_string();
        for (const auto& [k, s] : v.at("settings").as_object()) {
            r.settings[k] = s.as_string();
        }
        for (const auto& j : v.at("epochs").as_array()) {
            epoch_costs e;
            e.epoch = static_cast<std::uint64_t>(j.at("epoch").as_number());
            e.train_loss = j.at("train_loss").as_number();
            e.train_accuracy = j.at("train_accuracy").as_number();
            e.test_loss = j.at("test_loss").as_number();
            e.test_accuracy = j.at("test_accuracy").as_number();
            e.train_seconds = j.at("train_seconds").as_number();
            e.executed = static_cast<std::uint64_t>(j.at("executed_batches").as_number());
            e.nominal = static_cast<std::uint64_t>(j.at("nominal_batches").as_number());
            e.bytes = static_cast<std::uint64_t>(j.at("bytes").as_number());
            e.ops = detail::ops_from_json(j.at("ops"), source);
            r.epochs.push_back(std::move(e));
        }
        for (const auto& j : v.at("layers").as_array()) {
            layer_phase_costs l;
            l.layer = j.at("layer").as_string();
            const std::string ph = j.at("phase").as_string();
            bool found = false;
            for (std::size_t p = 0; p < phase_count; ++p) {
                if (to_string(static_cast<phase>(p)) == ph) {
                    l.ph = static_cast<phase>(p);
                    found = true;
                }
            }
            if (!found) {
                throw io_error(detail::concat(source, ": unknown phase '", ph, "'"));
            }
            l.seconds = j.at("seconds").as_number();
            l.bytes = static_cast<std::uint64_t>(j.at("bytes").as_number());
            l.ops = detail::ops_from_json(j.at("ops"), source);
            r.layers.push_back(std::move(l));
        }
        return r;
    } catch (const io_error&) {
        throw;
    } catch (const error& e) {
        throw io_error(detail::concat(source, ": malformed run report: ", e.what()));
    }
}

/// Reads <dir>/run.json.
[[nodiscard]] inline run_report read_run(const std::filesystem::path& dir) {
    const auto file = std::filesystem::is_directory(dir) ? dir / "run.json" : dir;
    return report_from_json(json::parse_file(file), file.string());
}

/// Writes run.json, epochs.csv, layers.csv, curves.svg and layer-energy.svg into dir.
inline void write_run(const std::filesystem::path& dir, const run_report& r, const energy_table& table) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        throw io_error(detail::concat(dir.string(), ": cannot create the run folder: ", ec.message()));
    }
    json::write_file(dir / "run.json", to_json(r, table));

    // epochs.csv and the curves
    std::string csv =
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,train_seconds,executed_batches,nominal_batches,"
        "macs,flops,bitops_fp32_macs,energy_joules,cumulative_energy_joules\n";
    svg::series loss_e{"train loss", {}, {}}, test_loss_e{"test loss", {}, {}};
    svg::series acc_e{"train accuracy", {}, {}}, test_acc_e{"test accuracy", {}, {}};
    svg::series loss_j{"train loss", {}, {}}, test_loss_j{"test loss", {}, {}};
    svg::series acc_j{"train accuracy", {}, {}}, test_acc_j{"test accuracy", {}, {}};
    double cumulative = 0.0;
    for (const auto& e : r.epochs) {
        const double j = estimate(e.ops, e.bytes, table).joules;
        cumulative += j;
        char line[512];
        std::snprintf(line, sizeof line, "%llu,%.6f,%.6f,%.6f,%.6f,%.3f,%llu,%llu,%.6g,%.6g,%.6g,%.6g,%.6g\n",
                      static_cast<unsigned long long>(e.epoch), e.train_loss, e.train_accuracy, e.test_loss,
                      e.test_accuracy, e.train_seconds, static_cast<unsigned long long>(e.executed),
                      static_cast<unsigned long long>(e.nominal), macs_of(e.ops), flops_of(e.ops),
                      bitops_fp32_macs(e.ops), j, cumulative);
        csv += line;
        const double x = static_cast<double>(e.epoch);
        loss_e.x.push_back(x);
        loss_e.y.push_back(e.train_loss);
        test_loss_e.x.push_back(x);
        test_loss_e.y.push_back(e.test_loss);
        acc_e.x.push_back(x);
        acc_e.y.push_back(e.train_accuracy);
        test_acc_e.x.push_back(x);
        test_acc_e.y.push_back(e.test_accuracy);
        loss_j.x.push_back(cumulative);
        loss_j.y.push_back(e.train_loss);
        test_loss_j.x.push_back(cumulative);
        test_loss_j.y.push_back(e.test_loss);
        acc_j.x.push_back(cumulative);
        acc_j.y.push_back(e.train_accuracy);
        test_acc_j.x.push_back(cumulative);
        test_acc_j.y.push_back(e.test_accuracy);
    }
    detail::write_text(dir / "epochs.csv", csv);
    svg::chart c1(r.name + ": loss", "epoch", "loss");
    c1.add(loss_e);
    c1.add(test_loss_e);
    svg::chart c2(r.name + ": accuracy", "epoch", "accuracy");
    c2.add(acc_e);
    c2.add(test_acc_e);
    svg::chart c3(r.name + ": loss vs energy", "cumulative training energy (J, " + table.name() + ")", "loss");
    c3.add(loss_j);
    c3.add(test_loss_j);
    svg::chart c4(r.name + ": accuracy vs energy", "cumulative training energy (J, " + table.name() + ")",
                  "accuracy");
    c4.add(acc_j);
    c4.add(test_acc_j);
    svg::write(dir / "curves.svg", {c1, c2, c3, c4}, 2);

    // layers.csv and the per-layer energy bars
    std::string lcsv = "layer,phase,operation,count,energy_joules,seconds\n";
    std::vector<std::string> names;
    std::map<std::string, std::array<double, phase_count>> per_layer;
    for (const auto& l : r.layers) {
        if (per_layer.find(l.layer) == per_layer.end()) {
            names.push_back(l.layer);
            per_layer[l.layer] = {};
        }
        double layer_joules = 0.0;
        for (const auto& [k, n] : l.ops) {
            const double j = static_cast<double>(n) * table.of(k).pj * 1e-12;
            layer_joules += j;
            char line[512];
            std::snprintf(line, sizeof line, "%s,%s,%s,%llu,%.6g,%.6g\n", l.layer.c_str(),
                          std::string(to_string(l.ph)).c_str(), k.name().c_str(), static_cast<unsigned long long>(n),
                          j, l.seconds);
            lcsv += line;
        }
        per_layer[l.layer][static_cast<std::size_t>(l.ph)] += layer_joules;
    }
    detail::write_text(dir / "layers.csv", lcsv);
    svg::bar_chart bars(r.name + ": training energy per layer (" + table.name() + ")", "layer", "energy (J)");
    bars.set_categories(names);
    for (std::size_t p = 0; p < phase_count; ++p) {
        std::vector<double> values;
        for (const auto& n : names) {
            values.push_back(per_layer[n][p]);
        }
        bars.add(std::string(to_string(static_cast<phase>(p))), values);
    }
    svg::write(dir / "layer-energy.svg", {bars}, 1);
}

/// Prints runs side by side with their savings against runs[baseline].
inline void print_comparison(std::ostream& os, const std::vector<run_report>& runs, std::size_t baseline,
                             const energy_table& table) {
    if (runs.empty()) {
        return;
    }
    if (baseline >= runs.size()) {
        throw error(detail::concat("frugal::print_comparison: baseline ", baseline, " of ", runs.size(), " runs"));
    }
    struct row {
        std::string name;
        double acc, seconds, macs, bitops, joules;
        std::string formats;
        bool interpolated;
    };
    std::vector<row> rows;
    for (const auto& r : runs) {
        const op_counts ops = r.ops();
        const energy_estimate e = estimate(ops, r.bytes(), table);
        std::map<std::string, double> by_format;
        for (const auto& [k, n] : ops) {
            if (k.kind == op_kind::mac) {
                by_format[k.a.name() + (k.a == k.b ? "" : "x" + k.b.name())] += static_cast<double>(n);
            }
        }
        std::string formats;
        for (const auto& [f, n] : by_format) {
            formats += (formats.empty() ? "" : ", ") + f + " " + detail::si(n, "");
        }
        rows.push_back({r.name, r.test_accuracy(), r.train_seconds(), macs_of(ops), bitops_fp32_macs(ops), e.joules,
                        formats, !e.interpolated.empty()});
    }
    const row& b = rows[baseline];
    auto saving = [](double base, double v) {
        char s[32];
        if (base <= 0.0) {
            return std::string("-");
        }
        std::snprintf(s, sizeof s, "%+.1f%%", 100.0 * (base - v) / base);
        return std::string(s);
    };
    char line[1024];
    std::snprintf(line, sizeof line, "%-24s %9s %8s %10s %8s %12s %12s %8s %12s %8s  %s\n", "run", "test acc", "vs base",
                  "train time", "saving", "MACs", "BitOPs(fp32)", "saving", "energy", "saving", "MACs by format");
    os << line;
    for (const auto& r : rows) {
        char acc[16], dacc[16];
        std::snprintf(acc, sizeof acc, "%.2f%%", 100.0 * r.acc);
        std::snprintf(dacc, sizeof dacc, "%+.2f", 100.0 * (r.acc - b.acc));
        std::snprintf(line, sizeof line, "%-24s %9s %8s %9.1fs %8s %12s %12s %8s %11s%s %8s  %s\n", r.name.c_str(), acc,
                      dacc, r.seconds, saving(b.seconds, r.seconds).c_str(), detail::si(r.macs, "").c_str(),
                      detail::si(r.bitops, "").c_str(), saving(b.bitops, r.bitops).c_str(),
                      detail::joules(r.joules).c_str(), r.interpolated ? "*" : " ", saving(b.joules, r.joules).c_str(),
                      r.formats.c_str());
        os << line;
    }
    os << "baseline: " << b.name << "; energy from the " << table.name() << " table (" << table.source() << ")";
    bool any = false;
    for (const auto& r : rows) {
        any = any || r.interpolated;
    }
    if (any) {
        os << "; * = uses interpolated energy entries";
    }
    os << '\n';
}

/// Accuracy against training energy, one point per run.
inline void write_comparison_plot(const std::filesystem::path& file, const std::vector<run_report>& runs,
                                  const energy_table& table) {
    svg::chart c("test accuracy vs training energy", "training energy (J, " + table.name() + ")", "test accuracy");
    for (const auto& r : runs) {
        svg::series s{r.name, {estimate(r.ops(), r.bytes(), table).joules}, {r.test_accuracy()}};
        s.look = svg::series::style::points;
        c.add(s);
    }
    svg::write(file, {c}, 1);
}

} // namespace frugal

#endif
