// `burrow netcheck`'s report per address family (src/netcheck_report.h): what each family's
// lines and JSON say for the server's answers and the STUN servers' answers of that family.
#include <catch2/catch.hpp>

#include "src/netcheck_report.h"

using namespace burrow;

namespace {

const SocketAddress kServer4a = SocketAddress::ipv4({203, 0, 113, 7}, 3478);
const SocketAddress kServer4b = SocketAddress::ipv4({203, 0, 113, 7}, 3479);
const SocketAddress kPublic4 = SocketAddress::ipv4({198, 51, 100, 20}, 40312);
const SocketAddress kHost6 =
    SocketAddress::ipv6({0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 40312);
const SocketAddress kStun6 =
    SocketAddress::ipv6({0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 3490);

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// IPv4 answered by both server ports (one mapping); IPv6 asked only of a STUN server, which
// sees our own IPv6 address (no NAT); an IPv4 STUN server stays silent.
NetcheckReport dual_report() {
    NetcheckReport r;
    r.families.resize(2);
    r.families[0].server = std::array<SocketAddress, 2>{kServer4a, kServer4b};
    r.families[0].probe.mapped = {kPublic4, kPublic4};
    r.families[0].probe.mapping = NatMapping::kEndpointIndependent;
    r.families[1].v6 = true;
    r.families[1].not_asked = "the server has no IPv6 address";
    StunServerStatus six;
    six.server = "[2001:db8:9::1]:3490";
    six.address = kStun6;
    six.mapped = kHost6;
    six.rtt = std::chrono::milliseconds(2);
    six.requests = 1;
    StunServerStatus silent;
    silent.server = "192.0.2.9:3478";
    silent.address = SocketAddress::ipv4({192, 0, 2, 9}, 3478);
    silent.requests = 7;
    r.stun_servers = {six, silent};
    r.host_addresses = {SocketAddress::ipv4({10, 0, 2, 2}, 40312), kHost6};
    return r;
}

}  // namespace

TEST_CASE("netcheck text: one block per family, STUN servers of either family, who answered") {
    const std::string t = netcheck_text(dual_report());
    INFO(t);
    CHECK(has(t, "ipv4 udp       reachable: both STUN ports answered\n"));
    CHECK(has(t, "ipv4 reflexive 198.51.100.20:40312 (port 3478), 198.51.100.20:40312 (port "
                 "3479)\n"));
    CHECK(has(t, "ipv4 mapping   endpoint-independent"));
    // IPv6: the server was not asked, the STUN server of that family answered.
    CHECK(has(t, "ipv6 udp       reachable: 1 STUN server answered\n"));
    CHECK(has(t, "ipv6 reflexive [2001:db8:2::2]:40312\n"));
    // One answer equal to a host address says nothing about a mapping.
    CHECK(has(t, "ipv6 mapping   unknown"));
    CHECK(has(t, "stun server    [2001:db8:9::1]:3490 answered: [2001:db8:2::2]:40312 (rtt 2.0 "
                 "ms)\n"));
    CHECK(has(t, "stun server    192.0.2.9:3478 no answer to 7 requests\n"));
    CHECK(has(t, "port mapping   not asked"));
}

TEST_CASE("netcheck: an IPv6 answer never makes the IPv4 mapping per destination") {
    NetcheckReport r = dual_report();
    // The IPv4 server probe could not tell (one port silent); the IPv6 STUN server's different
    // address is of the other family and must not count as a second IPv4 opinion.
    r.families[0].probe.mapped[1].reset();
    r.families[0].probe.mapping = NatMapping::kUnknown;
    r.host_addresses = {SocketAddress::ipv4({10, 0, 2, 2}, 40312)};
    CHECK(netcheck_mapping(r, r.families[0]) == NatMapping::kUnknown);
    CHECK(netcheck_mapping(r, r.families[1]) == NatMapping::kUnknown);
    const std::string t = netcheck_text(r);
    CHECK(has(t, "ipv4 udp       partly reachable: one STUN port answered\n"));
    CHECK(has(t, "ipv4 reflexive 198.51.100.20:40312 (port 3478), no answer (port 3479)\n"));
}

TEST_CASE("netcheck: a family nothing was asked about says why, and a silent one is blocked") {
    NetcheckReport r;
    r.families.resize(2);
    r.families[0].server = std::array<SocketAddress, 2>{kServer4a, kServer4b};
    r.families[1].v6 = true;
    r.families[1].not_asked = "this machine has no IPv6";
    r.upnp = "no IGD found";
    r.natpmp = "no answer from 10.0.2.1";
    const std::string t = netcheck_text(r);
    INFO(t);
    CHECK(has(t, "ipv4 udp       blocked: no STUN answer in 3.1 s"));
    CHECK(has(t, "ipv6 udp       not asked: this machine has no IPv6\n"));
    CHECK_FALSE(has(t, "ipv6 reflexive"));
    CHECK(has(t, "upnp igd       no IGD found\n"));
    CHECK(has(t, "nat-pmp        no answer from 10.0.2.1\n"));
}

TEST_CASE("netcheck json: per family reachable, reflexive, mapping, and the STUN servers") {
    const nlohmann::json j = netcheck_json(dual_report());
    INFO(j.dump(2));
    REQUIRE(j["families"].size() == 2);
    const auto& v4 = j["families"][0];
    CHECK(v4["family"] == "ipv4");
    CHECK(v4["reachable"] == true);
    CHECK(v4["mapping"] == "endpoint-independent");
    CHECK(v4["server"]["answered"] == 2);
    CHECK(v4["server"]["ports"] == nlohmann::json({3478, 3479}));
    CHECK(v4["reflexive"] == nlohmann::json({"198.51.100.20:40312"}));
    CHECK(v4["stun_servers_answered"].empty());
    const auto& v6 = j["families"][1];
    CHECK(v6["family"] == "ipv6");
    CHECK(v6["reachable"] == true);
    CHECK(v6["server"].is_null());
    CHECK(v6["not_asked"] == "the server has no IPv6 address");
    CHECK(v6["reflexive"] == nlohmann::json({"[2001:db8:2::2]:40312"}));
    CHECK(v6["stun_servers_answered"] == nlohmann::json({"[2001:db8:9::1]:3490"}));
    REQUIRE(j["stun_servers"].size() == 2);
    CHECK(j["stun_servers"][0]["family"] == "ipv6");
    CHECK(j["stun_servers"][0]["answered"] == true);
    CHECK(j["stun_servers"][1]["answered"] == false);
    CHECK(j["stun_servers"][1]["mapped"].is_null());
    CHECK(j["port_mapping"].is_null());
}

TEST_CASE("netcheck tcp: one port kept, two ports, no TCP answer, not tested") {
    NetcheckReport r = dual_report();
    r.tcp.asked = true;
    r.tcp.server_ports = {3478, 3479};
    r.tcp.local_port = 40500;
    const SocketAddress kept = SocketAddress::ipv4({198, 51, 100, 20}, 40500);
    r.tcp.mapped = {kept, kept};
    std::string t = netcheck_text(r);
    INFO(t);
    CHECK(netcheck_tcp_mapping(r.tcp) == NatMapping::kEndpointIndependent);
    CHECK(has(t, "tcp reflexive  198.51.100.20:40500 (port 3478), 198.51.100.20:40500 (port "
                 "3479)\n"));
    CHECK(has(t, "tcp mapping    endpoint-independent (port kept across destinations): direct "
                 "TCP punching can work\n"));
    nlohmann::json j = netcheck_json(r)["tcp"];
    CHECK(j["asked"] == true);
    CHECK(j["mapping"] == "endpoint-independent");
    CHECK(j["server_ports"] == nlohmann::json({3478, 3479}));
    CHECK(j["local_port"] == 40500);
    CHECK(j["reflexive"] == nlohmann::json({"198.51.100.20:40500", "198.51.100.20:40500"}));
    CHECK(j["error"].is_null());

    r.tcp.mapped[1] = SocketAddress::ipv4({198, 51, 100, 20}, 61001);
    t = netcheck_text(r);
    CHECK(netcheck_tcp_mapping(r.tcp) == NatMapping::kPerDestination);
    CHECK(has(t, "tcp mapping    per destination (port 40500 then 61001): direct TCP punching "
                 "will not work through this NAT\n"));
    CHECK(netcheck_json(r)["tcp"]["mapping"] == "per-destination");

    r.tcp.mapped = {};
    r.tcp.error = "connect 203.0.113.7:3478: connection refused";
    t = netcheck_text(r);
    CHECK(netcheck_tcp_mapping(r.tcp) == NatMapping::kUnknown);
    CHECK(has(t, "tcp reflexive  no answer (port 3478), no answer (port 3479)\n"));
    CHECK(has(t, "tcp mapping    unknown: the server does not answer STUN over TCP on port 3478 "
                 "(an older server, or filtered): connect 203.0.113.7:3478: connection "
                 "refused\n"));
    j = netcheck_json(r)["tcp"];
    CHECK(j["mapping"] == "unknown");
    CHECK(j["error"] == "connect 203.0.113.7:3478: connection refused");

    r.tcp.mapped[0] = kept;
    r.tcp.error = "no answer in 2000 ms";
    CHECK(has(netcheck_text(r), "tcp mapping    unknown: port 3479 did not answer STUN over "
                                "TCP: no answer in 2000 ms\n"));

    r.tcp = NetcheckTcp{};
    r.tcp.not_asked = "no burrow server given (-c or --stun)";
    t = netcheck_text(r);
    CHECK(has(t, "tcp mapping    not tested: no burrow server given (-c or --stun)\n"));
    CHECK_FALSE(has(t, "tcp reflexive"));
    CHECK(netcheck_json(r)["tcp"]["asked"] == false);
}
