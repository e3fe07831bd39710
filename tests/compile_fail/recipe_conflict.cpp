// Must not compile: PSG and FracTrain both decide how the convolutions compute.
#include <frugal/train/recipe.hpp>

int main() {
    using r = frugal::recipe<frugal::technique::psg, frugal::technique::pfq>;
    return static_cast<int>(sizeof(r));
}
