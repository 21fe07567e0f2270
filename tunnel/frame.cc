#include "tunnel/frame.h"

#include <cassert>

#include "tunnel/wire.h"

namespace burrow {
namespace {

constexpr uint8_t kStreamFinBit = 0x01;  // frame.h: STREAM is 0x08|FIN
// The smallest encoding of one further ACK range: two one-byte varints (gap, range_len).
// Bounds range_count by what the packet can really hold before anything is allocated.
constexpr size_t kMinAckRangeBytes = 2;

constexpr uint8_t type_byte(FrameType t) {
    return static_cast<uint8_t>(t);
}

// Each further ACK range is encoded relative to the previous one's smallest (RFC 9000
// §19.3.1): `gap` counts the unacked packets between them minus one, `range_len` the acked
// ones minus one. Well-formed ranges are descending and non-adjacent, so both fit.
uint64_t ack_gap(const AckRange& prev, const AckRange& next) {
    assert(next.largest + 2 <= prev.smallest);
    return prev.smallest - next.largest - 2;
}

void check_ack(const AckFrame& f) {
    assert(!f.ranges.empty());
    assert(f.ack_delay_us <= kVarintMax);
    for (size_t i = 0; i < f.ranges.size(); ++i) {
        assert(f.ranges[i].smallest <= f.ranges[i].largest);
        assert(f.ranges[i].largest <= kVarintMax);
        assert(i == 0 || f.ranges[i].largest + 2 <= f.ranges[i - 1].smallest);
    }
    (void)f;
}

// --- sizes -----------------------------------------------------------------------------------

size_t size_of(const PaddingFrame& f) {
    return f.length;
}
size_t size_of(const PingFrame&) {
    return 1;
}
size_t size_of(const AckFrame& f) {
    check_ack(f);
    const AckRange& first = f.ranges.front();
    size_t n = 1 + varint_size(first.largest) + varint_size(f.ack_delay_us) +
               varint_size(f.ranges.size() - 1) + varint_size(first.largest - first.smallest);
    for (size_t i = 1; i < f.ranges.size(); ++i) {
        const AckRange& r = f.ranges[i];
        n += varint_size(ack_gap(f.ranges[i - 1], r)) + varint_size(r.largest - r.smallest);
    }
    return n;
}
size_t size_of(const StreamFrame& f) {
    return stream_frame_overhead(f.id, f.offset, f.data.size()) + f.data.size();
}
size_t size_of(const StreamOpenFrame& f) {
    return 1 + varint_size(f.id) + varint_size(f.service.size()) + f.service.size();
}
size_t size_of(const ResetStreamFrame& f) {
    return 1 + varint_size(f.id) + varint_size(static_cast<uint64_t>(f.reason)) +
           varint_size(f.final_size);
}
size_t size_of(const MaxDataFrame& f) {
    return 1 + varint_size(f.maximum);
}
size_t size_of(const MaxStreamDataFrame& f) {
    return 1 + varint_size(f.id) + varint_size(f.maximum);
}
size_t size_of(const MaxStreamsFrame& f) {
    return 1 + varint_size(f.maximum);
}
size_t size_of(const PathChallengeFrame&) {
    return 1 + kPathDataLen;
}
size_t size_of(const PathResponseFrame&) {
    return 1 + kPathDataLen;
}
size_t size_of(const CloseFrame& f) {
    return 1 + varint_size(f.error_code) + varint_size(f.reason.size()) + f.reason.size();
}

size_t size_of(const DatagramFrame& f) {
    return datagram_frame_overhead(f.flow, f.data.size()) + f.data.size();
}
size_t size_of(const FlowOpenFrame& f) {
    return 1 + varint_size(f.flow) + varint_size(f.service.size()) + f.service.size();
}
size_t size_of(const FlowCloseFrame& f) {
    return 1 + varint_size(f.flow);
}

// --- encoding --------------------------------------------------------------------------------

void encode(const PaddingFrame& f, ByteWriter& w) {
    assert(f.length >= 1);
    for (size_t i = 0; i < f.length; ++i) w.u8(type_byte(FrameType::kPadding));
}
void encode(const PingFrame&, ByteWriter& w) {
    w.u8(type_byte(FrameType::kPing));
}
void encode(const AckFrame& f, ByteWriter& w) {
    check_ack(f);
    const AckRange& first = f.ranges.front();
    w.u8(type_byte(FrameType::kAck));
    w.varint(first.largest);
    w.varint(f.ack_delay_us);
    w.varint(f.ranges.size() - 1);
    w.varint(first.largest - first.smallest);
    for (size_t i = 1; i < f.ranges.size(); ++i) {
        const AckRange& r = f.ranges[i];
        w.varint(ack_gap(f.ranges[i - 1], r));
        w.varint(r.largest - r.smallest);
    }
}
void encode(const StreamFrame& f, ByteWriter& w) {
    assert(f.offset <= kVarintMax && f.data.size() <= kVarintMax - f.offset);
    w.u8(type_byte(FrameType::kStream) | (f.fin ? kStreamFinBit : 0));
    w.varint(f.id);
    w.varint(f.offset);
    w.varint(f.data.size());
    w.bytes(f.data);
}
void encode(const StreamOpenFrame& f, ByteWriter& w) {
    assert(f.service.size() <= kMaxServiceNameLen);
    w.u8(type_byte(FrameType::kStreamOpen));
    w.varint(f.id);
    w.varint(f.service.size());
    w.bytes(as_bytes(f.service));
}
void encode(const ResetStreamFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kResetStream));
    w.varint(f.id);
    w.varint(static_cast<uint64_t>(f.reason));
    w.varint(f.final_size);
}
void encode(const MaxDataFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kMaxData));
    w.varint(f.maximum);
}
void encode(const MaxStreamDataFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kMaxStreamData));
    w.varint(f.id);
    w.varint(f.maximum);
}
void encode(const MaxStreamsFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kMaxStreams));
    w.varint(f.maximum);
}
void encode(const PathChallengeFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kPathChallenge));
    w.bytes(f.data);
}
void encode(const PathResponseFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kPathResponse));
    w.bytes(f.data);
}
void encode(const CloseFrame& f, ByteWriter& w) {
    assert(f.reason.size() <= kMaxCloseReasonLen);
    w.u8(type_byte(FrameType::kClose));
    w.varint(f.error_code);
    w.varint(f.reason.size());
    w.bytes(as_bytes(f.reason));
}

void encode(const DatagramFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kDatagram));
    w.varint(f.flow);
    w.varint(f.data.size());
    w.bytes(f.data);
}
void encode(const FlowOpenFrame& f, ByteWriter& w) {
    assert(f.service.size() <= kMaxServiceNameLen);
    w.u8(type_byte(FrameType::kFlowOpen));
    w.varint(f.flow);
    w.varint(f.service.size());
    w.bytes(as_bytes(f.service));
}
void encode(const FlowCloseFrame& f, ByteWriter& w) {
    w.u8(type_byte(FrameType::kFlowClose));
    w.varint(f.flow);
}

// --- decoding --------------------------------------------------------------------------------
// Each reader consumes one frame after its type byte. A malformed frame fails the reader;
// the caller checks ok() once per frame, so a returned value from a failed reader is ignored.

AckFrame read_ack(ByteReader& r) {
    AckFrame f;
    const uint64_t largest = r.varint();
    f.ack_delay_us = r.varint();
    const uint64_t range_count = r.varint();
    const uint64_t first_range = r.varint();
    if (!r.ok() || first_range > largest || range_count > r.remaining() / kMinAckRangeBytes) {
        r.fail();
        return f;
    }
    f.ranges.reserve(range_count + 1);
    f.ranges.push_back({largest - first_range, largest});
    for (uint64_t i = 0; i < range_count; ++i) {
        const uint64_t gap = r.varint();
        const uint64_t range_len = r.varint();
        const uint64_t prev_smallest = f.ranges.back().smallest;
        // gap + 2 cannot overflow: a varint is at most 2^62 - 1.
        if (!r.ok() || gap + 2 > prev_smallest || range_len > prev_smallest - gap - 2) {
            r.fail();
            return f;
        }
        const uint64_t next_largest = prev_smallest - gap - 2;
        f.ranges.push_back({next_largest - range_len, next_largest});
    }
    return f;
}

StreamFrame read_stream(ByteReader& r, bool fin) {
    StreamFrame f;
    f.fin = fin;
    f.id = r.varint();
    f.offset = r.varint();
    const uint64_t length = r.varint();
    if (!r.ok() || length > r.remaining() || length > kVarintMax - f.offset) {
        r.fail();
        return f;
    }
    f.data = r.bytes(static_cast<size_t>(length));
    return f;
}

// A length-prefixed string of at most `max_len` bytes.
std::string read_string(ByteReader& r, size_t max_len) {
    const uint64_t len = r.varint();
    if (!r.ok() || len > max_len) {
        r.fail();
        return {};
    }
    return std::string(as_chars(r.bytes(static_cast<size_t>(len))));
}

StreamOpenFrame read_stream_open(ByteReader& r) {
    StreamOpenFrame f;
    f.id = r.varint();
    f.service = read_string(r, kMaxServiceNameLen);
    return f;
}

ResetStreamFrame read_reset_stream(ByteReader& r) {
    ResetStreamFrame f;
    f.id = r.varint();
    // Kept raw: a peer running a newer version may send reasons we do not name yet, and a
    // reset must still reset the stream.
    f.reason = static_cast<ResetReason>(r.varint());
    f.final_size = r.varint();
    return f;
}

std::array<uint8_t, kPathDataLen> read_path_data(ByteReader& r) {
    std::array<uint8_t, kPathDataLen> data{};
    ByteView v = r.bytes(kPathDataLen);
    std::copy(v.begin(), v.end(), data.begin());
    return data;
}

DatagramFrame read_datagram(ByteReader& r) {
    DatagramFrame f;
    f.flow = r.varint();
    const uint64_t length = r.varint();
    if (!r.ok() || length > r.remaining()) {
        r.fail();
        return f;
    }
    f.data = r.bytes(static_cast<size_t>(length));
    return f;
}

FlowOpenFrame read_flow_open(ByteReader& r) {
    FlowOpenFrame f;
    f.flow = r.varint();
    f.service = read_string(r, kMaxServiceNameLen);
    return f;
}

CloseFrame read_close(ByteReader& r) {
    CloseFrame f;
    f.error_code = r.varint();
    f.reason = read_string(r, kMaxCloseReasonLen);
    return f;
}

// One frame whose type byte has been read; nullopt for a type we do not know.
std::optional<Frame> read_frame(uint8_t type, ByteReader& r) {
    switch (type) {
        case type_byte(FrameType::kPing):
            return PingFrame{};
        case type_byte(FrameType::kAck):
            return read_ack(r);
        case type_byte(FrameType::kStream):
            return read_stream(r, false);
        case type_byte(FrameType::kStream) | kStreamFinBit:
            return read_stream(r, true);
        case type_byte(FrameType::kStreamOpen):
            return read_stream_open(r);
        case type_byte(FrameType::kResetStream):
            return read_reset_stream(r);
        case type_byte(FrameType::kMaxData):
            return MaxDataFrame{r.varint()};
        case type_byte(FrameType::kMaxStreamData): {
            MaxStreamDataFrame f;
            f.id = r.varint();
            f.maximum = r.varint();
            return f;
        }
        case type_byte(FrameType::kMaxStreams):
            return MaxStreamsFrame{r.varint()};
        case type_byte(FrameType::kPathChallenge):
            return PathChallengeFrame{read_path_data(r)};
        case type_byte(FrameType::kPathResponse):
            return PathResponseFrame{read_path_data(r)};
        case type_byte(FrameType::kClose):
            return read_close(r);
        case type_byte(FrameType::kDatagram):
            return read_datagram(r);
        case type_byte(FrameType::kFlowOpen):
            return read_flow_open(r);
        case type_byte(FrameType::kFlowClose):
            return FlowCloseFrame{r.varint()};
        default:
            return std::nullopt;
    }
}

}  // namespace

void encode_frame(const Frame& f, Bytes& out) {
    ByteWriter w(out);
    std::visit([&w](const auto& frame) { encode(frame, w); }, f);
}

size_t encode_frame(const Frame& f, MutableByteView out) {
    ByteWriter w(out);
    std::visit([&w](const auto& frame) { encode(frame, w); }, f);
    return w.size();
}

size_t encoded_size(const Frame& f) {
    return std::visit([](const auto& frame) { return size_of(frame); }, f);
}

size_t stream_frame_overhead(StreamId id, uint64_t offset, size_t length) {
    return 1 + varint_size(id) + varint_size(offset) + varint_size(length);
}

size_t datagram_frame_overhead(FlowId flow, size_t length) {
    return 1 + varint_size(flow) + varint_size(length);
}

bool decode_frames(ByteView plaintext, std::vector<Frame>& frames) {
    frames.clear();
    size_t pos = 0;
    while (pos < plaintext.size()) {
        if (plaintext[pos] == type_byte(FrameType::kPadding)) {
            // Runs are common (packets padded to a probe size), so they become one frame.
            size_t end = pos;
            while (end < plaintext.size() && plaintext[end] == type_byte(FrameType::kPadding)) {
                ++end;
            }
            frames.push_back(PaddingFrame{end - pos});
            pos = end;
            continue;
        }
        ByteReader r(plaintext.subspan(pos + 1));
        std::optional<Frame> frame = read_frame(plaintext[pos], r);
        if (!frame || !r.ok()) return false;
        frames.push_back(std::move(*frame));
        pos += 1 + r.position();
    }
    return true;
}

std::optional<std::vector<Frame>> decode_frames(ByteView plaintext) {
    std::vector<Frame> frames;
    if (!decode_frames(plaintext, frames)) return std::nullopt;
    return frames;
}

bool is_ack_eliciting(const Frame& f) {
    return !std::holds_alternative<AckFrame>(f) && !std::holds_alternative<PaddingFrame>(f) &&
           !std::holds_alternative<CloseFrame>(f);
}

}  // namespace burrow
