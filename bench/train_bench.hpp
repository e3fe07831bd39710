#ifndef FRUGAL_BENCH_TRAIN_BENCH_HPP
#define FRUGAL_BENCH_TRAIN_BENCH_HPP

// Helpers of the training-step benchmarks: Fashion-MNIST batches in a fixed
// order, and "subjects" (a network with its own optimizer, loss and random
// source) that run a number of training steps and return their seconds, so
// that a benchmark can interleave several networks in one process.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <frugal/cost/meter.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/optim/sgd.hpp>

namespace bench {

/// The Fashion-MNIST training set and its batches of 128, unshuffled.
struct fashion_batches {
    frugal::image_dataset data = frugal::load_fashion_mnist(frugal::data_split::train);
    frugal::batch_loader loader{data, frugal::normalization::from_dataset(data), options()};

    fashion_batches() = default;
    fashion_batches(const fashion_batches&) = delete;
    fashion_batches& operator=(const fashion_batches&) = delete;

    static frugal::batch_options options() {
        frugal::batch_options bo;
        bo.batch_size = 128;
        bo.shuffle = false;
        return bo;
    }
};

/// A network under test: run(steps, meter) trains `steps` steps (SGD with
/// momentum, lr 0.01) with the meter on when given, and returns the seconds.
struct train_subject {
    std::string name;
    std::function<double(int, frugal::cost_meter*)> run;
};

template <class Net>
train_subject make_train_subject(std::string name, Net& net, frugal::batch_loader& loader, std::uint64_t seed = 7) {
    struct state {
        frugal::optimizer<> opt;
        frugal::softmax_cross_entropy loss;
        frugal::context ctx;
        frugal::batch b;
        std::size_t next = 0;
        explicit state(std::vector<frugal::parameter> ps) : opt(std::move(ps), frugal::sgd{0.9f, 1e-4f, false}) {}
    };
    auto st = std::make_shared<state>(frugal::parameters_of(net));
    st->ctx.random = frugal::rng(seed);
    return {std::move(name), [st, &net, &loader](int steps, frugal::cost_meter* meter) {
                st->ctx.meter = meter;
                const auto t = std::chrono::steady_clock::now();
                for (int i = 0; i < steps; ++i) {
                    loader.fill(0, st->next++ % loader.batches_per_epoch(), st->b);
                    st->loss.forward(net.forward(st->ctx, st->b.x), st->b.y);
                    net.backward(st->ctx, st->loss.backward());
                    st->opt.step(st->ctx, 0.01f);
                }
                st->ctx.meter = nullptr;
                return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
            }};
}

/// Seconds per step of each subject: `runs` rounds of `steps` steps, the
/// subjects' order rotated every round; t[i] holds subject i's rounds.
inline std::vector<std::vector<double>> interleaved(std::vector<train_subject>& subjects, int steps, int runs,
                                                    frugal::cost_meter* meter) {
    std::vector<std::vector<double>> t(subjects.size());
    for (int r = 0; r < runs; ++r) {
        for (std::size_t i = 0; i < subjects.size(); ++i) {
            const std::size_t j = (i + static_cast<std::size_t>(r)) % subjects.size();
            t[j].push_back(subjects[j].run(steps, meter) / steps);
        }
    }
    return t;
}

inline double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

} // namespace bench

#endif
