#include "tunnel/connection.h"

#include <algorithm>
#include <cassert>

#include "tunnel/wire.h"

namespace burrow {

namespace {

// How many ACK-only packets we send in a row before making one ack-eliciting with a PING,
// so the peer acknowledges our ACKs and both sides can prune old ranges (RFC 9000 §13.2.4
// notes a receiver that only sends ACKs never learns they arrived).
constexpr int kAckOnlyBeforePing = 16;

// After CLOSE, how long a closing connection lingers (RFC 9000 §10.2: three PTOs) so that a
// lost CLOSE is answered again rather than the peer waiting for its idle timeout.
constexpr int kClosingPtoMultiplier = 3;

uint64_t stream_seq(StreamId id) { return id >> 1; }
StreamId make_stream_id(uint64_t seq, Role opener) {
    return (seq << 1) | static_cast<uint64_t>(opener);
}

}  // namespace

struct Connection::Stream {
    Stream(StreamId id_, bool local_, const ConnectionConfig& cfg, BlockPool& pool)
        : id(id_),
          local(local_),
          send(cfg.stream_send_buffer, &pool),
          recv(kInitialStreamWindow, cfg.stream_receive_window, &pool),
          send_credit(kInitialStreamWindow) {}

    StreamId id;
    bool local;
    std::string service;
    SendStream send;
    RecvStream recv;
    SendCredit send_credit;  // what the peer lets us send on this stream
    uint64_t advertised_max = kInitialStreamWindow;

    bool announced = false;      // the application has been told about it (peer streams)
    bool open_received = false;  // its STREAM_OPEN arrived (peer streams); announced in order
    bool open_pending = false;   // STREAM_OPEN to (re)send (local streams)
    bool open_acked = false;
    bool reset_pending = false;  // RESET_STREAM to (re)send
    bool reset_acked = false;
    bool reset_local = false;
    ResetReason reset_reason = ResetReason::kAborted;
    // How much the peer sent is known (its FIN or its RESET_STREAM arrived). A reset stream
    // stays until then: bytes of the peer's lost in flight are only counted against the
    // session window through that final size, and would otherwise never come back as credit.
    bool peer_final = false;
    bool max_stream_data_pending = false;
    bool in_control_queue = false;
    bool write_blocked = false;  // the app was pushed back; tell it when there is room
    bool finish_reported = false;

    bool has_control() const {
        return open_pending || reset_pending || max_stream_data_pending;
    }
};

Connection::Connection(Role role, const ConnectionConfig& config, PacketProtection& protection,
                       Time now)
    : role_(role),
      config_(config),
      protection_(protection),
      cc_(make_congestion_controller(config.congestion, config.max_datagram_size)),
      pacer_(config.max_datagram_size),
      peer_max_streams_(kInitialMaxStreams),
      local_max_streams_(kInitialMaxStreams),
      session_recv_(kInitialSessionWindow, config.session_receive_window),
      session_send_(kInitialSessionWindow),
      last_activity_(now),
      last_ack_eliciting_sent_(now) {
    assert(config_.stream_receive_window >= kInitialStreamWindow);
    assert(config_.session_receive_window >= kInitialSessionWindow);
    assert(config_.max_incoming_streams >= kInitialMaxStreams);
    // Tell the peer our real limits in the first packet.
    send_max_data_ = session_recv_.should_update();
    send_max_streams_ = config_.max_incoming_streams > local_max_streams_;
    if (send_max_data_) session_recv_.take_update();
    if (send_max_streams_) local_max_streams_ = config_.max_incoming_streams;
}

Connection::~Connection() = default;

// --- helpers --------------------------------------------------------------------------------

bool Connection::is_local(StreamId id) const {
    return (id & 1) == static_cast<uint64_t>(role_);
}

Connection::Stream* Connection::find(StreamId id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

const Connection::Stream* Connection::find(StreamId id) const {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
}

uint64_t Connection::send_limit(const Stream& s) const {
    // New bytes must fit both the stream's credit and what is left of the session's.
    return std::min(s.send_credit.max(), s.send.highest_sent() + session_send_.available());
}

Connection::LossTally Connection::tally(const std::vector<SentPacket>& lost) {
    LossTally t;
    for (const SentPacket& p : lost) {
        if (p.in_flight) t.bytes += p.size;
        t.largest_sent = std::max(t.largest_sent, p.time_sent);
    }
    return t;
}

void Connection::mark_ready(Stream& s) {
    if (s.reset_local) return;
    const uint64_t limit = send_limit(s);
    if (s.send.has_pending(limit)) scheduler_.push(s.id);
}

void Connection::queue_control(Stream& s) {
    if (!s.in_control_queue && s.has_control()) {
        s.in_control_queue = true;
        control_queue_.push_back(s.id);
    }
}

bool Connection::has_pending_control() const {
    return send_max_data_ || send_max_streams_ || ping_pending_ || !control_queue_.empty() ||
           !path_responses_.empty() || !flow_opens_.empty() || !flow_closes_.empty();
}

uint64_t Connection::buffered_bytes() const {
    uint64_t total = 0;
    for (const auto& [id, s] : streams_) total += s->send.bytes_buffered() + s->recv.bytes_buffered();
    return total;
}

// Looks up the stream a peer frame refers to, creating a peer-opened stream on first sight.
// nullptr with violation=false: a stream that is already retired, ignore the frame.
Connection::Stream* Connection::get_or_create_peer_stream(StreamId id, bool& violation) {
    if (Stream* s = find(id)) return s;
    const uint64_t seq = stream_seq(id);
    if (is_local(id)) {
        // Our own stream: fine if it existed and is gone, a lie if we never opened it.
        if (seq >= next_local_seq_) violation = true;
        return nullptr;
    }
    if (peer_seen_.contains(seq)) return nullptr;  // retired
    if (seq >= local_max_streams_) {
        violation = true;  // over the limit we advertised
        return nullptr;
    }
    peer_seen_.add(seq, seq + 1);
    auto stream = std::make_unique<Stream>(id, false, config_, block_pool_);
    Stream* s = stream.get();
    streams_.emplace(id, std::move(stream));
    if (auto m = s->recv.take_max_stream_data_update()) {
        s->advertised_max = *m;
        s->max_stream_data_pending = true;
        queue_control(*s);
    }
    ++stats_.streams_accepted;
    return s;
}

// --- application side -----------------------------------------------------------------------

std::optional<StreamId> Connection::open_stream(std::string_view service) {
    if (state_ != State::kOpen || service.size() > kMaxServiceNameLen) return std::nullopt;
    if (next_local_seq_ >= peer_max_streams_) return std::nullopt;
    const StreamId id = make_stream_id(next_local_seq_++, role_);
    auto stream = std::make_unique<Stream>(id, true, config_, block_pool_);
    Stream& s = *stream;
    streams_.emplace(id, std::move(stream));
    s.service = std::string(service);
    s.announced = true;
    s.open_pending = true;
    if (auto m = s.recv.take_max_stream_data_update()) {
        s.advertised_max = *m;
        s.max_stream_data_pending = true;
    }
    queue_control(s);
    ++stats_.streams_opened;
    return id;
}

size_t Connection::write(StreamId id, ByteView data) {
    Stream* s = find(id);
    if (state_ != State::kOpen || !s || s->reset_local || s->send.finished()) return 0;
    const size_t n = s->send.write(data);
    // A writer that filled the buffer (whether or not it offered more) waits for room.
    if (n < data.size() || s->send.writable() == 0) s->write_blocked = true;
    if (n > 0) mark_ready(*s);
    return n;
}

size_t Connection::writable(StreamId id) const {
    const Stream* s = find(id);
    if (state_ != State::kOpen || !s || s->reset_local) return 0;
    return s->send.writable();
}

void Connection::shutdown_write(StreamId id) {
    Stream* s = find(id);
    if (state_ != State::kOpen || !s || s->reset_local || s->send.finished()) return;
    s->send.finish();
    mark_ready(*s);
}

// Bytes read, or never to be read (a reset stream): the peer may send as much again. The update
// goes out at once when it is due: credit given back by a reset must not wait for a later read,
// which may never come while the peer is blocked on that very credit.
void Connection::give_back_session_credit(uint64_t n) {
    if (n == 0) return;
    session_recv_.on_consumed(n);
    if (session_recv_.should_update()) {
        session_recv_.take_update();
        send_max_data_ = true;
    }
}

size_t Connection::read(StreamId id, MutableByteView out) {
    Stream* s = find(id);
    if (!s || s->reset_local) return 0;
    const size_t n = s->recv.read(out);
    after_read(*s, n);
    return n;
}

ByteView Connection::peek(StreamId id) const {
    const Stream* s = find(id);
    return s && !s->reset_local ? s->recv.peek() : ByteView{};
}

void Connection::consume(StreamId id, size_t n) {
    Stream* s = find(id);
    if (!s || s->reset_local) return;
    s->recv.consume(n);
    after_read(*s, n);
}

void Connection::after_read(Stream& s, size_t n) {
    if (n > 0) {
        give_back_session_credit(n);
        if (!s.recv.fin_received()) {
            if (auto m = s.recv.take_max_stream_data_update()) {
                s.advertised_max = *m;
                s.max_stream_data_pending = true;
                queue_control(s);
            }
        }
    }
    if (s.recv.finished() && !s.finish_reported) {
        s.finish_reported = true;
        events_.push_back(StreamFinished{s.id});
        maybe_retire(s.id);  // may destroy s: last
    }
}

size_t Connection::readable(StreamId id) const {
    const Stream* s = find(id);
    return s && !s->reset_local ? s->recv.readable() : 0;
}

void Connection::reset_stream(StreamId id, ResetReason reason) {
    Stream* s = find(id);
    if (!s || s->reset_local || state_ != State::kOpen) return;
    s->reset_local = true;
    s->reset_reason = reason;
    s->reset_pending = true;
    s->peer_final = s->recv.fin_received();
    // Whatever the peer sent that we will never read gives its credit back.
    give_back_session_credit(s->recv.highest_received() - s->recv.read_offset());
    scheduler_.remove(id);
    queue_control(*s);
}

// --- unreliable datagrams -------------------------------------------------------------------

std::optional<FlowId> Connection::open_flow(std::string_view service) {
    if (state_ != State::kOpen || service.size() > kMaxServiceNameLen) return std::nullopt;
    if (next_flow_seq_ > (kVarintMax >> 1)) return std::nullopt;
    const FlowId flow = make_stream_id(next_flow_seq_++, role_);
    Flow& f = flows_[flow];
    f.service = std::string(service);
    f.local = true;
    f.open_pending = true;
    flow_opens_.push_back(flow);
    ++stats_.flows_opened;
    return flow;
}

void Connection::close_flow(FlowId flow) {
    if (state_ != State::kOpen || flows_.erase(flow) == 0) return;
    flow_closes_.push_back(flow);
}

size_t Connection::max_datagram_payload() const {
    // The largest DATAGRAM header: an 8-byte flow id varint and a 2-byte length (a packet is
    // far below 16 KiB).
    constexpr size_t kMaxDatagramHeader = 1 + 8 + 2;
    const size_t room = config_.max_datagram_size - protection_.overhead();
    return room > kMaxDatagramHeader ? room - kMaxDatagramHeader : 0;
}

DatagramVerdict Connection::send_datagram(FlowId flow, ByteView data) {
    if (state_ != State::kOpen) return DatagramVerdict::kClosed;
    if (!flows_.contains(flow)) return DatagramVerdict::kUnknownFlow;
    if (data.size() > max_datagram_payload()) {
        ++stats_.datagrams_dropped_too_large;
        return DatagramVerdict::kTooLarge;
    }
    if (datagram_queue_bytes_ + data.size() > kMaxQueuedDatagramBytes) {
        ++stats_.datagrams_dropped_congested;
        return DatagramVerdict::kCongested;
    }
    datagram_queue_.push_back(QueuedDatagram{flow, Bytes(data.begin(), data.end())});
    datagram_queue_bytes_ += data.size();
    return DatagramVerdict::kQueued;
}

void Connection::on_flow_open_frame(const FlowOpenFrame& f, bool& violation) {
    if (is_local(f.flow)) {  // flow ids split by opener like stream ids
        violation = true;  // the peer cannot open a flow in our half of the id space
        return;
    }
    const uint64_t seq = stream_seq(f.flow);
    if (peer_flows_seen_.contains(seq)) return;  // a retransmission, or the flow is gone
    peer_flows_seen_.add(seq, seq + 1);
    if (flows_.size() >= kMaxPeerFlows) {
        ++stats_.flows_refused;
        flow_closes_.push_back(f.flow);
        return;
    }
    Flow& flow = flows_[f.flow];
    flow.service = f.service;
    ++stats_.flows_accepted;
    events_.push_back(FlowOpened{f.flow, f.service});
}

std::optional<ConnectionEvent> Connection::poll_event() {
    if (events_.empty()) return std::nullopt;
    ConnectionEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

void Connection::close(ConnectionError code, std::string_view reason, Time now) {
    if (state_ != State::kOpen) return;
    close_to_send_ = CloseFrame{static_cast<uint64_t>(code),
                                std::string(reason.substr(0, kMaxCloseReasonLen))};
    state_ = State::kClosing;
    close_deadline_ = now + kClosingPtoMultiplier * rtt_.pto_base(AckTracker::kMaxAckDelay);
    reset_all_streams();
    events_.push_back(ConnectionClosed{static_cast<uint64_t>(code), std::string(reason), false});
}

void Connection::reset_all_streams() {
    for (auto& [id, s] : streams_) {
        if (s->announced && !s->reset_local) {
            events_.push_back(StreamReset{id, ResetReason::kSessionClosing});
        }
    }
    streams_.clear();
    scheduler_ = StreamScheduler{};
    control_queue_.clear();
    flows_.clear();
    flow_opens_.clear();
    flow_closes_.clear();
    datagram_queue_.clear();
    datagram_queue_bytes_ = 0;
}

void Connection::enter_closed(ConnectionError code, std::string reason, bool by_peer) {
    if (state_ == State::kClosed) return;
    const bool was_open = state_ == State::kOpen;
    state_ = State::kClosed;
    if (was_open) {
        reset_all_streams();
        events_.push_back(ConnectionClosed{static_cast<uint64_t>(code), std::move(reason), by_peer});
    }
}

void Connection::maybe_retire(StreamId id) {
    Stream* s = find(id);
    if (!s) return;
    bool done;
    if (s->reset_local) {
        done = s->reset_acked && s->peer_final;
    } else {
        done = s->send.all_acked() && s->recv.finished() && s->finish_reported &&
               (!s->local || s->open_acked);
    }
    if (!done) return;
    if (!s->reset_local) events_.push_back(StreamClosed{id});
    retire(id);
}

void Connection::retire(StreamId id) {
    const bool peer_opened = !is_local(id);
    scheduler_.remove(id);
    streams_.erase(id);
    if (peer_opened) {
        ++peer_streams_closed_;
        // Let the peer open a new stream for each one that closed, in batches so MAX_STREAMS
        // does not go out for every stream.
        const uint64_t target = peer_streams_closed_ + config_.max_incoming_streams;
        if (target - local_max_streams_ >= std::max<uint64_t>(1, config_.max_incoming_streams / 8)) {
            local_max_streams_ = target;
            send_max_streams_ = true;
        }
    }
}

// --- network side: receive -----------------------------------------------------------------

bool Connection::on_datagram(ByteView datagram, Time now) {
    receive_copy_.assign(datagram.begin(), datagram.end());
    return on_datagram(MutableByteView(receive_copy_), now);
}

bool Connection::on_datagram(MutableByteView datagram, Time now) {
    if (state_ == State::kClosed) {
        ++stats_.drop_after_close;
        return false;
    }
    // Cheapest checks first, state last (docs/architecture.md §12).
    const auto pn = protection_.packet_number(datagram);
    // A packet number past kVarintMax could never be acknowledged (ACK frames carry varints,
    // RFC 9000 §12.3 caps packet numbers at 2^62 - 1): drop it rather than track it.
    if (!pn || *pn > kVarintMax) {
        ++stats_.drop_malformed;
        return false;
    }
    switch (replay_.classify(*pn)) {
        case ReplayWindow::Verdict::kNew:
            break;
        case ReplayWindow::Verdict::kDuplicate:
            ++stats_.drop_duplicate;
            return false;
        case ReplayWindow::Verdict::kTooOld:
            ++stats_.drop_too_old;
            return false;
    }
    const auto plaintext = protection_.open_in_place(*pn, datagram);
    if (!plaintext) {
        ++stats_.drop_malformed;
        return false;
    }
    if (!decode_frames(*plaintext, frames_) || frames_.empty()) {
        ++stats_.drop_malformed;
        return false;
    }
    replay_.mark(*pn);
    last_activity_ = now;
    ++stats_.packets_received;
    stats_.bytes_received += datagram.size();

    if (state_ == State::kClosing) {
        // Answer anything but a CLOSE with our CLOSE again (RFC 9000 §10.2.1).
        for (const Frame& f : frames_) {
            if (std::holds_alternative<CloseFrame>(f)) {
                enter_closed(ConnectionError::kNone, "", true);
                return true;
            }
        }
        close_resend_ = true;
        return true;
    }

    bool eliciting = false;
    bool violation = false;
    for (const Frame& f : frames_) {
        eliciting = eliciting || is_ack_eliciting(f);
        handle_frame(f, now, violation);
        if (violation || state_ != State::kOpen) break;
    }
    if (state_ != State::kOpen) return true;
    if (violation) {
        close(ConnectionError::kProtocolViolation, "protocol violation", now);
        return true;
    }
    announce_in_order();
    acks_.on_packet_received(*pn, eliciting, now);
    return true;
}

void Connection::handle_frame(const Frame& frame, Time now, bool& violation) {
    std::visit(
        [&](const auto& f) {
            using T = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<T, PaddingFrame> || std::is_same_v<T, PingFrame>) {
                // Nothing to do; a PING only asks for an ACK.
            } else if constexpr (std::is_same_v<T, AckFrame>) {
                if (f.ranges.empty() || f.ranges.front().largest >= next_packet_number_) {
                    violation = true;  // acknowledges a packet we never sent
                    return;
                }
                on_ack_frame(f, now);
            } else if constexpr (std::is_same_v<T, StreamFrame>) {
                on_stream_frame(f, violation);
            } else if constexpr (std::is_same_v<T, StreamOpenFrame>) {
                Stream* s = get_or_create_peer_stream(f.id, violation);
                if (!s || s->local || s->open_received || s->reset_local) {
                    if (s && s->local) violation = true;
                    return;
                }
                s->open_received = true;
                s->service = f.service;
            } else if constexpr (std::is_same_v<T, ResetStreamFrame>) {
                on_reset_frame(f, violation);
            } else if constexpr (std::is_same_v<T, MaxDataFrame>) {
                const uint64_t before = session_send_.max();
                session_send_.on_max(f.maximum);
                if (session_send_.max() > before) {
                    for (auto& [id, s] : streams_) mark_ready(*s);
                }
            } else if constexpr (std::is_same_v<T, MaxStreamDataFrame>) {
                Stream* s = get_or_create_peer_stream(f.id, violation);
                if (!s) return;
                const uint64_t before = s->send_credit.max();
                s->send_credit.on_max(f.maximum);
                if (s->send_credit.max() > before) mark_ready(*s);
            } else if constexpr (std::is_same_v<T, MaxStreamsFrame>) {
                peer_max_streams_ = std::max(peer_max_streams_, f.maximum);
            } else if constexpr (std::is_same_v<T, PathChallengeFrame>) {
                if (path_responses_.size() < kMaxPendingPathResponses) {
                    path_responses_.push_back(PathResponseFrame{f.data});
                }
            } else if constexpr (std::is_same_v<T, PathResponseFrame>) {
                // Path validation arrives with path management; an unsolicited response is
                // harmless and ignored.
            } else if constexpr (std::is_same_v<T, CloseFrame>) {
                enter_closed(static_cast<ConnectionError>(f.error_code), f.reason, true);
            } else if constexpr (std::is_same_v<T, DatagramFrame>) {
                if (!flows_.contains(f.flow)) {
                    ++stats_.datagrams_dropped_unknown_flow;
                    return;
                }
                ++stats_.datagrams_received;
                stats_.datagram_bytes_received += f.data.size();
                events_.push_back(DatagramReceived{f.flow, Bytes(f.data.begin(), f.data.end())});
            } else if constexpr (std::is_same_v<T, FlowOpenFrame>) {
                on_flow_open_frame(f, violation);
            } else if constexpr (std::is_same_v<T, FlowCloseFrame>) {
                if (flows_.erase(f.flow) > 0) events_.push_back(FlowClosed{f.flow});
            }
        },
        frame);
}

void Connection::on_stream_frame(const StreamFrame& f, bool& violation) {
    Stream* s = get_or_create_peer_stream(f.id, violation);
    if (!s) return;
    const size_t readable_before = s->recv.readable();
    const bool fin_before = s->recv.fin_received();
    uint64_t newly = 0;
    const auto result = s->recv.on_data(f.offset, f.data, f.fin, newly);
    if (result != RecvStream::Result::kOk) {
        violation = true;
        return;
    }
    if (newly > 0 && !session_recv_.on_received(session_recv_.received() + newly)) {
        violation = true;
        return;
    }
    stats_.stream_bytes_received += newly;
    if (s->reset_local) {
        // Nobody will read it: hand the credit straight back.
        give_back_session_credit(newly);
        if (s->recv.fin_received() && !s->peer_final) {
            s->peer_final = true;
            maybe_retire(f.id);
        }
        return;
    }
    if (!s->announced) return;  // reported once STREAM_OPEN arrives
    const bool now_readable = s->recv.readable() > 0 && readable_before == 0;
    const bool fin_arrived = s->recv.fin_received() && !fin_before;
    if (now_readable || fin_arrived) events_.push_back(StreamReadable{f.id});
    if (s->recv.finished() && !s->finish_reported) {
        s->finish_reported = true;
        events_.push_back(StreamFinished{f.id});
        maybe_retire(f.id);
    }
}

// Tells the application about the peer's streams whose STREAM_OPEN arrived, in the order the
// peer opened them: a STREAM_OPEN that overtook an earlier one (the earlier one's packet lost or
// reordered) waits for it. The application acts on each in turn (the exposing agent connects to
// its target), so the target sees the connections in the order the peer accepted them, as a
// direct connection would; some clients (iperf3 --bidir) tell their connections apart by that
// order. A stream the peer reset before its STREAM_OPEN was sent, or that is already gone, is
// passed over: it will never be announced.
void Connection::announce_in_order() {
    const Role peer = role_ == Role::kInitiator ? Role::kResponder : Role::kInitiator;
    while (true) {
        const uint64_t seq = next_announce_seq_;
        const StreamId id = make_stream_id(seq, peer);
        Stream* s = find(id);
        if (!s) {
            if (!peer_seen_.contains(seq)) return;  // not heard of yet
        } else if (!s->announced && !s->reset_local) {
            if (!s->open_received) return;  // its data came first; its STREAM_OPEN did not
            s->announced = true;
            events_.push_back(StreamOpened{id, s->service});
            if (s->recv.readable() > 0 || s->recv.fin_received()) {
                events_.push_back(StreamReadable{id});
            }
            if (s->recv.finished() && !s->finish_reported) {
                s->finish_reported = true;
                events_.push_back(StreamFinished{id});
                maybe_retire(id);
            }
        }
        next_announce_seq_ = seq + 1;
    }
}

void Connection::on_reset_frame(const ResetStreamFrame& f, bool& violation) {
    Stream* s = get_or_create_peer_stream(f.id, violation);
    if (!s) return;
    uint64_t newly = 0;
    const uint64_t unread_before = s->recv.highest_received() - s->recv.read_offset();
    if (s->recv.on_reset(f.final_size, newly) != RecvStream::Result::kOk) {
        violation = true;
        return;
    }
    if (newly > 0 && !session_recv_.on_received(session_recv_.received() + newly)) {
        violation = true;
        return;
    }
    // The peer aborted both directions: everything it sent that we did not read, and
    // everything up to its final size, is credit back.
    give_back_session_credit(s->reset_local ? newly : unread_before + newly);
    s->peer_final = true;
    if (s->reset_local) {  // ours crossed theirs, or theirs answers ours
        maybe_retire(f.id);
        return;
    }
    if (s->announced) events_.push_back(StreamReset{f.id, f.reason});
    if (s->send.finished() && s->send.all_acked()) {
        retire(f.id);  // the peer has all we sent, FIN included: it knows our final size
        return;
    }
    // Answer with our own final size, so that the peer can count what we sent and it lost
    // in flight; the stream leaves once that answer is acknowledged.
    s->reset_local = true;
    s->reset_reason = f.reason;
    s->reset_pending = true;
    scheduler_.remove(f.id);
    queue_control(*s);
}

void Connection::on_ack_frame(const AckFrame& ack, Time now) {
    on_reliable_ack(ack);
    const uint64_t prior_in_flight = loss_.bytes_in_flight();
    const auto& outcome = loss_.on_ack(ack, now, rtt_, AckTracker::kMaxAckDelay);
    uint64_t acked_bytes = 0;
    for (const SentPacket& p : outcome.acked) {
        rate_.on_packet_acked(p, now);
        if (p.in_flight) acked_bytes += p.size;
        for (const SentFrame& f : p.frames) on_frame_acked(f);
    }
    const LossTally lost = tally(outcome.lost);
    on_packets_lost(outcome.lost);
    if (!outcome.acked.empty()) {
        AckEvent ev{now,
                    acked_bytes,
                    prior_in_flight,
                    loss_.bytes_in_flight(),
                    outcome.largest_acked_sent_time,
                    &rtt_,
                    rate_.generate(now, lost.bytes)};
        cc_->on_ack(ev);
    }
    if (lost.bytes > 0 || outcome.persistent_congestion) {
        cc_->on_loss(LossEvent{now, lost.bytes, prior_in_flight, loss_.bytes_in_flight(),
                               lost.largest_sent, outcome.persistent_congestion});
    }
    pacer_.set_rate(cc_->pacing_rate());
    if (outcome.rtt_sampled) acks_.on_rtt(rtt_.smoothed());
}

// The packets of reliable_sent_ that the ranges cover. Both are sorted, so each range is a
// binary search and a walk over what it acknowledges.
void Connection::on_reliable_ack(const AckFrame& ack) {
    if (reliable_sent_.empty()) return;
    for (const AckRange& r : ack.ranges) {
        size_t lo = 0;
        size_t hi = reliable_sent_.size();
        while (lo < hi) {
            const size_t mid = lo + (hi - lo) / 2;
            if (reliable_sent_[mid].packet_number < r.smallest) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for (size_t i = lo; i < reliable_sent_.size(); ++i) {
            ReliableSent& p = reliable_sent_[i];
            if (p.packet_number > r.largest) break;
            if (p.acked) continue;
            p.acked = true;
            reliable_in_flight_ -= p.size;
            for (const SentFrame& f : p.frames) on_frame_acked(f);
        }
    }
    while (!reliable_sent_.empty() && reliable_sent_.front().acked) reliable_sent_.pop_front();
}

void Connection::set_path_reliable(bool reliable) {
    if (reliable == path_reliable_) return;
    path_reliable_ = reliable;
    requeue_all_unacked();
}

void Connection::requeue_all_unacked() {
    uint64_t requeued = 0;
    for (; !reliable_sent_.empty(); reliable_sent_.pop_front()) {
        ReliableSent& p = reliable_sent_.front();
        if (p.acked) continue;
        ++requeued;
        for (const SentFrame& f : p.frames) requeue(f);
    }
    reliable_in_flight_ = 0;
    for (const SentPacket& p : loss_.take_all()) {
        if (!p.ack_eliciting) continue;
        ++requeued;
        for (const SentFrame& f : p.frames) requeue(f);
    }
    probes_pending_ = 0;
    stats_.packets_requeued_path_kind += requeued;
}

void Connection::on_frame_acked(const SentFrame& frame) {
    std::visit(
        [&](const auto& f) {
            using T = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<T, SentStreamData>) {
                Stream* s = find(f.id);
                if (!s || s->reset_local) return;
                s->send.on_acked(f.offset, f.length, f.fin);
                if (s->write_blocked && s->send.writable() > 0) {
                    s->write_blocked = false;
                    events_.push_back(StreamWritable{f.id});
                }
                maybe_retire(f.id);
            } else if constexpr (std::is_same_v<T, SentStreamOpen>) {
                if (Stream* s = find(f.id)) {
                    s->open_acked = true;
                    s->open_pending = false;
                    maybe_retire(f.id);
                }
            } else if constexpr (std::is_same_v<T, SentResetStream>) {
                if (Stream* s = find(f.id)) {
                    s->reset_acked = true;
                    s->reset_pending = false;
                    maybe_retire(f.id);
                }
            } else if constexpr (std::is_same_v<T, SentAck>) {
                acks_.on_ack_acked(f.largest);
            } else if constexpr (std::is_same_v<T, SentFlowOpen>) {
                if (auto it = flows_.find(f.flow); it != flows_.end()) {
                    it->second.open_acked = true;
                    it->second.open_pending = false;
                }
            }
        },
        frame);
}

void Connection::on_packets_lost(const std::vector<SentPacket>& lost) {
    stats_.packets_lost += lost.size();
    for (const SentPacket& p : lost) {
        if (!p.frames.empty()) ++stats_.packets_retransmitted_frames;
        for (const SentFrame& f : p.frames) requeue(f);
    }
}

void Connection::requeue(const SentFrame& frame) {
    std::visit(
        [&](const auto& f) {
            using T = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<T, SentStreamData>) {
                Stream* s = find(f.id);
                if (!s || s->reset_local) return;
                s->send.on_lost(f.offset, f.length, f.fin);
                mark_ready(*s);
            } else if constexpr (std::is_same_v<T, SentStreamOpen>) {
                Stream* s = find(f.id);
                if (s && !s->open_acked && !s->reset_local) {
                    s->open_pending = true;
                    queue_control(*s);
                }
            } else if constexpr (std::is_same_v<T, SentResetStream>) {
                Stream* s = find(f.id);
                if (s && !s->reset_acked) {
                    s->reset_pending = true;
                    queue_control(*s);
                }
            } else if constexpr (std::is_same_v<T, SentMaxData>) {
                send_max_data_ = true;
            } else if constexpr (std::is_same_v<T, SentMaxStreamData>) {
                Stream* s = find(f.id);
                if (s && !s->reset_local && !s->recv.fin_received()) {
                    s->max_stream_data_pending = true;
                    queue_control(*s);
                }
            } else if constexpr (std::is_same_v<T, SentMaxStreams>) {
                send_max_streams_ = true;
            } else if constexpr (std::is_same_v<T, SentFlowOpen>) {
                auto it = flows_.find(f.flow);
                if (it != flows_.end() && !it->second.open_acked && !it->second.open_pending) {
                    it->second.open_pending = true;
                    flow_opens_.push_back(f.flow);
                }
            } else if constexpr (std::is_same_v<T, SentFlowClose>) {
                flow_closes_.push_back(f.flow);
            }
        },
        frame);
}

// --- network side: timers ------------------------------------------------------------------

void Connection::on_timer(Time now) {
    if (state_ == State::kClosed) return;
    if (state_ == State::kClosing) {
        if (now >= close_deadline_) state_ = State::kClosed;
        return;
    }
    if (now >= last_activity_ + config_.idle_timeout) {
        enter_closed(ConnectionError::kIdleTimeout, "idle timeout", false);
        return;
    }
    if (now >= loss_.deadline(rtt_, AckTracker::kMaxAckDelay)) {
        const auto& outcome = loss_.on_timeout(now, rtt_, AckTracker::kMaxAckDelay);
        if (!outcome.lost.empty()) {
            const LossTally lost = tally(outcome.lost);
            const uint64_t prior = loss_.bytes_in_flight() + lost.bytes;
            on_packets_lost(outcome.lost);
            cc_->on_loss(LossEvent{now, lost.bytes, prior, loss_.bytes_in_flight(),
                                   lost.largest_sent, outcome.persistent_congestion});
            pacer_.set_rate(cc_->pacing_rate());
        }
        if (outcome.probes > 0) {
            ++stats_.pto_count;
            probes_pending_ = outcome.probes;
        }
    }
    if (now >= last_ack_eliciting_sent_ + config_.keepalive_interval) ping_pending_ = true;
}

Time Connection::next_deadline() const {
    if (state_ == State::kClosed) return kNever;
    if (state_ == State::kClosing) return !close_sent_ || close_resend_ ? Time{} : close_deadline_;
    Time t = last_activity_ + config_.idle_timeout;
    t = std::min(t, last_ack_eliciting_sent_ + config_.keepalive_interval);
    t = std::min(t, loss_.deadline(rtt_, AckTracker::kMaxAckDelay));
    t = std::min(t, acks_.ack_deadline());
    if (acks_.ack_now() || probes_pending_ > 0) return Time{};
    if (has_pending_control() || !scheduler_.empty() || !datagram_queue_.empty()) {
        if (path_reliable_) {
            // Not paced: TCP paces. Wait for the socket to drain or acknowledgements to come.
            if (path_writable_ &&
                reliable_in_flight_ + config_.max_datagram_size <= kReliablePathWindow) {
                return Time{};
            }
        } else if (loss_.bytes_in_flight() + config_.max_datagram_size <=
                   cc_->congestion_window()) {
            t = std::min(t, pacer_.earliest_send_time(last_send_time_, config_.max_datagram_size));
        }
    }
    return t;
}

// --- network side: transmit ----------------------------------------------------------------

std::optional<Bytes> Connection::poll_transmit(Time now) {
    Bytes out(config_.max_datagram_size);
    const size_t n = write_transmit(now, out);
    if (n == 0) return std::nullopt;
    out.resize(n);
    return out;
}

size_t Connection::write_transmit(Time now, MutableByteView out) {
    assert(out.size() >= config_.max_datagram_size);
    out = out.first(config_.max_datagram_size);
    if (state_ == State::kClosed) return 0;
    if (state_ == State::kClosing) {
        if (!close_to_send_ || (!close_resend_ && close_sent_)) return 0;
        close_resend_ = false;
        close_sent_ = true;
        const size_t plain =
            encode_frame(*close_to_send_, out.subspan(protection_.header_size()));
        return seal(next_packet_number_++, out, plain);
    }
    const bool ack_owed = acks_.ack_now() || acks_.ack_deadline() <= now;
    const bool probe = probes_pending_ > 0;
    const bool cwnd_open =
        path_reliable_
            ? path_writable_ &&
                  reliable_in_flight_ + config_.max_datagram_size <= kReliablePathWindow
            : loss_.bytes_in_flight() + config_.max_datagram_size <= cc_->congestion_window();
    const bool pacer_open =
        path_reliable_ || pacer_.earliest_send_time(now, config_.max_datagram_size) <= now;
    const bool want_eliciting =
        has_pending_control() || !scheduler_.empty() || !datagram_queue_.empty();
    if (probe || (want_eliciting && cwnd_open && pacer_open)) {
        if (const size_t n = build_packet(now, out, probe, ack_owed)) return n;
    }
    if (ack_owed) return build_packet(now, out, false, true, /*ack_only=*/true);
    return 0;
}

size_t Connection::seal(uint64_t packet_number, MutableByteView out, size_t plaintext_len) {
    const size_t n = protection_.seal_in_place(packet_number, out, plaintext_len);
    if (n == 0) return 0;
    ++stats_.packets_sent;
    stats_.bytes_sent += n;
    return n;
}

// Accumulates the frames of one packet in the datagram buffer, within the datagram budget.
struct Connection::PacketBuilder {
    explicit PacketBuilder(MutableByteView payload_) : payload(payload_) {}
    size_t room() const { return payload.size() - used; }
    bool add(const Frame& f) {
        if (encoded_size(f) > room()) return false;
        used += encode_frame(f, payload.subspan(used));
        eliciting = eliciting || is_ack_eliciting(f);
        return true;
    }
    MutableByteView payload;  // between the header's room and the tag's
    size_t used = 0;
    SentPacket sent;
    bool eliciting = false;
};

size_t Connection::build_packet(Time now, MutableByteView out, bool probe, bool include_ack,
                                bool ack_only) {
    PacketBuilder b(out.subspan(protection_.header_size(),
                                config_.max_datagram_size - protection_.overhead()));

    // An ACK goes in any packet we send while one is owed (piggybacked on data).
    if ((include_ack || acks_.ack_deadline() != kNever) && acks_.has_ranges()) {
        AckFrame ack = acks_.build(now);
        const uint64_t largest = ack.ranges.front().largest;
        if (b.add(ack)) {
            b.sent.frames.push_back(SentAck{largest});
            acks_.on_ack_sent();
        }
    }
    if (ack_only) {
        if (b.used == 0) return 0;
        if (++ack_only_run_ >= kAckOnlyBeforePing && b.add(PingFrame{})) {
            b.sent.frames.push_back(SentPing{});
        }
    } else {
        fill_control(b);
        // Datagrams before stream data: their queue is short and bounded, and what rides them
        // (games, voice, DNS) would rather not wait behind a bulk transfer.
        fill_datagrams(b);
        fill_stream_data(b);
        if (probe && !b.eliciting && b.add(PingFrame{})) b.sent.frames.push_back(SentPing{});
        if (!path_reliable_ && scheduler_.empty() && !has_pending_control() &&
            datagram_queue_.empty()) {
            rate_.on_app_limited(loss_.bytes_in_flight());
        }
    }
    if (b.used == 0) return 0;
    if (b.eliciting) ack_only_run_ = 0;

    const uint64_t pn = next_packet_number_++;
    const size_t size = seal(pn, out, b.used);
    if (size == 0) {
        for (const SentFrame& f : b.sent.frames) requeue(f);
        return 0;
    }
    last_send_time_ = now;
    if (b.eliciting) {
        if (probe && probes_pending_ > 0) --probes_pending_;
        last_ack_eliciting_sent_ = now;
        if (path_reliable_) {
            ++stats_.packets_sent_reliable;
            reliable_in_flight_ += size;
            reliable_sent_.push_back(
                ReliableSent{pn, static_cast<uint32_t>(size), false, std::move(b.sent.frames)});
            return size;
        }
        SentPacket& sent = b.sent;
        sent.packet_number = pn;
        sent.time_sent = now;
        sent.size = static_cast<uint32_t>(size);
        sent.ack_eliciting = true;
        sent.in_flight = true;
        rate_.on_packet_sent(sent, loss_.bytes_in_flight(), now);
        cc_->on_packet_sent(now, sent.size, loss_.bytes_in_flight());
        pacer_.on_packet_sent(now, sent.size);
        loss_.on_packet_sent(std::move(sent));
    }
    return size;
}

void Connection::fill_control(PacketBuilder& b) {
    if (ping_pending_ && b.add(PingFrame{})) {
        ping_pending_ = false;
        b.sent.frames.push_back(SentPing{});
    }
    while (!path_responses_.empty() && b.add(path_responses_.front())) {
        path_responses_.pop_front();
    }
    if (send_max_data_ && b.add(MaxDataFrame{session_recv_.max()})) {
        send_max_data_ = false;
        b.sent.frames.push_back(SentMaxData{});
    }
    if (send_max_streams_ && b.add(MaxStreamsFrame{local_max_streams_})) {
        send_max_streams_ = false;
        b.sent.frames.push_back(SentMaxStreams{});
    }
    while (!flow_closes_.empty() && b.add(FlowCloseFrame{flow_closes_.front()})) {
        b.sent.frames.push_back(SentFlowClose{flow_closes_.front()});
        flow_closes_.pop_front();
    }
    while (!flow_opens_.empty()) {
        auto it = flows_.find(flow_opens_.front());
        if (it == flows_.end() || !it->second.open_pending) {
            flow_opens_.pop_front();  // closed before its FLOW_OPEN went out, or acked
            continue;
        }
        if (!b.add(FlowOpenFrame{it->first, it->second.service})) break;
        it->second.open_pending = false;
        b.sent.frames.push_back(SentFlowOpen{it->first});
        flow_opens_.pop_front();
    }
    while (!control_queue_.empty()) {
        Stream* s = find(control_queue_.front());
        if (!s) {
            control_queue_.pop_front();
            continue;
        }
        if (s->reset_pending) {
            if (!b.add(ResetStreamFrame{s->id, s->reset_reason, s->send.highest_sent()})) return;
            s->reset_pending = false;
            s->open_pending = false;
            s->max_stream_data_pending = false;
            b.sent.frames.push_back(SentResetStream{s->id});
        }
        if (s->open_pending) {
            if (!b.add(StreamOpenFrame{s->id, s->service})) return;
            s->open_pending = false;
            b.sent.frames.push_back(SentStreamOpen{s->id});
        }
        if (s->max_stream_data_pending) {
            if (!b.add(MaxStreamDataFrame{s->id, s->advertised_max})) return;
            s->max_stream_data_pending = false;
            b.sent.frames.push_back(SentMaxStreamData{s->id});
        }
        s->in_control_queue = false;
        control_queue_.pop_front();
    }
}

void Connection::fill_datagrams(PacketBuilder& b) {
    while (!datagram_queue_.empty()) {
        QueuedDatagram& d = datagram_queue_.front();
        const size_t size = d.data.size();
        if (flows_.contains(d.flow)) {
            // Does not fit beside this packet's other frames: the next packet takes it.
            if (!b.add(DatagramFrame{d.flow, d.data})) return;
            ++stats_.datagrams_sent;
            stats_.datagram_bytes_sent += size;
        }
        datagram_queue_bytes_ -= size;
        datagram_queue_.pop_front();
    }
}

void Connection::fill_stream_data(PacketBuilder& b) {
    // One chunk per stream per turn, round-robin, until the packet is full.
    // Largest STREAM frame header: every field an 8-byte varint. Below that much room we
    // stop before taking a stream's turn, so the stream next in line keeps its place.
    static const size_t kMaxStreamHeader = stream_frame_overhead(kVarintMax, kVarintMax, 16383);
    size_t turns = scheduler_.size();
    while (turns-- > 0 && b.room() > kMaxStreamHeader) {
        const auto id = scheduler_.pop();
        if (!id) break;
        Stream* s = find(*id);
        if (!s || s->reset_local) continue;
        const uint64_t limit = send_limit(*s);
        const size_t overhead = stream_frame_overhead(*id, limit, b.room());
        const uint64_t highest_before = s->send.highest_sent();
        if (auto chunk = s->send.next_chunk(b.room() - overhead, limit)) {
            const uint64_t len = chunk->data.size();
            const uint64_t end = chunk->offset + len;
            const bool added = b.add(StreamFrame{*id, chunk->offset, chunk->data, chunk->fin});
            assert(added);
            (void)added;
            b.sent.frames.push_back(SentStreamData{*id, chunk->offset, len, chunk->fin});
            const uint64_t fresh = end > highest_before ? end - highest_before : 0;
            if (fresh > 0) {
                session_send_.consume(fresh);
                s->send_credit.consume(fresh);
            }
            stats_.stream_bytes_sent += fresh;
            stats_.stream_bytes_retransmitted += len - fresh;
        }
        mark_ready(*s);
    }
}

}  // namespace burrow
