// Must not compile: a block without a shortcut cannot be gated (a skipped
// sample would have no output).
#include <vector>

#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/gated.hpp>

int main() {
    frugal::gated_block<frugal::conv2d> g(frugal::conv2d(4, 4, 3));
    (void)g;
    return 0;
}
