#include "src/agent.h"

#include <cstdio>
#include <variant>

#include "config/agent_config.h"
#include "src/agent_runtime.h"
#include "src/config_file.h"
#include "src/key_file.h"
#include "src/log.h"
#include "src/tls.h"

namespace burrow {
namespace {

constexpr int kExitUsage = 2;    // docs/architecture.md §7: bad input
constexpr int kExitOsError = 1;  // docs/architecture.md §7: the OS refused

int fail(int status, const std::string& line) {
    std::fprintf(stderr, "burrow: %s\n", line.c_str());
    return status;
}

}  // namespace

int run_agent(const AgentRunOptions& options) {
    auto loaded = load_agent_config(options.config_path);
    if (auto* err = std::get_if<ConfigError>(&loaded)) return fail(kExitUsage, err->message);
    AgentConfig config = std::get<AgentConfig>(std::move(loaded));
    init_logging(options.verbosity > 0 ? level_for_verbosity(options.verbosity) : config.log_level);

    auto key = load_key_file(config.key_file);
    if (auto* err = std::get_if<KeyFileError>(&key)) return fail(kExitUsage, err->message);

    TlsClientConfig tls;
    if (config.server_fingerprint) tls.pinned_fingerprint = fingerprint_to_string(*config.server_fingerprint);
    if (config.server_ca) tls.ca_file = *config.server_ca;
    // With several servers (issue 21) they share one certificate (one cluster, one config):
    // the first server's name is the one a CA-signed certificate is checked against.
    tls.server_name = config.server.host;
    auto context = TlsContext::client(tls);
    if (auto* err = std::get_if<OsError>(&context)) return fail(kExitOsError, err->message);

    AgentRuntimeOptions runtime;
    runtime.config = std::move(config);
    runtime.config_path = options.config_path;
    runtime.key = std::get<PrivateKey>(key);
    runtime.tls = std::get<std::shared_ptr<TlsContext>>(context);
    runtime.verbosity = options.verbosity;
    return run_agent_loop(std::move(runtime));
}

}  // namespace burrow
