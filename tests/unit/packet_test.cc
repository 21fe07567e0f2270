#include <catch2/catch.hpp>

#include "tunnel/packet.h"
#include "tunnel/rng.h"

using namespace burrow;

TEST_CASE("packet header layout is type, index, counter in network order") {
    Bytes buf;
    write_packet_header({kPacketTypeData, 0x01020304, 0x05060708090a0b0cULL}, buf);
    CHECK(buf == Bytes{0x04, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    CHECK(buf.size() == kPacketHeaderSize);
}

TEST_CASE("packet header round-trips") {
    for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        PacketHeader h;
        h.receiver_index = static_cast<uint32_t>(rng.next_u64());
        h.counter = rng.next_u64();
        Bytes buf;
        write_packet_header(h, buf);
        Bytes trailing(rng.uniform(40));
        rng.fill(trailing);
        buf.insert(buf.end(), trailing.begin(), trailing.end());
        auto back = read_packet_header(buf);
        REQUIRE(back.has_value());
        CHECK(back->type == kPacketTypeData);
        CHECK(back->receiver_index == h.receiver_index);
        CHECK(back->counter == h.counter);
    }
}

TEST_CASE("datagrams shorter than a header are rejected") {
    Bytes buf;
    write_packet_header({kPacketTypeData, 7, 9}, buf);
    for (size_t n = 0; n < kPacketHeaderSize; ++n) {
        INFO("length " << n);
        CHECK_FALSE(read_packet_header(ByteView(buf).first(n)).has_value());
    }
    CHECK(read_packet_header(buf).has_value());
}

TEST_CASE("packet types other than data are rejected") {
    for (int t = 0; t < 256; ++t) {
        if (t == kPacketTypeData) continue;
        INFO("type " << t);
        Bytes buf;
        write_packet_header({static_cast<uint8_t>(t), 7, 9}, buf);
        buf.push_back(0x01);
        CHECK_FALSE(read_packet_header(buf).has_value());
    }
}

TEST_CASE("null protection seals and opens") {
    NullProtection sender(42);
    NullProtection receiver(42);
    CHECK(sender.overhead() == kPacketHeaderSize);
    const Bytes plaintext = {0x01, 0x12, 0x05, 0x00, 0x00};
    Bytes datagram = {0xee};  // seal appends, it does not overwrite
    REQUIRE(sender.seal(1000, plaintext, datagram));
    CHECK(datagram.size() == 1 + plaintext.size() + sender.overhead());
    const ByteView sealed = ByteView(datagram).subspan(1);

    auto pn = receiver.packet_number(sealed);
    REQUIRE(pn.has_value());
    CHECK(*pn == 1000);
    auto opened = receiver.open(*pn, sealed);
    REQUIRE(opened.has_value());
    CHECK(*opened == plaintext);
}

TEST_CASE("null protection opens an empty plaintext") {
    NullProtection p(1);
    Bytes datagram;
    REQUIRE(p.seal(0, {}, datagram));
    auto opened = p.open(0, datagram);
    REQUIRE(opened.has_value());
    CHECK(opened->empty());
}

TEST_CASE("null protection rejects what is not addressed to it") {
    NullProtection sender(42);
    NullProtection other(43);
    const Bytes plaintext = {0x01};
    Bytes datagram;
    REQUIRE(sender.seal(5, plaintext, datagram));

    SECTION("wrong receiver index") {
        CHECK_FALSE(other.packet_number(datagram).has_value());
        CHECK_FALSE(other.open(5, datagram).has_value());
    }
    SECTION("packet number that does not match the header") {
        CHECK_FALSE(sender.open(4, datagram).has_value());
        CHECK_FALSE(sender.open(6, datagram).has_value());
    }
    SECTION("wrong type") {
        datagram[0] = kPacketTypeData + 1;
        CHECK_FALSE(sender.packet_number(datagram).has_value());
        CHECK_FALSE(sender.open(5, datagram).has_value());
    }
    SECTION("truncated header") {
        const ByteView short_dgram = ByteView(datagram).first(kPacketHeaderSize - 1);
        CHECK_FALSE(sender.packet_number(short_dgram).has_value());
        CHECK_FALSE(sender.open(5, short_dgram).has_value());
    }
}
