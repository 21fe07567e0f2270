#include "src/status_command.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <variant>

#include "config/agent_config.h"
#include "signal/host_port.h"
#include "src/config_file.h"
#include "tunnel/socket_address.h"
#include "src/admin_server.h"
#include "src/status_client.h"
#include "src/status_table.h"

namespace burrow {

namespace {

constexpr int kExitFailed = 1;  // the agent could not be asked, or answered nonsense
constexpr int kExitUsage = 2;   // docs/architecture.md §7: bad input
// The agent answers from its event loop in well under a millisecond; 3 s leaves room for a
// machine under load and still fails fast enough for a script or a shell prompt.
constexpr auto kStatusTimeout = std::chrono::seconds(3);

int fail(int status, const std::string& line) {
    std::fprintf(stderr, "burrow: %s\n", line.c_str());
    return status;
}

// An IP literal host:port as a socket address; config/ never resolves names, nor do we.
std::variant<SocketAddress, std::string> admin_from_flag(const std::string& text) {
    auto parsed = parse_host_port(text);
    if (auto* why = std::get_if<std::string>(&parsed)) {
        return "status: --admin \"" + text + "\" is not a valid address (" + *why + ")";
    }
    const HostPort& hp = std::get<HostPort>(parsed);
    if (!hp.ip_literal()) {
        return "status: --admin \"" + text + "\" must be an IP address, such as 127.0.0.1:" +
               std::to_string(kDefaultAdminPort);
    }
    return literal_socket_address(hp).value_or(SocketAddress{});
}

}  // namespace

std::variant<SocketAddress, std::string> admin_address(const std::string& config_path,
                                                      const std::string& admin_flag) {
    SocketAddress admin = default_admin_address();
    if (!admin_flag.empty()) return admin_from_flag(admin_flag);
    if (!config_path.empty()) {
        auto loaded = load_agent_config(config_path);
        if (auto* err = std::get_if<ConfigError>(&loaded)) return err->message;
        const AgentConfig& config = std::get<AgentConfig>(loaded);
        // config/ accepts only loopback IP literals here, so this always parses.
        if (config.admin) {
            admin = literal_socket_address(*config.admin).value_or(admin);
        }
    }
    return admin;
}

int run_status(const StatusOptions& options) {
    auto where = admin_address(options.config_path, options.admin);
    if (auto* err = std::get_if<std::string>(&where)) return fail(kExitUsage, *err);
    const SocketAddress admin = std::get<SocketAddress>(where);

    auto fetched = fetch_status(admin, kStatusTimeout);
    if (fetched.index() == 1) return fail(kExitFailed, std::get<1>(fetched));
    const std::string& body = std::get<0>(fetched);
    if (options.json) {
        std::fwrite(body.data(), 1, body.size(), stdout);
        if (body.empty() || body.back() != '\n') std::fputc('\n', stdout);
        return 0;
    }
    const nlohmann::json status = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!status.is_object()) {
        return fail(kExitFailed, "malformed status from agent at " + to_string(admin) +
                                     " (not a JSON object; try --json to see it)");
    }
    const std::string text = render_status(status);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

}  // namespace burrow
