#ifndef FRUGAL_EXAMPLES_COMMON_REPORT_HPP
#define FRUGAL_EXAMPLES_COMMON_REPORT_HPP

// The run report every example writes for frugal-report: run.json (and the
// per-layer table) in the run's folder, energy from the documented 45 nm
// table (docs/energy-model.md). Nothing when no folder was given.

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include <frugal/cost/energy.hpp>
#include <frugal/cost/meter.hpp>
#include <frugal/cost/report.hpp>

namespace cli {

template <class History>
void write_report(const std::filesystem::path& dir, std::string name, std::string model, const History& history,
                  const frugal::cost_meter& meter, std::map<std::string, std::string> settings) {
    if (dir.empty()) {
        return;
    }
    const frugal::run_report report =
        frugal::make_report(std::move(name), std::move(model), history, meter, std::move(settings));
    frugal::write_run(dir, report, frugal::energy_table::horowitz_45nm());
    std::printf("report: %s/run.json (compare runs with frugal-report)\n", dir.string().c_str());
}

} // namespace cli

#endif
