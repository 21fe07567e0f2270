#include "tunnel/stream_pipe.h"

#include <algorithm>

namespace burrow {

bool is_refusal(ResetReason reason) {
    switch (reason) {
        case ResetReason::kRefused:
        case ResetReason::kUnknownService:
        case ResetReason::kNotAllowed:
        case ResetReason::kUnreachable:
        case ResetReason::kTooManyStreams:
            return true;
        case ResetReason::kAborted:
        case ResetReason::kSessionClosing:
            return false;
    }
    return false;
}

const char* reset_reason_text(ResetReason reason) {
    switch (reason) {
        case ResetReason::kAborted:
            return "aborted";
        case ResetReason::kRefused:
            return "the target refused the connection";
        case ResetReason::kUnknownService:
            return "no such service";
        case ResetReason::kNotAllowed:
            return "not allowed";
        case ResetReason::kUnreachable:
            return "the target is unreachable";
        case ResetReason::kSessionClosing:
            return "the session is closing";
        case ResetReason::kTooManyStreams:
            return "too many streams";
    }
    return "unknown reason";
}

// --- the TCP side ------------------------------------------------------------------------------

void StreamPipe::on_tcp_connected(Connection& conn) {
    tcp_open_ = true;
    if (stream_done_) {
        // The peer gave up while we were connecting.
        act(PipeAction::kClose);
        return;
    }
    act(PipeAction::kResumeReading);
    if (conn.readable(id_) > 0 || peer_fin_) {
        want_flush_ = true;
        act(PipeAction::kFlush);
    }
}

void StreamPipe::refuse(Connection* conn, ResetReason reason) {
    tcp_closed_ = true;
    if (!stream_done_ && !session_gone_ && conn) {
        conn->reset_stream(id_, reason);
        stream_done_ = true;
    }
}

size_t StreamPipe::read_space(const Connection& conn) const {
    if (session_gone_ || stream_done_ || fin_sent_ || has_pending()) return 0;
    return conn.writable(id_);
}

void StreamPipe::on_tcp_data(Connection& conn, ByteView data) {
    if (session_gone_ || stream_done_ || fin_sent_) return;
    if (has_pending()) {
        // More than read_space() arrived (src/ read before it paused): keep the order. What
        // the stream took already goes first, so the buffer holds only what waits.
        pending_.erase(pending_.begin(),
                       pending_.begin() + static_cast<std::ptrdiff_t>(pending_head_));
        pending_head_ = 0;
        pending_.insert(pending_.end(), data.begin(), data.end());
        return;
    }
    const size_t taken = conn.write(id_, data);
    to_stream_ += taken;
    if (taken < data.size()) {
        pending_.assign(data.begin() + static_cast<std::ptrdiff_t>(taken), data.end());
        pending_head_ = 0;
        act(PipeAction::kPauseReading);
    } else if (conn.writable(id_) == 0) {
        act(PipeAction::kPauseReading);
    }
}

void StreamPipe::on_tcp_eof(Connection& conn) {
    tcp_eof_ = true;
    if (!session_gone_ && !stream_done_ && !has_pending() && !fin_sent_) {
        conn.shutdown_write(id_);
        fin_sent_ = true;
    }
    maybe_close_tcp();
}

size_t StreamPipe::read_output(Connection& conn, MutableByteView out) {
    if (session_gone_ || !tcp_open_ || tcp_closed_ || tcp_shut_) {
        want_flush_ = false;
        return 0;
    }
    // Taken span by span from where the stream holds them (Connection::peek), so these
    // bytes are copied once on their way to the socket: into `out`.
    size_t n = 0;
    while (n < out.size()) {
        const ByteView part = conn.peek(id_);
        if (part.empty()) break;
        const size_t take = std::min(part.size(), out.size() - n);
        std::copy_n(part.begin(), take, out.begin() + static_cast<ptrdiff_t>(n));
        conn.consume(id_, take);
        n += take;
    }
    if (n == 0) conn.consume(id_, 0);  // a FIN after the last byte still finishes the stream
    to_tcp_ += n;
    if (n > 0) return n;
    want_flush_ = false;
    // Every byte is out and the peer finished: our FIN follows them.
    if (peer_fin_ && conn.readable(id_) == 0) {
        tcp_shut_ = true;
        act(PipeAction::kShutdown);
    }
    return 0;
}

void StreamPipe::on_tcp_drained(Connection& conn) {
    (void)conn;
    want_flush_ = true;
    act(PipeAction::kFlush);
}

void StreamPipe::on_tcp_shutdown_done() {
    tcp_fin_out_ = true;
    maybe_close_tcp();
}

void StreamPipe::on_tcp_closed(Connection* conn) {
    tcp_closed_ = true;
    // Clean only when both directions finished: the client's FIN went into the stream and the
    // peer's FIN came out to the client. A socket that closes with the peer's direction still
    // open (the client left after its half-close, a write failed) would otherwise leave that
    // direction's bytes unread in the stream for good: its credit never returns, and once the
    // session's window is used up that way every stream on the session stalls.
    const bool clean = tcp_eof_ && fin_sent_ && tcp_shut_;
    if (!session_gone_ && !stream_done_ && !clean && conn) {
        conn->reset_stream(id_, ResetReason::kAborted);
        stream_done_ = true;
        if (!note_) note_ = PipeNote::kClientAborted;
    }
}

// --- the stream side ---------------------------------------------------------------------------

void StreamPipe::on_readable() {
    if (want_flush_ || !tcp_open_ || tcp_closed_ || tcp_shut_) return;
    want_flush_ = true;
    act(PipeAction::kFlush);
}

void StreamPipe::on_writable(Connection& conn) {
    flush_pending(conn);
}

void StreamPipe::on_finished() {
    peer_fin_ = true;
    if (!tcp_open_ || tcp_closed_ || tcp_shut_) return;
    want_flush_ = true;
    act(PipeAction::kFlush);
}

void StreamPipe::on_reset(ResetReason reason) {
    stream_done_ = true;
    pending_.clear();
    pending_head_ = 0;
    reset_reason_ = reason;
    if (!note_) note_ = is_refusal(reason) ? PipeNote::kRefusedByPeer : PipeNote::kResetByPeer;
    if (tcp_open_ && !tcp_closed_) {
        // A refusal is an answer, not a failure: the client sees a plain end of stream.
        act(is_refusal(reason) ? PipeAction::kFinish : PipeAction::kReset);
    }
}

void StreamPipe::on_closed() {
    stream_done_ = true;
}

void StreamPipe::session_gone() {
    session_gone_ = true;
    stream_done_ = true;
    if (tcp_open_ && !tcp_closed_) act(PipeAction::kReset);
}

std::optional<PipeAction> StreamPipe::poll_action() {
    if (actions_.empty()) return std::nullopt;
    const PipeAction a = actions_.front();
    actions_.pop_front();
    return a;
}

// --- moving bytes ------------------------------------------------------------------------------

void StreamPipe::flush_pending(Connection& conn) {
    if (session_gone_ || stream_done_) return;
    if (has_pending()) {
        // The stream takes what its credit allows, often a little of a large read at a time
        // (many streams share the connection's window): the bytes taken are skipped, not moved.
        const size_t taken = conn.write(id_, ByteView(pending_).subspan(pending_head_));
        to_stream_ += taken;
        pending_head_ += taken;
        if (has_pending()) return;
        pending_.clear();
        pending_head_ = 0;
    }
    if (tcp_eof_) {
        if (!fin_sent_) {
            conn.shutdown_write(id_);
            fin_sent_ = true;
        }
    } else if (tcp_open_ && !tcp_closed_) {
        act(PipeAction::kResumeReading);
    }
}

void StreamPipe::maybe_close_tcp() {
    // Both directions finished and our FIN is out: nothing more can pass; free the socket.
    if (tcp_open_ && tcp_eof_ && tcp_fin_out_ && !tcp_closed_) act(PipeAction::kClose);
}

}  // namespace burrow
