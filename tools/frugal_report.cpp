// frugal-report: puts finished runs side by side.
//
//   frugal-report runs/fp32 runs/smd runs/e2train
//   frugal-report --baseline fp32 --plot compare.svg runs/*
//   frugal-report --energy-table fpga.json runs/fp32 runs/psg
//
// Each argument is a run folder (or its run.json) as the examples write it
// with --out. Prints accuracy, training time, MACs, BitOPs and energy of each
// run with its saving against the baseline run (the first one unless
// --baseline names another), and writes an accuracy-vs-energy scatter plot.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <frugal/cost/energy.hpp>
#include <frugal/cost/report.hpp>

#include "common/cli.hpp"

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "frugal-report", "compare finished frugal runs (their --out folders)");
    const std::string baseline = a.str("baseline", "", "name or folder of the baseline run (default: the first)");
    const std::string plot = a.str("plot", "comparison.svg", "accuracy-vs-energy plot to write (empty: none)");
    const std::string table_file = a.str("energy-table", "", "energy table JSON (default: 45 nm, docs/energy-model.md)");
    const std::vector<std::string> dirs = a.positionals("RUN...", "run folders or run.json files");
    a.finish();
    if (dirs.empty()) {
        a.fail("give at least one run folder (see --help)");
    }
    const frugal::energy_table table =
        table_file.empty() ? frugal::energy_table::horowitz_45nm() : frugal::energy_table::load_json(table_file);
    std::vector<frugal::run_report> runs;
    std::size_t base = 0;
    bool found = baseline.empty();
    for (std::size_t i = 0; i < dirs.size(); ++i) {
        runs.push_back(frugal::read_run(dirs[i]));
        if (!found && (runs.back().name == baseline || dirs[i] == baseline)) {
            base = i;
            found = true;
        }
    }
    if (!found) {
        a.fail("no run is named '" + baseline + "'");
    }
    frugal::print_comparison(std::cout, runs, base, table);
    if (!plot.empty()) {
        frugal::write_comparison_plot(plot, runs, table);
        std::printf("plot: %s\n", plot.c_str());
    }
    return 0;
} catch (const frugal::error& e) {
    std::fprintf(stderr, "frugal-report: %s\n", e.what());
    return 1;
}
