#include <catch2/catch.hpp>

#include "tunnel/rng.h"
#include "tunnel/wire.h"

using namespace burrow;

TEST_CASE("varint round-trips at every length boundary") {
    const uint64_t values[] = {0, 1, 63, 64, 16383, 16384, (1u << 30) - 1, 1u << 30, kVarintMax};
    for (uint64_t v : values) {
        Bytes buf;
        ByteWriter w(buf);
        w.varint(v);
        REQUIRE(buf.size() == varint_size(v));
        ByteReader r(buf);
        CHECK(r.varint() == v);
        CHECK(r.ok());
        CHECK(r.empty());
    }
}

TEST_CASE("RFC 9000 appendix A.1 varint examples decode") {
    const Bytes eight = {0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c};
    CHECK(ByteReader(eight).varint() == 151288809941952652ULL);
    const Bytes four = {0x9d, 0x7f, 0x3e, 0x7d};
    CHECK(ByteReader(four).varint() == 494878333ULL);
    const Bytes two = {0x7b, 0xbd};
    CHECK(ByteReader(two).varint() == 15293);
    const Bytes one = {0x25};
    CHECK(ByteReader(one).varint() == 37);
}

TEST_CASE("reader fails on truncation and stays failed") {
    const Bytes two = {0x7b};
    ByteReader r(two);
    CHECK(r.varint() == 0);
    CHECK_FALSE(r.ok());
    CHECK(r.u8() == 0);
    CHECK_FALSE(r.ok());
    CHECK(r.remaining() == 0);
}

TEST_CASE("fixed-width integers are big-endian") {
    Bytes buf;
    ByteWriter w(buf);
    w.u16(0x0102);
    w.u32(0x03040506);
    w.u64(0x0708090a0b0c0d0eULL);
    REQUIRE(buf == Bytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
    ByteReader r(buf);
    CHECK(r.u16() == 0x0102);
    CHECK(r.u32() == 0x03040506u);
    CHECK(r.u64() == 0x0708090a0b0c0d0eULL);
    CHECK(r.empty());
}

TEST_CASE("seeded rng is deterministic and uniform() stays in range") {
    SeededRng a(42), b(42);
    for (int i = 0; i < 1000; ++i) {
        const uint64_t n = 1 + static_cast<uint64_t>(i);
        const uint64_t x = a.uniform(n);
        CHECK(x == b.uniform(n));
        CHECK(x < n);
    }
}
