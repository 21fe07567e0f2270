#include "tunnel/port_prediction.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

using namespace burrow;

namespace {

PortAllocation measure(std::vector<uint16_t> ports) { return measure_allocation(ports); }

bool predicts(const PortAllocation& a, size_t mappings, uint16_t port) {
    const auto window = predict_ports(a, mappings);
    return std::find(window.begin(), window.end(), port) != window.end();
}

}  // namespace

TEST_CASE("two ports are not enough to tell an allocation") {
    CHECK(measure({}).kind == PortAllocationKind::kUnknown);
    CHECK(measure({20000, 20001}).kind == PortAllocationKind::kUnknown);
    CHECK(predict_ports(measure({20000, 20001}), 4).empty());
}

TEST_CASE("one port for every destination is the same, and predicts nothing") {
    const auto a = measure({41641, 41641, 41641});
    CHECK(a.kind == PortAllocationKind::kSame);
    CHECK(describe(a) == "same");
    CHECK(predict_ports(a, 4).empty());
}

TEST_CASE("a constant step is sequential with that delta, and predicts the next ports") {
    const auto a = measure({20000, 20001, 20002, 20003});
    CHECK(a.kind == PortAllocationKind::kSequential);
    CHECK(a.delta == 1);
    CHECK(a.spread == 1);
    CHECK(describe(a) == "sequential delta 1");
    CHECK(predict_ports(a, 3) == std::vector<uint16_t>{20004, 20005, 20006});
    const auto b = measure({3000, 3005, 3010});
    CHECK(describe(b) == "sequential delta 5");
    CHECK(predicts(b, 2, 3015));
    CHECK(predicts(b, 2, 3020));
    CHECK_FALSE(predicts(b, 2, 3010));
}

TEST_CASE("a sequential allocator wraps from 65535 to 1024, and so does the prediction") {
    const auto a = measure({65534, 65535, 1024, 1025});
    CHECK(a.kind == PortAllocationKind::kSequential);
    CHECK(a.delta == 1);
    CHECK(predict_ports(a, 2) == std::vector<uint16_t>{1026, 1027});
    const auto b = measure({65533, 65534, 65535});
    CHECK(predict_ports(b, 2) == std::vector<uint16_t>{1024, 1025});
    // A step of 2 over the wrap: 65534 -> 1024 is two steps on the ring 1024-65535.
    const auto c = measure({65530, 65532, 65534, 1024});
    CHECK(describe(c) == "sequential delta 2");
    CHECK(predict_ports(c, 1) == std::vector<uint16_t>{1026});
}

TEST_CASE("a delta that changes (other hosts take ports between ours) widens the window") {
    const auto a = measure({20000, 20001, 20004, 20005, 20007});
    CHECK(a.kind == PortAllocationKind::kSequential);
    CHECK(a.delta == 1);
    CHECK(a.spread == 3);
    CHECK(describe(a) == "sequential delta 1-3");
    // Four more mappings may reach up to 4 x 3 ports on.
    const auto window = predict_ports(a, 4);
    CHECK(window.front() == 20008);
    CHECK(window.back() == 20007 + 12);
    CHECK(window.size() == 12);
    // A step that jumps far is no longer sequential.
    CHECK(measure({20000, 20001, 20002, 25000}).kind != PortAllocationKind::kSequential);
}

TEST_CASE("ports scattered inside one aligned block are a per-subscriber block") {
    const auto a = measure({1094, 1520, 1273, 1431, 1173});
    CHECK(a.kind == PortAllocationKind::kBlock);
    CHECK(a.block_first == 1024);
    CHECK(a.block_size == 512);
    CHECK(describe(a) == "block 1024-1535");
    // Five samples may all sit in part of the true block: the window is the aligned 1024
    // ports around the measured block, but the port just seen.
    const auto window = predict_ports(a, 8);
    CHECK(window.size() == 1023);
    CHECK_FALSE(predicts(a, 8, 1173));
    CHECK(predicts(a, 8, 1024));
    CHECK(predicts(a, 8, 2047));
    CHECK_FALSE(predicts(a, 8, 2048));
    // Low ports: a block in 0-1023 is probed whole only if the NAT maps there.
    const auto low = measure({900, 700, 1000});
    CHECK(low.kind == PortAllocationKind::kBlock);
    CHECK(predicts(low, 1, 100));
    const auto high = measure({1100, 1300, 1200});
    CHECK_FALSE(predicts(high, 1, 1000));
    CHECK(predicts(high, 1, 1024));
    // Going backwards is not sequential, even by little.
    CHECK(measure({5000, 4990, 4995}).kind == PortAllocationKind::kBlock);
}

TEST_CASE("random ports predict nothing") {
    const auto a = measure({10877, 50368, 7654, 14265});
    CHECK(a.kind == PortAllocationKind::kRandom);
    CHECK(describe(a) == "random");
    CHECK(predict_ports(a, 8).empty());
    // Over many random draws of six ports, almost none look predictable.
    std::mt19937 rng(16);
    std::uniform_int_distribution<int> port(1024, 65535);
    int predictable = 0;
    for (int trial = 0; trial < 1000; ++trial) {
        std::vector<uint16_t> ports;
        for (int i = 0; i < 6; ++i) ports.push_back(static_cast<uint16_t>(port(rng)));
        predictable += measure(ports).kind != PortAllocationKind::kRandom;
    }
    CHECK(predictable <= 2);
}

TEST_CASE("a window never exceeds its cap") {
    const auto a = measure({20000, 20010, 20074});
    REQUIRE(a.kind == PortAllocationKind::kSequential);
    CHECK(predict_ports(a, 1000).size() == kMaxPredictedPorts);
    PortAllocation big;
    big.kind = PortAllocationKind::kBlock;
    big.block_first = 4096;
    big.block_size = 4096;
    CHECK(predict_ports(big, 1).size() == kMaxPredictedPorts);
}

TEST_CASE("lockstep ports: last + delta x (1 + first + stride x k), wrapping past 65535") {
    const auto one = measure({40000, 40001, 40002});
    CHECK(lockstep_ports(one, 0, 4, 1) == std::vector<uint16_t>{40003, 40004, 40005, 40006});
    CHECK(lockstep_ports(one, 10, 3, 2) == std::vector<uint16_t>{40013, 40015, 40017});
    const auto two = measure({50000, 50002, 50004});
    CHECK(lockstep_ports(two, 0, 3, 2) == std::vector<uint16_t>{50006, 50010, 50014});
    const auto top = measure({65533, 65534, 65535});
    CHECK(lockstep_ports(top, 0, 3, 1) == std::vector<uint16_t>{1024, 1025, 1026});
    // Random and block allocations have no lockstep.
    CHECK(lockstep_ports(measure({1200, 47000, 9000, 33000}), 0, 4, 1).empty());
    CHECK(lockstep_ports(measure({2000, 2100, 2050, 2010}), 0, 4, 1).empty());
    CHECK(predictable(one));
    CHECK(predictable(measure({2000, 2100, 2050, 2010})));
    CHECK_FALSE(predictable(measure({41641, 41641, 41641})));
}

TEST_CASE("lockstep: stride 1 against stride 2 meets whatever extra mappings each side made") {
    // Side A (stride 1) and side B (stride 2), both sequential NATs. Each made eps extra new
    // mappings after its allocation was measured; A's i-th probe leaves from A's port number
    // eps_a + i and goes to B's lockstep port i; B's j-th from B's eps_b + j to A's 2j. They meet
    // where A sends to the port B's probe leaves from and B to the port A's leaves from.
    const auto a = measure({30000, 30001, 30002});
    const auto b = measure({52000, 52002, 52004});
    constexpr size_t kCount = 64;
    for (size_t eps_a = 0; eps_a < 8; ++eps_a) {
        for (size_t eps_b = 0; eps_b < 8; ++eps_b) {
            const auto a_to = lockstep_ports(b, 0, kCount, 1);    // A's targets
            const auto b_to = lockstep_ports(a, 0, kCount, 2);    // B's targets
            const auto a_from = lockstep_ports(a, eps_a, kCount, 1);  // A's mappings
            const auto b_from = lockstep_ports(b, eps_b, kCount, 1);  // B's mappings
            bool met = false;
            for (size_t i = 0; i < kCount; ++i) {
                for (size_t j = 0; j < kCount; ++j) {
                    met |= a_to[i] == b_from[j] && b_to[j] == a_from[i];
                }
            }
            CHECK(met);
        }
    }
}
