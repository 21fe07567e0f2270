#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "tests/support/temp_dir.h"
#include "config/agent_config.h"
#include "signal/host_port.h"
#include "config/server_config.h"
#include "config/values.h"
#include "tunnel/noise.h"
#include "tunnel/rng.h"

using namespace burrow;
using burrow::test::TempDir;
namespace fs = std::filesystem;

namespace {

// config/ asks src/ whether files exist (config/file_probe.h); here the test answers from the
// temporary folders it made.
FileKind on_disk(const std::string& path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (fs::is_directory(status)) return FileKind::kDirectory;
    return fs::exists(status) ? FileKind::kFile : FileKind::kMissing;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::string kFingerprintHex(64, 'a');
const std::string kFingerprint = "sha256:" + kFingerprintHex;
const std::string kKeyNas = "gQfWchkJ5qc3OjjvkzWI904KB5jWx8YfHMdcYZr0lUY=";
const std::string kKeyLaptop = "Bo5Wxp9tBv/9/a374Rr6T5A9J4Vc+N4/YKvRvzIvrwk=";

// Lines 1-5 of most agent cases; what a case adds starts on line 6.
const std::string kAgentHead =
    "[agent]\n"
    "name = \"nas\"\n"
    "key_file = \"nas.key\"\n"
    "server = \"signal.example.net:7000\"\n"
    "server_fingerprint = \"" +
    kFingerprint + "\"\n";

// Lines 1-6 of most server cases; what a case adds starts on line 7.
const std::string kServerHead =
    "[server]\n"
    "listen = \"0.0.0.0:7000\"\n"
    "stun = [\"0.0.0.0:3478\", \"0.0.0.0:3479\"]\n"
    "cert_file = \"server.crt\"\n"
    "key_file = \"server.key\"\n"
    "identity_key = \"server-identity.key\"\n";

// Lines 7-12: two agents, so that rules have someone to name; what a case adds starts on 13.
const std::string kServerAgents =
    "[[agents]]\n"
    "name = \"nas\"\n"
    "public_key = \"" +
    kKeyNas +
    "\"\n"
    "[[agents]]\n"
    "name = \"laptop\"\n"
    "public_key = \"" +
    kKeyLaptop + "\"\n";

// text with its line number `line` (from 1) replaced by `replacement`.
std::string with_line(const std::string& text, int line, const std::string& replacement) {
    size_t begin = 0;
    for (int i = 1; i < line; ++i) begin = text.find('\n', begin) + 1;
    const size_t end = text.find('\n', begin);
    return text.substr(0, begin) + replacement + text.substr(end);
}

struct BadCase {
    const char* what;
    std::string text;
    // "file:line:column: key.path: ", the exact start of the message.
    std::string prefix;
    // A phrase the rest of the message must contain, so the reason is the right one.
    std::string says;
};

template <class Config>
void expect_error(const std::variant<Config, ConfigError>& result, const BadCase& c) {
    INFO(c.what);
    const auto* error = std::get_if<ConfigError>(&result);
    REQUIRE(error != nullptr);
    INFO(error->message);
    CHECK(error->message.rfind(c.prefix, 0) == 0);
    CHECK(error->message.find(c.says, c.prefix.size()) != std::string::npos);
    CHECK(error->message.find('\n') == std::string::npos);
}

}  // namespace

// ---- addresses ---------------------------------------------------------------------------

TEST_CASE("host:port parses literals canonically and names as written") {
    auto get = [](std::string_view text) {
        auto r = parse_host_port(text);
        INFO(std::string(text));
        REQUIRE(std::holds_alternative<HostPort>(r));
        return std::get<HostPort>(r);
    };
    CHECK(get("127.0.0.1:80") == HostPort{"127.0.0.1", 80, HostKind::kIpv4});
    CHECK(get("[::1]:8080") == HostPort{"::1", 8080, HostKind::kIpv6});
    CHECK(get("[0:0::1]:1") == HostPort{"::1", 1, HostKind::kIpv6});
    CHECK(get("[2001:DB8::1]:65535") == HostPort{"2001:db8::1", 65535, HostKind::kIpv6});
    CHECK(get("signal.example.net:7000") == HostPort{"signal.example.net", 7000, HostKind::kName});
    CHECK(get("localhost:7000").kind == HostKind::kName);
    CHECK(get("a-1.b2:9").host == "a-1.b2");
    CHECK(to_string(get("[::1]:8080")) == "[::1]:8080");
    CHECK(to_string(get("10.0.0.1:1")) == "10.0.0.1:1");
}

TEST_CASE("host:port rejections say why") {
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"", "empty"},
        {"127.0.0.1", "missing :port"},
        {"127.0.0.1:", "missing port"},
        {"127.0.0.1:0", "port 1-65535"},
        {"127.0.0.1:65536", "port 1-65535"},
        {"127.0.0.1:99999", "port 1-65535"},
        {"127.0.0.1:8o", "port 1-65535"},
        {"127.0.0.1:-1", "port 1-65535"},
        {"127.0.0.1:+80", "port 1-65535"},
        {":80", "missing host"},
        {"::1:80", "brackets"},
        {"[::1]", "missing :port"},
        {"[::1:80", "missing ']'"},
        {"[127.0.0.1]:80", "not an IPv6"},
        {"[fe80::1%eth0]:80", "not an IPv6"},
        {"256.0.0.1:80", "not an IPv4"},
        {"10.0.0:80", "not an IPv4"},
        {"010.0.0.1:80", "not an IPv4"},
        {"-bad.example:80", "DNS name"},
        {"bad-.example:80", "DNS name"},
        {"a..b:80", "DNS name"},
        {"under_score.example:80", "DNS name"},
        {"host name:80", "DNS name"},
        {"1.2.3.4x.5:80", "DNS name"},
    };
    for (const auto& [text, why] : bad) {
        INFO(text);
        auto r = parse_host_port(text);
        REQUIRE(std::holds_alternative<std::string>(r));
        CHECK_THAT(std::get<std::string>(r), Catch::Contains(why));
    }
    CHECK(std::holds_alternative<std::string>(
        parse_host_port(std::string(254, 'a') + ".example:80")));
    CHECK(std::holds_alternative<std::string>(parse_host_port(std::string(64, 'a') + ".x:80")));
    CHECK(std::holds_alternative<HostPort>(parse_host_port(std::string(63, 'a') + ".x:80")));
}

TEST_CASE("wildcard and loopback addresses") {
    auto get = [](std::string_view text) { return std::get<HostPort>(parse_host_port(text)); };
    CHECK(is_wildcard(get("0.0.0.0:1")));
    CHECK(is_wildcard(get("[::]:1")));
    CHECK(is_wildcard(get("[0::0]:1")));
    CHECK_FALSE(is_wildcard(get("127.0.0.1:1")));
    CHECK(is_loopback(get("127.0.0.1:1")));
    CHECK(is_loopback(get("127.255.0.9:1")));
    CHECK(is_loopback(get("[::1]:1")));
    CHECK_FALSE(is_loopback(get("12.0.0.1:1")));
    CHECK_FALSE(is_loopback(get("128.0.0.1:1")));
    CHECK_FALSE(is_loopback(get("localhost:1")));
    CHECK_FALSE(is_loopback(get("[::2]:1")));
}

// ---- scalar values -----------------------------------------------------------------------

TEST_CASE("agent and service names") {
    CHECK(is_agent_name("nas"));
    CHECK(is_agent_name("a"));
    CHECK(is_agent_name("home-nas-2"));
    CHECK(is_agent_name(std::string(32, 'x')));
    CHECK_FALSE(is_agent_name(std::string(33, 'x')));
    CHECK_FALSE(is_agent_name(""));
    CHECK_FALSE(is_agent_name("NAS"));
    CHECK_FALSE(is_agent_name("nas_1"));
    CHECK_FALSE(is_agent_name("nas.home"));
    CHECK(is_service_name("web"));
    CHECK(is_service_name("my_web-2.v1"));
    CHECK(is_service_name(std::string(64, 's')));
    CHECK_FALSE(is_service_name(std::string(65, 's')));
    CHECK_FALSE(is_service_name(""));
    CHECK_FALSE(is_service_name("Web"));
    CHECK_FALSE(is_service_name("*"));
    CHECK_FALSE(is_service_name("a b"));
}

TEST_CASE("log levels round-trip and nothing else parses") {
    for (auto level :
         {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
        CHECK(parse_log_level(to_string(level)) == level);
    }
    CHECK_FALSE(parse_log_level("INFO"));
    CHECK_FALSE(parse_log_level("warning"));
    CHECK_FALSE(parse_log_level(""));
}

TEST_CASE("fingerprints round-trip over random digests, in both accepted forms") {
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        CertFingerprint fp;
        rng.fill(fp);
        const std::string text = fingerprint_to_string(fp);
        CHECK(text.size() == std::string_view("sha256:").size() + 2 * fp.size());
        CHECK(text.find_first_not_of("0123456789abcdef", 7) == std::string::npos);
        CHECK(parse_fingerprint(text) == fp);
        // The openssl form: uppercase, colon-separated pairs.
        std::string openssl = "sha256:";
        for (size_t i = 0; i < fp.size(); ++i) {
            char pair[4];
            std::snprintf(pair, sizeof pair, "%02X", fp[i]);
            openssl += pair;
            if (i + 1 < fp.size()) openssl += ':';
        }
        CHECK(parse_fingerprint(openssl) == fp);
    }
}

TEST_CASE("malformed fingerprints are rejected") {
    const std::string hex(64, 'a');
    CHECK(parse_fingerprint("sha256:" + hex));
    CHECK_FALSE(parse_fingerprint(hex));              // no prefix
    CHECK_FALSE(parse_fingerprint("SHA256:" + hex));  // prefix is lowercase
    CHECK_FALSE(parse_fingerprint("sha1:" + hex));
    CHECK_FALSE(parse_fingerprint("sha256:" + hex.substr(1)));  // 63 digits
    CHECK_FALSE(parse_fingerprint("sha256:" + hex + "a"));      // 65 digits
    CHECK_FALSE(parse_fingerprint("sha256:" + hex.substr(1) + "g"));
    CHECK_FALSE(parse_fingerprint("sha256:" + hex.substr(2) + ":a"));
    CHECK_FALSE(parse_fingerprint("sha256:aa:" + hex.substr(4)));  // colons in one place only
    CHECK_FALSE(parse_fingerprint("sha256:"));
}

TEST_CASE("public keys parse from the base64 that key_to_base64 writes") {
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        PublicKey key;
        rng.fill(key);
        CHECK(parse_public_key(key_to_base64(key)) == key);
    }
    CHECK_FALSE(parse_public_key(""));
    CHECK_FALSE(parse_public_key(kKeyNas.substr(0, 43)));                           // truncated
    CHECK_FALSE(parse_public_key(kKeyNas + "="));                                   // too long
    CHECK_FALSE(parse_public_key(kKeyNas.substr(0, 43) + "!"));                     // not base64
    CHECK_FALSE(parse_public_key("gQfWchkJ5qc3OjjvkzWI904KB5jWx8YfHMdcYZr0lUY"));   // no padding
    CHECK_FALSE(parse_public_key("gQfWchkJ-qc3OjjvkzWI904KB5jWx8YfHMdcYZr0lUY="));  // URL variant
}

// ---- agent files -------------------------------------------------------------------------

TEST_CASE("a full agent file parses to the expected struct") {
    TempDir dir;
    dir.touch("nas.key");
    dir.touch("ca.pem");
    const std::string text = R"([agent]
name = "nas"
key_file = "nas.key"
server = "[2001:db8::7]:7000"
server_ca = "ca.pem"
udp_port = 41641
admin = "[::1]:7070"
log_level = "debug"
max_streams = 500
keepalive = "2500ms"
stun_servers = ["192.0.2.7:3478", "stun.example.net:19302", "[2001:db8::3]:3478"]

[[expose]]
service = "web"
target = "127.0.0.1:80"
allow = ["laptop", "phone"]

[[expose]]
service = "ssh"
target = "files.lan:22"
allow = ["laptop"]

[[forward]]
listen = "127.0.0.1:8080"
peer = "office"
service = "web"
)";
    auto result = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
    if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
    AgentConfig expected;
    expected.name = "nas";
    expected.key_file = dir.file("nas.key");
    expected.server = {"2001:db8::7", 7000, HostKind::kIpv6};
    expected.servers = {expected.server};
    expected.server_ca = dir.file("ca.pem");
    expected.udp_port = 41641;
    expected.admin = HostPort{"::1", 7070, HostKind::kIpv6};
    expected.log_level = LogLevel::kDebug;
    expected.max_streams = 500;
    expected.keepalive = std::chrono::milliseconds(2500);
    expected.stun_servers = {HostPort{"192.0.2.7", 3478, HostKind::kIpv4},
                             HostPort{"stun.example.net", 19302, HostKind::kName},
                             HostPort{"2001:db8::3", 3478, HostKind::kIpv6}};
    expected.expose = {
        {"web", {"127.0.0.1", 80, HostKind::kIpv4}, {"laptop", "phone"}},
        {"ssh", {"files.lan", 22, HostKind::kName}, {"laptop"}},
    };
    expected.forward = {{{"127.0.0.1", 8080, HostKind::kIpv4}, "office", "web"}};
    CHECK(std::get<AgentConfig>(result) == expected);
}

TEST_CASE("server: one address or the servers of a cluster (issue 21)") {
    TempDir dir;
    dir.touch("nas.key");
    auto parse = [&](const std::string& server) {
        return parse_agent_config("[agent]\nname = \"nas\"\nkey_file = \"nas.key\"\nserver = " +
                                      server + "\nserver_fingerprint = \"sha256:" +
                                      std::string(64, 'a') + "\"\n",
                                  "nas.toml", dir.path(), on_disk);
    };
    auto two = parse("[\"a.example.net:7000\", \"192.0.2.9:7001\"]");
    if (auto* e = std::get_if<ConfigError>(&two)) FAIL(e->message);
    const auto& c = std::get<AgentConfig>(two);
    REQUIRE(c.servers.size() == 2);
    CHECK(c.server == c.servers[0]);
    CHECK(c.servers[1] == HostPort{"192.0.2.9", 7001, HostKind::kIpv4});
    auto one = parse("\"a.example.net:7000\"");
    REQUIRE(std::holds_alternative<AgentConfig>(one));
    CHECK(std::get<AgentConfig>(one).servers.size() == 1);
    auto repeated = parse("[\"a.example.net:7000\", \"a.example.net:7000\"]");
    REQUIRE(std::holds_alternative<ConfigError>(repeated));
    CHECK_THAT(std::get<ConfigError>(repeated).message, Catch::Contains("nas.toml:4:"));
    auto none = parse("[]");
    REQUIRE(std::holds_alternative<ConfigError>(none));
    CHECK_THAT(std::get<ConfigError>(none).message, Catch::Contains("give 1 to 8"));
}

TEST_CASE("server_order: random unless listed (issue 21)") {
    TempDir dir;
    dir.touch("nas.key");
    auto parse = [&](const std::string& extra) {
        return parse_agent_config(
            "[agent]\nname = \"nas\"\nkey_file = \"nas.key\"\n"
            "server = [\"a.example.net:7000\", \"b.example.net:7000\"]\nserver_fingerprint = "
            "\"sha256:" + std::string(64, 'a') + "\"\n" + extra,
            "nas.toml", dir.path(), on_disk);
    };
    auto unset = parse("");
    REQUIRE(std::holds_alternative<AgentConfig>(unset));
    CHECK(std::get<AgentConfig>(unset).server_order == ServerOrder::kRandom);
    auto random = parse("server_order = \"random\"\n");
    REQUIRE(std::holds_alternative<AgentConfig>(random));
    CHECK(std::get<AgentConfig>(random).server_order == ServerOrder::kRandom);
    auto listed = parse("server_order = \"listed\"\n");
    REQUIRE(std::holds_alternative<AgentConfig>(listed));
    CHECK(std::get<AgentConfig>(listed).server_order == ServerOrder::kListed);
    auto typo = parse("server_order = \"first\"\n");
    REQUIRE(std::holds_alternative<ConfigError>(typo));
    CHECK_THAT(std::get<ConfigError>(typo).message,
               Catch::Contains("nas.toml:6:") && Catch::Contains("\"listed\""));
}

TEST_CASE("admin_remote lets the admin endpoint listen on any IP address") {
    TempDir dir;
    dir.touch("nas.key");
    for (const auto& [line, host, kind] :
         {std::tuple{"admin = \"0.0.0.0:7070\"", "0.0.0.0", HostKind::kIpv4},
          std::tuple{"admin = \"10.77.0.10:7070\"", "10.77.0.10", HostKind::kIpv4},
          std::tuple{"admin = \"[::]:7070\"", "::", HostKind::kIpv6}}) {
        const std::string text = kAgentHead + "admin_remote = true\n" + line + "\n";
        auto result = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
        if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
        const auto& config = std::get<AgentConfig>(result);
        CHECK(config.admin_remote);
        CHECK(config.admin == HostPort{host, 7070, kind});
    }
    // false keeps the rule: loopback only.
    const std::string text = kAgentHead + "admin_remote = false\nadmin = \"0.0.0.0:7070\"\n";
    auto refused = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
    REQUIRE(std::holds_alternative<ConfigError>(refused));
    CHECK(std::get<ConfigError>(refused).message.find("loopback only") != std::string::npos);
}

TEST_CASE("a minimal agent file gets the defaults") {
    TempDir dir;
    dir.touch("nas.key");
    auto result = parse_agent_config(kAgentHead, "nas.toml", dir.path(), on_disk);
    if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
    const auto& config = std::get<AgentConfig>(result);
    CertFingerprint fp;
    fp.fill(0xaa);
    CHECK(config.server_fingerprint == fp);
    CHECK_FALSE(config.server_ca);
    CHECK(config.udp_port == 0);
    CHECK_FALSE(config.admin);
    CHECK_FALSE(config.admin_remote);
    CHECK(config.log_level == LogLevel::kInfo);
    CHECK(config.max_streams == 16384);
    CHECK_FALSE(config.keepalive);  // learned
    CHECK(config.stun_servers.empty());
    CHECK(config.expose.empty());
    CHECK(config.forward.empty());
}

TEST_CASE("relative paths resolve against the config file's folder") {
    TempDir dir;
    dir.touch("keys/nas.key");
    dir.touch("abs.key");
    const std::string config_dir = dir.file("etc");
    auto with_key = [&](const std::string& key_file) {
        std::string text = kAgentHead;
        text.replace(text.find("\"nas.key\""), 9, "\"" + key_file + "\"");
        return text;
    };

    SECTION("relative, including ..") {
        auto r = parse_agent_config(with_key("../keys/nas.key"), "nas.toml", config_dir, on_disk);
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        CHECK(std::get<AgentConfig>(r).key_file == dir.file("keys/nas.key"));
    }
    SECTION("absolute paths stay as they are") {
        auto r = parse_agent_config(with_key(dir.file("abs.key")), "nas.toml", config_dir, on_disk);
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        CHECK(std::get<AgentConfig>(r).key_file == dir.file("abs.key"));
    }
    SECTION("the existence check looks in the config's folder, not the current one") {
        auto r = parse_agent_config(with_key("abs.key"), "nas.toml", config_dir, on_disk);
        REQUIRE(std::holds_alternative<ConfigError>(r));
        CHECK_THAT(std::get<ConfigError>(r).message,
                   Catch::StartsWith("nas.toml:3:12: agent.key_file: \"abs.key\" does not exist"));
        CHECK_THAT(std::get<ConfigError>(r).message,
                   Catch::Contains("burrow keygen -o " + dir.file("etc/abs.key")));
    }
}


TEST_CASE("bad agent files: each error names file:line:column and the key") {
    TempDir dir;
    dir.touch("nas.key");
    const std::string fp = kFingerprint;
    const std::vector<BadCase> cases = {
        {"TOML syntax error keeps toml++'s position", kAgentHead + "udp_port = \n",
         "nas.toml:6:12: ", "not valid TOML"},
        {"duplicate key is a TOML error", kAgentHead + "name = \"nas2\"\n",
         "nas.toml:6:", "not valid TOML"},
        {"no [agent] table",
         "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n"
         "allow = [\"laptop\"]\n",
         "nas.toml:1:1: agent: ", "required table is missing"},
        {"[agent] written as an array of tables", "[[agent]]\nname = \"nas\"\n",
         "nas.toml:1:1: agent: ", "expected a table"},
        {"typo in a key of [agent]",
         "[agent]\nnmae = \"nas\"\nkey_file = \"nas.key\"\nserver = \"s.example:1\"\n"
         "server_fingerprint = \"" +
             fp + "\"\n",
         "nas.toml:2:1: agent.nmae: ", "did you mean \"name\"?"},
        {"typo of server_fingerprint is reported as the typo, not as a missing key",
         "[agent]\nname = \"nas\"\nkey_file = \"nas.key\"\nserver = \"s.example:1\"\n"
         "server_fingerprnit = \"" +
             fp + "\"\n",
         "nas.toml:5:1: agent.server_fingerprnit: ", "did you mean \"server_fingerprint\"?"},
        {"typo in the [agent] header is the typo, not a missing table",
         with_line(kAgentHead, 1, "[agnet]"), "nas.toml:1:2: agnet: ", "did you mean \"agent\"?"},
        {"unknown top-level table", kAgentHead + "[forwrad]\nlisten = \"127.0.0.1:1\"\n",
         "nas.toml:6:2: forwrad: ", "did you mean \"forward\"?"},
        {"unknown key in [[expose]]",
         kAgentHead + "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n"
                      "allow = [\"laptop\"]\ncolor = \"blue\"\n",
         "nas.toml:10:1: expose[0].color: ", "unknown key (expected one of: service, target"},
        {"name is not a string", with_line(kAgentHead, 2, "name = 5"),
         "nas.toml:2:8: agent.name: ", "expected a string, got an integer"},
        {"name with capitals", with_line(kAgentHead, 2, "name = \"NAS\""),
         "nas.toml:2:8: agent.name: ", "\"NAS\" is not a valid agent name"},
        {"name of 33 characters",
         with_line(kAgentHead, 2, "name = \"" + std::string(33, 'n') + "\""),
         "nas.toml:2:8: agent.name: ", "not a valid agent name (1-32"},
        {"key_file missing names the table's position",
         "[agent]\nname = \"nas\"\nserver = \"s.example:1\"\nserver_fingerprint = \"" + fp + "\"\n",
         "nas.toml:1:1: agent.key_file: ", "required key is missing; add: key_file = "},
        {"key file does not exist",
         "[agent]\nname = \"nas\"\nkey_file = \"gone.key\"\nserver = \"s.example:1\"\n"
         "server_fingerprint = \"" +
             fp + "\"\n",
         "nas.toml:3:12: agent.key_file: ", "does not exist (looked for " + dir.file("gone.key")},
        {"server without a port", with_line(kAgentHead, 4, "server = \"signal.example.net\""),
         "nas.toml:4:10: agent.server: ", "is not a valid address (missing :port)"},
        {"server IPv6 without brackets", with_line(kAgentHead, 4, "server = \"2001:db8::1:7000\""),
         "nas.toml:4:10: agent.server: ", "brackets"},
        {"both fingerprint and CA", kAgentHead + "server_ca = \"ca.pem\"\n",
         "nas.toml:6:13: agent.server_ca: ", "not both"},
        {"neither fingerprint nor CA",
         "[agent]\nname = \"nas\"\nkey_file = \"nas.key\"\nserver = \"s.example:1\"\n",
         "nas.toml:1:1: agent.server_fingerprint: ", "required key is missing (or server_ca)"},
        {"fingerprint with 63 hex digits",
         with_line(kAgentHead, 5, "server_fingerprint = \"sha256:" + std::string(63, 'a') + "\""),
         "nas.toml:5:22: agent.server_fingerprint: ", "is not a certificate fingerprint"},
        {"fingerprint without the sha256: prefix",
         with_line(kAgentHead, 5, "server_fingerprint = \"" + kFingerprintHex + "\""),
         "nas.toml:5:22: agent.server_fingerprint: ", "is not a certificate fingerprint"},
        {"CA file does not exist",
         "[agent]\nname = \"nas\"\nkey_file = \"nas.key\"\nserver = \"s.example:1\"\n"
         "server_ca = \"missing-ca.pem\"\n",
         "nas.toml:5:13: agent.server_ca: ", "does not exist"},
        {"udp_port out of range", kAgentHead + "udp_port = 70000\n",
         "nas.toml:6:12: agent.udp_port: ", "70000 is out of range (0-65535)"},
        {"udp_port negative", kAgentHead + "udp_port = -1\n",
         "nas.toml:6:12: agent.udp_port: ", "out of range"},
        {"udp_port as a string", kAgentHead + "udp_port = \"0\"\n",
         "nas.toml:6:12: agent.udp_port: ", "expected an integer, got a string"},
        {"udp_port as a float", kAgentHead + "udp_port = 1.5\n",
         "nas.toml:6:12: agent.udp_port: ", "expected an integer, got a floating-point number"},
        {"admin on a public address", kAgentHead + "admin = \"0.0.0.0:7070\"\n",
         "nas.toml:6:9: agent.admin: ", "loopback only"},
        {"admin by name", kAgentHead + "admin = \"localhost:7070\"\n",
         "nas.toml:6:9: agent.admin: ", "loopback only"},
        {"admin by name, admin_remote or not",
         kAgentHead + "admin_remote = true\nadmin = \"localhost:7070\"\n",
         "nas.toml:7:9: agent.admin: ", "listen on an IP address"},
        {"admin_remote without admin", kAgentHead + "admin_remote = true\n",
         "nas.toml:6:16: agent.admin_remote: ", "without admin"},
        {"admin_remote not a boolean", kAgentHead + "admin_remote = \"yes\"\n",
         "nas.toml:6:16: agent.admin_remote: ", "expected true or false"},
        {"max_streams below what a peer may open before our limit",
         kAgentHead + "max_streams = 50\n",
         "nas.toml:6:15: agent.max_streams: ",
         "50 is out of range (100-1048576): a peer may always open 100 streams"},
        {"max_streams too large", kAgentHead + "max_streams = 2000000\n",
         "nas.toml:6:15: agent.max_streams: ", "2000000 is out of range (100-1048576)"},
        {"max_streams as a string", kAgentHead + "max_streams = \"many\"\n",
         "nas.toml:6:15: agent.max_streams: ", "expected an integer, got a string"},
        {"stun_servers as a string", kAgentHead + "stun_servers = \"stun.example:3478\"\n",
         "nas.toml:6:16: agent.stun_servers: ", "expected an array of strings, got a string"},
        {"stun server without a port", kAgentHead + "stun_servers = [\"stun.example\"]\n",
         "nas.toml:6:17: agent.stun_servers[0]: ", "\"stun.example\" is not a valid address"},
        {"stun server with port 0", kAgentHead + "stun_servers = [\"192.0.2.1:0\"]\n",
         "nas.toml:6:17: agent.stun_servers[0]: ", "is not a valid address (port 1-65535)"},
        {"stun server listed twice",
         kAgentHead + "stun_servers = [\"192.0.2.1:3478\", \"s.example:1\", \"192.0.2.1:3478\"]\n",
         "nas.toml:6:50: agent.stun_servers[2]: ",
         "stun server \"192.0.2.1:3478\" is listed twice (also at agent.stun_servers[0])"},
        {"stun server wildcard", kAgentHead + "stun_servers = [\"0.0.0.0:3478\"]\n",
         "nas.toml:6:17: agent.stun_servers[0]: ", "is a wildcard address"},
        {"nine stun servers",
         kAgentHead + "stun_servers = [\"a.example:1\", \"b.example:1\", \"c.example:1\", "
                      "\"d.example:1\", \"e.example:1\", \"f.example:1\", \"g.example:1\", "
                      "\"h.example:1\", \"i.example:1\"]\n",
         "nas.toml:6:16: agent.stun_servers: ", "lists 9 servers; at most 8"},
        {"a typo of stun_servers", kAgentHead + "stun_server = [\"s.example:1\"]\n",
         "nas.toml:6:1: agent.stun_server: ", "did you mean \"stun_servers\"?"},
        {"keepalive without a unit", kAgentHead + "keepalive = \"5\"\n",
         "nas.toml:6:13: agent.keepalive: ",
         "\"5\" is not a duration (expected e.g. \"5s\" or \"2500ms\")"},
        {"keepalive in minutes", kAgentHead + "keepalive = \"1m\"\n",
         "nas.toml:6:13: agent.keepalive: ", "\"1m\" is not a duration"},
        {"keepalive negative", kAgentHead + "keepalive = \"-5s\"\n",
         "nas.toml:6:13: agent.keepalive: ", "\"-5s\" is not a duration"},
        {"keepalive below a second", kAgentHead + "keepalive = \"500ms\"\n",
         "nas.toml:6:13: agent.keepalive: ", "\"500ms\" is out of range (1s-60s)"},
        {"keepalive above a minute", kAgentHead + "keepalive = \"90s\"\n",
         "nas.toml:6:13: agent.keepalive: ", "\"90s\" is out of range (1s-60s)"},
        {"keepalive with many digits", kAgentHead + "keepalive = \"99999999999999s\"\n",
         "nas.toml:6:13: agent.keepalive: ", "is not a duration"},
        {"keepalive as a number", kAgentHead + "keepalive = 5\n",
         "nas.toml:6:13: agent.keepalive: ", "expected a string, got an integer"},
        {"unknown log level", kAgentHead + "log_level = \"verbose\"\n",
         "nas.toml:6:13: agent.log_level: ", "\"verbose\" is not a log level"},
        {"expose without allow",
         kAgentHead + "\n[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n",
         "nas.toml:7:1: expose[0].allow: ", "required key is missing; add: allow = "},
        {"expose with an empty allow list",
         kAgentHead + "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\nallow = []\n",
         "nas.toml:9:9: expose[0].allow: ", "is empty"},
        {"allow list naming a bad peer",
         kAgentHead + "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n"
                      "allow = [\"laptop\", \"Phone\"]\n",
         "nas.toml:9:20: expose[0].allow[1]: ", "not a valid agent name"},
        {"allow list with a number",
         kAgentHead + "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\nallow = [1]\n",
         "nas.toml:9:10: expose[0].allow[0]: ", "expected a string, got an integer"},
        {"allow as a string instead of a list",
         kAgentHead + "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n"
                      "allow = \"laptop\"\n",
         "nas.toml:9:9: expose[0].allow: ", "expected an array of strings, got a string"},
        {"a peer listed twice",
         kAgentHead + "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n"
                      "allow = [\"laptop\", \"laptop\"]\n",
         "nas.toml:9:20: expose[0].allow[1]: ", "listed twice (also at expose[0].allow[0])"},
        {"bad target port (the example from the brief)",
         kAgentHead +
             "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\nallow = [\"laptop\"]\n"
             "[[expose]]\nservice = \"web2\"\ntarget = \"127.0.0.1:99999\"\nallow = [\"laptop\"]\n",
         "nas.toml:12:10: expose[1].target: ",
         "\"127.0.0.1:99999\" is not a valid address (port 1-65535)"},
        {"bad service name",
         kAgentHead + "[[expose]]\nservice = \"Web\"\ntarget = \"127.0.0.1:80\"\n"
                      "allow = [\"laptop\"]\n",
         "nas.toml:7:11: expose[0].service: ", "\"Web\" is not a valid service name"},
        {"two exposes with one service name",
         kAgentHead +
             "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\nallow = [\"laptop\"]\n"
             "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:81\"\nallow = [\"laptop\"]\n",
         "nas.toml:11:11: expose[1].service: ", "service \"web\" is listed twice"},
        {"[expose] written as a table", kAgentHead + "[expose]\nservice = \"web\"\n",
         "nas.toml:6:1: expose: ", "expected an array of tables ([[expose]]), got a table"},
        {"forward listening on a name",
         kAgentHead +
             "[[forward]]\nlisten = \"localhost:8080\"\npeer = \"pc\"\nservice = \"web\"\n",
         "nas.toml:7:10: forward[0].listen: ", "listen on an IP address"},
        {"forward without service",
         kAgentHead + "\n\n[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\n",
         "nas.toml:8:1: forward[0].service: ", "required key is missing"},
        {"two forwards on one address",
         kAgentHead +
             "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\nservice = \"web\"\n"
             "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\nservice = \"ssh\"\n",
         "nas.toml:11:10: forward[1].listen: ", "takes the port of forward[0].listen"},
        {"a wildcard forward overlapping a loopback one",
         kAgentHead + "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\nservice = \"web\"\n"
                      "[[forward]]\nlisten = \"[::]:8080\"\npeer = \"pc\"\nservice = \"ssh\"\n",
         "nas.toml:11:10: forward[1].listen: ", "takes the port of forward[0].listen"},
        {"an IPv4-mapped forward on an IPv4 one's port (Linux binds the IPv4 address)",
         kAgentHead + "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\nservice = \"web\"\n"
                      "[[forward]]\nlisten = \"[::ffff:127.0.0.1]:8080\"\npeer = \"pc\"\n"
                      "service = \"ssh\"\n",
         "nas.toml:11:10: forward[1].listen: ", "takes the port of forward[0].listen"},
        {"a forward on the admin port",
         kAgentHead + "admin = \"127.0.0.1:7070\"\n"
                      "[[forward]]\nlisten = \"0.0.0.0:7070\"\npeer = \"pc\"\nservice = \"web\"\n",
         "nas.toml:8:10: forward[0].listen: ", "takes the port of agent.admin"},
        {"a forward to this agent itself",
         kAgentHead +
             "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"nas\"\nservice = \"web\"\n",
         "nas.toml:8:8: forward[0].peer: ", "is this agent itself"},
        {"an unknown protocol",
         kAgentHead + "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\n"
                      "service = \"web\"\nprotocol = \"sctp\"\n",
         "nas.toml:10:12: forward[0].protocol: ",
         "\"sctp\" is not a protocol burrow forwards; use \"tcp\" or \"udp\""},
        {"a protocol in capitals",
         kAgentHead + "[[expose]]\nservice = \"dns\"\ntarget = \"127.0.0.1:53\"\n"
                      "allow = [\"pc\"]\nprotocol = \"UDP\"\n",
         "nas.toml:10:12: expose[0].protocol: ", "is not a protocol"},
        {"a protocol as a number",
         kAgentHead + "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\n"
                      "service = \"web\"\nprotocol = 17\n",
         "nas.toml:10:12: forward[0].protocol: ", "expected a string"},
        {"two UDP forwards on one port",
         kAgentHead +
             "[[forward]]\nlisten = \"127.0.0.1:5353\"\npeer = \"pc\"\nservice = \"a\"\n"
             "protocol = \"udp\"\n"
             "[[forward]]\nlisten = \"0.0.0.0:5353\"\npeer = \"pc\"\nservice = \"b\"\n"
             "protocol = \"udp\"\n",
         "nas.toml:12:10: forward[1].listen: ", "takes the port of forward[0].listen"},
        {"a UDP forward on the agent's own udp_port (its session socket binds 0.0.0.0)",
         kAgentHead + "udp_port = 7001\n"
                      "[[forward]]\nlisten = \"127.0.0.1:7001\"\npeer = \"pc\"\nservice = \"a\"\n"
                      "protocol = \"udp\"\n",
         "nas.toml:8:10: forward[0].listen: ", "takes the port of agent.udp_port"},
        {"a UDP service with a name for a target",
         kAgentHead + "[[expose]]\nservice = \"dns\"\ntarget = \"resolver.lan:53\"\n"
                      "allow = [\"pc\"]\nprotocol = \"udp\"\n",
         "nas.toml:8:10: expose[0].target: ", "must be an IP address"},
        {"udp_idle_timeout too short", kAgentHead + "udp_idle_timeout = \"100ms\"\n",
         "nas.toml:6:20: agent.udp_idle_timeout: ", ""},
        {"udp_idle_timeout without a unit", kAgentHead + "udp_idle_timeout = \"60\"\n",
         "nas.toml:6:20: agent.udp_idle_timeout: ", ""},
    };
    REQUIRE(cases.size() >= 30);
    for (const auto& c : cases) expect_error(parse_agent_config(c.text, "nas.toml", dir.path(), on_disk), c);
}

TEST_CASE("listeners on one port but different addresses are accepted") {
    // Each pair binds on Linux side by side (an IPv4 wildcard leaves IPv6 alone, and two
    // loopback addresses are two addresses, and the agent's UDP port is not a TCP port); the
    // check must not refuse what works.
    TempDir dir;
    dir.touch("nas.key");
    const auto forward = [](const std::string& listen, const std::string& service) {
        return "[[forward]]\nlisten = \"" + listen + "\"\npeer = \"pc\"\nservice = \"" + service +
               "\"\n";
    };
    const std::string text = kAgentHead + "udp_port = 8080\nadmin = \"[::1]:7070\"\n" +
                             forward("0.0.0.0:7070", "a") + forward("127.0.0.1:8080", "b") +
                             forward("127.0.0.2:8080", "c") +
                             forward("[::ffff:127.0.0.3]:8080", "d");
    auto result = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
    if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
    CHECK(std::get<AgentConfig>(result).forward.size() == 4);
}

TEST_CASE("UDP forwards and services: protocol, defaults, and a shared port with TCP") {
    TempDir dir;
    dir.touch("nas.key");
    const std::string text =
        kAgentHead + "udp_idle_timeout = \"30s\"\n" +
        "[[forward]]\nlisten = \"127.0.0.1:5353\"\npeer = \"pc\"\nservice = \"dns\"\n"
        "protocol = \"udp\"\n"
        "[[forward]]\nlisten = \"127.0.0.1:5353\"\npeer = \"pc\"\nservice = \"dns-tcp\"\n"
        "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\nservice = \"web\"\n"
        "protocol = \"tcp\"\n"
        "[[expose]]\nservice = \"game\"\ntarget = \"[::1]:27015\"\nallow = [\"pc\"]\n"
        "protocol = \"udp\"\n";
    auto result = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
    if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
    const auto& config = std::get<AgentConfig>(result);
    REQUIRE(config.forward.size() == 3);
    CHECK(config.forward[0].protocol == ForwardProtocol::kUdp);
    CHECK(config.forward[1].protocol == ForwardProtocol::kTcp);  // the default
    CHECK(config.forward[2].protocol == ForwardProtocol::kTcp);
    REQUIRE(config.expose.size() == 1);
    CHECK(config.expose[0].protocol == ForwardProtocol::kUdp);
    CHECK(config.udp_idle_timeout == std::chrono::seconds(30));
}

TEST_CASE("the first error in file order is the one reported") {
    TempDir dir;
    dir.touch("nas.key");
    // Tables are kept sorted by key inside toml++, so "forward" is read before "zzz" but after
    // "agent"; the report must still follow the file.
    const std::string text = kAgentHead +
                             "[[forward]]\nlisten = \"127.0.0.1:0\"\npeer = \"pc\"\n"
                             "service = \"web\"\n"
                             "[[expose]]\nservice = \"BAD\"\n";
    auto r = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
    REQUIRE(std::holds_alternative<ConfigError>(r));
    CHECK_THAT(std::get<ConfigError>(r).message,
               Catch::StartsWith("nas.toml:7:10: forward[0].listen: "));
}

TEST_CASE("values in messages are quoted, escaped and cut to one line") {
    TempDir dir;
    dir.touch("nas.key");
    const std::string text =
        with_line(kAgentHead, 2, "name = \"a\\nb\\\"" + std::string(200, 'x') + "\"");
    auto r = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
    REQUIRE(std::holds_alternative<ConfigError>(r));
    const std::string& message = std::get<ConfigError>(r).message;
    CHECK_THAT(message, Catch::StartsWith("nas.toml:2:8: agent.name: \"a\\x0ab\\\"xxx"));
    CHECK(message.find('\n') == std::string::npos);
    CHECK(message.find("...\"") != std::string::npos);
    CHECK(message.size() < 200);
}

// ---- server files ------------------------------------------------------------------------

TEST_CASE("a full server file parses to the expected struct") {
    const std::string text = kServerHead +
                             "max_agents = 50\nrelay_rate_mbit = 20\n"
                             "relay_packets_per_sec = 3000\nlog_level = \"warn\"\n"
                             "stun_standard_clients = true\n"
                             "metrics = \"127.0.0.1:9464\"\n" +
                             kServerAgents +
                             "[[allow]]\nfrom = \"laptop\"\nto = \"nas\"\n"
                             "services = [\"web\", \"ssh\"]\n"
                             "[[allow]]\nfrom = \"nas\"\nto = \"laptop\"\nservices = [\"*\"]\n";
    auto result = parse_server_config(text, "server.toml", "/etc/burrow");
    if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
    ServerConfig expected;
    expected.listen = {HostPort{"0.0.0.0", 7000, HostKind::kIpv4}};
    expected.stun = {std::vector{HostPort{"0.0.0.0", 3478, HostKind::kIpv4}},
                     std::vector{HostPort{"0.0.0.0", 3479, HostKind::kIpv4}}};
    expected.cert_file = "/etc/burrow/server.crt";
    expected.key_file = "/etc/burrow/server.key";
    expected.identity_key = "/etc/burrow/server-identity.key";
    expected.max_agents = 50;
    expected.relay_rate_mbit = 20;
    expected.relay_packets_per_sec = 3000;
    expected.log_level = LogLevel::kWarn;
    expected.stun_standard_clients = true;
    expected.metrics = HostPort{"127.0.0.1", 9464, HostKind::kIpv4};
    expected.agents = {{"nas", *parse_public_key(kKeyNas)},
                       {"laptop", *parse_public_key(kKeyLaptop)}};
    expected.allow = {{"laptop", "nas", {"web", "ssh"}}, {"nas", "laptop", {"*"}}};
    CHECK(std::get<ServerConfig>(result) == expected);
}

TEST_CASE("server addresses: IPv6, dual-stack, and lists of both families (issue 17)") {
    const auto parse = [](const std::string& listen, const std::string& stun) {
        return parse_server_config("[server]\nlisten = " + listen + "\nstun = " + stun +
                                       "\ncert_file = \"c\"\nkey_file = \"k\"\n"
                                       "identity_key = \"i\"\n",
                                   "server.toml", "");
    };
    const HostPort v4_7000{"0.0.0.0", 7000, HostKind::kIpv4};
    const HostPort v6_7000{"::", 7000, HostKind::kIpv6};
    SECTION("one dual-stack [::] address, as a string") {
        auto r = parse("\"[::]:7000\"", "[\"[::]:3478\", \"[::]:3479\"]");
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        const auto& c = std::get<ServerConfig>(r);
        CHECK(c.listen == std::vector{v6_7000});
        CHECK(c.stun[0] == std::vector{HostPort{"::", 3478, HostKind::kIpv6}});
        CHECK(c.stun[1] == std::vector{HostPort{"::", 3479, HostKind::kIpv6}});
    }
    SECTION("one socket per family: lists grouped by port, the first entry's port is the main") {
        auto r = parse("[\"0.0.0.0:7000\", \"[::]:7000\"]",
                       "[\"[::]:3479\", \"0.0.0.0:3478\", \"[::]:3478\", \"0.0.0.0:3479\"]");
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        const auto& c = std::get<ServerConfig>(r);
        CHECK(c.listen == std::vector{v4_7000, v6_7000});
        CHECK(c.stun[0] == std::vector{HostPort{"::", 3479, HostKind::kIpv6},
                                       HostPort{"0.0.0.0", 3479, HostKind::kIpv4}});
        CHECK(c.stun[1] == std::vector{HostPort{"0.0.0.0", 3478, HostKind::kIpv4},
                                       HostPort{"::", 3478, HostKind::kIpv6}});
    }
    SECTION("chosen addresses of each family") {
        auto r = parse("[\"192.0.2.1:7000\", \"[2001:db8::1]:7000\"]",
                       "[\"192.0.2.1:3478\", \"192.0.2.1:3479\", \"[2001:db8::1]:3478\", "
                       "\"[2001:db8::1]:3479\"]");
        if (auto* e = std::get_if<ConfigError>(&r)) FAIL(e->message);
        CHECK(std::get<ServerConfig>(r).listen.size() == 2);
    }
    const std::vector<BadCase> bad = {
        {"an empty listen list", "", "server.toml:2:10: server.listen: ", "holds 0 address(es)"},
        {"two listeners of one family on one port", "[\"0.0.0.0:7000\", \"127.0.0.1:7000\"]",
         "server.toml:2:27: server.listen[1]: ",
         "\"127.0.0.1:7000\" takes the port of server.listen[0]; two listeners of one family"},
        {"listen as a number", "7000", "server.toml:2:10: server.listen: ",
         "a string or an array of strings"},
        {"an IPv4-mapped listen address", "\"[::ffff:10.0.0.1]:7000\"",
         "server.toml:2:10: server.listen: ", "write it as 10.0.0.1:7000"},
    };
    for (const auto& c : bad) {
        SECTION(c.what) {
            const std::string listen = c.text.empty() ? "[]" : c.text;
            auto r = parse(listen, "[\"0.0.0.0:3478\", \"0.0.0.0:3479\"]");
            REQUIRE(std::holds_alternative<ConfigError>(r));
            const std::string& m = std::get<ConfigError>(r).message;
            CHECK(m.rfind(c.prefix, 0) == 0);
            CHECK(m.find(c.says) != std::string::npos);
            CHECK(m.find('\n') == std::string::npos);
        }
    }
    const std::vector<BadCase> bad_stun = {
        {"a third STUN port", "[\"0.0.0.0:3478\", \"0.0.0.0:3479\", \"[::]:3480\"]",
         "server.toml:3:41: server.stun[2]: ", "is on a third port"},
        {"IPv6 on the main STUN port only",
         "[\"0.0.0.0:3478\", \"0.0.0.0:3479\", \"[2001:db8::1]:3478\"]",
         "server.toml:3:25: server.stun[1]: ",
         "port 3479 serves IPv4 only but port 3478 serves IPv4 and IPv6"},
        {"two IPv6 STUN sockets on one port", "[\"[::]:3478\", \"[::1]:3478\", \"[::]:3479\"]",
         "server.toml:3:22: server.stun[1]: ", "two STUN sockets of one family"},
        {"all STUN addresses on one port", "[\"0.0.0.0:3478\", \"[::]:3478\"]",
         "server.toml:3:25: server.stun[1]: ", "need different ports"},
    };
    for (const auto& c : bad_stun) {
        SECTION(c.what) {
            auto r = parse("\"[::]:7000\"", c.text);
            REQUIRE(std::holds_alternative<ConfigError>(r));
            const std::string& m = std::get<ConfigError>(r).message;
            INFO(m);
            CHECK(m.rfind(c.prefix, 0) == 0);
            CHECK(m.find(c.says) != std::string::npos);
        }
    }
}

TEST_CASE("a minimal server file gets the defaults") {
    auto result = parse_server_config(kServerHead, "server.toml", "");
    if (auto* e = std::get_if<ConfigError>(&result)) FAIL(e->message);
    const auto& config = std::get<ServerConfig>(result);
    CHECK(config.max_agents == kDefaultMaxAgents);
    CHECK(config.relay_rate_mbit == kDefaultRelayRateMbit);
    CHECK(config.relay_packets_per_sec == kDefaultRelayPacketsPerSec);
    CHECK(config.log_level == LogLevel::kInfo);
    CHECK_FALSE(config.stun_standard_clients);
    CHECK_FALSE(config.metrics);  // no metrics listener unless asked for
    CHECK(config.cert_file == "server.crt");  // no folder: relative to the current one
    CHECK(config.agents.empty());
    CHECK(config.allow.empty());
}

TEST_CASE("[cluster]: Redis address and server name; absent means no cluster") {
    auto parse = [](const std::string& cluster) {
        return parse_server_config(kServerHead + cluster, "server.toml", "");
    };
    auto plain = parse("");
    REQUIRE(std::holds_alternative<ServerConfig>(plain));
    CHECK_FALSE(std::get<ServerConfig>(plain).cluster);
    auto full = parse("[cluster]\nredis = \"redis://10.0.0.5:6380\"\nname = \"s1\"\n");
    if (auto* e = std::get_if<ConfigError>(&full)) FAIL(e->message);
    const auto& c = *std::get<ServerConfig>(full).cluster;
    CHECK(c.redis.host == "10.0.0.5");
    CHECK(c.redis.port == 6380);
    CHECK(c.name == "s1");
    auto defaults = parse("[cluster]\nredis = \"redis://[::1]\"\nname = \"s2\"\n");
    if (auto* e = std::get_if<ConfigError>(&defaults)) FAIL(e->message);
    CHECK(std::get<ServerConfig>(defaults).cluster->redis.port == kDefaultRedisPort);
    CHECK(std::get<ServerConfig>(defaults).cluster->redis.host == "::1");

    const std::vector<BadCase> cases = {
        {"no scheme", kServerHead + "[cluster]\nredis = \"10.0.0.5:6379\"\nname = \"s1\"\n",
         "server.toml:8:9: cluster.redis: ", "is not a Redis URL"},
        {"a host name", kServerHead + "[cluster]\nredis = \"redis://cache:6379\"\nname = \"s1\"\n",
         "server.toml:8:9: cluster.redis: ", "give Redis's IP address"},
        {"no name", kServerHead + "[cluster]\nredis = \"redis://10.0.0.5\"\n",
         "server.toml:7:1: cluster.name: ", "required key is missing"},
        {"a bad name", kServerHead + "[cluster]\nredis = \"redis://10.0.0.5\"\nname = \"s 1\"\n",
         "server.toml:9:8: cluster.name: ", "not a valid"},
        {"a typo", kServerHead + "[cluster]\nredis = \"redis://10.0.0.5\"\nname = \"s1\"\nnmae = 1\n",
         "server.toml:10:1: cluster.nmae: ", "unknown key"},
    };
    for (const auto& bad : cases) expect_error(parse_server_config(bad.text, "server.toml", ""), bad);
}

TEST_CASE("bad server files: each error names file:line:column and the key") {
    const std::string head_agents = kServerHead + kServerAgents;
    const std::vector<BadCase> cases = {
        {"no [server] table", kServerAgents,
         "server.toml:1:1: server: ", "required table is missing"},
        {"TOML syntax error", kServerHead + "max_agents = 1 2\n",
         "server.toml:7:", "not valid TOML"},
        {"listen by name", with_line(kServerHead, 2, "listen = \"example.net:7000\""),
         "server.toml:2:10: server.listen: ", "listen on an IP address"},
        {"listen missing",
         "[server]\nstun = [\"0.0.0.0:3478\", \"0.0.0.0:3479\"]\ncert_file = \"c\"\n"
         "key_file = \"k\"\nidentity_key = \"i\"\n",
         "server.toml:1:1: server.listen: ", "required key is missing"},
        {"one STUN address", with_line(kServerHead, 3, "stun = [\"0.0.0.0:3478\"]"),
         "server.toml:3:8: server.stun: ", "holds 1 address(es); give exactly two"},
        {"STUN addresses on one port",
         "[server]\nlisten = \"0.0.0.0:7000\"\nstun = [\"0.0.0.0:3478\", \"127.0.0.1:3478\"]\n"
         "cert_file = \"c\"\nkey_file = \"k\"\nidentity_key = \"i\"\n",
         "server.toml:3:25: server.stun[1]: ", "need different ports"},
        {"STUN address with a bad port",
         with_line(kServerHead, 3, "stun = [\"0.0.0.0:3478\", \"0.0.0.0:0\"]"),
         "server.toml:3:25: server.stun[1]: ", "port 1-65535"},
        {"empty cert_file", with_line(kServerHead, 4, "cert_file = \"\""),
         "server.toml:4:13: server.cert_file: ", "is empty"},
        {"key_file and identity_key the same file",
         "[server]\nlisten = \"0.0.0.0:7000\"\nstun = [\"0.0.0.0:3478\", \"0.0.0.0:3479\"]\n"
         "cert_file = \"c\"\nkey_file = \"k\"\nidentity_key = \"./k\"\n",
         "server.toml:6:16: server.identity_key: ", "is the same file as server.key_file"},
        {"max_agents zero", kServerHead + "max_agents = 0\n",
         "server.toml:7:14: server.max_agents: ", "0 is out of range (1-1000000)"},
        {"relay_rate_mbit negative", kServerHead + "relay_rate_mbit = -5\n",
         "server.toml:7:19: server.relay_rate_mbit: ", "out of range"},
        {"relay_packets_per_sec as a float", kServerHead + "relay_packets_per_sec = 1e4\n",
         "server.toml:7:25: server.relay_packets_per_sec: ", "expected an integer"},
        {"unknown log level", kServerHead + "log_level = \"loud\"\n",
         "server.toml:7:13: server.log_level: ", "is not a log level"},
        {"stun_standard_clients as a string", kServerHead + "stun_standard_clients = \"yes\"\n",
         "server.toml:7:25: server.stun_standard_clients: ", "expected true or false"},
        {"metrics by name", kServerHead + "metrics = \"localhost:9464\"\n",
         "server.toml:7:11: server.metrics: ", "listen on an IP address"},
        {"metrics without a port", kServerHead + "metrics = \"127.0.0.1\"\n",
         "server.toml:7:11: server.metrics: ", "missing :port"},
        {"metrics as a number", kServerHead + "metrics = 9464\n",
         "server.toml:7:11: server.metrics: ", "expected a string"},
        {"metrics on the control port", kServerHead + "metrics = \"127.0.0.1:7000\"\n",
         "server.toml:7:11: server.metrics: ", "takes the port of server.listen"},
        {"unknown key in [server]", kServerHead + "relay_rate = 5\n",
         "server.toml:7:1: server.relay_rate: ", "unknown key (did you mean \"relay_rate_mbit\"?)"},
        {"unknown key with nothing close", kServerHead + "colour = 5\n",
         "server.toml:7:1: server.colour: ", "unknown key (expected one of: listen, stun, "},
        {"[agent] instead of [[agents]]", kServerHead + "[agent]\nname = \"nas\"\n",
         "server.toml:7:2: agent: ", "did you mean \"agents\"?"},
        {"agent with a bad name", with_line(head_agents, 8, "name = \"my nas\""),
         "server.toml:8:8: agents[0].name: ", "not a valid agent name"},
        {"agent without a key", kServerHead + "[[agents]]\nname = \"nas\"\n",
         "server.toml:7:1: agents[0].public_key: ", "required key is missing"},
        {"public key too short", with_line(head_agents, 9, "public_key = \"abcd\""),
         "server.toml:9:14: agents[0].public_key: ", "\"abcd\" is not a public key"},
        {"public key with a bad character",
         with_line(head_agents, 9, "public_key = \"" + kKeyNas.substr(0, 42) + "$=\""),
         "server.toml:9:14: agents[0].public_key: ", "is not a public key"},
        {"duplicate agent names",
         head_agents + "[[agents]]\nname = \"nas\"\npublic_key = \"" + key_to_base64(PublicKey{}) +
             "\"\n",
         "server.toml:14:8: agents[2].name: ",
         "agent \"nas\" is listed twice (also at agents[0].name)"},
        {"duplicate agent keys",
         head_agents + "[[agents]]\nname = \"phone\"\npublic_key = \"" + kKeyNas + "\"\n",
         "server.toml:15:14: agents[2].public_key: ", "is the same key as agents[0].public_key"},
        {"rule from an unknown agent",
         head_agents + "[[allow]]\nfrom = \"phone\"\nto = \"nas\"\nservices = [\"web\"]\n",
         "server.toml:14:8: allow[0].from: ", "\"phone\" is not an agent"},
        {"rule to an unknown agent",
         head_agents + "[[allow]]\nfrom = \"laptop\"\nto = \"nsa\"\nservices = [\"web\"]\n",
         "server.toml:15:6: allow[0].to: ", "\"nsa\" is not an agent"},
        {"rule from an agent to itself",
         head_agents + "[[allow]]\nfrom = \"nas\"\nto = \"nas\"\nservices = [\"web\"]\n",
         "server.toml:15:6: allow[0].to: ", "is the same agent as from"},
        {"rule without services", head_agents + "[[allow]]\nfrom = \"laptop\"\nto = \"nas\"\n",
         "server.toml:13:1: allow[0].services: ", "required key is missing"},
        {"rule with an empty service list",
         head_agents + "[[allow]]\nfrom = \"laptop\"\nto = \"nas\"\nservices = []\n",
         "server.toml:16:12: allow[0].services: ", "is empty"},
        {"rule mixing * with names",
         head_agents + "[[allow]]\nfrom = \"laptop\"\nto = \"nas\"\nservices = [\"*\", \"web\"]\n",
         "server.toml:16:12: allow[0].services: ", "mixes \"*\""},
        {"rule with a bad service name",
         head_agents +
             "[[allow]]\nfrom = \"laptop\"\nto = \"nas\"\nservices = [\"web\", \"s s\"]\n",
         "server.toml:16:20: allow[0].services[1]: ", "not a valid service name"},
        {"rule with a typo key",
         head_agents + "[[allow]]\nform = \"laptop\"\nto = \"nas\"\nservices = [\"web\"]\n",
         "server.toml:14:1: allow[0].form: ", "did you mean \"from\"?"},
    };
    REQUIRE(cases.size() >= 25);
    for (const auto& c : cases) {
        expect_error(parse_server_config(c.text, "server.toml", "/etc/burrow"), c);
    }
}

// ---- robustness --------------------------------------------------------------------------

TEST_CASE("mutated configs never crash, and every error carries a position") {
    TempDir dir;
    dir.touch("nas.key");
    const std::string base = kAgentHead +
                             "[[expose]]\nservice = \"web\"\ntarget = \"127.0.0.1:80\"\n"
                             "allow = [\"laptop\"]\n"
                             "[[forward]]\nlisten = \"127.0.0.1:8080\"\npeer = \"pc\"\n"
                             "service = \"web\"\n";
    REQUIRE(std::holds_alternative<AgentConfig>(parse_agent_config(base, "nas.toml", dir.path(), on_disk)));
    const std::string alphabet = "[]=\"'.:,#\n 0123456789abcxyz-_*{}";
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        std::string text = base;
        const uint64_t edits = 1 + rng.uniform(3);
        for (uint64_t i = 0; i < edits; ++i) {
            const size_t at = rng.uniform(text.size());
            switch (rng.uniform(3)) {
                case 0:
                    text.erase(at, 1);
                    break;
                case 1:
                    text.insert(at, 1, alphabet[rng.uniform(alphabet.size())]);
                    break;
                default:
                    text[at] = alphabet[rng.uniform(alphabet.size())];
                    break;
            }
        }
        auto r = parse_agent_config(text, "nas.toml", dir.path(), on_disk);
        if (auto* e = std::get_if<ConfigError>(&r)) {
            INFO(e->message);
            CHECK_THAT(e->message, Catch::Matches("nas\\.toml:[1-9][0-9]*:[1-9][0-9]*: .+"));
            CHECK(e->message.find('\n') == std::string::npos);
        }
    }
}

// ---- the shipped examples ----------------------------------------------------------------

// The examples are parsed with the key files created in a temporary folder that stands in
// for the examples' own folder: examples/ ships no keys, and the loader checks existence.
TEST_CASE("the example configs parse and agree with each other") {
    const std::string examples = std::string(BURROW_SOURCE_DIR) + "/examples/";
    TempDir dir;
    dir.touch("nas.key");
    dir.touch("laptop.key");

    auto nas_r = parse_agent_config(read_text(examples + "nas.toml"), "nas.toml", dir.path(), on_disk);
    if (auto* e = std::get_if<ConfigError>(&nas_r)) FAIL(e->message);
    auto laptop_r =
        parse_agent_config(read_text(examples + "laptop.toml"), "laptop.toml", dir.path(), on_disk);
    if (auto* e = std::get_if<ConfigError>(&laptop_r)) FAIL(e->message);
    auto server_r =
        parse_server_config(read_text(examples + "server.toml"), "server.toml", dir.path());
    if (auto* e = std::get_if<ConfigError>(&server_r)) FAIL(e->message);
    const auto& nas = std::get<AgentConfig>(nas_r);
    const auto& laptop = std::get<AgentConfig>(laptop_r);
    const auto& server = std::get<ServerConfig>(server_r);

    CHECK(nas.name == "nas");
    CHECK(nas.key_file == dir.file("nas.key"));
    CHECK(laptop.name == "laptop");
    CHECK(laptop.key_file == dir.file("laptop.key"));
    CHECK(server.identity_key == dir.file("server-identity.key"));
    REQUIRE_FALSE(laptop.forward.empty());

    // Every forward of the laptop reaches a service the NAS exposes to it and the server
    // allows: the examples work together as shipped.
    auto server_allows = [&](const std::string& from, const std::string& to,
                             const std::string& service) {
        return std::any_of(server.allow.begin(), server.allow.end(), [&](const AllowRule& r) {
            return r.from == from && r.to == to &&
                   (r.services == std::vector<std::string>{"*"} ||
                    std::find(r.services.begin(), r.services.end(), service) != r.services.end());
        });
    };
    for (const auto& forward : laptop.forward) {
        INFO(forward.service);
        CHECK(forward.peer == nas.name);
        const auto expose =
            std::find_if(nas.expose.begin(), nas.expose.end(),
                         [&](const ExposeConfig& e) { return e.service == forward.service; });
        REQUIRE(expose != nas.expose.end());
        CHECK(std::find(expose->allow.begin(), expose->allow.end(), laptop.name) !=
              expose->allow.end());
        CHECK(server_allows(laptop.name, nas.name, forward.service));
        CHECK(is_loopback(forward.listen));
    }
    for (const auto& name : {nas.name, laptop.name}) {
        CHECK(std::any_of(server.agents.begin(), server.agents.end(),
                          [&](const AgentEntry& a) { return a.name == name; }));
    }
    CHECK(nas.server == laptop.server);
    REQUIRE(server.listen.size() == 1);
    CHECK(nas.server.port == server.listen.front().port);
}
