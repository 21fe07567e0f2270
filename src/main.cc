// burrow: one binary, one subcommand per role.
#include <sodium.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <variant>

#include "src/agent.h"
#include "src/doctor_command.h"
#include "src/key_file.h"
#include "src/netcheck.h"
#include "src/server.h"
#include "src/status_command.h"
#include "src/version.h"
#include "tunnel/crypto_init.h"

namespace {

constexpr int kExitUsage = 2;  // docs/architecture.md §7: bad input exits with status 2

struct KeygenOptions {
    std::string output;
    std::string pub;
    bool force = false;
};

int fail(const std::string& line) {
    std::fprintf(stderr, "burrow: %s\n", line.c_str());
    return kExitUsage;
}

// `keygen -o FILE [--force]` creates a key; `keygen --pub FILE` shows an existing key's public
// half. Either way the public key goes to stdout, the one thing the peer's config needs.
int run_keygen(const KeygenOptions& options) {
    if (options.output.empty() == options.pub.empty()) {
        return fail("keygen: give -o FILE to create a key, or --pub FILE to show its public key");
    }
    burrow::PrivateKey key;
    if (!options.output.empty()) {
        std::array<uint8_t, 32> random;
        randombytes_buf(random.data(), random.size());
        key = burrow::PrivateKey(random);
        sodium_memzero(random.data(), random.size());
        if (auto err = burrow::save_key_file(options.output, key, options.force)) {
            return fail(err->message);
        }
    } else {
        auto loaded = burrow::load_key_file(options.pub);
        if (auto* err = std::get_if<burrow::KeyFileError>(&loaded)) return fail(err->message);
        key = std::get<burrow::PrivateKey>(loaded);
    }
    std::printf("%s\n", burrow::key_to_base64(burrow::public_key(key)).c_str());
    return 0;
}

// How `status` and `doctor` find the running agent: its config file or its admin address.
void add_admin_options(CLI::App& sub, std::string& config_path, std::string& admin) {
    auto* config = sub.add_option("-c,--config", config_path,
                                  "the agent's TOML file (for its admin address)");
    sub.add_option("--admin", admin, "the agent's admin endpoint HOST:PORT (127.0.0.1:7070)")
        ->excludes(config);
}

}  // namespace

int main(int argc, char** argv) {
    if (!burrow::crypto_init()) {
        std::fprintf(stderr, "burrow: libsodium failed to initialise\n");
        return 1;
    }
    CLI::App app{"burrow: reach a TCP port behind a NAT from another machine behind a NAT"};
    app.require_subcommand(1);
    // One line per error (docs/architecture.md §7), not CLI11's default two.
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
        return std::string("burrow: ") + e.what() + "\n";
    });
    auto* version = app.add_subcommand("version", "print the version and exit");
    version->callback([] { std::printf("burrow %s\n", burrow::version_string()); });

    KeygenOptions keygen_options;
    auto* keygen = app.add_subcommand(
        "keygen", "create a key file (-o), or show the public key of one (--pub)");
    auto* output = keygen->add_option("-o,--output", keygen_options.output,
                                      "write a new private key to this file (mode 0600)");
    auto* pub = keygen->add_option("--pub", keygen_options.pub,
                                   "print the public key of this existing key file");
    auto* force = keygen->add_flag("--force", keygen_options.force,
                                   "replace the file given with -o if it exists");
    output->excludes(pub);
    force->needs(output);

    burrow::ServerRunOptions server_options;
    auto* server = app.add_subcommand("server", "run the signalling server");
    server->add_option("-c,--config", server_options.config_path, "the server's TOML file")
        ->required();
    server->add_flag("--print-fingerprint", server_options.print_fingerprint,
                     "print the TLS certificate's fingerprint (creating it if needed) and exit");
    server->add_flag("-v", server_options.verbosity, "more log detail (-v debug, -vv trace)");

    burrow::AgentRunOptions agent_options;
    auto* agent = app.add_subcommand("agent", "run an agent: expose local services, forward ports");
    agent->add_option("-c,--config", agent_options.config_path, "the agent's TOML file")
        ->required();
    agent->add_flag("-v", agent_options.verbosity, "more log detail (-v debug, -vv trace)");

    burrow::NetcheckOptions netcheck_options;
    auto* netcheck = app.add_subcommand("netcheck", "report what this machine's NAT does to UDP");
    netcheck->add_option("-c,--config", netcheck_options.config_path,
                         "an agent's TOML file: use its server (STUN ports 3478 and 3479)");
    netcheck->add_option("--stun", netcheck_options.stun,
                         "a STUN server HOST:PORT (give two: the server's two ports)");
    netcheck->add_option("--stun-server", netcheck_options.stun_servers,
                         "a standard STUN server HOST:PORT to ask as well (repeatable; with -c "
                         "the config's [agent] stun_servers)");
    netcheck->add_flag("--json", netcheck_options.json, "print the report as JSON");
    netcheck->add_flag("--no-port-mapping", netcheck_options.no_port_mapping,
                       "do not ask the gateway for UPnP IGD / PCP / NAT-PMP (also with -c and "
                       "[agent] port_mapping = false)");

    burrow::StatusOptions status_options;
    auto* status = app.add_subcommand("status", "show what the running agent is doing");
    add_admin_options(*status, status_options.config_path, status_options.admin);
    status->add_flag("--json", status_options.json, "print the agent's status JSON as is");

    burrow::DoctorOptions doctor_options;
    auto* doctor = app.add_subcommand(
        "doctor", "explain why the connection to a peer is direct or relayed (asks the server, "
                  "through the running agent)");
    doctor->add_option("peer", doctor_options.peer, "the peer agent's name")->required();
    add_admin_options(*doctor, doctor_options.config_path, doctor_options.admin);
    doctor->add_flag("--json", doctor_options.json, "print the verdict as JSON");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    if (keygen->parsed()) return run_keygen(keygen_options);
    if (server->parsed()) return burrow::run_server(server_options);
    if (agent->parsed()) return burrow::run_agent(agent_options);
    if (netcheck->parsed()) return burrow::run_netcheck(netcheck_options);
    if (status->parsed()) return burrow::run_status(status_options);
    if (doctor->parsed()) return burrow::run_doctor(doctor_options);
    return 0;
}
