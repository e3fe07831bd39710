// A user program that knows frugal only through find_package(frugal): it
// defines its own small residual network with two of frugal's techniques,
// chosen by type,
//   - E2-Train's selective layer update: the residual blocks sit in one
//     gated<> stack, whose learned gates skip blocks per sample (forward and
//     backward), and
//   - FracTrain's low-precision kernels: every convolution of a block is a
//     quantized_conv (8-bit forward, input-gradient and weight-gradient
//     products on the integer kernels),
// trains it on Fashion-MNIST next to the same network in FP32, and prints
// accuracy, time and counted energy of both.
//
//   my_model [--images N] [--epochs E] [--data DIR]
//
// Exit status 0 when the gated 8-bit network learned (test accuracy above
// 30%, chance is 10%), so that frugal's tests can run it.

#include <frugal/cost/energy.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/dense.hpp>
#include <frugal/layers/gated.hpp>
#include <frugal/layers/pool.hpp>
#include <frugal/layers/quantized_conv.hpp>
#include <frugal/layers/residual.hpp>
#include <frugal/model/sequential.hpp>
#include <frugal/optim/schedule.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/train/trainer.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

// The user's own network: stem convolution, six residual blocks in three
// stages (width 8, 16, 32), pooling, classifier.
template <class Block>
using my_plain_net = frugal::sequential<frugal::conv2d, frugal::batchnorm, frugal::repeated<Block>,
                                        frugal::global_avg_pool, frugal::dense>;
template <class Block>
using my_gated_net = frugal::sequential<frugal::conv2d, frugal::batchnorm, frugal::gated<Block>,
                                        frugal::global_avg_pool, frugal::dense>;

template <class Block>
std::vector<Block> my_blocks() {
    std::vector<Block> b;
    b.emplace_back(8, 8, 1);
    b.emplace_back(8, 8, 1);
    b.emplace_back(8, 16, 2);
    b.emplace_back(16, 16, 1);
    b.emplace_back(16, 32, 2);
    b.emplace_back(32, 32, 1);
    return b;
}

template <class Net>
Net finish(Net net) {
    frugal::rng g(7);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

struct outcome {
    double accuracy = 0.0, seconds = 0.0, joules = 0.0;
};

template <class Net>
outcome train(const char* what, Net& net, frugal::batch_loader& train_data, frugal::batch_loader& test_data,
              std::size_t epochs) {
    frugal::optimizer<> opt(frugal::parameters_of(net), frugal::sgd{0.9f, 1e-4f, false});
    frugal::fit_options o;
    o.epochs = epochs;
    const std::uint64_t iters = epochs * train_data.batches_per_epoch();
    o.schedule = frugal::lr_schedule::step({0.1f, {iters / 2, iters * 3 / 4}, 0.1f});
    std::printf("%s\n", what);
    const auto r = frugal::fit(net, opt, train_data, &test_data, o);
    outcome out;
    frugal::op_counts ops;
    for (const auto& e : r.history) {
        out.seconds += e.train_seconds;
        for (const auto& [k, n] : e.ops) {
            ops[k] += n;
        }
    }
    out.accuracy = r.history.back().test_accuracy;
    out.joules = frugal::estimate(ops, 0, frugal::energy_table::horowitz_45nm()).joules;
    return out;
}

} // namespace

int main(int argc, char** argv) try {
    std::size_t images = 4096, epochs = 2;
    std::string dir = frugal::default_fashion_mnist_dir().string();
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--images" && i + 1 < argc) {
            images = std::strtoul(argv[++i], nullptr, 10);
        } else if (a == "--epochs" && i + 1 < argc) {
            epochs = std::strtoul(argv[++i], nullptr, 10);
        } else if (a == "--data" && i + 1 < argc) {
            dir = argv[++i];
        } else {
            std::printf("usage: my_model [--images N] [--epochs E] [--data DIR]\n");
            return a == "--help" ? 0 : 2;
        }
    }
    if (images == 0 || epochs == 0) {
        std::fprintf(stderr, "my_model: --images and --epochs must be positive\n");
        return 2;
    }

    const auto train_set = frugal::subset(frugal::load_fashion_mnist(frugal::data_split::train, dir), images, 1);
    const auto test_set = frugal::subset(frugal::load_fashion_mnist(frugal::data_split::test, dir), 2000, 1);
    const auto norm = frugal::normalization::from_dataset(train_set);
    frugal::batch_options bo;
    bo.batch_size = 64;
    frugal::batch_loader train_data(train_set, norm, bo);
    frugal::batch_loader test_data(test_set, norm, frugal::batch_options::evaluation(500));

    // the FP32 network, and the same network gated and in 8 bits: two types
    using plain_block = frugal::basic_block<>;
    using low_block = frugal::basic_block<frugal::quantized_conv_maker>;
    auto fp32 = finish(my_plain_net<plain_block>(frugal::conv2d(1, 8, 3, {1, 1, false}), frugal::batchnorm(8, 0.1f, 1e-5f, true),
                                                 frugal::repeated<plain_block>(my_blocks<plain_block>()),
                                                 frugal::global_avg_pool{}, frugal::dense(32, 10)));
    frugal::slu_options slu;
    slu.target_exec = 0.6f; // aim to run 60% of the blocks per sample
    auto mine = finish(my_gated_net<low_block>(frugal::conv2d(1, 8, 3, {1, 1, false}), frugal::batchnorm(8, 0.1f, 1e-5f, true),
                                               frugal::gated<low_block>(my_blocks<low_block>(), slu),
                                               frugal::global_avg_pool{}, frugal::dense(32, 10)));

    const outcome a = train("FP32 network", fp32, train_data, test_data, epochs);
    const outcome b = train("gated 8-bit network (SLU + FracTrain kernels)", mine, train_data, test_data, epochs);
    const auto executed = mine.template get<2>().eval_executed_fraction();
    double mean = 0.0; // over the gated blocks (the first block always runs)
    for (std::size_t i = 1; i < executed.size(); ++i) {
        mean += executed[i] / static_cast<double>(executed.size() - 1);
    }
    std::printf("\n%-12s %9s %9s %12s\n", "network", "accuracy", "time (s)", "energy (J)");
    std::printf("%-12s %8.2f%% %9.1f %12.4g\n", "FP32", 100.0 * a.accuracy, a.seconds, a.joules);
    std::printf("%-12s %8.2f%% %9.1f %12.4g   (%.0f%% less energy; gated blocks executed in evaluation: %.0f%%)\n",
                "gated 8-bit", 100.0 * b.accuracy, b.seconds, b.joules, 100.0 * (1.0 - b.joules / a.joules),
                100.0 * mean);
    return b.accuracy > 0.30 ? 0 : 1;
} catch (const frugal::error& e) {
    std::fprintf(stderr, "my_model: %s\n", e.what());
    return 1;
}
