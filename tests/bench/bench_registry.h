// Subcommands of burrow-bench (`burrow-bench crypto`, later `signal`, ...).
//
// Each subcommand lives in its own file and registers itself with a static BenchRegistration,
// so adding one touches neither bench_main.cc nor CMakeLists.txt (the build globs the folder).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace burrow::bench {

// Adds the subcommand's options to cmd and returns what to run if it is the one chosen; the
// returned function gives the process exit status.
using BenchSetup = std::function<std::function<int()>(CLI::App& cmd)>;

struct BenchCommand {
    std::string name;
    std::string description;
    BenchSetup setup;
};

// Every registered subcommand, in registration order (a function-local static, so static
// registrations in other files may run before or after main's file is initialised).
std::vector<BenchCommand>& bench_commands();

struct BenchRegistration {
    BenchRegistration(std::string name, std::string description, BenchSetup setup) {
        bench_commands().push_back({std::move(name), std::move(description), std::move(setup)});
    }
};

}  // namespace burrow::bench
