// Connection: the reliable, multiplexed, congestion-controlled stream transport between two
// agents. Sans-IO (docs/architecture.md §2): it is driven entirely from outside.
//
//   on_datagram(bytes, now)     a packet arrived (a mutable view: opened in place)
//   on_timer(now)               next_deadline() has passed
//   write_transmit(now, buf)    a packet built into buf, until it returns 0
//                               (poll_transmit(now): the same into a new vector)
//   next_deadline()             when to call on_timer next (kNever if nothing is pending)
//
// and the application side (src/ maps each forwarded TCP connection onto a stream):
//
//   open_stream(service)        a new outgoing stream; the peer sees StreamOpened
//   write / shutdown_write      data and FIN (TCP half-close); write() accepts what fits
//   read                        in-order bytes; credit goes back to the peer as we read
//   reset_stream                abort both directions with a reason (TCP RST, refused connect)
//   poll_event                  what happened: opened, readable, writable, finished, reset,
//                               closed
//
// and unreliable datagrams for UDP forwards (RFC 9221 shape):
//
//   open_flow(service)          a new outgoing flow; the peer sees FlowOpened (FLOW_OPEN is
//                               retransmitted until acknowledged, like STREAM_OPEN)
//   send_datagram(flow, bytes)  queued (bounded), paced and counted by congestion control like
//                               stream data, never retransmitted; too large or congested:
//                               dropped and counted (the verdict says which)
//   close_flow(flow)            FLOW_CLOSE; the peer sees FlowClosed
//   DatagramReceived            events carry what arrived on an open flow
//
// Backpressure: write() accepts at most the free space of the stream's send buffer; when it
// returns less than offered or fills the buffer, wait for StreamWritable. The peer only grants
// credit as its application reads, so a slow reader stops the sender and nothing buffers
// without bound.
//
// The path's kind (docs/architecture.md §4 "Direct TCP paths"): on a reliable path (a direct
// TCP connection between the agents, set_path_reliable(true)) TCP already retransmits, orders,
// paces and runs congestion control, so this layer does none of it there (no TCP-over-TCP
// meltdown): packets sent on it are never declared lost by time or reordering, start no probe
// timeout, are neither paced nor limited by the congestion window (only by
// kReliablePathWindow and flow control), and feed neither RTT samples nor congestion control.
// They are still acknowledged, which frees their frames. When the path's kind changes, in
// either direction, every packet still unacknowledged is declared lost once and its frames go
// out again on the new path: a TCP connection that died took its send queue with it, and a UDP
// packet in flight when we moved onto TCP would otherwise wait for a loss signal that can no
// longer come.
//
// Packets are protected by a PacketProtection (tunnel/packet.h). This layer works on packet
// numbers and plaintext frames; the session layer plugs in AEAD encryption there.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tunnel/ack_tracker.h"
#include "tunnel/bytes.h"
#include "tunnel/congestion.h"
#include "tunnel/delivery_rate.h"
#include "tunnel/flow_control.h"
#include "tunnel/frame.h"
#include "tunnel/loss_detector.h"
#include "tunnel/pacer.h"
#include "tunnel/packet.h"
#include "tunnel/range_set.h"
#include "tunnel/recv_stream.h"
#include "tunnel/replay_window.h"
#include "tunnel/ring_queue.h"
#include "tunnel/rtt_estimator.h"
#include "tunnel/send_stream.h"
#include "tunnel/stream_scheduler.h"
#include "tunnel/time.h"

namespace burrow {

enum class Role : uint8_t { kInitiator = 0, kResponder = 1 };

struct ConnectionConfig {
    // Largest datagram we send, headers and AEAD tag included. 1350 leaves room for IPv6,
    // UDP and a relay header inside a 1500-byte Ethernet MTU (QUIC implementations pick
    // 1200-1452 for the same reason).
    size_t max_datagram_size = 1350;
    // Receive credit we grant per stream and for the whole session. They bound what a peer
    // can make us buffer; the stream window must exceed the path's bandwidth-delay product
    // for one stream to fill the path (50 Mbit/s x 40 ms = 250 kB).
    uint64_t stream_receive_window = 2 * 1024 * 1024;
    uint64_t session_receive_window = 16 * 1024 * 1024;
    // Bytes one stream's send buffer accepts from the application before write() pushes back.
    size_t stream_send_buffer = 1024 * 1024;
    // Streams the peer may have open at once (credit grows back as they close, MAX_STREAMS).
    // 16,384: a load generator's few thousand concurrent connections through one forward fit
    // with room to spare, while an idle stream holds no buffer memory (send and receive
    // buffers grow only with data), so the ceiling costs nothing until it is used.
    uint64_t max_incoming_streams = 16384;
    // No packet from the peer for this long closes the connection.
    Duration idle_timeout = std::chrono::seconds(30);
    // Send a PING when we have sent nothing ack-eliciting for this long, so NAT mappings
    // (often expiring UDP state after 30 s) and the peer's idle timer stay fresh.
    Duration keepalive_interval = std::chrono::seconds(10);
    CongestionKind congestion = CongestionKind::kBbr;
};

// What poll_event() reports.
struct StreamOpened {
    StreamId id;
    std::string service;
};
struct StreamReadable {
    StreamId id;
};
struct StreamWritable {
    StreamId id;
};
struct StreamFinished {  // the peer's FIN: every byte has been read, no more will come
    StreamId id;
};
struct StreamReset {  // the peer reset the stream (or we gave up on it); it is gone
    StreamId id;
    ResetReason reason;
};
struct StreamClosed {  // both directions done and acknowledged; the id is retired
    StreamId id;
};
struct ConnectionClosed {
    uint64_t error_code;
    std::string reason;
    bool by_peer;
};
struct FlowOpened {  // the peer opened a flow to one of our services
    FlowId flow;
    std::string service;
};
struct FlowClosed {  // the peer closed a flow (either side's); it is gone
    FlowId flow;
};
struct DatagramReceived {  // a datagram on an open flow
    FlowId flow;
    Bytes data;
};
using ConnectionEvent =
    std::variant<StreamOpened, StreamReadable, StreamWritable, StreamFinished, StreamReset,
                 StreamClosed, ConnectionClosed, FlowOpened, FlowClosed, DatagramReceived>;

// Datagrams queued for sending, at most: beyond this the path is congested and new ones are
// dropped (counted) rather than delayed. 256 KiB is ~40 ms at 50 Mbit/s: a queue longer than
// that only adds latency to traffic (games, voice, DNS) that would rather lose the packet.
inline constexpr size_t kMaxQueuedDatagramBytes = 256 * 1024;
// Flows the peer may have open at once on this connection; a FLOW_OPEN beyond is answered with
// FLOW_CLOSE. The agent caps flows per forward far lower (signal/udp_flows.h).
inline constexpr size_t kMaxPeerFlows = 16384;

enum class DatagramVerdict : uint8_t {
    kQueued,
    kTooLarge,     // larger than max_datagram_payload(): no fragmentation
    kCongested,    // the send queue is full (kMaxQueuedDatagramBytes)
    kUnknownFlow,  // not an open flow
    kClosed,       // the connection is closed
};

// Counters for `burrow status` and for tests: every drop has a reason.
struct ConnectionStats {
    uint64_t packets_sent = 0;
    uint64_t packets_received = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    uint64_t packets_lost = 0;
    uint64_t packets_retransmitted_frames = 0;  // packets whose frames were re-queued
    uint64_t drop_malformed = 0;                // failed to parse or unprotect
    uint64_t drop_duplicate = 0;                // packet number seen before (replay window)
    uint64_t drop_too_old = 0;                  // below the replay window
    uint64_t drop_after_close = 0;
    uint64_t stream_bytes_sent = 0;             // first transmissions only
    uint64_t stream_bytes_retransmitted = 0;
    uint64_t stream_bytes_received = 0;         // new in-order or out-of-order bytes
    uint64_t pto_count = 0;
    uint64_t streams_opened = 0;
    uint64_t streams_accepted = 0;
    // Unreliable datagrams (UDP forwards).
    uint64_t datagrams_sent = 0;
    uint64_t datagram_bytes_sent = 0;  // payload bytes
    uint64_t datagrams_received = 0;
    uint64_t datagram_bytes_received = 0;
    uint64_t datagrams_dropped_congested = 0;     // the send queue was full
    uint64_t datagrams_dropped_too_large = 0;     // larger than max_datagram_payload()
    uint64_t datagrams_dropped_unknown_flow = 0;  // received for a flow not (yet) open here
    uint64_t flows_opened = 0;
    uint64_t flows_accepted = 0;
    uint64_t flows_refused = 0;  // FLOW_OPEN beyond kMaxPeerFlows
    // Reliable paths (direct TCP).
    uint64_t packets_sent_reliable = 0;      // ack-eliciting packets sent on a reliable path
    uint64_t packets_requeued_path_kind = 0;  // unacknowledged when the path's kind changed
};

// Bytes sent on a reliable path and not yet acknowledged, at most: bounds the records kept for
// them. TCP's own congestion control decides the rate, and the socket's writability
// (set_path_writable) what waits in the kernel; 4 MiB is the bandwidth-delay product of
// 100 Mbit/s at 300 ms, so it does not limit a real path.
inline constexpr uint64_t kReliablePathWindow = 4 * 1024 * 1024;

enum class ConnectionError : uint64_t {
    kNone = 0,
    kIdleTimeout = 1,
    kProtocolViolation = 2,  // peer broke the protocol (bad stream id, flow control, ...)
    kFlowControl = 3,
    kApplicationClose = 4,
};

class Connection {
public:
    Connection(Role role, const ConnectionConfig& config, PacketProtection& protection, Time now);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // --- network side ---------------------------------------------------------------------
    // True when the packet authenticated and was new (whatever its frames then did); false
    // when it was dropped (counted in stats()). The mutable form decrypts in place (the
    // datagram's bytes are scratch afterwards); the const form copies once into a buffer the
    // connection keeps.
    bool on_datagram(MutableByteView datagram, Time now);
    bool on_datagram(ByteView datagram, Time now);
    // A vector, the way tests hold datagrams they may deliver again: the copying form (a
    // non-const vector would otherwise convert to both views).
    bool on_datagram(const Bytes& datagram, Time now) {
        return on_datagram(ByteView(datagram), now);
    }
    void on_timer(Time now);
    // Every datagram of one socket read was handed in: acknowledge them together now
    // (AckTracker::on_receive_batch_end).
    void on_receive_batch_end() { acks_.on_receive_batch_end(); }
    // Builds the next packet into the front of `out` and returns its length, 0 when there is
    // nothing to send now. Precondition: out.size() >= config.max_datagram_size (longer
    // buffers are used only that far).
    size_t write_transmit(Time now, MutableByteView out);
    // write_transmit into a vector of its own.
    std::optional<Bytes> poll_transmit(Time now);
    Time next_deadline() const;

    // --- application side -----------------------------------------------------------------
    // nullopt when the peer's stream limit is reached or the connection is closed.
    std::optional<StreamId> open_stream(std::string_view service);
    size_t write(StreamId id, ByteView data);
    size_t writable(StreamId id) const;
    void shutdown_write(StreamId id);
    size_t read(StreamId id, MutableByteView out);
    // The stream's next in-order bytes where they lie in its buffer (no copy; up to a block's
    // end), for a reader that can take them from there (a socket write); empty when none.
    // Valid until the next non-const call. consume(id, n) then marks n of them read, with
    // read()'s effects: credit goes back to the peer, StreamFinished after the last byte.
    ByteView peek(StreamId id) const;
    void consume(StreamId id, size_t n);
    size_t readable(StreamId id) const;
    void reset_stream(StreamId id, ResetReason reason);
    std::optional<ConnectionEvent> poll_event();

    // --- unreliable datagrams ----------------------------------------------------------------
    // nullopt when the connection is closed or the name is too long.
    std::optional<FlowId> open_flow(std::string_view service);
    // Forgets the flow and tells the peer (FLOW_CLOSE). Unknown flows are ignored.
    void close_flow(FlowId flow);
    DatagramVerdict send_datagram(FlowId flow, ByteView data);
    // The largest datagram send_datagram takes: what one packet holds after its header, tag
    // and the DATAGRAM frame's own header.
    size_t max_datagram_payload() const;
    size_t open_flow_count() const { return flows_.size(); }
    size_t queued_datagram_bytes() const { return datagram_queue_bytes_; }

    // Sends an ack-eliciting PING in the next packet (e.g. so a peer sees traffic under
    // new keys at once, or to probe a path).
    void ping() { ping_pending_ = true; }

    // Whether the path the packets take now is reliable (a direct TCP connection); see the
    // note at the top. A change requeues what is unacknowledged.
    void set_path_reliable(bool reliable);
    bool path_reliable() const { return path_reliable_; }
    // Whether the reliable path takes more now: a TCP socket is writable while its unsent
    // queue is below its low-water mark (TCP_NOTSENT_LOWAT). While it is not, no packet with
    // stream data or datagrams is built: they wait in the streams, where the scheduler keeps an
    // interactive stream ahead of a bulk one, not in the kernel behind seconds of bulk.
    void set_path_writable(bool writable) { path_writable_ = writable; }
    // Sends CLOSE and stops; the connection is then closed (is_closed()).
    void close(ConnectionError code, std::string_view reason, Time now);
    bool is_closed() const { return state_ == State::kClosed; }

    // --- introspection --------------------------------------------------------------------
    const ConnectionStats& stats() const { return stats_; }
    const RttEstimator& rtt() const { return rtt_; }
    uint64_t congestion_window() const { return cc_->congestion_window(); }
    uint64_t bytes_in_flight() const { return loss_.bytes_in_flight(); }
    const char* congestion_name() const { return cc_->name(); }
    // The buffer write_transmit needs.
    size_t max_datagram_size() const { return config_.max_datagram_size; }
    size_t open_stream_count() const { return streams_.size(); }
    // Bytes held in stream buffers (send + receive); tests assert it stays within the windows.
    uint64_t buffered_bytes() const;

private:
    struct Stream;
    struct PacketBuilder;
    enum class State { kOpen, kClosing, kClosed };
    // PATH_CHALLENGEs answered per flight; more are dropped (an attacker must not make us
    // queue unbounded responses).
    static constexpr size_t kMaxPendingPathResponses = 4;

    Stream* find(StreamId id);
    const Stream* find(StreamId id) const;
    Stream* get_or_create_peer_stream(StreamId id, bool& violation);
    bool is_local(StreamId id) const;
    void handle_frame(const Frame& f, Time now, bool& violation);
    void on_stream_frame(const StreamFrame& f, bool& violation);
    void on_reset_frame(const ResetStreamFrame& f, bool& violation);
    void announce_in_order();
    void give_back_session_credit(uint64_t n);
    // What reading n bytes of s means beyond the stream: credit, and the FIN's event.
    void after_read(Stream& s, size_t n);
    void on_ack_frame(const AckFrame& ack, Time now);
    void on_packets_lost(const std::vector<SentPacket>& lost);
    void requeue(const SentFrame& f);
    void on_frame_acked(const SentFrame& f);
    void maybe_retire(StreamId id);
    void retire(StreamId id);
    void reset_all_streams();
    void enter_closed(ConnectionError code, std::string reason, bool by_peer);
    struct LossTally {
        uint64_t bytes = 0;  // in-flight bytes of the lost packets
        Time largest_sent{};
    };
    static LossTally tally(const std::vector<SentPacket>& lost);
    uint64_t send_limit(const Stream& s) const;
    void mark_ready(Stream& s);
    void queue_control(Stream& s);
    bool has_pending_control() const;
    size_t build_packet(Time now, MutableByteView out, bool probe, bool include_ack,
                        bool ack_only = false);
    size_t seal(uint64_t packet_number, MutableByteView out, size_t plaintext_len);
    void fill_control(PacketBuilder& b);
    void fill_stream_data(PacketBuilder& b);
    void fill_datagrams(PacketBuilder& b);
    void on_flow_open_frame(const FlowOpenFrame& f, bool& violation);

    Role role_;
    ConnectionConfig config_;
    PacketProtection& protection_;
    State state_ = State::kOpen;

    uint64_t next_packet_number_ = 0;
    ReplayWindow replay_;
    AckTracker acks_;
    RttEstimator rtt_;
    LossDetector loss_;
    std::unique_ptr<CongestionController> cc_;
    DeliveryRateEstimator rate_;
    Pacer pacer_;

    BlockPool block_pool_;  // declared before streams_, whose buffers point at it
    std::map<StreamId, std::unique_ptr<Stream>> streams_;
    StreamScheduler scheduler_;
    uint64_t next_local_seq_ = 0;
    uint64_t peer_max_streams_ = 0;     // how many streams the peer lets us open
    uint64_t local_max_streams_ = 0;    // how many we let the peer open (advertised)
    uint64_t peer_streams_closed_ = 0;
    bool send_max_streams_ = false;

    RecvFlowController session_recv_;
    SendCredit session_send_;
    bool send_max_data_ = false;

    RingQueue<ConnectionEvent> events_;
    RingQueue<StreamId> control_queue_;  // streams with pending control frames
    std::optional<CloseFrame> close_to_send_;
    bool close_sent_ = false;
    bool close_resend_ = false;  // the peer spoke after our CLOSE: say it again
    std::deque<PathResponseFrame> path_responses_;
    RangeSet peer_seen_;         // peer stream sequence numbers ever opened
    // The peer's streams are announced (StreamOpened) in the order it opened them: this is the
    // first sequence number not yet announced or skipped (see announce_in_order).
    uint64_t next_announce_seq_ = 0;
    int ack_only_run_ = 0;
    Time last_send_time_{};
    bool ping_pending_ = false;
    int probes_pending_ = 0;
    Time last_activity_;          // last packet received (idle timer)
    Time last_ack_eliciting_sent_;
    Time close_deadline_ = kNever;
    ConnectionStats stats_;

    struct Flow {
        std::string service;
        bool local = false;
        bool open_pending = false;  // FLOW_OPEN to (re)send (local flows)
        bool open_acked = false;
    };
    std::map<FlowId, Flow> flows_;
    uint64_t next_flow_seq_ = 0;
    RangeSet peer_flows_seen_;             // peer flow sequence numbers ever opened
    std::deque<FlowId> flow_opens_;        // local flows whose FLOW_OPEN is due
    std::deque<FlowId> flow_closes_;       // FLOW_CLOSEs due (new, or lost and resent)
    struct QueuedDatagram {
        FlowId flow;
        Bytes data;
    };
    std::deque<QueuedDatagram> datagram_queue_;
    size_t datagram_queue_bytes_ = 0;
    // Reused on every packet, so the receive path allocates nothing in steady state: the
    // decoded frames of the packet being handled, and the copy the const on_datagram opens.
    std::vector<Frame> frames_;
    Bytes receive_copy_;

    // Packets sent on a reliable path, ascending, until acknowledged (or the path's kind
    // changes): what their frames need when they are acked. Not in the loss detector.
    struct ReliableSent {
        uint64_t packet_number = 0;
        uint32_t size = 0;
        bool acked = false;
        SmallVector<SentFrame, kSentFramesInline> frames;
    };
    bool path_reliable_ = false;
    bool path_writable_ = true;
    RingQueue<ReliableSent> reliable_sent_;
    uint64_t reliable_in_flight_ = 0;
    void on_reliable_ack(const AckFrame& ack);
    void requeue_all_unacked();
};

}  // namespace burrow
