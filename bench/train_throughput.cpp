// Training throughput (images/s) of frugal's FP32 path on Fashion-MNIST,
// batch 128: the same models, data and optimizer as bench/peers/torch_train.py.
//
//   build/bench/bench_train_throughput <lenet5|resnet20|...> [steps] [runs] [threads]

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

static bool g_profile = false;

template <class Model>
std::vector<double> run(Model& net, frugal::batch_loader& loader, int steps, int runs, bool meter) {
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
    std::vector<double> rates;
    for (int r = 0; r < runs; ++r) {
        const auto t = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) {
            step();
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
        rates.push_back(steps * 128.0 / s);
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
    const bool meter = !(argc > 5 && std::string(argv[5]) == "nometer");
    g_profile = argc > 5 && std::string(argv[5]) == "profile";
    frugal::set_num_threads(threads);
    const auto train = frugal::load_fashion_mnist(frugal::data_split::train);
    frugal::batch_options bo;
    bo.batch_size = 128;
    bo.shuffle = false;
    frugal::batch_loader loader(train, frugal::normalization::from_dataset(train), bo);
    std::vector<double> rates;
    if (model == "lenet5") {
        auto net = frugal::lenet5();
        rates = run(net, loader, steps, runs, meter);
    } else if (model.rfind("resnet", 0) == 0) {
        auto net = frugal::cifar_resnet(static_cast<std::size_t>(std::stoul(model.substr(6))));
        rates = run(net, loader, steps, runs, meter);
    } else if (model == "vgg16") {
        auto net = frugal::vgg16();
        rates = run(net, loader, steps, runs, meter);
    } else {
        std::fprintf(stderr, "unknown model %s\n", model.c_str());
        return 2;
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
