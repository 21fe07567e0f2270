// What the sender remembers about each packet in flight, for loss recovery.
//
// A packet is never retransmitted as such (RFC 9002 §2: "no retransmission ambiguity"):
// when it is declared lost, the information its frames carried is queued again and goes
// out in new packets with new numbers. SentFrame records just enough to do that.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "tunnel/frame.h"
#include "tunnel/small_vector.h"
#include "tunnel/time.h"

namespace burrow {

struct SentStreamData {
    StreamId id;
    uint64_t offset;
    uint64_t length;
    bool fin;
};
struct SentStreamOpen {
    StreamId id;
};
struct SentResetStream {
    StreamId id;
};
struct SentMaxData {};
struct SentMaxStreamData {
    StreamId id;
};
struct SentMaxStreams {};
struct SentAck {
    uint64_t largest;  // once this ACK is acknowledged, ranges at or below can be dropped
};
struct SentPing {};
struct SentFlowOpen {
    FlowId flow;
};
struct SentFlowClose {
    FlowId flow;
};
// A DATAGRAM frame leaves no record: it is never retransmitted (RFC 9221 §5.2). Its packet
// still counts in flight, so congestion control sees it.
using SentFrame = std::variant<SentStreamData, SentStreamOpen, SentResetStream, SentMaxData,
                               SentMaxStreamData, SentMaxStreams, SentAck, SentPing,
                               SentFlowOpen, SentFlowClose>;

// Delivery-rate state captured at send time (draft-cheng-iccrg-delivery-rate-estimation).
struct DeliverySnapshot {
    uint64_t delivered = 0;         // bytes delivered (acked) when this packet was sent
    Time delivered_time{};          // when `delivered` last changed
    Time first_sent_time{};         // send time of the first packet of the current flight
    bool is_app_limited = false;
};

// Frames one packet's record holds inline: a bulk packet carries a STREAM frame and often an
// ACK, sometimes credit or a PING; more spill to the heap.
inline constexpr size_t kSentFramesInline = 4;

struct SentPacket {
    uint64_t packet_number = 0;
    Time time_sent{};
    uint32_t size = 0;           // whole datagram, bytes
    bool ack_eliciting = false;
    bool in_flight = false;      // counts toward bytes_in_flight (ack-eliciting or padded)
    SmallVector<SentFrame, kSentFramesInline> frames;
    DeliverySnapshot delivery;
};

}  // namespace burrow
