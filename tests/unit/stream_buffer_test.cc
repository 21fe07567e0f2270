#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "tunnel/rng.h"
#include "tunnel/stream_buffer.h"

using namespace burrow;

namespace {
constexpr size_t kBlock = StreamBuffer::kBlockSize;

Bytes pattern(uint64_t offset, size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((offset + i) * 131 + 7);
    return b;
}
}  // namespace

TEST_CASE("stream buffer holds nothing until written and after clear") {
    StreamBuffer buf;
    CHECK(buf.allocated_bytes() == 0);
    buf.write(100, pattern(100, 10));
    CHECK(buf.allocated_bytes() == kBlock);
    buf.clear();
    CHECK(buf.allocated_bytes() == 0);
}

TEST_CASE("stream buffer views stop at block boundaries") {
    StreamBuffer buf;
    const Bytes data = pattern(0, 2 * kBlock + 100);
    buf.write(0, data);
    CHECK(buf.allocated_bytes() == 3 * kBlock);
    const ByteView v = buf.view(kBlock - 10, 1000);
    REQUIRE(v.size() == 10);
    CHECK(std::equal(v.begin(), v.end(), data.begin() + kBlock - 10));
    const ByteView w = buf.view(kBlock, 1000);
    REQUIRE(w.size() == 1000);
    CHECK(std::equal(w.begin(), w.end(), data.begin() + kBlock));
    CHECK(buf.view(5, 0).empty());
}

TEST_CASE("stream buffer copies across blocks and releases whole blocks only") {
    StreamBuffer buf;
    const Bytes data = pattern(0, 3 * kBlock);
    buf.write(0, data);
    Bytes out(kBlock + 20);
    buf.copy_out(kBlock - 10, out);
    CHECK(std::equal(out.begin(), out.end(), data.begin() + kBlock - 10));

    buf.release_below(kBlock + 5);  // block 1 still holds bytes at and above the offset
    CHECK(buf.allocated_bytes() == 2 * kBlock);
    Bytes tail(kBlock - 5);
    buf.copy_out(kBlock + 5, tail);
    CHECK(std::equal(tail.begin(), tail.end(), data.begin() + kBlock + 5));
    buf.release_below(3 * kBlock);
    CHECK(buf.allocated_bytes() == 0);
}

TEST_CASE("stream buffer accepts sparse writes in any order") {
    // Out-of-order receive data: later blocks first, then earlier ones, with gaps between.
    StreamBuffer buf;
    buf.write(5 * kBlock + 3, pattern(5 * kBlock + 3, 50));
    buf.write(2 * kBlock, pattern(2 * kBlock, 10));
    buf.write(0, pattern(0, 10));
    CHECK(buf.allocated_bytes() == 3 * kBlock);  // gaps in between allocate nothing
    Bytes out(50);
    buf.copy_out(5 * kBlock + 3, out);
    CHECK(out == pattern(5 * kBlock + 3, 50));
    out.resize(10);
    buf.copy_out(0, out);
    CHECK(out == pattern(0, 10));
    buf.copy_out(2 * kBlock, out);
    CHECK(out == pattern(2 * kBlock, 10));
}

TEST_CASE("stream buffer matches a reference under a random sliding window") {
    for (uint64_t seed = 1; seed <= 30; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        StreamBuffer buf;
        uint64_t floor = 0;  // released below
        const uint64_t span = 6 * kBlock;
        std::vector<std::pair<uint64_t, uint64_t>> written;  // [start, end) still above floor
        for (int step = 0; step < 400; ++step) {
            if (rng.chance(0.6)) {
                const uint64_t start = floor + rng.uniform(span);
                const size_t n = static_cast<size_t>(rng.uniform(3 * kBlock));
                buf.write(start, pattern(start, n));
                written.emplace_back(start, start + n);
            } else {
                floor += rng.uniform(kBlock * 2);
                buf.release_below(floor);
                for (auto& [s, e] : written) s = std::max(s, floor);
            }
            // Written bytes above the floor read back intact (all of them now and then, the
            // latest write every step, to keep the test fast).
            const size_t first = step % 50 == 0 || written.empty() ? 0 : written.size() - 1;
            for (size_t i = first; i < written.size(); ++i) {
                const auto [s, e] = written[i];
                if (s >= e) continue;
                Bytes out(e - s);
                buf.copy_out(s, out);
                REQUIRE(out == pattern(s, out.size()));
            }
            // Allocation never covers more than the blocks from the floor to the top.
            uint64_t top = floor;
            for (const auto& [s, e] : written) top = std::max(top, e);
            REQUIRE(buf.allocated_bytes() <=
                    ((top + kBlock - 1) / kBlock - floor / kBlock) * kBlock);
        }
    }
}
