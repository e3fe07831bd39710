// bench/ab-conv.sh's driver: conv2d 3 x 3 of an old revision (side_old) and of
// the working tree (side_new) on ResNet-20's shapes at batch 128 (Fashion-MNIST
// padded to 32 x 32; dense and pruned widths, stride 1 and 2), alternating call
// by call, each order half of the time; the medians and their ratio.
//
//   ab_conv [repetitions] [threads]

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <vector>

#define FRUGAL_AB_DECLARE(side)                                                                                        \
    namespace side {                                                                                                   \
    void* make(std::size_t, std::size_t, std::size_t, std::size_t);                                                    \
    void destroy(void*);                                                                                               \
    void threads(int);                                                                                                 \
    double forward(void*);                                                                                             \
    double backward(void*);                                                                                            \
    }
FRUGAL_AB_DECLARE(side_old)
FRUGAL_AB_DECLARE(side_new)

namespace {
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}
} // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 21;
    const int threads = argc > 2 ? std::max(1, std::atoi(argv[2])) : 2;
    side_old::threads(threads);
    side_new::threads(threads);
    std::printf("conv2d 3x3, batch 128, %d threads, median of %d calls each, old and new alternating (ms)\n", threads,
                reps);
    using shape = std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>; // in, out, side, stride
    for (const auto& [in, out, side, stride] :
         {shape{16, 16, 32, 1}, shape{16, 32, 32, 2}, shape{16, 23, 32, 2}, shape{16, 11, 32, 2}, shape{32, 64, 16, 2},
          shape{32, 44, 16, 2}, shape{32, 32, 16, 1}, shape{32, 26, 16, 1}, shape{32, 19, 16, 1}, shape{64, 64, 8, 1},
          shape{64, 45, 8, 1}, shape{64, 30, 8, 1}}) {
        void* a = side_old::make(in, out, side, stride);
        void* b = side_new::make(in, out, side, stride);
        std::vector<double> fa, fb, ba, bb;
        for (int r = 0; r < reps + 2; ++r) {
            const bool old_first = r % 2 == 0;
            const bool keep = r >= 2; // two warm-up rounds
            for (int i = 0; i < 2; ++i) {
                if ((i == 0) == old_first) {
                    const double f = side_old::forward(a), g = side_old::backward(a);
                    if (keep) {
                        fa.push_back(f);
                        ba.push_back(g);
                    }
                } else {
                    const double f = side_new::forward(b), g = side_new::backward(b);
                    if (keep) {
                        fb.push_back(f);
                        bb.push_back(g);
                    }
                }
            }
        }
        side_old::destroy(a);
        side_new::destroy(b);
        std::printf("%3zu -> %-3zu %2zu x %-2zu stride %zu   forward %6.2f -> %6.2f (%+4.0f%%)   backward %6.2f -> %6.2f "
                    "(%+4.0f%%)\n",
                    in, out, side, side, stride, median(fa) * 1e3, median(fb) * 1e3,
                    (median(fb) / median(fa) - 1.0) * 100.0, median(ba) * 1e3, median(bb) * 1e3,
                    (median(bb) / median(ba) - 1.0) * 100.0);
        std::printf("BENCH ab_conv in=%zu out=%zu side=%zu stride=%zu forward_old_ms=%.3f forward_new_ms=%.3f "
                    "backward_old_ms=%.3f backward_new_ms=%.3f\n",
                    in, out, side, stride, median(fa) * 1e3, median(fb) * 1e3, median(ba) * 1e3, median(bb) * 1e3);
    }
    return 0;
}
