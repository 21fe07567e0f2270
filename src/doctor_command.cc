#include "src/doctor_command.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <variant>

#include "signal/control.h"
#include "src/status_client.h"
#include "src/status_command.h"

namespace burrow {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
// The agent answers once the server has (one control round trip) or after its own 3 s wait
// (signal/agent_core.h kDoctorAnswerWait); this leaves room for that answer to arrive.
constexpr auto kDoctorTimeout = std::chrono::seconds(5);

int fail(int status, const std::string& line) {
    std::fprintf(stderr, "burrow: %s\n", line.c_str());
    return status;
}

// Agent names as config/ accepts them: [a-z0-9-], so the name goes into the URL path as is.
bool valid_peer(const std::string& s) {
    if (s.empty() || s.size() > kMaxAgentNameLen) return false;
    for (char c : s) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    return true;
}

}  // namespace

int run_doctor(const DoctorOptions& options) {
    if (!valid_peer(options.peer)) {
        return fail(kExitUsage, "doctor: \"" + options.peer +
                                    "\" is not an agent name (1-32 of a-z, 0-9 and -)");
    }
    auto where = admin_address(options.config_path, options.admin);
    if (auto* err = std::get_if<std::string>(&where)) return fail(kExitUsage, *err);
    const SocketAddress admin = std::get<SocketAddress>(where);

    auto fetched = fetch_admin(admin, "/doctor/" + options.peer, kDoctorTimeout);
    if (fetched.index() == 1) return fail(kExitFailed, std::get<1>(fetched));
    const std::string& body = std::get<0>(fetched);
    const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("ok") || !j["ok"].is_boolean()) {
        return fail(kExitFailed, "malformed doctor answer from the agent at " + to_string(admin) +
                                     " (is it an older burrow?)");
    }
    const bool ok = j["ok"].get<bool>();
    if (options.json) {
        std::fwrite(body.data(), 1, body.size(), stdout);
        if (body.empty() || body.back() != '\n') std::fputc('\n', stdout);
        return ok ? 0 : kExitFailed;
    }
    if (!ok) {
        const std::string error = j.value("error", std::string("no verdict"));
        return fail(kExitFailed, "doctor: " + error);
    }
    const std::string text = j.value("text", std::string());
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

}  // namespace burrow
