// Child process of the "killed and resumed" trainer test: trains the tiny
// run into the folder given as argv[1] until it is killed.
#include <cstdio>
#include <cstdlib>

#include "train/tiny_run.hpp"

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: kill_child <out dir> <epochs> <images>\n");
        return 2;
    }
    tiny::run(argv[1], static_cast<std::uint64_t>(std::atoi(argv[2])), 0,
              static_cast<std::size_t>(std::atoll(argv[3])));
    return 0;
}
