// Training throughput (images/s) of frugal's FP32 path on Fashion-MNIST,
// batch 128: the same models, data and optimizer as bench/peers/torch_train.py.
//
//   build/bench/bench_train_throughput <lenet5|resnet20|...> [steps] [runs] [threads] [mode]
//
// mode: "meter" (default: the cost meter records, as in fit), "nometer",
// "profile" (meter on, then a per-layer time table), or "overhead": the same
// network trains with the meter off and on in alternating runs (order
// swapped every run), and the median of each and their ratio are printed.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/model/zoo/lenet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/tensor/parallel.hpp>

#include "train_bench.hpp"

static bool g_profile = false;

/// Images/s of `runs` runs of `steps` steps each; with `overhead`, the even
/// entries are meter-off runs and the odd ones meter-on, interleaved.
template <class Model>
std::vector<double> run(Model& net, frugal::batch_loader& loader, int steps, int runs, bool meter,
                        bool overhead = false) {
    frugal::optimizer<> opt(frugal::parameters_of(net), frugal::sgd{0.9f, 1e-4f, false});
    frugal::softmax_cross_entropy loss;
    frugal::cost_meter m;
    frugal::context ctx;
    ctx.meter = meter ? &m : nullptr;
    frugal::batch b;
    std::size_t next = 0;
    auto step = [&] {
        loader.fill(0, next++ % loader.batches_per_epoch(), b);
        loss.forward(net.forward(ctx, b.x), b.y);
        net.backward(ctx, loss.backward());
        opt.step(ctx, 0.05f);
    };
    for (int i = 0; i < 5; ++i) {
        step();
    }
    auto timed = [&](bool on) {
        ctx.meter = on ? &m : nullptr;
        const auto t = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) {
            step();
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
        return steps * 128.0 / s;
    };
    std::vector<double> rates;
    for (int r = 0; r < runs; ++r) {
        if (overhead) {
            double off = 0.0, on = 0.0;
            if (r % 2 == 0) {
                off = timed(false);
                on = timed(true);
            } else {
                on = timed(true);
                off = timed(false);
            }
            rates.push_back(off);
            rates.push_back(on);
        } else {
            rates.push_back(timed(meter));
        }
    }
    if (g_profile) {
        double total = 0.0;
        for (const auto& l : m.layers()) {
            for (const auto& p : l.phases) {
                total += p.seconds;
            }
        }
        for (const auto& l : m.layers()) {
            double t = 0.0;
            for (const auto& p : l.phases) {
                t += p.seconds;
            }
            std::printf("%-28s %5.1f%%  fwd %6.2f  dx %6.2f  dw %6.2f  upd %6.2f ms/step\n", l.name.c_str(), 100 * t / total,
                        1e3 * l.phases[0].seconds / (runs * steps + 5), 1e3 * l.phases[1].seconds / (runs * steps + 5),
                        1e3 * l.phases[2].seconds / (runs * steps + 5), 1e3 * l.phases[3].seconds / (runs * steps + 5));
        }
    }
    return rates;
}

int main(int argc, char** argv) {
    const std::string model = argc > 1 ? argv[1] : "lenet5";
    const int steps = argc > 2 ? std::atoi(argv[2]) : 100;
    const int runs = argc > 3 ? std::atoi(argv[3]) : 3;
    const int threads = argc > 4 ? std::atoi(argv[4]) : 2;
    const std::string mode = argc > 5 ? argv[5] : "meter";
    if (mode != "meter" && mode != "nometer" && mode != "profile" && mode != "overhead") {
        std::fprintf(stderr, "unknown mode %s (meter, nometer, profile, overhead)\n", mode.c_str());
        return 2;
    }
    const bool meter = mode != "nometer";
    const bool overhead = mode == "overhead";
    g_profile = mode == "profile";
    frugal::set_num_threads(threads);
    bench::fashion_batches fm;
    frugal::batch_loader& loader = fm.loader;
    std::vector<double> rates;
    if (model == "lenet5") {
        auto net = frugal::lenet5();
        rates = run(net, loader, steps, runs, meter, overhead);
    } else if (model.rfind("resnet", 0) == 0) {
        auto net = frugal::cifar_resnet(static_cast<std::size_t>(std::stoul(model.substr(6))));
        rates = run(net, loader, steps, runs, meter, overhead);
    } else if (model == "vgg16") {
        auto net = frugal::vgg16();
        rates = run(net, loader, steps, runs, meter, overhead);
    } else {
        std::fprintf(stderr, "unknown model %s\n", model.c_str());
        return 2;
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    if (overhead) {
        std::vector<double> off, on;
        for (std::size_t i = 0; i < rates.size(); i += 2) {
            off.push_back(rates[i]);
            on.push_back(rates[i + 1]);
        }
        std::vector<double> ratio;
        for (std::size_t i = 0; i < off.size(); ++i) {
            ratio.push_back(off[i] / on[i]);
        }
        const double a = median(off), b = median(on);
        std::printf("frugal %s batch 128 threads %d: meter off median %.1f images/s, meter on median %.1f images/s, "
                    "meter overhead %+.2f%% of training time (ratio of medians), %+.2f%% (median of the pairs' "
                    "ratios) (%d interleaved run pairs; off/on:",
                    model.c_str(), threads, a, b, 100.0 * (a / b - 1.0), 100.0 * (median(ratio) - 1.0), runs);
        for (std::size_t i = 0; i < off.size(); ++i) {
            std::printf(" %.0f/%.0f", off[i], on[i]);
        }
        std::printf(")\n");
        return 0;
    }
    auto sorted = rates;
    std::sort(sorted.begin(), sorted.end());
    std::printf("frugal %s batch 128 threads %d meter %s median %.1f images/s (runs:", model.c_str(), threads,
                meter ? "on" : "off", sorted[sorted.size() / 2]);
    for (double r : rates) {
        std::printf(" %.0f", r);
    }
    std::printf(")\n");
}
