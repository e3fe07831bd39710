// Must not compile: network slimming prunes by batch-norm scales, and
// LeNet-5 has no batch norm.
#include <frugal/model/zoo/lenet.hpp>
#include <frugal/prune/mask.hpp>

int main() {
    const auto net = frugal::lenet5();
    const auto mask = frugal::ticket_mask(net, 0.5);
    return static_cast<int>(mask.keep.size());
}
