// SLU's real saving: training step time of a gated CIFAR ResNet whose gated
// blocks run for a forced share r of the samples (gate_override::random: each
// (block, sample) pair runs with probability r; the gate network still runs)
// against the plain ResNet of the same depth, in the same run, interleaved.
// For each r it prints the counted MAC saving of a training step (from the
// cost meter), the measured step-time saving, and their ratio, the "realized
// share" (issue target: >= 70%).
//
// Each measurement (a network's warm-up and `steps` timed steps) runs in a
// process of its own, the subjects' order rotated every run: what a program
// that trains one network sees. FRUGAL_BENCH_SHARED=1 runs every network in
// this one process instead (interleaved as before): the networks then share
// the tensor pool's blocks and the cache, which costs the gated networks
// (their sub-batch buffers are re-taken every step, often cold)
// (docs/benchmarks.md, "SLU").
//
//   build/bench/bench_slu [depth] [steps] [runs] [threads] [rates...]
//   e.g. build/release/bench/bench_slu 38 8 5 2 0.8 0.6 0.4

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <frugal/model/zoo/gated_resnet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/tensor/allocator.hpp>
#include <frugal/tensor/parallel.hpp>

#include "train_bench.hpp"

namespace {

double macs_of(const frugal::cost_meter& m) {
    double s = 0.0;
    for (const auto& [k, v] : m.all_ops()) {
        if (k.kind == frugal::op_kind::mac) {
            s += static_cast<double>(v);
        }
    }
    return s;
}

} // namespace

int main(int argc, char** argv) {
    const std::size_t depth = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 38;
    const int steps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 8;
    const int runs = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
    const int threads = argc > 4 ? std::atoi(argv[4]) : 2;
    std::vector<float> rates;
    for (int i = 5; i < argc; ++i) {
        rates.push_back(std::strtof(argv[i], nullptr));
    }
    if (rates.empty()) {
        rates = {1.0f, 0.8f, 0.6f, 0.4f};
    }
    if (const char* lim = std::getenv("FRUGAL_POOL_MIB")) {
        frugal::tensor_pool::instance().set_limit(std::strtoull(lim, nullptr, 10) << 20);
    }
    const char* shared_env = std::getenv("FRUGAL_BENCH_SHARED");
    const bool shared = shared_env != nullptr && std::string(shared_env) == "1";
    std::vector<std::string> names{"plain"};
    for (float r : rates) {
        char name[32];
        std::snprintf(name, sizeof name, "gated r=%.2f", static_cast<double>(r));
        names.emplace_back(name);
    }
    const auto gated_options = [](float r) {
        frugal::slu_options o;
        o.force = frugal::gate_override::random;
        o.forced_rate = r;
        return o;
    };
    std::vector<double> macs;
    std::vector<std::vector<double>> t;
    if (shared) { // every network in this process, interleaved
        frugal::set_num_threads(threads);
        bench::fashion_batches fm;
        auto plain = frugal::cifar_resnet(depth);
        std::vector<frugal::gated_cifar_resnet_t<>> gated_nets;
        gated_nets.reserve(rates.size());
        std::vector<bench::train_subject> subjects;
        subjects.push_back(bench::make_train_subject(names[0], plain, fm.loader));
        for (std::size_t i = 0; i < rates.size(); ++i) {
            gated_nets.push_back(frugal::gated_cifar_resnet(depth, gated_options(rates[i])));
            subjects.push_back(bench::make_train_subject(names[i + 1], gated_nets.back(), fm.loader));
        }
        for (auto& s : subjects) {
            frugal::cost_meter m; // MACs of a step (also the warm-up)
            constexpr int n = 8;
            s.run(n, &m);
            macs.push_back(macs_of(m) / n);
        }
        frugal::cost_meter meter;
        t = bench::interleaved(subjects, steps, runs, &meter);
    } else { // one process per measurement, the order rotated every run
        t = bench::isolated(
            names.size(), runs,
            [&](std::size_t i) {
                frugal::set_num_threads(threads);
                bench::fashion_batches fm;
                const auto time_it = [&](auto& net) {
                    auto s = bench::make_train_subject(names[i], net, fm.loader);
                    frugal::cost_meter m; // MACs of a step (also the warm-up)
                    constexpr int n = 8;
                    s.run(n, &m);
                    frugal::cost_meter meter;
                    return bench::isolated_result{s.run(steps, &meter) / steps, macs_of(m) / n};
                };
                if (i == 0) {
                    auto net = frugal::cifar_resnet(depth);
                    return time_it(net);
                }
                auto net = frugal::gated_cifar_resnet(depth, gated_options(rates[i - 1]));
                return time_it(net);
            },
            macs);
    }
    std::printf("ResNet-%zu, batch 128, %d threads, %d steps x %d runs (median), meter on, %s\n", depth, threads,
                steps, runs, shared ? "all networks in one process" : "one process per measurement");
    std::printf("%-14s %10s %12s %14s %14s %10s\n", "network", "ms/step", "MACs/step", "counted save", "measured save",
                "realized");
    const double t0 = bench::median_of(t[0]);
    for (std::size_t i = 0; i < names.size(); ++i) {
        const double ti = bench::median_of(t[i]);
        const double cs = 1.0 - macs[i] / macs[0], ms = 1.0 - ti / t0;
        std::printf("%-14s %10.1f %12.3g %13.1f%% %13.1f%% %9.0f%%\n", names[i].c_str(), 1e3 * ti, macs[i],
                    100 * cs, 100 * ms, i == 0 || cs <= 0.0 ? 0.0 : 100 * ms / cs);
        std::printf("               runs (ms/step):");
        for (double v : t[i]) {
            std::printf(" %.0f", 1e3 * v);
        }
        std::printf("\n");
        std::printf("BENCH slu depth=%zu net=\"%s\" ms_per_step=%.2f counted_saving=%.4f measured_saving=%.4f\n", depth,
                    names[i].c_str(), 1e3 * ti, cs, ms);
    }
    if (shared) {
        const auto ps = frugal::tensor_pool::instance().statistics();
        std::printf("tensor pool: %.0f MiB cached (limit %.0f MiB), %llu hits, %llu misses\n",
                    ps.cached_bytes / 1048576.0, ps.limit_bytes / 1048576.0, static_cast<unsigned long long>(ps.hits),
                    static_cast<unsigned long long>(ps.misses));
    }
    return 0;
}
