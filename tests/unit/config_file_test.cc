// src/config_file: config files read from disk, handed to config/'s parsers.
#include <catch2/catch.hpp>

#include <string>
#include <variant>

#include "src/config_file.h"
#include "tests/support/temp_dir.h"

using namespace burrow;
using burrow::test::TempDir;

namespace {

const std::string kAgentFile =
    "[agent]\n"
    "name = \"nas\"\n"
    "key_file = \"../keys/nas.key\"\n"
    "server = \"signal.example.net:7000\"\n"
    "server_fingerprint = \"sha256:" +
    std::string(64, 'a') + "\"\n";

}  // namespace

TEST_CASE("paths in a loaded file resolve against its folder") {
    TempDir dir;
    dir.touch("keys/nas.key");
    SECTION("load_agent_config resolves against the file's folder") {
        dir.write("etc/nas.toml", kAgentFile);
        auto r = load_agent_config(dir.file("etc/nas.toml"));
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        CHECK(std::get<AgentConfig>(r).key_file == dir.file("keys/nas.key"));
    }
    SECTION("server paths too") {
        dir.write("etc/server.toml", R"([server]
listen = "0.0.0.0:7000"
stun = ["0.0.0.0:3478", "0.0.0.0:3479"]
cert_file = "server.crt"
key_file = "tls/server.key"
identity_key = "/var/lib/burrow/identity.key"
)");
        auto r = load_server_config(dir.file("etc/server.toml"));
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        const auto& config = std::get<ServerConfig>(r);
        CHECK(config.cert_file == dir.file("etc/server.crt"));
        CHECK(config.key_file == dir.file("etc/tls/server.key"));
        CHECK(config.identity_key == "/var/lib/burrow/identity.key");
    }
}

TEST_CASE("a key file that is missing or a folder is named with its line") {
    TempDir dir;
    dir.write("etc/nas.toml", kAgentFile);
    auto missing = load_agent_config(dir.file("etc/nas.toml"));
    REQUIRE(std::holds_alternative<ConfigError>(missing));
    CHECK_THAT(std::get<ConfigError>(missing).message,
               Catch::StartsWith(dir.file("etc/nas.toml") + ":3:12: agent.key_file: "));
    CHECK_THAT(std::get<ConfigError>(missing).message, Catch::Contains("does not exist"));
    dir.touch("keys/nas.key/inside");  // nas.key is now a folder
    auto folder = load_agent_config(dir.file("etc/nas.toml"));
    REQUIRE(std::holds_alternative<ConfigError>(folder));
    CHECK_THAT(std::get<ConfigError>(folder).message, Catch::Contains("is a directory"));
}

TEST_CASE("loading a missing or unreadable file names it") {
    TempDir dir;
    auto r = load_agent_config(dir.file("nope.toml"));
    REQUIRE(std::holds_alternative<ConfigError>(r));
    CHECK(std::get<ConfigError>(r).message ==
          dir.file("nope.toml") + ": cannot open: No such file or directory");
    auto s = load_server_config(dir.path());  // a directory
    REQUIRE(std::holds_alternative<ConfigError>(s));
    CHECK_THAT(std::get<ConfigError>(s).message, Catch::StartsWith(dir.path() + ": cannot"));
}
