#include <catch2/catch.hpp>

#include <string>

#include "tunnel/bbr.h"
#include "tunnel/congestion.h"
#include "tunnel/new_reno.h"

using namespace burrow;

TEST_CASE("congestion factory builds the requested controller with the initial window") {
    for (size_t mds : {1200u, 1350u, 1452u}) {
        INFO("max datagram " << mds);
        auto bbr = make_congestion_controller(CongestionKind::kBbr, mds);
        auto reno = make_congestion_controller(CongestionKind::kNewReno, mds);
        CHECK(std::string(bbr->name()) == "bbr");
        CHECK(std::string(reno->name()) == "newreno");
        CHECK(dynamic_cast<Bbr*>(bbr.get()) != nullptr);
        CHECK(dynamic_cast<NewReno*>(reno.get()) != nullptr);
        // RFC 9002 §7.2: ten datagrams at these sizes (the 14720-byte bound is not reached).
        CHECK(bbr->congestion_window() == 10 * mds);
        CHECK(reno->congestion_window() == 10 * mds);
        CHECK(bbr->pacing_rate() > 0);
        CHECK(reno->pacing_rate() > 0);
    }
}

TEST_CASE("initial window follows RFC 9002 §7.2 for large datagrams") {
    CHECK(initial_congestion_window(9000) == 18000);  // max(14720, 2 * 9000)
    CHECK(initial_congestion_window(2000) == 14720);
}
