#include <catch2/catch.hpp>

#include "signal/port_mapper.h"

using namespace burrow;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

const SocketAddress kPublic = SocketAddress::ipv4({203, 0, 113, 5}, 40001);

PortMappingResult granted(Duration lease, PortMapProtocol p = PortMapProtocol::kUpnpIgd,
                          SocketAddress external = kPublic) {
    return PortMappingResult{PortMappingGranted{p, "192.168.1.1", external, lease}, ""};
}
PortMappingResult nothing() { return PortMappingResult{std::nullopt, "UPnP IGD: no IGD found"}; }

std::vector<std::string> logs(PortMapper& m) {
    std::vector<std::string> out;
    while (auto l = m.poll_log()) out.push_back(*l);
    return out;
}

}  // namespace

TEST_CASE("disabled: never asks, never maps") {
    PortMapper m(false);
    m.start(7001, Time{});
    CHECK_FALSE(m.poll_request());
    CHECK(m.next_deadline() == kNever);
    m.on_network_changed(Time{} + seconds(5));
    CHECK_FALSE(m.poll_request());
    CHECK(m.status().state == PortMapperState::kOff);
}

TEST_CASE("asks at start, maps, renews at half the lease, deletes at stop") {
    PortMapper m(true);
    Time t{};
    m.start(7001, t);
    auto r = m.poll_request();
    REQUIRE(r);
    CHECK(r->op == PortMapRequest::Op::kMap);
    CHECK(r->internal_port == 7001);
    CHECK(r->lease == kPortMappingLease);
    CHECK_FALSE(r->protocol);  // a first ask tries every protocol
    CHECK_FALSE(m.poll_request());
    CHECK(m.next_deadline() == kNever);  // nothing to do while the request is out
    CHECK_FALSE(m.mapped());

    t += seconds(1);
    m.on_result(granted(hours(2)), t);
    CHECK(m.mapped() == kPublic);
    CHECK(m.status().state == PortMapperState::kMapped);
    CHECK(logs(m) == std::vector<std::string>{
                         "port mapping: UPnP IGD at 192.168.1.1 gave 203.0.113.5:40001 for 2h"});
    CHECK(m.next_deadline() == t + hours(1));

    m.on_timer(t + minutes(59));
    CHECK_FALSE(m.poll_request());
    t += hours(1);
    m.on_timer(t);
    r = m.poll_request();
    REQUIRE(r);
    CHECK(r->op == PortMapRequest::Op::kMap);
    CHECK(r->protocol == PortMapProtocol::kUpnpIgd);  // the renewal goes where the mapping is
    CHECK(r->external_port == 40001);
    CHECK(m.mapped() == kPublic);  // still offered while the renewal is out
    m.on_result(granted(hours(2)), t);
    CHECK(m.status().renewals == 1);
    CHECK(logs(m).empty());  // a renewal is not news
    CHECK(m.next_deadline() == t + hours(1));

    m.stop();
    r = m.poll_request();
    REQUIRE(r);
    CHECK(r->op == PortMapRequest::Op::kDelete);
    CHECK(r->protocol == PortMapProtocol::kUpnpIgd);
    CHECK(r->external_port == 40001);
    CHECK(r->internal_port == 7001);
    CHECK_FALSE(m.mapped());
    CHECK(m.next_deadline() == kNever);
    m.stop();  // twice: one delete
    CHECK_FALSE(m.poll_request());
}

TEST_CASE("a short or permanent lease does not make it ask in a loop") {
    PortMapper m(true);
    m.start(7001, Time{});
    m.poll_request();
    m.on_result(granted(seconds(4), PortMapProtocol::kNatPmp), Time{});
    CHECK(m.next_deadline() == Time{} + kMinRenewInterval);

    PortMapper p(true);
    p.start(7001, Time{});
    p.poll_request();
    p.on_result(granted(Duration::zero()), Time{});
    CHECK(logs(p).back().ends_with("for permanent"));
    CHECK(p.next_deadline() == Time{} + kPermanentRecheck);
}

TEST_CASE("nothing answers: two retries, then it gives up until the network changes") {
    PortMapper m(true);
    Time t{};
    m.start(7001, t);
    REQUIRE(m.poll_request());
    m.on_result(nothing(), t);
    CHECK(m.status().state == PortMapperState::kWaiting);
    CHECK(m.next_deadline() == t + kRetryDelays[0]);
    CHECK(logs(m) == std::vector<std::string>{"port mapping: no port mapping protocol answered "
                                              "(UPnP IGD: no IGD found); asking again in 1m"});

    t += kRetryDelays[0];
    m.on_timer(t);
    REQUIRE(m.poll_request());
    m.on_result(nothing(), t);
    CHECK(m.next_deadline() == t + kRetryDelays[1]);
    t += kRetryDelays[1];
    m.on_timer(t);
    REQUIRE(m.poll_request());
    m.on_result(nothing(), t);
    CHECK(m.status().state == PortMapperState::kGaveUp);
    CHECK(m.status().asks == kMaxUnansweredAsks);
    CHECK(m.status().failures == kMaxUnansweredAsks);
    CHECK(m.next_deadline() == kNever);
    m.on_timer(t + hours(10));
    CHECK_FALSE(m.poll_request());

    // A new network may have a gateway that answers.
    m.on_network_changed(t + hours(10));
    auto r = m.poll_request();
    REQUIRE(r);
    CHECK_FALSE(r->protocol);
    m.on_result(granted(hours(2), PortMapProtocol::kNatPmp), t + hours(10));
    CHECK(m.mapped() == kPublic);
    CHECK(m.status().last_failure.empty());
}

TEST_CASE("a failed renewal withdraws the candidate and starts over") {
    PortMapper m(true);
    Time t{};
    m.start(7001, t);
    m.poll_request();
    m.on_result(granted(hours(2)), t);
    logs(m);
    t += hours(1);
    m.on_timer(t);
    REQUIRE(m.poll_request());
    m.on_result(nothing(), t);
    CHECK_FALSE(m.mapped());
    CHECK(m.status().state == PortMapperState::kWaiting);
    auto l = logs(m);
    REQUIRE(l.size() == 2);
    CHECK(l[0].find("renewing 203.0.113.5:40001 at 192.168.1.1 failed") != std::string::npos);
    // The next ask is a fresh one (any protocol), and nothing is left to delete.
    t += kRetryDelays[0];
    m.on_timer(t);
    auto r = m.poll_request();
    REQUIRE(r);
    CHECK_FALSE(r->protocol);
    m.on_result(nothing(), t);
    m.stop();
    CHECK_FALSE(m.poll_request());
}

TEST_CASE("a network change during an ask discards the stale answer and asks again") {
    PortMapper m(true);
    Time t{};
    m.start(7001, t);
    m.poll_request();
    m.on_network_changed(t);
    CHECK_FALSE(m.poll_request());  // one request at a time
    m.on_result(granted(hours(2)), t);
    CHECK_FALSE(m.mapped());
    REQUIRE(m.poll_request());
    const SocketAddress moved = SocketAddress::ipv4({198, 51, 100, 9}, 5000);
    m.on_result(granted(hours(2), PortMapProtocol::kNatPmp, moved), t);
    CHECK(m.mapped() == moved);
}

TEST_CASE("an answer that comes after stop is deleted at once; a stray answer changes nothing") {
    PortMapper m(true);
    m.start(7001, Time{});
    m.poll_request();
    m.stop();
    CHECK_FALSE(m.poll_request());  // nothing held yet
    m.on_result(granted(hours(2), PortMapProtocol::kNatPmp), Time{});
    auto r = m.poll_request();
    REQUIRE(r);
    CHECK(r->op == PortMapRequest::Op::kDelete);
    CHECK(r->protocol == PortMapProtocol::kNatPmp);
    CHECK_FALSE(m.mapped());

    PortMapper idle(true);
    idle.on_result(granted(hours(2)), Time{});
    CHECK_FALSE(idle.mapped());
    CHECK_FALSE(idle.poll_request());
}

TEST_CASE("a network change while mapped forgets the old mapping and asks afresh") {
    PortMapper m(true);
    Time t{};
    m.start(7001, t);
    m.poll_request();
    m.on_result(granted(hours(2)), t);
    m.on_network_changed(t + minutes(3));
    CHECK_FALSE(m.mapped());
    CHECK(m.status().state == PortMapperState::kAsking);
    auto r = m.poll_request();
    REQUIRE(r);
    CHECK_FALSE(r->protocol);
    CHECK(r->external_port == 0);
    m.on_result(nothing(), t + minutes(3));
    CHECK(m.status().state == PortMapperState::kWaiting);
}
