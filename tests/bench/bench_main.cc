// burrow-bench: measurements that are not tests (no pass/fail), one subcommand each.
#include <cstdio>
#include <functional>
#include <vector>

#include "tests/bench/bench_registry.h"
#include "tunnel/crypto_init.h"

namespace burrow::bench {

std::vector<BenchCommand>& bench_commands() {
    static std::vector<BenchCommand> commands;
    return commands;
}

}  // namespace burrow::bench

int main(int argc, char** argv) {
    if (!burrow::crypto_init()) {
        std::fprintf(stderr, "burrow-bench: libsodium failed to initialise\n");
        return 1;
    }
    CLI::App app{"burrow-bench: measure burrow's building blocks on this machine"};
    app.require_subcommand(1);

    std::function<int()> chosen;
    for (auto& command : burrow::bench::bench_commands()) {
        CLI::App* sub = app.add_subcommand(command.name, command.description);
        auto run = command.setup(*sub);
        sub->callback([&chosen, run] { chosen = run; });
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    return chosen ? chosen() : 0;
}
