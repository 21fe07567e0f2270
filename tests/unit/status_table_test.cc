#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "src/status_table.h"

using namespace burrow;
using json = nlohmann::json;

namespace {

// The sample the agent's brief gives for GET /status.
const char* const kSample = R"({
  "agent": {"name": "laptop", "public_key": "base64...", "version": "0.1.0", "uptime_s": 12.5},
  "server": {"address": "127.0.0.1:7000", "state": "online", "registered": true,
             "udp": "bound", "nat": "endpoint-independent", "reflexive": "203.0.113.5:40000",
             "reconnects": 0},
  "udp": {"send_mode": "gso", "receive_mode": "gro", "receive_buffer_bytes": 16777216,
          "send_buffer_bytes": 425984, "datagrams_sent": 640, "send_calls": 10},
  "peers": [{"peer": "nas", "session_id": 42, "role": "initiator", "state": "established",
             "path": {"kind": "relay-udp", "family": "ipv4", "address": "127.0.0.1:7000"},
             "rtt_ms": 1.25, "loss": 0.001, "bytes_sent": 1234,
             "bytes_received": 5678, "streams": 2, "services": ["ssh", "web"],
             "drops": {"decrypt_failed": 0, "malformed": 1}}],
  "forwards": [{"listen": "127.0.0.1:8080", "peer": "nas", "service": "web",
                "connections": 10, "active": 2, "waiting": 3, "refused": 12,
                "refusals": {"stream_limit": 10, "queue_full": 2, "acl": 0}},
               {"listen": "127.0.0.1:2222", "peer": "nas", "service": "ssh",
                "connections": 1, "active": 0, "refused": 1}],
  "exposes": [{"service": "web", "target": "127.0.0.1:80", "allow": ["laptop"],
               "streams": 3, "active": 1, "refused": 0}],
  "drops": {"relay_queue_full": 0, "udp_malformed": 2}
})";

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

// The line that starts with prefix, or "".
std::string line_starting(const std::string& text, const std::string& prefix) {
    for (const auto& l : lines(text)) {
        if (l.rfind(prefix, 0) == 0) return l;
    }
    return "";
}

// The words of a table row, split on runs of two or more spaces (column gaps).
std::vector<std::string> cells(const std::string& row) {
    std::vector<std::string> out;
    std::string cell;
    for (size_t i = 0; i < row.size(); ++i) {
        if (row[i] == ' ' && i + 1 < row.size() && row[i + 1] == ' ') {
            if (!cell.empty()) out.push_back(cell);
            cell.clear();
            while (i + 1 < row.size() && row[i + 1] == ' ') ++i;
            continue;
        }
        cell += row[i];
    }
    if (!cell.empty()) out.push_back(cell);
    return out;
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("status table: the full sample") {
    const std::string out = render_status(json::parse(kSample));
    INFO(out);
    CHECK(line_starting(out, "agent ") == "agent   laptop  version 0.1.0  up 12s  key base64...");
    CHECK(line_starting(out, "server ") ==
          "server  127.0.0.1:7000  state online  registered yes  udp bound  "
          "nat endpoint-independent  reflexive 203.0.113.5:40000  reconnects 0");
    CHECK(line_starting(out, "udp ") ==
          "udp     send gso  receive gro  buffers 16.0 MiB in, 416.0 KiB out");

    const auto peers_header = cells(line_starting(out, "PEER "));
    CHECK(peers_header == std::vector<std::string>{"PEER", "PATH", "RTT", "LOSS", "SENT",
                                                   "RECEIVED", "STREAMS", "SERVICES", "STATE"});
    CHECK(cells(line_starting(out, "nas ")) ==
          std::vector<std::string>{"nas", "relay-udp", "1.25 ms", "0.10%", "1.2 KiB", "5.5 KiB",
                                   "2", "ssh,web", "established (initiator)"});

    CHECK(cells(line_starting(out, "LISTEN ")) ==
          std::vector<std::string>{"LISTEN", "PEER", "SERVICE", "CONNECTIONS", "ACTIVE", "WAITING",
                                   "REFUSED"});
    // Refusals: the total, then each non-zero reason (by name).
    CHECK(cells(line_starting(out, "127.0.0.1:8080 ")) ==
          std::vector<std::string>{"127.0.0.1:8080", "nas", "web", "10", "2", "3",
                                   "12 (queue_full 2, stream_limit 10)"});
    CHECK(cells(line_starting(out, "127.0.0.1:2222 ")) ==
          std::vector<std::string>{"127.0.0.1:2222", "nas", "ssh", "1", "0", "-", "1"});

    CHECK(cells(line_starting(out, "SERVICE ")) ==
          std::vector<std::string>{"SERVICE", "TARGET", "ALLOW", "STREAMS", "ACTIVE", "REFUSED"});
    CHECK(cells(line_starting(out, "web ")) ==
          std::vector<std::string>{"web", "127.0.0.1:80", "laptop", "3", "1", "0"});

    // Only the non-zero counters, the agent's and then each peer's.
    CHECK(line_starting(out, "drops:") == "drops: udp_malformed 2, nas malformed 1");
    CHECK(out.back() == '\n');
}

TEST_CASE("status table: columns line up") {
    json status = json::parse(kSample);
    status["peers"].push_back({{"peer", "a-much-longer-peer-name"},
                               {"path",
                                {{"kind", "direct"},
                                 {"family", "ipv4"},
                                 {"address", "198.51.100.7:41641"}}},
                               {"rtt_ms", 230.4},
                               {"state", "established"}});
    const std::string out = render_status(status);
    const std::string header = line_starting(out, "PEER ");
    const std::string row = line_starting(out, "a-much-longer-peer-name ");
    REQUIRE_FALSE(row.empty());
    CHECK(header.find("PATH") == row.find("direct 198.51.100.7:41641"));
    CHECK(header.find("RTT") == row.find("230 ms"));
    // Missing fields of that peer are "-".
    CHECK(cells(row) == std::vector<std::string>{"a-much-longer-peer-name",
                                                 "direct 198.51.100.7:41641", "230 ms", "-", "-",
                                                 "-", "-", "-", "established"});
}

TEST_CASE("status table: the path object in the table's words") {
    const auto path_cell = [](const json& path) {
        json status = {{"peers", json::array({{{"peer", "nas"}, {"path", path}}})}};
        return cells(line_starting(render_status(status), "nas "))[1];
    };
    CHECK(path_cell({{"kind", "direct"}, {"family", "ipv6"}, {"address", "[2001:db8::7]:4000"}}) ==
          "direct [2001:db8::7]:4000");
    // A direct TCP path (issue 15) names the peer's end of the connection.
    CHECK(path_cell({{"kind", "direct-tcp"}, {"family", "ipv4"}, {"address", "198.51.100.7:7001"}}) ==
          "direct-tcp 198.51.100.7:7001");
    // A relay's address is the server's: the table shows the kind only, as before.
    CHECK(path_cell({{"kind", "relay-tcp"}, {"family", "ipv4"}, {"address", "192.0.2.1:7000"}}) ==
          "relay-tcp");
    CHECK(path_cell({{"kind", "relay-udp"}, {"family", nullptr}, {"address", nullptr}}) ==
          "relay-udp");
    CHECK(path_cell({{"kind", "direct"}, {"family", nullptr}, {"address", nullptr}}) == "direct");
    // An agent from before the object sent one string.
    CHECK(path_cell("direct 198.51.100.7:41641") == "direct 198.51.100.7:41641");
    // Not an object, or a kind that is not a string: "-"; control characters become '?'.
    CHECK(path_cell(42) == "-");
    CHECK(path_cell({{"kind", 7}}) == "-");
    CHECK(path_cell({{"kind", "direct"}, {"address", "1.2.3.4:5\x1b[2J"}}) ==
          "direct 1.2.3.4:5?[2J");
}

TEST_CASE("status table: {} prints every line with '-' and empty sections") {
    std::string out;
    REQUIRE_NOTHROW(out = render_status(json::object()));
    INFO(out);
    CHECK(line_starting(out, "agent ") == "agent   -  version -  up -  key -");
    CHECK(line_starting(out, "server ") ==
          "server  -  state -  registered -  udp -  nat -  reflexive -  reconnects -");
    CHECK(line_starting(out, "udp ") == "udp     send -  receive -  buffers - in, - out");
    CHECK(contains(out, "no peers\n"));
    CHECK(contains(out, "no forwards\n"));
    CHECK(contains(out, "no exposed services\n"));
    CHECK(contains(out, "drops: none\n"));
}

TEST_CASE("status table: wrong types print '-' and never throw") {
    const json odd = json::parse(R"({
      "agent": {"name": 7, "public_key": null, "version": ["0.1"], "uptime_s": "long"},
      "server": {"address": "127.0.0.1:7000", "registered": "yes", "reconnects": -3,
                 "state": {"x": 1}},
      "peers": [5, {"peer": "nas", "rtt_ms": "fast", "loss": 7, "bytes_sent": -1,
                    "bytes_received": 1e300, "streams": 2.0, "drops": [1, 2]}],
      "forwards": {"not": "a list"},
      "exposes": [{"service": "web", "allow": "laptop", "streams": true}],
      "drops": {"relay_queue_full": "many", "udp_malformed": 3}
    })");
    std::string out;
    REQUIRE_NOTHROW(out = render_status(odd));
    INFO(out);
    CHECK(line_starting(out, "agent ") == "agent   -  version -  up -  key -");
    CHECK(line_starting(out, "server ") ==
          "server  127.0.0.1:7000  state -  registered -  udp -  nat -  reflexive -  "
          "reconnects -");
    // A peer that is not an object is a row of "-"; the other keeps what is usable.
    CHECK(cells(line_starting(out, "nas ")) ==
          std::vector<std::string>{"nas", "-", "-", "-", "-", "-", "2", "-", "-"});
    CHECK(cells(line_starting(out, "- ")) ==
          std::vector<std::string>{"-", "-", "-", "-", "-", "-", "-", "-", "-"});
    CHECK(contains(out, "no forwards\n"));
    CHECK(cells(line_starting(out, "web ")) ==
          std::vector<std::string>{"web", "-", "-", "-", "-", "-"});
    CHECK(line_starting(out, "drops:") == "drops: udp_malformed 3");
}

TEST_CASE("status table: JSON that is not an object is one line") {
    for (const json& j : {json(nullptr), json(42), json("status"), json::array({1, 2})}) {
        CHECK(render_status(j) == "malformed status from agent\n");
    }
}

TEST_CASE("status table: control characters cannot reach the terminal") {
    json status = json::parse(kSample);
    status["agent"]["name"] = "evil\x1b[2J\nname";
    const std::string out = render_status(status);
    CHECK_FALSE(contains(out, "\x1b"));
    CHECK(line_starting(out, "agent ").rfind("agent   evil?[2J?name  ", 0) == 0);
}

TEST_CASE("status table: human units") {
    CHECK(format_bytes(0) == "0 B");
    CHECK(format_bytes(1023) == "1023 B");
    CHECK(format_bytes(1024) == "1.0 KiB");
    CHECK(format_bytes(1536) == "1.5 KiB");
    CHECK(format_bytes(5 * 1024 * 1024) == "5.0 MiB");
    CHECK(format_bytes(uint64_t{3} << 30) == "3.0 GiB");
    CHECK(format_bytes(uint64_t{2} << 40) == "2.0 TiB");
    CHECK(format_uptime(0) == "0s");
    CHECK(format_uptime(59.9) == "59s");
    CHECK(format_uptime(192) == "3m 12s");
    CHECK(format_uptime(2 * 3600 + 5 * 60) == "2h 05m");
    CHECK(format_uptime(3 * 86400 + 4 * 3600) == "3d 04h");
    CHECK(format_uptime(-1) == "-");
    CHECK(format_uptime(1e300) == "-");
}
