// FracTrain's real saving: the training step (forward, backward, optimizer)
// of a CIFAR ResNet whose residual-block convolutions are quantized_conv
// (integer kernels) at PFQ's four stages (a3w3e6, a4w4e6, a6w6e8, a8w8e8)
// at DFQ's dearest option with 12-bit errors (a6w4e12: two 8-bit limbs per
// error code) next to the same widths with 8-bit errors (a6w4e8),
// and as a DFQ network (gate, sort by option, groups), against the same
// ResNet in FP32, in the same run, the order rotated every run; median of the
// runs. Each measurement runs in a process of its own (what a program that
// trains one network sees); FRUGAL_BENCH_SHARED=1 runs them all in this
// process, interleaved (they then share the cache and the tensor pool). The stem
// convolution and the classifier stay float (SPEC §3.2), as do batch norm and
// ReLU.
//
//   build/bench/bench_fractrain_step [depth] [steps] [runs] [threads] [only]
//   e.g. build/release/bench/bench_fractrain_step 20 10 5 2
//   `only`: run just FP32 and the subjects whose name contains it (e.g.
//   "8/8/8" for a profile of the 8-bit network next to its baseline)

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <frugal/layers/quantized_conv.hpp>
#include <frugal/model/zoo/dfq_resnet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/tensor/kernels/igemm.hpp>
#include <frugal/tensor/parallel.hpp>

#include "train_bench.hpp"

int main(int argc, char** argv) {
    const std::size_t depth = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20;
    const int steps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 10;
    const int runs = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
    const int threads = argc > 4 ? std::atoi(argv[4]) : 2;
    const std::string only = argc > 5 ? argv[5] : "";
    const char* shared_env = std::getenv("FRUGAL_BENCH_SHARED");
    const bool shared = shared_env != nullptr && std::string(shared_env) == "1";
    // the subjects: FP32 first (the baseline of every ratio), then the quantized networks at
    // their (activation, weight, error) widths (0 0 0: DFQ's gated network)
    struct subject_spec {
        std::string name;
        int a, w, e;
    };
    std::vector<subject_spec> specs{{"fp32", 32, 32, 32},       {"int8 (8/8/8)", 8, 8, 8}, {"int (6/6/8)", 6, 6, 8},
                                    {"int (4/4/6)", 4, 4, 6},   {"int (3/3/6)", 3, 3, 6}, {"int (6/4/8)", 6, 4, 8},
                                    {"int (6/4/12)", 6, 4, 12}, {"dfq (gated)", 0, 0, 0}};
    if (!only.empty()) { // FP32 stays first
        std::erase_if(specs, [&](const subject_spec& s) {
            return s.name != "fp32" && s.name.find(only) == std::string::npos;
        });
    }
    // builds subject i's network and calls f(name, net)
    const auto with_net = [&](std::size_t i, auto&& f) {
        const subject_spec& sp = specs[i];
        if (sp.a == 32) {
            auto net = frugal::cifar_resnet(depth);
            return f(sp.name, net);
        }
        if (sp.a == 0) {
            auto net = frugal::dfq_cifar_resnet(depth);
            return f(sp.name, net);
        }
        auto net = frugal::cifar_resnet<frugal::quantized_block>(depth);
        frugal::set_model_precision(net, {sp.a, sp.w, sp.e});
        return f(sp.name, net);
    };
    std::vector<std::vector<double>> t;
    if (shared) { // every network in this process, interleaved
        frugal::set_num_threads(threads);
        bench::fashion_batches fm;
        auto fp32 = frugal::cifar_resnet(depth);
        std::vector<frugal::cifar_resnet_t<frugal::quantized_block>> qnets;
        qnets.reserve(specs.size());
        std::vector<frugal::dfq_cifar_resnet_t<>> dnets;
        dnets.reserve(1);
        std::vector<bench::train_subject> subjects;
        for (const auto& sp : specs) {
            if (sp.a == 32) {
                subjects.push_back(bench::make_train_subject(sp.name, fp32, fm.loader, 5));
            } else if (sp.a == 0) {
                dnets.push_back(frugal::dfq_cifar_resnet(depth));
                subjects.push_back(bench::make_train_subject(sp.name, dnets.back(), fm.loader, 5));
            } else {
                qnets.push_back(frugal::cifar_resnet<frugal::quantized_block>(depth));
                frugal::set_model_precision(qnets.back(), {sp.a, sp.w, sp.e});
                subjects.push_back(bench::make_train_subject(sp.name, qnets.back(), fm.loader, 5));
            }
        }
        for (auto& s : subjects) {
            s.run(3, nullptr); // warm-up
        }
        t = bench::interleaved(subjects, steps, runs, nullptr);
    } else { // one process per measurement, the order rotated every run
        std::vector<double> unused;
        t = bench::isolated(
            specs.size(), runs,
            [&](std::size_t i) {
                frugal::set_num_threads(threads);
                bench::fashion_batches fm;
                return with_net(i, [&](const std::string& name, auto& net) {
                    auto s = bench::make_train_subject(name, net, fm.loader, 5);
                    s.run(3, nullptr); // warm-up
                    return bench::isolated_result{s.run(steps, nullptr) / steps, 0.0};
                });
            },
            unused);
    }
    std::printf("ResNet-%zu, batch 128, %d threads, %d steps x %d runs (median), integer kernel: %s, %s\n", depth,
                threads, steps, runs, frugal::kernels::igemm_path(),
                shared ? "all networks in one process" : "one process per measurement");
    const double t0 = bench::median_of(t[0]);
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const double ti = bench::median_of(t[i]);
        // the ratio of each run to the FP32 run next to it (the same machine state), then its median:
        // steadier than the ratio of medians when the machine's speed drifts between runs
        std::vector<double> paired;
        for (std::size_t r = 0; r < t[i].size(); ++r) {
            paired.push_back(t[0][r] / t[i][r]);
        }
        std::printf("%-14s %8.1f ms/step  %5.2fx fp32 (paired %4.2fx)  runs:", specs[i].name.c_str(), 1e3 * ti,
                    t0 / ti, bench::median_of(paired));
        for (double v : t[i]) {
            std::printf(" %.0f", 1e3 * v);
        }
        std::printf("\n");
        std::printf("BENCH fractrain_step depth=%zu net=\"%s\" ms_per_step=%.2f speedup=%.3f paired=%.3f\n", depth,
                    specs[i].name.c_str(), 1e3 * ti, t0 / ti, bench::median_of(paired));
    }
    return 0;
}
