// Early-Bird's real saving: the training step (forward, backward, SGD) of a
// CIFAR ResNet or of VGG-16-BN shrunk to a ticket (prune/shrink.hpp) against
// the dense network, interleaved in one process, median of the runs; the
// counted saving is the meter's MACs per step. The ticket is the last mask
// of an early_bird search (its masks.txt), or, without one, the global
// threshold at `ratio` over batch-norm scales drawn at random (seeded).
//
//   build/bench/bench_shrink_step [depth|vgg16] [steps] [runs] [threads] [ratio] [masks.txt|-] [layers]
//   e.g. build/release/bench/bench_shrink_step 20 8 5 2 0.5 runs/eb/eb-50/search/masks.txt
//        build/release/bench/bench_shrink_step vgg16 4 5 2 0.5
//        build/release/bench/bench_shrink_step vgg16 4 5 2 0.3 runs/eb-30/search/masks.txt layers
// `-` in place of masks.txt draws the random ticket; `layers` adds where the
// step's time goes: each layer's metered milliseconds per step (forward +
// both backward passes + update) and MACs, dense against shrunk.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/numeric/random.hpp>
#include <frugal/prune/mask.hpp>
#include <frugal/prune/shrink.hpp>
#include <frugal/tensor/parallel.hpp>

#include "train_bench.hpp"

namespace {

std::uint64_t step_macs(bench::train_subject& s) {
    frugal::cost_meter m;
    s.run(1, &m);
    std::uint64_t macs = 0;
    for (const auto& [key, count] : m.all_ops()) {
        macs += key.kind == frugal::op_kind::mac ? count : 0;
    }
    return macs;
}

/// Dense `Net` against its shrunk ticket; `label` names the network.
/// Each layer's metered seconds and MACs of `steps` steps, by layer (the
/// shrunk network has the dense one's layers, in the same order).
struct layer_profile {
    std::vector<std::string> names;
    std::vector<double> seconds, macs;
    double total_seconds = 0.0;
};

layer_profile profile(bench::train_subject& s, int steps) {
    frugal::cost_meter m;
    s.run(steps, &m);
    layer_profile p;
    for (const auto& l : m.layers()) {
        double t = 0.0;
        for (const auto& ph : l.phases) {
            t += ph.seconds;
        }
        p.names.push_back(l.name);
        p.seconds.push_back(t / steps);
        p.macs.push_back(static_cast<double>(l[frugal::phase::forward].count(frugal::op_kind::mac) +
                                             l[frugal::phase::backward_input].count(frugal::op_kind::mac) +
                                             l[frugal::phase::weight_gradient].count(frugal::op_kind::mac)) /
                         steps);
        p.total_seconds += t / steps;
    }
    return p;
}

void print_profiles(const layer_profile& d, const layer_profile& s) {
    std::printf("\nwhere the time goes (metered, ms per step; share of the dense step; MACs per step):\n");
    std::printf("%-26s %9s %9s %7s %10s %10s %7s\n", "layer", "dense ms", "shrunk ms", "saved", "dense MAC",
                "shrunk MAC", "saved");
    const std::size_t n = std::min(d.names.size(), s.names.size());
    for (std::size_t i = 0; i < n; ++i) {
        const double dt = d.seconds[i], st = s.seconds[i];
        std::printf("%-26s %9.2f %9.2f %6.0f%% %10.3g %10.3g %6.0f%%\n", d.names[i].c_str(), 1e3 * dt, 1e3 * st,
                    dt > 0 ? 100 * (1 - st / dt) : 0.0, d.macs[i], s.macs[i],
                    d.macs[i] > 0 ? 100 * (1 - s.macs[i] / d.macs[i]) : 0.0);
    }
    std::printf("%-26s %9.2f %9.2f %6.0f%%\n", "all metered layers", 1e3 * d.total_seconds, 1e3 * s.total_seconds,
                100 * (1 - s.total_seconds / d.total_seconds));
}

template <class Net>
int compare(Net dense, const std::string& label, int steps, int runs, int threads, double ratio,
            const std::string& masks, bool layers) {
    bench::fashion_batches fm;
    frugal::channel_mask mask;
    if (masks.empty()) {
        frugal::rng g(3);
        frugal::prune_rules<Net>::for_each(dense, [&](frugal::batchnorm& bn) {
            for (std::size_t c = 0; c < bn.channels(); ++c) {
                bn.gamma()(c) = g.uniform();
            }
        });
        mask = frugal::ticket_mask(dense, ratio);
    } else {
        mask = frugal::ticket_mask(dense, ratio); // the layout; the bits come from the file's last line
        std::ifstream in(masks);
        if (!in) {
            std::fprintf(stderr, "%s: cannot be read\n", masks.c_str());
            return 2;
        }
        std::string epoch, bits, last;
        while (in >> epoch >> bits) {
            last = bits;
        }
        if (last.size() != mask.keep.size()) {
            std::fprintf(stderr, "%s: no mask of %s in it (%zu bits, the model has %zu channels)\n", masks.c_str(),
                         label.c_str(), last.size(), mask.keep.size());
            return 2;
        }
        for (std::size_t i = 0; i < last.size(); ++i) {
            mask.keep[i] = last[i] == '1' ? 1 : 0;
        }
    }
    auto shrunk = frugal::shrink(dense, mask);
    std::vector<bench::train_subject> subjects;
    subjects.push_back(bench::make_train_subject("dense", dense, fm.loader, 5));
    subjects.push_back(bench::make_train_subject("shrunk", shrunk, fm.loader, 5));
    const std::uint64_t macs_dense = step_macs(subjects[0]), macs_shrunk = step_macs(subjects[1]);
    for (auto& s : subjects) {
        s.run(3, nullptr); // warm-up
    }
    const auto t = bench::interleaved(subjects, steps, runs, nullptr);
    const double td = bench::median_of(t[0]), ts = bench::median_of(t[1]);
    const double counted = 1.0 - static_cast<double>(macs_shrunk) / static_cast<double>(macs_dense);
    const double measured = 1.0 - ts / td;
    std::printf("%s, batch 128, %d threads, %d steps x %d runs (median); ticket: %s, %zu of %zu channels kept\n",
                label.c_str(), threads, steps, runs, masks.empty() ? "random scales" : masks.c_str(), mask.kept(),
                mask.size());
    for (std::size_t i = 0; i < subjects.size(); ++i) {
        std::printf("%-8s %8.1f ms/step  %.3g MACs/step  runs:", subjects[i].name.c_str(),
                    1e3 * bench::median_of(t[i]), static_cast<double>(i == 0 ? macs_dense : macs_shrunk));
        for (double v : t[i]) {
            std::printf(" %.0f", 1e3 * v);
        }
        std::printf("\n");
    }
    std::printf("counted MAC saving %.1f%%, measured step-time saving %.1f%%: %.0f%% realized\n", 100 * counted,
                100 * measured, 100 * measured / counted);
    std::printf("BENCH shrink_step model=%s counted=%.4f measured=%.4f realized=%.3f\n", label.c_str(), counted,
                measured, measured / counted);
    if (layers) {
        print_profiles(profile(subjects[0], steps), profile(subjects[1], steps));
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    const std::string model = argc > 1 ? argv[1] : "20";
    const int steps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 8;
    const int runs = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
    const int threads = argc > 4 ? std::atoi(argv[4]) : 2;
    const double ratio = argc > 5 ? std::atof(argv[5]) : 0.5;
    const std::string masks = argc > 6 && std::string(argv[6]) != "-" ? argv[6] : "";
    const bool layers = argc > 7 && std::string(argv[7]) == "layers";
    if (argc > 7 && !layers) {
        std::fprintf(stderr, "bench_shrink_step: the 7th argument can only be 'layers', not '%s'\n", argv[7]);
        return 2;
    }
    frugal::set_num_threads(threads);
    if (model == "vgg16") {
        return compare(frugal::vgg16(), "VGG-16-BN", steps, runs, threads, ratio, masks, layers);
    }
    if (model.empty() || model.find_first_not_of("0123456789") != std::string::npos) {
        std::fprintf(stderr, "bench_shrink_step: the model must be vgg16 or a ResNet depth (20, 38, ...), not '%s'\n",
                     model.c_str());
        return 2;
    }
    const std::size_t depth = std::strtoul(model.c_str(), nullptr, 10);
    return compare(frugal::cifar_resnet(depth), "ResNet-" + std::to_string(depth), steps, runs, threads, ratio,
                   masks, layers);
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_shrink_step: %s\n", e.what());
    return 1;
}
