#include "src/server.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <variant>

#include "config/server_config.h"
#include "src/cert.h"
#include "src/config_file.h"
#include "src/key_file.h"
#include "src/log.h"
#include "src/open_files.h"
#include "src/server_runtime.h"
#include "src/tls.h"

namespace burrow {
namespace {

constexpr int kExitOsError = 1;  // docs/architecture.md §7: the OS refused (an unreadable file)
constexpr int kExitUsage = 2;    // docs/architecture.md §7: bad input
constexpr double kBitsPerByte = 8;
constexpr double kBitsPerMbit = 1e6;

int fail(int status, const std::string& line) {
    std::fprintf(stderr, "burrow: %s\n", line.c_str());
    return status;
}

// The identity key agents authenticate against: loaded, or created (mode 0600) on first start.
std::variant<PrivateKey, std::string> ensure_identity_key(const std::string& path) {
    if (!std::filesystem::exists(path)) {
        std::array<uint8_t, 32> random;
        randombytes_buf(random.data(), random.size());
        PrivateKey key(random);
        sodium_memzero(random.data(), random.size());
        if (auto err = save_key_file(path, key, false)) return err->message;
        spdlog::info("created identity key {}", path);
        return key;
    }
    auto loaded = load_key_file(path);
    if (auto* err = std::get_if<KeyFileError>(&loaded)) return err->message;
    return std::get<PrivateKey>(loaded);
}

// config/ checked that these are IP literals, so this cannot fail for a loaded config.
SocketAddress literal(const HostPort& hp) {
    return literal_socket_address(hp).value_or(SocketAddress{});
}

ServerRuntimeConfig runtime_config(const ServerConfig& config, const PrivateKey& identity) {
    ServerRuntimeConfig rt;
    for (const auto& l : config.listen) rt.listen.push_back(literal(l));
    for (size_t i = 0; i < rt.stun.size(); ++i) {
        for (const auto& s : config.stun[i]) rt.stun[i].push_back(literal(s));
    }
    rt.identity = identity;
    rt.max_agents = config.max_agents;
    rt.relay_bytes_per_second = config.relay_rate_mbit * kBitsPerMbit / kBitsPerByte;
    rt.relay_packets_per_second = config.relay_packets_per_sec;
    rt.stun_standard_clients = config.stun_standard_clients;
    if (config.metrics) rt.metrics = literal(*config.metrics);
    for (const auto& a : config.agents) rt.agents.push_back({a.name, a.public_key});
    for (const auto& r : config.allow) rt.allow.push_back({r.from, r.to, r.services});
    if (config.cluster) {
        rt.cluster = ServerRuntimeConfig::Cluster{literal(config.cluster->redis),
                                                  config.cluster->name};
    }
    return rt;
}

}  // namespace

int run_server(const ServerRunOptions& options) {
    auto loaded = load_server_config(options.config_path);
    if (auto* err = std::get_if<ConfigError>(&loaded)) return fail(kExitUsage, err->message);
    const ServerConfig config = std::get<ServerConfig>(std::move(loaded));
    init_logging(options.verbosity > 0 ? level_for_verbosity(options.verbosity) : config.log_level);

    auto cert = ensure_server_cert(config.cert_file, config.key_file);
    if (auto* err = std::get_if<CertError>(&cert)) return fail(kExitOsError, err->message);
    const auto& status = std::get<ServerCertStatus>(cert);
    if (options.print_fingerprint) {  // the fingerprint alone, for scripts
        std::printf("%s\n", status.fingerprint.c_str());
        return 0;
    }
    raise_and_log_open_files_limit();
    if (status.created) {
        spdlog::info("created certificate {}; fingerprint {}", config.cert_file,
                     status.fingerprint);
    }
    spdlog::info("certificate fingerprint {}", status.fingerprint);

    auto identity = ensure_identity_key(config.identity_key);
    if (auto* err = std::get_if<std::string>(&identity)) return fail(kExitOsError, *err);
    const PrivateKey& identity_key = std::get<PrivateKey>(identity);
    spdlog::info("identity public key {}", key_to_base64(public_key(identity_key)));

    auto context = TlsContext::server(config.cert_file, config.key_file);
    if (auto* err = std::get_if<OsError>(&context)) return fail(kExitOsError, err->message);

    return run_server_loop(runtime_config(config, identity_key),
                           std::get<std::shared_ptr<TlsContext>>(context));
}

}  // namespace burrow
