// Config target: TOML text to a validated AgentConfig or ServerConfig (config/agent_config.h,
// config/server_config.h), the path from a user's file to the values the agent and server run
// with.
//
// Input: selector byte (even: agent, odd: server), then the file's text. Relative paths resolve
// against a scratch folder holding the files the examples name (nas.key, laptop.key, ca.pem),
// so valid inputs get past the file checks.
//
// Invariants: the loader returns a config or exactly one error line naming the source; a config
// satisfies what its header promises (names present, allow lists non-empty, exactly one of
// fingerprint and CA, distinct STUN endpoints and server paths, listen ports not reused).
#include <set>

#include "config/agent_config.h"
#include "config/server_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;

namespace {

constexpr std::string_view kSource = "fuzz.toml";

// The files the configs may name; config/ asks about them through a FileProbe, so the fuzzer
// never touches the disk.
const std::string kBaseDir = "/fuzz";
FileKind fake_files(const std::string& path) {
    for (const char* name : {"/fuzz/nas.key", "/fuzz/laptop.key", "/fuzz/ca.pem"}) {
        if (path == name) return FileKind::kFile;
    }
    return path == kBaseDir ? FileKind::kDirectory : FileKind::kMissing;
}

void check_error(const ConfigError& e) {
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(e.message.find('\n') == std::string::npos);
    FUZZ_CHECK(e.message.rfind(kSource, 0) == 0);
}

void check(const AgentConfig& c) {
    FUZZ_CHECK(!c.name.empty() && c.name.size() <= 32);
    FUZZ_CHECK(c.server_fingerprint.has_value() != c.server_ca.has_value());
    FUZZ_CHECK(!c.key_file.empty());
    std::set<std::string> services;
    for (const ExposeConfig& e : c.expose) {
        FUZZ_CHECK(!e.service.empty() && !e.allow.empty());
        FUZZ_CHECK(std::set<std::string>(e.allow.begin(), e.allow.end()).size() == e.allow.size());
        services.insert(e.service);
    }
    FUZZ_CHECK(services.size() == c.expose.size());
    for (const ForwardConfig& f : c.forward) FUZZ_CHECK(!f.peer.empty() && !f.service.empty());
}

void check(const ServerConfig& c) {
    FUZZ_CHECK(!(c.stun[0] == c.stun[1]));
    FUZZ_CHECK(c.cert_file != c.key_file && c.key_file != c.identity_key &&
               c.cert_file != c.identity_key);
    std::set<std::string> names;
    for (const AgentEntry& a : c.agents) names.insert(a.name);
    FUZZ_CHECK(names.size() == c.agents.size());
    for (const AllowRule& r : c.allow) {
        FUZZ_CHECK(names.count(r.from) == 1 && names.count(r.to) == 1);
        FUZZ_CHECK(!r.services.empty());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] & 1) {
        auto r = parse_server_config(text, kSource, kBaseDir);
        if (auto* e = std::get_if<ConfigError>(&r)) check_error(*e);
        else check(std::get<ServerConfig>(r));
    } else {
        auto r = parse_agent_config(text, kSource, kBaseDir, fake_files);
        if (auto* e = std::get_if<ConfigError>(&r)) check_error(*e);
        else check(std::get<AgentConfig>(r));
    }
    return 0;
}
