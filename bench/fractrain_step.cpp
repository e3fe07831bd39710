// FracTrain's real saving: the training step (forward, backward, optimizer)
// of a CIFAR ResNet whose residual-block convolutions are quantized_conv
// (integer kernels) at PFQ's four stages (a3w3e6, a4w4e6, a6w6e8, a8w8e8)
// at DFQ's dearest option with 12-bit errors (a6w4e12: two 8-bit limbs per
// error code) next to the same widths with 8-bit errors (a6w4e8),
// and as a DFQ network (gate, sort by option, groups), against the same
// ResNet in FP32, in the same run, interleaved; median of the runs. The stem
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
    frugal::set_num_threads(threads);
    bench::fashion_batches fm;
    using qblock = frugal::quantized_block;
    auto fp32 = frugal::cifar_resnet(depth);
    auto q8 = frugal::cifar_resnet<qblock>(depth);
    auto q6 = frugal::cifar_resnet<qblock>(depth);
    auto q4 = frugal::cifar_resnet<qblock>(depth);
    auto q3 = frugal::cifar_resnet<qblock>(depth);
    frugal::set_model_precision(q6, {6, 6, 8});
    frugal::set_model_precision(q4, {4, 4, 6});
    frugal::set_model_precision(q3, {3, 3, 6});
    auto q68 = frugal::cifar_resnet<qblock>(depth);
    auto q612 = frugal::cifar_resnet<qblock>(depth);
    frugal::set_model_precision(q68, {6, 4, 8});
    frugal::set_model_precision(q612, {6, 4, 12});
    auto dfq = frugal::dfq_cifar_resnet(depth);
    std::vector<bench::train_subject> subjects;
    subjects.push_back(bench::make_train_subject("fp32", fp32, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("int8 (8/8/8)", q8, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("int (6/6/8)", q6, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("int (4/4/6)", q4, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("int (3/3/6)", q3, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("int (6/4/8)", q68, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("int (6/4/12)", q612, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("dfq (gated)", dfq, fm.loader, 5));
    if (!only.empty()) { // FP32 stays first: the baseline of every ratio
        std::erase_if(subjects, [&](const bench::train_subject& s) {
            return s.name != "fp32" && s.name.find(only) == std::string::npos;
        });
    }
    for (auto& s : subjects) {
        s.run(3, nullptr); // warm-up
    }
    const auto t = bench::interleaved(subjects, steps, runs, nullptr);
    std::printf("ResNet-%zu, batch 128, %d threads, %d steps x %d runs (median), integer kernel: %s\n", depth, threads,
                steps, runs, frugal::kernels::igemm_path());
    const double t0 = bench::median_of(t[0]);
    for (std::size_t i = 0; i < subjects.size(); ++i) {
        const double ti = bench::median_of(t[i]);
        // the ratio of each run to the FP32 run next to it (the same machine state), then its median:
        // steadier than the ratio of medians when the machine's speed drifts between runs
        std::vector<double> paired;
        for (std::size_t r = 0; r < t[i].size(); ++r) {
            paired.push_back(t[0][r] / t[i][r]);
        }
        std::printf("%-14s %8.1f ms/step  %5.2fx fp32 (paired %4.2fx)  runs:", subjects[i].name.c_str(), 1e3 * ti,
                    t0 / ti, bench::median_of(paired));
        for (double v : t[i]) {
            std::printf(" %.0f", 1e3 * v);
        }
        std::printf("\n");
        std::printf("BENCH fractrain_step depth=%zu net=\"%s\" ms_per_step=%.2f speedup=%.3f paired=%.3f\n", depth,
                    subjects[i].name.c_str(), 1e3 * ti, t0 / ti, bench::median_of(paired));
    }
    return 0;
}
