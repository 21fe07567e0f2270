#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <set>
#include <sstream>

#include "tunnel/frame.h"
#include "tunnel/rng.h"
#include "tunnel/wire.h"

using namespace burrow;

namespace {

// Readable failure messages: Catch2 cannot print a std::variant on its own.
std::string describe(const Frame& f) {
    std::ostringstream os;
    std::visit(
        [&os](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, PaddingFrame>) {
                os << "PADDING(" << x.length << ")";
            } else if constexpr (std::is_same_v<T, PingFrame>) {
                os << "PING";
            } else if constexpr (std::is_same_v<T, AckFrame>) {
                os << "ACK(delay " << x.ack_delay_us;
                for (const auto& r : x.ranges) os << " [" << r.smallest << "," << r.largest << "]";
                os << ")";
            } else if constexpr (std::is_same_v<T, StreamFrame>) {
                os << "STREAM(id " << x.id << " off " << x.offset << " len " << x.data.size()
                   << (x.fin ? " FIN)" : ")");
            } else if constexpr (std::is_same_v<T, StreamOpenFrame>) {
                os << "STREAM_OPEN(id " << x.id << " '" << x.service << "')";
            } else if constexpr (std::is_same_v<T, ResetStreamFrame>) {
                os << "RESET_STREAM(id " << x.id << " reason " << static_cast<uint64_t>(x.reason)
                   << " final " << x.final_size << ")";
            } else if constexpr (std::is_same_v<T, MaxDataFrame>) {
                os << "MAX_DATA(" << x.maximum << ")";
            } else if constexpr (std::is_same_v<T, MaxStreamDataFrame>) {
                os << "MAX_STREAM_DATA(id " << x.id << " " << x.maximum << ")";
            } else if constexpr (std::is_same_v<T, MaxStreamsFrame>) {
                os << "MAX_STREAMS(" << x.maximum << ")";
            } else if constexpr (std::is_same_v<T, PathChallengeFrame>) {
                os << "PATH_CHALLENGE";
            } else if constexpr (std::is_same_v<T, PathResponseFrame>) {
                os << "PATH_RESPONSE";
            } else if constexpr (std::is_same_v<T, CloseFrame>) {
                os << "CLOSE(" << x.error_code << " '" << x.reason << "')";
            }
        },
        f);
    return os.str();
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<Frame> {
    static std::string convert(const Frame& f) { return describe(f); }
};
}  // namespace Catch

namespace {

constexpr uint64_t kBoundaries[] = {
    0, 1, 63, 64, 16383, 16384, (1u << 30) - 1, uint64_t{1} << 30, kVarintMax};

Bytes encode_all(const std::vector<Frame>& frames) {
    Bytes out;
    for (const Frame& f : frames) encode_frame(f, out);
    return out;
}

std::vector<Frame> decode_ok(ByteView plaintext) {
    auto frames = decode_frames(plaintext);
    REQUIRE(frames.has_value());
    return *frames;
}

void check_round_trip(const Frame& f) {
    INFO(describe(f));
    Bytes buf;
    encode_frame(f, buf);
    CHECK(buf.size() == encoded_size(f));
    auto decoded = decode_frames(buf);
    REQUIRE(decoded.has_value());
    REQUIRE(decoded->size() == 1);
    CHECK((*decoded)[0] == f);
}

// Random frames for property tests. Stream data lives in `storage` so the views stay valid
// while the frames are in use.
class FrameGenerator {
  public:
    explicit FrameGenerator(Rng& rng) : rng_(rng) {}

    // A value whose varint length is 1, 2, 4 or 8 bytes with equal chance; boundaries often.
    uint64_t varint_value(uint64_t max = kVarintMax) {
        if (rng_.chance(0.2)) {
            const uint64_t v = kBoundaries[rng_.uniform(std::size(kBoundaries))];
            return std::min(v, max);
        }
        static constexpr int kBits[] = {6, 14, 30, 62};
        const uint64_t limit = (uint64_t{1} << kBits[rng_.uniform(4)]) - 1;
        return rng_.uniform(std::min(limit, max) + 1);
    }

    std::string text(size_t max_len) {
        std::string s(rng_.uniform(max_len + 1), '\0');
        for (char& c : s) c = static_cast<char>(rng_.uniform(256));
        return s;
    }

    AckFrame ack() {
        AckFrame f;
        f.ack_delay_us = varint_value();
        const size_t count = 1 + rng_.uniform(rng_.chance(0.1) ? 300 : 8);
        // Build ascending from a random floor, then reverse. Gaps and lengths are kept below
        // 2^40 so even 300 ranges stay far from kVarintMax.
        constexpr uint64_t kStepMax = uint64_t{1} << 40;
        uint64_t next = rng_.chance(0.3) ? 0 : varint_value(kStepMax);
        for (size_t i = 0; i < count; ++i) {
            AckRange r;
            r.smallest = next;
            r.largest = next + varint_value(kStepMax);
            f.ranges.push_back(r);
            next = r.largest + 2 + varint_value(kStepMax);
        }
        std::reverse(f.ranges.begin(), f.ranges.end());
        return f;
    }

    StreamFrame stream() {
        const size_t len = rng_.chance(0.1) ? 16384 + rng_.uniform(100) : rng_.uniform(200);
        Bytes& data = storage_.emplace_back(len);
        rng_.fill(data);
        StreamFrame f;
        f.id = varint_value();
        f.offset = varint_value(kVarintMax - len);
        f.data = data;
        f.fin = rng_.chance(0.5);
        return f;
    }

    DatagramFrame datagram() {
        Bytes& data = storage_.emplace_back(rng_.uniform(1300));
        rng_.fill(data);
        return DatagramFrame{varint_value(), data};
    }

    Frame frame() {
        switch (rng_.uniform(15)) {
            case 0:
                return PaddingFrame{1 + rng_.uniform(rng_.chance(0.5) ? 4 : 1500)};
            case 1:
                return PingFrame{};
            case 2:
                return ack();
            case 3:
                return stream();
            case 4:
                return StreamOpenFrame{varint_value(), text(kMaxServiceNameLen)};
            case 5:
                return ResetStreamFrame{varint_value(), static_cast<ResetReason>(varint_value()),
                                        varint_value()};
            case 6:
                return MaxDataFrame{varint_value()};
            case 7:
                return MaxStreamDataFrame{varint_value(), varint_value()};
            case 8:
                return MaxStreamsFrame{varint_value()};
            case 9: {
                PathChallengeFrame f;
                rng_.fill(f.data);
                return f;
            }
            case 10: {
                PathResponseFrame f;
                rng_.fill(f.data);
                return f;
            }
            case 11:
                return datagram();
            case 12:
                return FlowOpenFrame{varint_value(), text(kMaxServiceNameLen)};
            case 13:
                return FlowCloseFrame{varint_value()};
            default:
                return CloseFrame{varint_value(), text(kMaxCloseReasonLen)};
        }
    }

    // A packet's worth of frames. Two PADDING frames are never adjacent: on the wire they are
    // one run and decode as one frame.
    std::vector<Frame> frames(size_t max_count) {
        std::vector<Frame> out;
        const size_t n = 1 + rng_.uniform(max_count);
        while (out.size() < n) {
            Frame f = frame();
            if (std::holds_alternative<PaddingFrame>(f) && !out.empty() &&
                std::holds_alternative<PaddingFrame>(out.back())) {
                continue;
            }
            out.push_back(std::move(f));
        }
        return out;
    }

  private:
    Rng& rng_;
    std::deque<Bytes> storage_;
};

}  // namespace

TEST_CASE("the wire layout matches frame.h byte for byte") {
    const uint8_t payload[] = {'h', 'i'};
    Bytes buf;
    encode_frame(StreamFrame{5, 64, payload, true}, buf);
    CHECK(buf == Bytes{0x09, 0x05, 0x40, 0x40, 0x02, 'h', 'i'});

    buf.clear();
    encode_frame(StreamFrame{5, 0, {}, false}, buf);
    CHECK(buf == Bytes{0x08, 0x05, 0x00, 0x00});

    // Acked: 100..98 and 94..94. Second range: gap = 98 - 94 - 2 = 2, range_len = 0.
    buf.clear();
    encode_frame(AckFrame{{{98, 100}, {94, 94}}, 25}, buf);
    CHECK(buf == Bytes{0x02, 0x40, 100, 25, 1, 2, 2, 0});  // 100 takes a 2-byte varint

    buf.clear();
    encode_frame(StreamOpenFrame{3, "web"}, buf);
    CHECK(buf == Bytes{0x10, 0x03, 0x03, 'w', 'e', 'b'});

    buf.clear();
    encode_frame(ResetStreamFrame{7, ResetReason::kRefused, 300}, buf);
    CHECK(buf == Bytes{0x11, 0x07, 0x01, 0x41, 0x2c});

    buf.clear();
    encode_frame(MaxDataFrame{1}, buf);
    encode_frame(MaxStreamDataFrame{2, 3}, buf);
    encode_frame(MaxStreamsFrame{4}, buf);
    encode_frame(PingFrame{}, buf);
    encode_frame(PaddingFrame{3}, buf);
    CHECK(buf == Bytes{0x12, 1, 0x13, 2, 3, 0x14, 4, 0x01, 0, 0, 0});

    buf.clear();
    encode_frame(PathChallengeFrame{{1, 2, 3, 4, 5, 6, 7, 8}}, buf);
    encode_frame(PathResponseFrame{{8, 7, 6, 5, 4, 3, 2, 1}}, buf);
    CHECK(buf == Bytes{0x1a, 1, 2, 3, 4, 5, 6, 7, 8, 0x1b, 8, 7, 6, 5, 4, 3, 2, 1});

    buf.clear();
    encode_frame(CloseFrame{9, "bye"}, buf);
    CHECK(buf == Bytes{0x1c, 0x09, 0x03, 'b', 'y', 'e'});

    buf.clear();
    encode_frame(DatagramFrame{6, payload}, buf);
    encode_frame(FlowOpenFrame{4, "dns"}, buf);
    encode_frame(FlowCloseFrame{70}, buf);
    CHECK(buf == Bytes{0x30, 0x06, 0x02, 'h', 'i', 0x31, 0x04, 0x03, 'd', 'n', 's', 0x32, 0x40,
                       70});
    CHECK(datagram_frame_overhead(6, 2) == 3);
    CHECK(datagram_frame_overhead(kVarintMax, 1300) == 1 + 8 + 2);
}

TEST_CASE("datagram and flow frames round-trip, and datagrams view the plaintext") {
    for (uint64_t v : kBoundaries) {
        INFO("value " << v);
        check_round_trip(FlowOpenFrame{v, "dns"});
        check_round_trip(FlowOpenFrame{v, std::string(kMaxServiceNameLen, 'g')});
        check_round_trip(FlowCloseFrame{v});
        check_round_trip(DatagramFrame{v, {}});
        const Bytes data(1300, 0x5a);
        check_round_trip(DatagramFrame{v, data});
    }
    Bytes data(1200);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
    Bytes buf;
    encode_frame(DatagramFrame{9, data}, buf);
    encode_frame(PingFrame{}, buf);
    const auto frames = decode_frames(buf);
    REQUIRE(frames.has_value());
    REQUIRE(frames->size() == 2);
    const auto& d = std::get<DatagramFrame>((*frames)[0]);
    CHECK(d.flow == 9);
    CHECK(d.data.data() == buf.data() + 4);  // 0x30, flow, a 2-byte length: no copy
    CHECK(Bytes(d.data.begin(), d.data.end()) == data);
    CHECK(is_ack_eliciting(d));
    CHECK(is_ack_eliciting(FlowOpenFrame{}));
    CHECK(is_ack_eliciting(FlowCloseFrame{}));
}

TEST_CASE("every frame type round-trips at varint boundaries") {
    for (uint64_t v : kBoundaries) {
        INFO("value " << v);
        check_round_trip(PingFrame{});
        check_round_trip(MaxDataFrame{v});
        check_round_trip(MaxStreamsFrame{v});
        check_round_trip(MaxStreamDataFrame{v, kVarintMax - v});
        check_round_trip(ResetStreamFrame{v, static_cast<ResetReason>(v), v});
        check_round_trip(StreamOpenFrame{v, "ssh"});
        check_round_trip(CloseFrame{v, ""});
        check_round_trip(StreamFrame{v, v, {}, true});
        check_round_trip(StreamFrame{v, v, {}, false});
        check_round_trip(AckFrame{{{0, v}}, v});
        check_round_trip(AckFrame{{{v, v}}, 0});
        if (v >= 2) check_round_trip(AckFrame{{{v, v}, {0, v - 2}}, 0});
        if (v > 0 && v < 1'000'000) {
            check_round_trip(PaddingFrame{static_cast<size_t>(v)});
            const Bytes data(static_cast<size_t>(v), 0xab);
            check_round_trip(StreamFrame{1, 0, data, false});
            check_round_trip(StreamFrame{v, kVarintMax - v, data, true});
        }
    }
    PathChallengeFrame challenge{{0, 0xff, 1, 0xfe, 2, 0xfd, 3, 0xfc}};
    check_round_trip(challenge);
    check_round_trip(PathResponseFrame{challenge.data});
}

TEST_CASE("stream frames view the decoded plaintext") {
    Bytes data(16384);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
    Bytes buf;
    encode_frame(StreamFrame{4, 1000, data, false}, buf);
    CHECK(buf.size() == stream_frame_overhead(4, 1000, data.size()) + data.size());
    CHECK(stream_frame_overhead(4, 1000, data.size()) == 1 + 1 + 2 + 4);
    auto frames = decode_ok(buf);
    REQUIRE(frames.size() == 1);
    const auto& s = std::get<StreamFrame>(frames[0]);
    CHECK(s.data.data() == buf.data() + (buf.size() - data.size()));
    CHECK(std::equal(s.data.begin(), s.data.end(), data.begin(), data.end()));
}

TEST_CASE("empty stream data with FIN round-trips") {
    const Frame f = StreamFrame{8, 123456, {}, true};
    check_round_trip(f);
    Bytes buf;
    encode_frame(f, buf);
    const auto s = std::get<StreamFrame>(decode_ok(buf)[0]);
    CHECK(s.fin);
    CHECK(s.data.empty());
    CHECK(s.offset == 123456);
}

TEST_CASE("acks round-trip with one and many ranges") {
    check_round_trip(AckFrame{{{0, 0}}, 0});
    check_round_trip(AckFrame{{{0, kVarintMax}}, kVarintMax});
    // Tightest packing: one unacked packet between ranges (gap 0).
    AckFrame many;
    for (uint64_t top = 3 * 1000; top >= 3; top -= 3) many.ranges.push_back({top - 1, top});
    many.ack_delay_us = 1234;
    check_round_trip(many);
    // Ranges reaching both ends of the number space.
    check_round_trip(AckFrame{{{kVarintMax, kVarintMax}, {5, kVarintMax - 2}, {0, 3}}, 7});
}

TEST_CASE("service names and close reasons at their maximum length round-trip") {
    check_round_trip(StreamOpenFrame{1, std::string(kMaxServiceNameLen, 's')});
    check_round_trip(CloseFrame{1, std::string(kMaxCloseReasonLen, 'r')});
    check_round_trip(StreamOpenFrame{1, ""});
    std::string binary;
    for (int i = 0; i < 64; ++i) binary.push_back(static_cast<char>(i * 4));
    check_round_trip(StreamOpenFrame{2, binary});
}

TEST_CASE("reset reasons we do not know are kept, not rejected") {
    const Bytes wire = {0x11, 0x01, 0x43, 0xe7, 0x00};  // reason 999
    const auto frames = decode_ok(wire);
    REQUIRE(frames.size() == 1);
    const auto& reset = std::get<ResetStreamFrame>(frames[0]);
    CHECK(static_cast<uint64_t>(reset.reason) == 999);
    Bytes again;
    encode_frame(reset, again);
    CHECK(again == wire);
}

TEST_CASE("a run of padding decodes as one frame") {
    const Bytes wire = {0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x05, 0x00, 0x00};
    const auto frames = decode_ok(wire);
    const std::vector<Frame> expected = {PaddingFrame{3}, PingFrame{}, PaddingFrame{1},
                                         MaxDataFrame{5}, PaddingFrame{2}};
    CHECK(frames == expected);
    CHECK(encode_all(frames) == wire);
}

TEST_CASE("non-minimal varints are accepted") {
    // RFC 9000 §16 allows any length; a peer might pad a value to a fixed size.
    const Bytes wire = {0x12, 0xc0, 0, 0, 0, 0, 0, 0, 0x05};
    const auto frames = decode_ok(wire);
    REQUIRE(frames.size() == 1);
    CHECK(std::get<MaxDataFrame>(frames[0]).maximum == 5);
}

TEST_CASE("an empty plaintext decodes to no frames") {
    const auto frames = decode_frames({});
    REQUIRE(frames.has_value());
    CHECK(frames->empty());
}

TEST_CASE("several frames in one plaintext decode in order") {
    const uint8_t payload[] = {1, 2, 3};
    const std::vector<Frame> frames = {
        AckFrame{{{10, 20}, {2, 5}}, 99},
        StreamOpenFrame{4, "web"},
        StreamFrame{4, 0, payload, false},
        PaddingFrame{7},
        MaxStreamDataFrame{4, 1 << 20},
        StreamFrame{4, 3, {}, true},
        PingFrame{},
        ResetStreamFrame{6, ResetReason::kUnreachable, 0},
        CloseFrame{0, "done"},
    };
    CHECK(decode_ok(encode_all(frames)) == frames);
}

TEST_CASE("random frame sequences round-trip and their sizes are exact") {
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        FrameGenerator gen(rng);
        const auto frames = gen.frames(12);
        Bytes buf;
        for (const Frame& f : frames) {
            INFO(describe(f));
            const size_t before = buf.size();
            encode_frame(f, buf);
            REQUIRE(buf.size() - before == encoded_size(f));
        }
        REQUIRE(decode_ok(buf) == frames);
    }
}

TEST_CASE("a strict prefix decodes only to whole frames") {
    // Cut exactly between frames: the frames before the cut. Cut inside a padding run: that run
    // shortened (padding has no length field to contradict). Cut anywhere else: rejected, since
    // a truncated frame must never be acted on.
    for (uint64_t seed = 1; seed <= 300; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        FrameGenerator gen(rng);
        const auto frames = gen.frames(6);
        const Bytes buf = encode_all(frames);
        size_t frame_start = 0;
        size_t index = 0;
        for (size_t cut = 0; cut < buf.size(); ++cut) {
            while (frame_start + encoded_size(frames[index]) <= cut) {
                frame_start += encoded_size(frames[index]);
                ++index;
            }
            INFO("cut " << cut << " inside frame " << index << " starting at " << frame_start);
            const auto decoded = decode_frames(ByteView(buf).first(cut));
            std::vector<Frame> expected(frames.begin(), frames.begin() + index);
            if (cut == frame_start) {
                REQUIRE(decoded.has_value());
                CHECK(*decoded == expected);
            } else if (std::holds_alternative<PaddingFrame>(frames[index])) {
                expected.push_back(PaddingFrame{cut - frame_start});
                REQUIRE(decoded.has_value());
                CHECK(*decoded == expected);
            } else {
                CHECK_FALSE(decoded.has_value());
            }
        }
    }
}

namespace {

// Whatever decodes must re-encode to something that decodes to the same frames.
void check_decode_is_stable(ByteView input) {
    const auto frames = decode_frames(input);
    if (!frames) return;
    const Bytes again = encode_all(*frames);
    const auto reparsed = decode_frames(again);
    REQUIRE(reparsed.has_value());
    CHECK(*reparsed == *frames);
    // Encoding normalises varints, so it never grows the plaintext.
    CHECK(again.size() <= input.size());
}

}  // namespace

TEST_CASE("random bytes never crash the decoder") {
    size_t accepted = 0;
    for (uint64_t seed = 1; seed <= 5000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        Bytes buf(rng.uniform(80));
        rng.fill(buf);
        // Bias the first byte to a known type half the time, or nearly everything is rejected
        // at the first byte.
        static constexpr uint8_t kTypes[] = {0x00, 0x01, 0x02, 0x08, 0x09, 0x10, 0x11,
                                             0x12, 0x13, 0x14, 0x1a, 0x1b, 0x1c};
        if (!buf.empty() && rng.chance(0.5)) buf[0] = kTypes[rng.uniform(std::size(kTypes))];
        if (decode_frames(buf)) ++accepted;
        check_decode_is_stable(buf);
    }
    CHECK(accepted > 0);
}

TEST_CASE("mutated valid plaintexts never crash the decoder") {
    size_t accepted = 0;
    size_t rejected = 0;
    for (uint64_t seed = 1; seed <= 5000; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        FrameGenerator gen(rng);
        Bytes buf = encode_all(gen.frames(5));
        const size_t mutations = 1 + rng.uniform(3);
        for (size_t i = 0; i < mutations && !buf.empty(); ++i) {
            const size_t at = rng.uniform(buf.size());
            switch (rng.uniform(3)) {
                case 0:
                    buf[at] = static_cast<uint8_t>(rng.next_u64());
                    break;
                case 1:
                    buf[at] ^= static_cast<uint8_t>(1u << rng.uniform(8));
                    break;
                default:
                    buf.erase(buf.begin() + static_cast<std::ptrdiff_t>(at));
                    break;
            }
        }
        if (decode_frames(buf)) {
            ++accepted;
        } else {
            ++rejected;
        }
        check_decode_is_stable(buf);
    }
    CHECK(accepted > 0);
    CHECK(rejected > 0);
}

TEST_CASE("malformed plaintexts are rejected whole") {
    SECTION("unknown frame types") {
        const std::set<uint8_t> known = {0x00, 0x01, 0x02, 0x08, 0x09, 0x10, 0x11, 0x12,
                                         0x13, 0x14, 0x1a, 0x1b, 0x1c, 0x30, 0x31, 0x32};
        for (int t = 0; t < 256; ++t) {
            if (known.count(static_cast<uint8_t>(t))) continue;
            INFO("type " << t);
            Bytes buf(16, 0);
            buf[0] = static_cast<uint8_t>(t);
            CHECK_FALSE(decode_frames(buf).has_value());
        }
        // A good frame before the unknown one does not survive.
        CHECK_FALSE(decode_frames(Bytes{0x01, 0x12, 0x05, 0x0a, 0x00}).has_value());
    }
    SECTION("ack first range below zero") {
        CHECK(decode_frames(Bytes{0x02, 5, 0, 0, 5}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x02, 5, 0, 0, 6}).has_value());
    }
    SECTION("ack gap or range below zero") {
        // First range [10, 10]; a gap of 8 puts the next range's top at 0.
        CHECK(decode_frames(Bytes{0x02, 10, 0, 1, 0, 8, 0}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x02, 10, 0, 1, 0, 9, 0}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x02, 10, 0, 1, 0, 8, 1}).has_value());
        // Huge values do not wrap around.
        CHECK_FALSE(decode_frames(
                        Bytes{0x02, 10, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0})
                        .has_value());
    }
    SECTION("ack range count beyond what the packet holds") {
        // range_count = 2^62 - 1 with two bytes of ranges: rejected without reserving memory.
        CHECK_FALSE(decode_frames(
                        Bytes{0x02, 50, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1, 1})
                        .has_value());
        // One range short.
        CHECK_FALSE(decode_frames(Bytes{0x02, 50, 0, 2, 0, 1, 1}).has_value());
        CHECK(decode_frames(Bytes{0x02, 50, 0, 2, 0, 1, 1, 1, 1}).has_value());
    }
    SECTION("stream offset plus length past 2^62 - 1") {
        const Bytes max = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        Bytes ok = {0x09, 0x01};
        ok.insert(ok.end(), max.begin(), max.end());
        ok.push_back(0);
        CHECK(decode_frames(ok).has_value());
        Bytes bad = {0x08, 0x01};
        bad.insert(bad.end(), max.begin(), max.end());
        bad.push_back(1);
        bad.push_back('x');
        CHECK_FALSE(decode_frames(bad).has_value());
    }
    SECTION("stream length past the end") {
        CHECK_FALSE(decode_frames(Bytes{0x08, 1, 0, 3, 'a', 'b'}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x08, 1, 0, 0xbf, 0xff, 0xff, 0xff, 'a'}).has_value());
    }
    SECTION("service name too long") {
        Bytes buf = {0x10, 0x01, static_cast<uint8_t>(kMaxServiceNameLen + 1)};
        buf.resize(buf.size() + kMaxServiceNameLen + 1, 'a');
        CHECK_FALSE(decode_frames(buf).has_value());
    }
    SECTION("close reason too long") {
        const uint16_t len = kMaxCloseReasonLen + 1;
        Bytes buf = {0x1c, 0x00, static_cast<uint8_t>(0x40 | (len >> 8)),
                     static_cast<uint8_t>(len & 0xff)};
        buf.resize(buf.size() + len, 'r');
        CHECK_FALSE(decode_frames(buf).has_value());
    }
    SECTION("datagram length past the end, flow names too long, truncated flow frames") {
        CHECK(decode_frames(Bytes{0x30, 1, 2, 'a', 'b'}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x30, 1, 3, 'a', 'b'}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x30, 1, 0xbf, 0xff, 0xff, 0xff, 'a'}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x30, 1}).has_value());
        Bytes name = {0x31, 0x01, static_cast<uint8_t>(kMaxServiceNameLen + 1)};
        name.resize(name.size() + kMaxServiceNameLen + 1, 'a');
        CHECK_FALSE(decode_frames(name).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x31, 0x01, 0x03, 'd', 'n'}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x32}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x32, 0x40}).has_value());
    }
    SECTION("truncated fixed-size and varint fields") {
        CHECK_FALSE(decode_frames(Bytes{0x1a, 1, 2, 3, 4, 5, 6, 7}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x1b}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x12, 0x80, 0, 0}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x13, 0x01}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x11, 0x01, 0x00}).has_value());
        CHECK_FALSE(decode_frames(Bytes{0x14}).has_value());
    }
}

TEST_CASE("ack-eliciting frames are all but ACK, PADDING and CLOSE") {
    CHECK_FALSE(is_ack_eliciting(PaddingFrame{}));
    CHECK_FALSE(is_ack_eliciting(AckFrame{{{0, 0}}, 0}));
    CHECK_FALSE(is_ack_eliciting(CloseFrame{}));
    CHECK(is_ack_eliciting(PingFrame{}));
    CHECK(is_ack_eliciting(StreamFrame{}));
    CHECK(is_ack_eliciting(StreamOpenFrame{}));
    CHECK(is_ack_eliciting(ResetStreamFrame{}));
    CHECK(is_ack_eliciting(MaxDataFrame{}));
    CHECK(is_ack_eliciting(MaxStreamDataFrame{}));
    CHECK(is_ack_eliciting(MaxStreamsFrame{}));
    CHECK(is_ack_eliciting(PathChallengeFrame{}));
    CHECK(is_ack_eliciting(PathResponseFrame{}));
}
