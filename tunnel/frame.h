// Frames: what a decrypted session packet carries.
//
// A packet's plaintext is a sequence of frames, each starting with a one-byte type; all
// integers after it are QUIC varints (tunnel/wire.h) unless noted. Layouts:
//
//   PADDING          0x00                                   (one byte; runs are coalesced)
//   PING             0x01
//   ACK              0x02 largest  ack_delay_us  range_count  first_range
//                         { gap  range_len } * range_count
//                    first_range: packets below `largest` also acked, so the first range is
//                    [largest - first_range, largest]. Each further range: skip `gap + 1`
//                    unacked packets below the previous range's smallest, then `range_len + 1`
//                    acked ones end there (RFC 9000 §19.3.1).
//   STREAM           0x08|FIN  stream_id  offset  length  data[length]     (FIN = bit 0x01)
//   STREAM_OPEN      0x10 stream_id  name_len  service[name_len]           (name_len <= 64)
//   RESET_STREAM     0x11 stream_id  reason  final_size
//   MAX_DATA         0x12 maximum                 (session-wide receive credit, absolute)
//   MAX_STREAM_DATA  0x13 stream_id  maximum      (per-stream receive credit, absolute)
//   MAX_STREAMS      0x14 maximum                 (peer may open stream numbers < maximum)
//   PATH_CHALLENGE   0x1a data[8]
//   PATH_RESPONSE    0x1b data[8]
//   CLOSE            0x1c error_code  reason_len  reason[reason_len]       (reason_len <= 256)
//   DATAGRAM         0x30 flow_id  length  data[length]     (RFC 9221 shape, length-prefixed;
//                    never retransmitted: a lost one is gone, as a lost UDP datagram is)
//   FLOW_OPEN        0x31 flow_id  name_len  service[name_len]             (name_len <= 64)
//   FLOW_CLOSE       0x32 flow_id
//
// Flow ids name one forwarded UDP "connection" (a client address on the forwarding side, a
// socket towards the target on the exposing side). Like stream ids, bit 0 says who opened the
// flow (0 = the session initiator), so both sides can allocate without colliding. FLOW_OPEN
// and FLOW_CLOSE are retransmitted until acknowledged, like STREAM_OPEN.
//
// decode_frames() checks the whole plaintext before returning anything: one malformed frame
// rejects the packet and nothing of it is acted on.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tunnel/bytes.h"
#include "tunnel/small_vector.h"

namespace burrow {

// Stream ids: bit 0 says who opened it (0 = the session initiator, 1 = the responder), the
// rest is a per-side sequence number, as in QUIC (RFC 9000 §2.1) without the uni/bidi bit:
// every stream is bidirectional, like the TCP connection it carries.
using StreamId = uint64_t;

inline constexpr size_t kMaxServiceNameLen = 64;
inline constexpr size_t kMaxCloseReasonLen = 256;
inline constexpr size_t kPathDataLen = 8;  // RFC 9000 §19.17
// ACK ranges held inside the frame before it moves them to the heap: as many as our own
// AckTracker ever sends (its kMaxRanges), so building, sending and receiving our ACKs
// allocates nothing per packet. Another sender's longer ACK still decodes, on the heap.
inline constexpr size_t kAckRangesInline = 32;

enum class FrameType : uint8_t {
    kPadding = 0x00,
    kPing = 0x01,
    kAck = 0x02,
    kStream = 0x08,  // 0x09 with FIN
    kStreamOpen = 0x10,
    kResetStream = 0x11,
    kMaxData = 0x12,
    kMaxStreamData = 0x13,
    kMaxStreams = 0x14,
    kPathChallenge = 0x1a,
    kPathResponse = 0x1b,
    kClose = 0x1c,
    kDatagram = 0x30,
    kFlowOpen = 0x31,
    kFlowClose = 0x32,
};

// A forwarded UDP flow (see DATAGRAM above).
using FlowId = uint64_t;

// Why a stream was reset; carried to the other side and shown in logs.
enum class ResetReason : uint64_t {
    kAborted = 0,          // the application (local TCP) reset or aborted
    kRefused = 1,          // target refused the connection
    kUnknownService = 2,   // no such service exposed
    kNotAllowed = 3,       // peer not in the service's allow list
    kUnreachable = 4,      // target unreachable / timed out
    kSessionClosing = 5,   // the session is going away
    kTooManyStreams = 6,
};

struct PaddingFrame {
    size_t length = 1;  // consecutive zero bytes
    bool operator==(const PaddingFrame&) const = default;
};
struct PingFrame {
    bool operator==(const PingFrame&) const = default;
};
struct AckRange {
    uint64_t smallest = 0;
    uint64_t largest = 0;  // inclusive
    bool operator==(const AckRange&) const = default;
};
struct AckFrame {
    // Descending, disjoint, non-adjacent ranges; ranges[0] holds the largest acked number.
    SmallVector<AckRange, kAckRangesInline> ranges;
    uint64_t ack_delay_us = 0;
    bool operator==(const AckFrame&) const = default;
};
struct StreamFrame {
    StreamId id = 0;
    uint64_t offset = 0;
    ByteView data;  // views the decoded packet (or the sender's buffer when encoding)
    bool fin = false;
    bool operator==(const StreamFrame& o) const {
        return id == o.id && offset == o.offset && fin == o.fin &&
               std::equal(data.begin(), data.end(), o.data.begin(), o.data.end());
    }
};
struct StreamOpenFrame {
    StreamId id = 0;
    std::string service;
    bool operator==(const StreamOpenFrame&) const = default;
};
struct ResetStreamFrame {
    StreamId id = 0;
    ResetReason reason = ResetReason::kAborted;
    uint64_t final_size = 0;
    bool operator==(const ResetStreamFrame&) const = default;
};
struct MaxDataFrame {
    uint64_t maximum = 0;
    bool operator==(const MaxDataFrame&) const = default;
};
struct MaxStreamDataFrame {
    StreamId id = 0;
    uint64_t maximum = 0;
    bool operator==(const MaxStreamDataFrame&) const = default;
};
struct MaxStreamsFrame {
    uint64_t maximum = 0;
    bool operator==(const MaxStreamsFrame&) const = default;
};
struct PathChallengeFrame {
    std::array<uint8_t, kPathDataLen> data{};
    bool operator==(const PathChallengeFrame&) const = default;
};
struct PathResponseFrame {
    std::array<uint8_t, kPathDataLen> data{};
    bool operator==(const PathResponseFrame&) const = default;
};
struct CloseFrame {
    uint64_t error_code = 0;
    std::string reason;
    bool operator==(const CloseFrame&) const = default;
};

struct DatagramFrame {
    FlowId flow = 0;
    ByteView data;  // views the decoded packet (or the sender's buffer when encoding)
    bool operator==(const DatagramFrame& o) const {
        return flow == o.flow &&
               std::equal(data.begin(), data.end(), o.data.begin(), o.data.end());
    }
};
struct FlowOpenFrame {
    FlowId flow = 0;
    std::string service;
    bool operator==(const FlowOpenFrame&) const = default;
};
struct FlowCloseFrame {
    FlowId flow = 0;
    bool operator==(const FlowCloseFrame&) const = default;
};

using Frame = std::variant<PaddingFrame, PingFrame, AckFrame, StreamFrame, StreamOpenFrame,
                           ResetStreamFrame, MaxDataFrame, MaxStreamDataFrame, MaxStreamsFrame,
                           PathChallengeFrame, PathResponseFrame, CloseFrame, DatagramFrame,
                           FlowOpenFrame, FlowCloseFrame>;

// Appends the encoding of f to out. Preconditions (asserted): every integer <= kVarintMax,
// service and reason within their limits, ACK ranges well-formed.
void encode_frame(const Frame& f, Bytes& out);
// The same into the front of a fixed buffer of at least encoded_size(f) bytes; returns that
// size.
size_t encode_frame(const Frame& f, MutableByteView out);

// Exact encoded size of f (what encode_frame would append).
size_t encoded_size(const Frame& f);

// Encoded size of a STREAM frame header for these fields, without its data: used by the
// packet builder to decide how much stream data fits.
size_t stream_frame_overhead(StreamId id, uint64_t offset, size_t length);

// Encoded size of a DATAGRAM frame header (type, flow id, length) for these fields.
size_t datagram_frame_overhead(FlowId flow, size_t length);

// Parses a whole packet plaintext. Returns nullopt, having changed nothing, if any frame is
// malformed: unknown type, truncated field, varint overflow past kVarintMax, stream data
// past 2^62, over-long name or reason, an ACK whose ranges underflow below zero.
// Views in the result point into `plaintext`.
std::optional<std::vector<Frame>> decode_frames(ByteView plaintext);
// The same into a caller's vector (cleared first, its capacity reused: the receive path
// decodes every packet into one). False, with `out` in an unspecified state, when malformed.
bool decode_frames(ByteView plaintext, std::vector<Frame>& out);

// True for frames that oblige the receiver to acknowledge (all but ACK, PADDING and CLOSE;
// RFC 9002 §2 "ack-eliciting").
bool is_ack_eliciting(const Frame& f);

}  // namespace burrow
