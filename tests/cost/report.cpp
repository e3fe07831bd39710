// Run reports: run.json, epochs.csv and layers.csv parse back to what was
// written, the SVG files are well-formed with the expected series, and the
// comparison table prints the savings against the baseline.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <frugal/cost/report.hpp>
#include <frugal/train/trainer.hpp>

#include "cost/xml_check.hpp"
#include "temp_dir.hpp"

namespace fr = frugal;
using fr::op_kind;
using fr::phase;

using test::read_text;
using test::temp_dir;

namespace {



std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& file) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream in(read_text(file));
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> cells;
        std::string cell;
        std::istringstream ls(line);
        while (std::getline(ls, cell, ',')) {
            cells.push_back(cell);
        }
        rows.push_back(cells);
    }
    return rows;
}

std::size_t count(const std::string& s, const std::string& part) {
    std::size_t n = 0;
    for (auto at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) {
        ++n;
    }
    return n;
}

/// A three-epoch run whose epochs cost `scale` x 1e6 fp32 MACs and 1e5 int8 MACs each.
fr::run_report sample_run(const std::string& name, double scale, double accuracy) {
    std::vector<fr::epoch_record> history;
    for (std::uint64_t e = 1; e <= 3; ++e) {
        fr::epoch_record h;
        h.epoch = e;
        h.train_loss = 1.0 / static_cast<double>(e);
        h.train_accuracy = 0.5 + 0.1 * static_cast<double>(e);
        h.test_loss = 1.2 / static_cast<double>(e);
        h.test_accuracy = accuracy - 0.01 * static_cast<double>(3 - e);
        h.train_seconds = 10.0 * scale;
        h.executed = 100;
        h.nominal = 100;
        h.ops[{op_kind::mac, fr::fp32, fr::fp32}] = static_cast<std::uint64_t>(1e6 * scale);
        h.ops[{op_kind::mac, fr::op_format::integer(8), fr::op_format::integer(8)}] = 100000;
        h.bytes = 4096;
        history.push_back(h);
    }
    fr::cost_meter meter;
    const auto conv = meter.layer("stem.conv");
    const auto fc = meter.layer("head.fc");
    meter.mac(conv, phase::forward, fr::fp32, fr::fp32, 1000);
    meter.mac(conv, phase::weight_gradient, fr::fp32, fr::fp32, 1000);
    meter.time(conv, phase::forward, 0.25);
    meter.mac(fc, phase::forward, fr::fp32, fr::fp32, 10);
    meter.mac(fc, phase::backward_input, fr::fp32, fr::fp32, 10);
    meter.unary(fc, phase::update, op_kind::add, fr::fp32, 7);
    return fr::make_report(name, "lenet5", history, meter, {{"lr", "0.015"}, {"batch", "16"}});
}

} // namespace

TEST_SUITE("cost/report") {

TEST_CASE("a run folder parses back to the report that wrote it") {
    temp_dir dir;
    const auto table = fr::energy_table::horowitz_45nm();
    const auto r = sample_run("fp32", 1.0, 0.9);
    fr::write_run(dir.path(), r, table);
    const auto back = fr::read_run(dir.path());
    CHECK(back.name == "fp32");
    CHECK(back.model == "lenet5");
    CHECK(back.settings == r.settings);
    REQUIRE(back.epochs.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(back.epochs[i].epoch == r.epochs[i].epoch);
        CHECK(back.epochs[i].test_accuracy == r.epochs[i].test_accuracy);
        CHECK(back.epochs[i].train_loss == r.epochs[i].train_loss);
        CHECK(back.epochs[i].ops == r.epochs[i].ops);
        CHECK(back.epochs[i].bytes == r.epochs[i].bytes);
    }
    REQUIRE(back.layers.size() == r.layers.size());
    CHECK(r.layers.size() == 5); // phases that recorded anything
    for (std::size_t i = 0; i < r.layers.size(); ++i) {
        CHECK(back.layers[i].layer == r.layers[i].layer);
        CHECK(back.layers[i].ph == r.layers[i].ph);
        CHECK(back.layers[i].ops == r.layers[i].ops);
        CHECK(back.layers[i].seconds == r.layers[i].seconds);
    }
    // run.json names the energy table it priced with
    const std::string json = read_text(dir.path() / "run.json");
    CHECK(json.find("45nm") != std::string::npos);

    // epochs.csv: a header and one line per epoch; energy and cumulative energy as computed by hand
    const auto rows = read_csv(dir.path() / "epochs.csv");
    REQUIRE(rows.size() == 4);
    REQUIRE(rows[0].size() == 13);
    CHECK(rows[0][0] == "epoch");
    CHECK(rows[0][11] == "energy_joules");
    const double per_epoch = (1e6 * (3.7 + 0.9) + 1e5 * (0.2 + 0.1)) * 1e-12;
    for (std::size_t e = 1; e <= 3; ++e) {
        REQUIRE(rows[e].size() == 13);
        CHECK(std::stoul(rows[e][0]) == e);
        CHECK(std::stod(rows[e][8]) == doctest::Approx(1.1e6));
        CHECK(std::stod(rows[e][11]) == doctest::Approx(per_epoch).epsilon(1e-5));
        CHECK(std::stod(rows[e][12]) == doctest::Approx(per_epoch * static_cast<double>(e)).epsilon(1e-5));
    }
    // layers.csv: one line per layer, phase and operation
    const auto lrows = read_csv(dir.path() / "layers.csv");
    REQUIRE(lrows.size() == 1 + 5);
    CHECK(lrows[1][0] == "stem.conv");
    CHECK(lrows[1][1] == "forward");
    CHECK(lrows[1][2] == "mac fp32xfp32");
    CHECK(lrows[1][3] == "1000");
    CHECK(std::stod(lrows[1][4]) == doctest::Approx(1000 * 4.6e-12));

    // the SVGs: well-formed; four curve panels of two series; a bar series per phase
    const std::string curves = read_text(dir.path() / "curves.svg");
    CHECK(xmlcheck::xml_error(curves).empty());
    CHECK(count(curves, "class=\"series\"") == 8);
    const std::string bars = read_text(dir.path() / "layer-energy.svg");
    CHECK(xmlcheck::xml_error(bars).empty());
    CHECK(count(bars, "class=\"series\"") == 4);
}

TEST_CASE("the comparison table and plot show savings against the baseline") {
    const auto table = fr::energy_table::horowitz_45nm();
    const std::vector<fr::run_report> runs = {sample_run("fp32", 1.0, 0.90), sample_run("half", 0.5, 0.89)};
    std::ostringstream os;
    fr::print_comparison(os, runs, 0, table);
    const std::string out = os.str();
    INFO(out);
    CHECK(out.find("fp32") != std::string::npos);
    CHECK(out.find("half") != std::string::npos);
    CHECK(out.find("90.00%") != std::string::npos);
    CHECK(out.find("-1.00") != std::string::npos);  // accuracy against the baseline
    CHECK(out.find("+50.0%") != std::string::npos); // half the training time
    // energy saving: (1e6 x 4.6 + 1e5 x 0.3) vs (5e5 x 4.6 + 1e5 x 0.3) pJ per epoch
    char saving[16];
    std::snprintf(saving, sizeof saving, "%+.1f%%", 100.0 * (5e5 * 4.6) / (1e6 * 4.6 + 1e5 * 0.3));
    CHECK(out.find(saving) != std::string::npos);
    CHECK(out.find("baseline: fp32") != std::string::npos);
    CHECK_THROWS_AS(fr::print_comparison(os, runs, 2, table), fr::error);

    temp_dir dir;
    std::filesystem::create_directories(dir.path());
    fr::write_comparison_plot(dir.path() / "compare.svg", runs, table);
    const std::string doc = read_text(dir.path() / "compare.svg");
    CHECK(xmlcheck::xml_error(doc).empty());
    CHECK(count(doc, "class=\"series\"") == 2);
}

TEST_CASE("corrupt run files are rejected naming the file") {
    temp_dir dir;
    std::filesystem::create_directories(dir.path());
    std::ofstream(dir.path() / "run.json") << R"({"format": "frugal-run/1", "name": "x"})";
    try {
        (void)fr::read_run(dir.path());
        FAIL("a report without epochs was accepted");
    } catch (const fr::io_error& e) {
        CHECK(std::string(e.what()).find("run.json") != std::string::npos);
    }
    std::ofstream(dir.path() / "run.json") << R"({"name": "x"})";
    CHECK_THROWS_AS((void)fr::read_run(dir.path()), fr::io_error);
    CHECK_THROWS_AS((void)fr::read_run(dir.path() / "missing"), fr::io_error);
}

} // TEST_SUITE
