// burrow: one binary, one subcommand per role.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "src/version.h"

int main(int argc, char** argv) {
    CLI::App app{"burrow: reach a TCP port behind a NAT from another machine behind a NAT"};
    app.require_subcommand(1);
    auto* version = app.add_subcommand("version", "print the version and exit");
    version->callback([] { std::printf("burrow %s\n", burrow::version_string()); });
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    return 0;
}
