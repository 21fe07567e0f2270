#include <catch2/catch.hpp>

#include "signal/doctor_book.h"

using namespace burrow;

namespace {

Time at_ms(int64_t ms) {
    return time_from_us(ms * 1000);
}

std::vector<Candidate> one_host(uint16_t port) {
    return {{CandidateKind::kHost, SocketAddress::ipv4({10, 0, 0, 1}, port)}};
}

PunchReport report(const std::string& peer, ReportPath path) {
    PunchReport r;
    r.peer = peer;
    r.path = path;
    return r;
}

}  // namespace

TEST_CASE("doctor book: a rendezvous, reports from each side, the view of either") {
    DoctorBook book;
    CHECK_FALSE(book.reply(1, "laptop", "nas", at_ms(0)));
    // Named in either order, the pair is one record.
    book.on_rendezvous("nas", NatMapping::kPerDestination, one_host(1), "laptop",
                       NatMapping::kEndpointIndependent, one_host(2), at_ms(1000));
    CHECK(book.size() == 1);
    CHECK(book.find("laptop", "nas") == book.find("nas", "laptop"));

    CHECK(book.on_report("laptop", report("nas", ReportPath::kDirect), at_ms(1400)));
    auto r = book.reply(5, "laptop", "nas", at_ms(3000));
    REQUIRE(r);
    CHECK(r->request_id == 5);
    CHECK(r->peer == "nas");
    CHECK(r->rendezvous_age_ms == 2000);
    CHECK(r->self.nat == NatMapping::kEndpointIndependent);
    CHECK(r->self.candidates == one_host(2));
    REQUIRE(r->self.report);
    CHECK(r->self.report->path == ReportPath::kDirect);
    CHECK(r->self.report_age_ms == 1600);
    CHECK(r->peer_side.nat == NatMapping::kPerDestination);
    CHECK(r->peer_side.candidates == one_host(1));
    CHECK_FALSE(r->peer_side.report);

    // A later report replaces the side's earlier one; a new rendezvous keeps both sides' reports
    // but updates what was sent.
    CHECK(book.on_report("laptop", report("nas", ReportPath::kRelayUdp), at_ms(4000)));
    book.on_rendezvous("laptop", NatMapping::kUnknown, {}, "nas", NatMapping::kPerDestination,
                       one_host(3), at_ms(5000));
    r = book.reply(6, "nas", "laptop", at_ms(5000));
    REQUIRE(r);
    CHECK(r->rendezvous_age_ms == 0);
    CHECK(r->self.candidates == one_host(3));
    CHECK(r->peer_side.nat == NatMapping::kUnknown);
    REQUIRE(r->peer_side.report);
    CHECK(r->peer_side.report->path == ReportPath::kRelayUdp);
}

TEST_CASE("doctor book: reports about pairs never joined, or about oneself, are refused") {
    DoctorBook book;
    CHECK_FALSE(book.on_report("laptop", report("nas", ReportPath::kDirect), at_ms(0)));
    book.on_rendezvous("laptop", NatMapping::kUnknown, {}, "nas", NatMapping::kUnknown, {},
                       at_ms(0));
    CHECK_FALSE(book.on_report("laptop", report("laptop", ReportPath::kDirect), at_ms(1)));
    CHECK_FALSE(book.on_report("phone", report("nas", ReportPath::kDirect), at_ms(1)));
    CHECK_FALSE(book.find("laptop", "nas")->reports[0]);
    CHECK_FALSE(book.find("laptop", "nas")->reports[1]);
}

TEST_CASE("doctor book: bounded; a new pair evicts the one with the oldest rendezvous") {
    DoctorBook book(3);
    book.on_rendezvous("a", NatMapping::kUnknown, {}, "b", NatMapping::kUnknown, {}, at_ms(10));
    book.on_rendezvous("a", NatMapping::kUnknown, {}, "c", NatMapping::kUnknown, {}, at_ms(20));
    book.on_rendezvous("a", NatMapping::kUnknown, {}, "d", NatMapping::kUnknown, {}, at_ms(30));
    // a-b meets again: now the newest, so a-c is the oldest.
    book.on_rendezvous("b", NatMapping::kUnknown, {}, "a", NatMapping::kUnknown, {}, at_ms(40));
    CHECK(book.size() == 3);
    book.on_rendezvous("a", NatMapping::kUnknown, {}, "e", NatMapping::kUnknown, {}, at_ms(50));
    CHECK(book.size() == 3);
    CHECK(book.evictions() == 1);
    CHECK(book.find("a", "b"));
    CHECK_FALSE(book.find("a", "c"));
    CHECK(book.find("a", "d"));
    CHECK(book.find("a", "e"));
    // The default cap, many pairs: never more than the cap.
    DoctorBook big;
    for (int i = 0; i < static_cast<int>(kMaxDoctorRecords) + 100; ++i) {
        big.on_rendezvous("x", NatMapping::kUnknown, {}, "p" + std::to_string(i),
                          NatMapping::kUnknown, {}, at_ms(i));
    }
    CHECK(big.size() == kMaxDoctorRecords);
    CHECK(big.evictions() == 100);
    CHECK_FALSE(big.find("x", "p99"));
    CHECK(big.find("x", "p100"));
}
