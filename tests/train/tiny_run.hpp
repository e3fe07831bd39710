#ifndef FRUGAL_TESTS_TRAIN_TINY_RUN_HPP
#define FRUGAL_TESTS_TRAIN_TINY_RUN_HPP

// A small, fully determined training run shared by the trainer tests and the
// child process they kill: LeNet-5 on a fixed Fashion-MNIST subset.

#include <filesystem>
#include <map>
#include <vector>

#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/model/zoo/lenet.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/train/trainer.hpp>

namespace tiny {

struct run_result {
    std::vector<float> weights;
    frugal::fit_result fit;
};

inline run_result run(const std::filesystem::path& out, std::uint64_t epochs, std::uint64_t stop_after = 0,
                      std::size_t images = 1024, float lr = 0.02f) {
    static std::map<std::size_t, frugal::image_dataset> subsets; // one per size, loaded once
    auto it = subsets.find(images);
    if (it == subsets.end()) {
        it = subsets.emplace(images, frugal::subset(frugal::load_fashion_mnist(frugal::data_split::train), images, 3)).first;
    }
    const frugal::image_dataset& train = it->second;
    frugal::batch_options bo;
    bo.batch_size = 64;
    bo.seed = 9;
    bo.augment.flip = true;
    bo.augment.crop_padding = 2;
    frugal::batch_loader loader(train, frugal::normalization::from_dataset(train), bo);
    auto net = frugal::lenet5(1, 28, 10, 4);
    frugal::optimizer<> opt(frugal::parameters_of(net), frugal::sgd{0.9f, 5e-4f, true});
    frugal::fit_options o;
    o.epochs = epochs;
    o.out_dir = out;
    o.seed = 9;
    o.progress = false;
    o.stop_after = stop_after;
    o.schedule = frugal::lr_schedule::cosine({lr, epochs * loader.batches_per_epoch(), 0.0f});
    run_result r;
    r.fit = frugal::fit(net, opt, loader, nullptr, o);
    for (const auto& p : frugal::parameters_of(net)) {
        r.weights.insert(r.weights.end(), p.value.begin(), p.value.end());
    }
    return r;
}

} // namespace tiny

#endif
