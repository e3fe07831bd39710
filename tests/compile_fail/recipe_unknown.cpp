// Must not compile: a recipe takes technique tags only.
#include <frugal/train/recipe.hpp>

int main() {
    using r = frugal::recipe<frugal::technique::smd, int>;
    return static_cast<int>(sizeof(r));
}
