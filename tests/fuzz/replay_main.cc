// Corpus replay without libFuzzer: the normal (gcc) build links a fuzz target's
// LLVMFuzzerTestOneInput with this main and runs every file of the target's corpus folder
// through it, so `ctest` keeps every committed input (crash reproducers included) passing.
//
//   fuzz_replay_<target> DIR_OR_FILE...
//
// Exits 0 when every input ran (an invariant failure aborts the process), 1 when a folder is
// missing or holds no inputs: a replay that replays nothing must not pass.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    std::vector<fs::path> inputs;
    for (int i = 1; i < argc; ++i) {
        const fs::path arg = argv[i];
        std::error_code ec;
        if (fs::is_directory(arg, ec)) {
            for (const auto& e : fs::directory_iterator(arg)) {
                if (e.is_regular_file()) inputs.push_back(e.path());
            }
        } else if (fs::is_regular_file(arg, ec)) {
            inputs.push_back(arg);
        } else {
            std::fprintf(stderr, "replay: %s: no such file or folder\n", argv[i]);
            return 1;
        }
    }
    if (inputs.empty()) {
        std::fprintf(stderr, "replay: no inputs to run\n");
        return 1;
    }
    std::sort(inputs.begin(), inputs.end());  // a stable order, so a failure replays the same way
    for (const fs::path& p : inputs) {
        const std::vector<uint8_t> bytes = read_file(p);
        // Print before running: if an input aborts, the last line names it.
        std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.filename().c_str(), bytes.size());
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::printf("replay: %zu inputs ran\n", inputs.size());
    return 0;
}
