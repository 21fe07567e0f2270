// UdpFlowTable: flows per client address, refreshed by traffic, expired when idle, capped
// against a flood of new source addresses, and reusable after they expire.
#include <catch2/catch.hpp>

#include "signal/udp_flows.h"
#include "tunnel/socket_address.h"

using namespace burrow;
using namespace std::chrono_literals;

namespace {
SocketAddress client(uint16_t port) { return SocketAddress::ipv4({127, 0, 0, 1}, port); }
}  // namespace

TEST_CASE("a flow lives while datagrams move and expires after the idle timeout") {
    UdpFlowTable<SocketAddress, uint64_t> t(60s, 8);
    const Time t0{};
    CHECK(t.next_deadline() == kNever);
    REQUIRE(t.add(client(1000), 7, t0));
    CHECK_FALSE(t.add(client(1000), 8, t0));  // one flow per address
    CHECK(t.next_deadline() == t0 + 60s);
    CHECK(t.expire(t0 + 59s).empty());
    // Traffic at 50 s keeps it until 110 s.
    CHECK(t.find(client(1000), t0 + 50s) == 7u);
    CHECK(t.expire(t0 + 60s).empty());
    CHECK(t.next_deadline() == t0 + 110s);
    CHECK(t.expire(t0 + 109s).empty());
    const auto gone = t.expire(t0 + 110s);
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].first == client(1000));
    CHECK(gone[0].second == 7u);
    CHECK(t.size() == 0);
    CHECK(t.expired() == 1);
    CHECK(t.next_deadline() == kNever);
    CHECK_FALSE(t.find(client(1000), t0 + 111s));
}

TEST_CASE("only the idle flows expire; the others keep their deadlines") {
    UdpFlowTable<SocketAddress, uint64_t> t(10s, 8);
    const Time t0{};
    REQUIRE(t.add(client(1), 1, t0));
    REQUIRE(t.add(client(2), 2, t0 + 5s));
    const auto gone = t.expire(t0 + 10s);
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].second == 1u);
    CHECK(t.next_deadline() == t0 + 15s);
    CHECK(t.find(client(2), t0 + 11s) == 2u);
}

TEST_CASE("the cap refuses new flows and counts them; existing flows carry on") {
    UdpFlowTable<SocketAddress, uint64_t> t(60s, 4);
    const Time t0{};
    for (uint16_t p = 1; p <= 4; ++p) REQUIRE(t.add(client(p), p, t0));
    CHECK_FALSE(t.add(client(5), 5, t0));
    CHECK(t.refused_cap() == 1);
    CHECK(t.size() == 4);
    CHECK(t.find(client(3), t0 + 1s) == 3u);
    CHECK_FALSE(t.find(client(5), t0 + 1s));
}

TEST_CASE("a flood of new source addresses takes at most the cap, then room comes back") {
    UdpFlowTable<SocketAddress, uint64_t> t(60s, 256);
    const Time t0{};
    size_t added = 0;
    for (uint32_t i = 0; i < 50000; ++i) {
        const auto from = SocketAddress::ipv4(
            {10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
             static_cast<uint8_t>(i)},
            static_cast<uint16_t>(1024 + i % 60000));
        if (t.add(from, i, t0 + 1ms * (i / 1000))) ++added;
    }
    CHECK(added == 256);
    CHECK(t.size() == 256);
    CHECK(t.refused_cap() == 50000 - 256);
    // All of them were added in the first millisecond: they expire together.
    CHECK(t.expire(t0 + 60s).size() == 256);
    CHECK(t.size() == 0);
    // Reuse after expiry: the address that was refused gets a flow now, with a new value.
    REQUIRE(t.add(client(9), 1000, t0 + 61s));
    CHECK(t.find(client(9), t0 + 61s) == 1000u);
}

TEST_CASE("reuse after expiry gives the address a fresh flow") {
    UdpFlowTable<SocketAddress, uint64_t> t(5s, 2);
    const Time t0{};
    REQUIRE(t.add(client(1), 1, t0));
    REQUIRE(t.expire(t0 + 5s).size() == 1);
    REQUIRE(t.add(client(1), 2, t0 + 6s));
    CHECK(t.find(client(1), t0 + 6s) == 2u);
    CHECK(t.created() == 2);
    CHECK(t.remove(client(1)) == 2u);
    CHECK_FALSE(t.remove(client(1)));
    CHECK(t.size() == 0);
}

TEST_CASE("take_all empties the table") {
    UdpFlowTable<std::pair<std::string, uint64_t>, int> t(5s, 4);
    const Time t0{};
    REQUIRE(t.add({"laptop", 1}, 10, t0));
    REQUIRE(t.add({"laptop", 3}, 11, t0));
    CHECK(t.take_all().size() == 2);
    CHECK(t.size() == 0);
    CHECK(t.next_deadline() == kNever);
}
