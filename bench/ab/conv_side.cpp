// One side of bench/ab-conv.sh: the convolution of one source tree, compiled
// twice (the tree at a git revision, with `frugal` renamed to `frugal_old` by
// the preprocessor, and the working tree), so that both run in one process,
// alternating call by call: the machine's drift falls on both alike.

#include <chrono>
#include <cstddef>
#include <memory>

#include <frugal/layers/conv2d.hpp>
#include <frugal/numeric/random.hpp>
#include <frugal/tensor/parallel.hpp>

namespace FRUGAL_AB_SIDE {

struct state {
    std::unique_ptr<frugal::conv2d> conv;
    frugal::tensor4 x, dy;
    frugal::context ctx;
};

void* make(std::size_t in, std::size_t out, std::size_t side, std::size_t stride) {
    auto* s = new state;
    frugal::rng g(3);
    s->conv = std::make_unique<frugal::conv2d>(in, out, 3, frugal::conv_options{stride, 1, false});
    for (auto& v : s->conv->weight()) {
        v = g.uniform() - 0.5f;
    }
    s->x = frugal::tensor4::from_shape({128, in, side, side});
    for (auto& v : s->x) {
        v = g.uniform() - 0.5f;
    }
    const frugal::tensor4& y = s->conv->forward(s->ctx, s->x);
    s->dy = frugal::tensor4::from_shape({y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]});
    for (auto& v : s->dy) {
        v = g.uniform() - 0.5f;
    }
    return s;
}

void destroy(void* p) { delete static_cast<state*>(p); }

void threads(int t) { frugal::set_num_threads(t); }

double forward(void* p) {
    auto* s = static_cast<state*>(p);
    const auto t0 = std::chrono::steady_clock::now();
    (void)s->conv->forward(s->ctx, s->x);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double backward(void* p) {
    auto* s = static_cast<state*>(p);
    (void)s->conv->forward(s->ctx, s->x);
    const auto t0 = std::chrono::steady_clock::now();
    (void)s->conv->backward(s->ctx, s->dy);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace FRUGAL_AB_SIDE
