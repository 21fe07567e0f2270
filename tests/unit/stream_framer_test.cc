#include <catch2/catch.hpp>

#include "tunnel/rng.h"
#include "tunnel/stream_framer.h"

using namespace burrow;

namespace {

Bytes datagram(size_t n, uint8_t seed) {
    Bytes d(n);
    for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(seed + i * 7);
    return d;
}

Bytes framed(const Bytes& d) { return *frame_for_tcp_path(d); }

StreamDeframer tcp_path_deframer() {
    return StreamDeframer(kTcpPathLengthSize, 1, kMaxTcpPathFrame);
}

std::vector<Bytes> drain(StreamDeframer& f) {
    std::vector<Bytes> out;
    while (auto frame = f.next()) out.emplace_back(frame->begin(), frame->end());
    return out;
}

}  // namespace

TEST_CASE("stream framer puts a 2-byte big-endian length in front of a TCP path datagram") {
    const Bytes d = datagram(300, 1);
    const Bytes f = framed(d);
    REQUIRE(f.size() == 302);
    CHECK(f[0] == 0x01);
    CHECK(f[1] == 0x2c);
    CHECK(Bytes(f.begin() + 2, f.end()) == d);
    CHECK_FALSE(frame_for_tcp_path(Bytes{}));
    CHECK_FALSE(frame_for_tcp_path(datagram(kMaxTcpPathFrame + 1, 0)));
    CHECK(frame_for_tcp_path(datagram(kMaxTcpPathFrame, 0)));
}

TEST_CASE("stream framer returns coalesced datagrams one by one") {
    std::vector<Bytes> sent = {datagram(1, 1), datagram(1350, 2), datagram(60, 3)};
    Bytes stream;
    for (const auto& d : sent) {
        const Bytes f = framed(d);
        stream.insert(stream.end(), f.begin(), f.end());
    }
    auto deframer = tcp_path_deframer();
    deframer.feed(stream);
    CHECK(drain(deframer) == sent);
    CHECK(deframer.buffered() == 0);
    CHECK_FALSE(deframer.error());
    CHECK_FALSE(deframer.finish());
}

TEST_CASE("stream framer reassembles datagrams split at every byte boundary") {
    std::vector<Bytes> sent = {datagram(5, 1), datagram(700, 2), datagram(2, 3)};
    Bytes stream;
    for (const auto& d : sent) {
        const Bytes f = framed(d);
        stream.insert(stream.end(), f.begin(), f.end());
    }
    // One byte at a time, then pieces of random sizes.
    auto bytewise = tcp_path_deframer();
    std::vector<Bytes> got;
    for (uint8_t b : stream) {
        bytewise.feed(ByteView(&b, 1));
        for (auto& d : drain(bytewise)) got.push_back(std::move(d));
    }
    CHECK(got == sent);

    for (uint64_t seed = 1; seed <= 50; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        auto f = tcp_path_deframer();
        std::vector<Bytes> pieces_got;
        size_t at = 0;
        while (at < stream.size()) {
            const size_t n = std::min<size_t>(stream.size() - at, 1 + rng.uniform(400));
            f.feed(ByteView(stream).subspan(at, n));
            at += n;
            for (auto& d : drain(f)) pieces_got.push_back(std::move(d));
        }
        CHECK(pieces_got == sent);
    }
}

TEST_CASE("stream framer refuses a length past the limit before buffering its body") {
    auto f = tcp_path_deframer();
    const Bytes ok = framed(datagram(10, 1));
    f.feed(ok);
    const uint8_t too_long[] = {0x10, 0x01};  // 4097 > kMaxTcpPathFrame
    f.feed(too_long);
    REQUIRE(f.next());  // the good datagram before it still comes out
    CHECK_FALSE(f.next());
    CHECK(f.error() == DeframeError::kOversized);
    CHECK(f.buffered() == 0);
    // Failed for good: nothing more is read, nothing buffered.
    f.feed(ok);
    CHECK_FALSE(f.next());
    CHECK(f.buffered() == 0);
    CHECK(f.finish() == DeframeError::kOversized);
}

TEST_CASE("stream framer refuses an empty datagram on a TCP path") {
    auto f = tcp_path_deframer();
    const uint8_t empty[] = {0, 0, 0xaa};
    f.feed(empty);
    CHECK_FALSE(f.next());
    CHECK(f.error() == DeframeError::kOversized);
}

TEST_CASE("stream framer reports a stream that ends inside a datagram") {
    SECTION("inside the length") {
        auto f = tcp_path_deframer();
        const uint8_t half[] = {0x00};
        f.feed(half);
        CHECK_FALSE(f.next());
        CHECK(f.finish() == DeframeError::kTruncated);
        CHECK(f.error() == DeframeError::kTruncated);
    }
    SECTION("inside the body") {
        auto f = tcp_path_deframer();
        Bytes part = framed(datagram(100, 1));
        part.resize(50);
        f.feed(part);
        CHECK_FALSE(f.next());
        CHECK(f.finish() == DeframeError::kTruncated);
        CHECK(f.buffered() == 0);
    }
    SECTION("between datagrams: a clean end") {
        auto f = tcp_path_deframer();
        f.feed(framed(datagram(100, 1)));
        CHECK(f.next());
        CHECK_FALSE(f.finish());
        CHECK_FALSE(f.error());
    }
}

TEST_CASE("stream framer hands out frames that can be changed in place") {
    auto f = tcp_path_deframer();
    f.feed(framed(datagram(4, 9)));
    auto frame = f.next();
    REQUIRE(frame);
    (*frame)[0] ^= 0xff;  // a session opens its packets in place
    CHECK(frame->size() == 4);
}

TEST_CASE("stream framer with a 4-byte length keeps memory bounded over many frames") {
    StreamDeframer f(4, 2, 64 * 1024);
    Bytes one(4 + 100);
    write_frame_length(4, 100, one);
    CHECK(one[0] == 0);
    CHECK(one[3] == 100);
    for (int i = 0; i < 1000; ++i) {
        // Frames arrive 1.5 at a time, so the buffer always holds a partial one.
        f.feed(ByteView(one).subspan(0, 52));
        (void)drain(f);
        f.feed(ByteView(one).subspan(52));
        (void)drain(f);
        CHECK(f.buffered() < 2 * one.size());
    }
    CHECK_FALSE(f.error());
}
