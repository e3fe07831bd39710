#ifndef FRUGAL_EXAMPLES_COMMON_DATA_HPP
#define FRUGAL_EXAMPLES_COMMON_DATA_HPP

// Fashion-MNIST for the examples: the training and test sets (optionally
// random subsets), normalized with the training set's statistics, the
// training loader with crop and flip augmentation and the test loader.
// Built in place (the loaders refer to the sets it holds).

#include <cstddef>
#include <cstdint>
#include <string>

#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>

namespace cli {

struct data_options {
    std::string dir;              ///< Fashion-MNIST folder
    std::size_t subset = 0;       ///< training images (0: all 60000)
    std::size_t test_subset = 0;  ///< test images (0: all 10000)
    std::uint64_t subset_seed = 1;
    std::size_t batch = 128;
    std::uint64_t seed = 1;       ///< batch order and augmentation
    std::size_t crop = 2;         ///< random-crop padding (0: none)
    bool flip = true;
};

class fashion_data {
public:
    explicit fashion_data(const data_options& o)
        : train_set(load(frugal::data_split::train, o.dir, o.subset, o.subset_seed)),
          test_set(load(frugal::data_split::test, o.dir, o.test_subset, o.subset_seed)),
          norm(frugal::normalization::from_dataset(train_set)), train(train_set, norm, train_options(o)),
          test(test_set, norm, frugal::batch_options::evaluation(500)) {}
    fashion_data(const fashion_data&) = delete;
    fashion_data& operator=(const fashion_data&) = delete;

    frugal::image_dataset train_set, test_set;
    frugal::normalization norm;
    frugal::batch_loader train, test;

private:
    static frugal::image_dataset load(frugal::data_split split, const std::string& dir, std::size_t n,
                                      std::uint64_t seed) {
        auto d = frugal::load_fashion_mnist(split, dir);
        return n > 0 ? frugal::subset(d, n, seed) : d;
    }
    static frugal::batch_options train_options(const data_options& o) {
        frugal::batch_options bo;
        bo.batch_size = o.batch;
        bo.seed = o.seed;
        bo.augment.crop_padding = o.crop;
        bo.augment.flip = o.flip;
        return bo;
    }
};

} // namespace cli

#endif
