#include "src/stream_bridge.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

namespace burrow {
namespace {

// One read from the stream per TCP write: large enough that a fast path costs few calls,
// small enough to live on the stack.
constexpr size_t kReadChunk = 64 * 1024;

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

}  // namespace

const char* reset_reason_text(ResetReason reason) {
    switch (reason) {
        case ResetReason::kAborted: return "aborted";
        case ResetReason::kRefused: return "the target refused the connection";
        case ResetReason::kUnknownService: return "no such service";
        case ResetReason::kNotAllowed: return "not allowed";
        case ResetReason::kUnreachable: return "the target is unreachable";
        case ResetReason::kSessionClosing: return "the session is closing";
        case ResetReason::kTooManyStreams: return "too many streams";
    }
    return "unknown reason";
}

StreamBridge::StreamBridge(Host& host, StreamId id, std::string label)
    : host_(&host), id_(id), label_(std::move(label)) {}

void StreamBridge::attach(std::shared_ptr<TcpConnection> tcp) {
    tcp_ = std::move(tcp);
    std::weak_ptr<StreamBridge> weak = weak_from_this();
    tcp_->start(TcpCallbacks{
        .on_data =
            [weak](ByteView data) {
                if (auto self = weak.lock()) self->on_tcp_data(data);
            },
        .on_eof =
            [weak] {
                if (auto self = weak.lock()) self->on_tcp_eof();
            },
        .on_drained =
            [weak] {
                if (auto self = weak.lock()) self->on_tcp_drained();
            },
        .on_closed =
            [weak](const std::string& reason) {
                if (auto self = weak.lock()) self->on_tcp_closed(reason);
            },
    });
    if (stream_done_) {
        // The peer gave up while we were connecting.
        tcp_->close();
        return;
    }
    pump_to_tcp();
}

void StreamBridge::refuse(ResetReason reason) {
    auto keep = shared_from_this();
    tcp_closed_ = true;
    if (!stream_done_ && host_) {
        host_->connection().reset_stream(id_, reason);
        stream_done_ = true;
        host_->kick();
    }
    maybe_done();
}

// --- TCP side --------------------------------------------------------------------------------

void StreamBridge::on_tcp_data(ByteView data) {
    if (!host_ || stream_done_ || fin_sent_) return;
    if (!pending_.empty()) {
        // Reading should be paused; keep order anyway.
        pending_.insert(pending_.end(), data.begin(), data.end());
        tcp_->pause_reading();
        return;
    }
    const size_t taken = host_->connection().write(id_, data);
    to_stream_ += taken;
    if (taken < data.size()) {
        pending_.assign(data.begin() + static_cast<std::ptrdiff_t>(taken), data.end());
        tcp_->pause_reading();
    }
    host_->kick();
}

void StreamBridge::on_tcp_eof() {
    tcp_eof_ = true;
    if (host_ && !stream_done_ && pending_.empty() && !fin_sent_) {
        host_->connection().shutdown_write(id_);
        fin_sent_ = true;
        host_->kick();
    }
    maybe_close_tcp();
}

void StreamBridge::on_tcp_drained() {
    auto keep = shared_from_this();
    pump_to_tcp();
}

void StreamBridge::on_tcp_closed(const std::string& reason) {
    auto keep = shared_from_this();
    tcp_closed_ = true;
    // Clean only when both directions finished: the client's FIN went into the stream and the
    // peer's FIN came out to the client. A socket that closes with the peer's direction still
    // open (the client left after its half-close, a write failed) would otherwise leave that
    // direction's bytes unread in the stream for good: its credit never returns, and once the
    // session's window is used up that way every stream on the session stalls.
    const bool clean = tcp_eof_ && fin_sent_ && tcp_shut_;
    if (host_ && !stream_done_ && !clean) {
        // The client went away (RST, an error) before finishing: the peer must not wait.
        spdlog::debug("{}: stream {}: tcp closed ({}), resetting", label_, id_, reason);
        host_->connection().reset_stream(id_, ResetReason::kAborted);
        stream_done_ = true;
        host_->kick();
    }
    maybe_done();
}

// --- stream side -----------------------------------------------------------------------------

void StreamBridge::on_readable() {
    pump_to_tcp();
}

void StreamBridge::on_writable() {
    flush_pending();
}

void StreamBridge::on_finished() {
    peer_fin_ = true;
    pump_to_tcp();
}

void StreamBridge::on_reset(ResetReason reason) {
    auto keep = shared_from_this();
    stream_done_ = true;
    pending_.clear();
    if (is_refusal(reason)) {
        spdlog::warn("{}: refused by the peer: {}", label_, reset_reason_text(reason));
    } else {
        spdlog::debug("{}: stream {} reset by the peer: {}", label_, id_,
                      reset_reason_text(reason));
    }
    if (tcp_ && !tcp_closed_) {
        // A refusal is an answer, not a failure: the client sees a plain end of stream.
        if (is_refusal(reason)) {
            tcp_->finish();
        } else {
            tcp_->reset();
        }
    }
    maybe_done();
}

void StreamBridge::on_closed() {
    auto keep = shared_from_this();
    stream_done_ = true;
    maybe_done();
}

void StreamBridge::session_gone() {
    auto keep = shared_from_this();
    host_ = nullptr;
    stream_done_ = true;
    if (tcp_ && !tcp_closed_) tcp_->reset();
    maybe_done();
}

// --- moving bytes ----------------------------------------------------------------------------

void StreamBridge::flush_pending() {
    if (!host_ || stream_done_) return;
    if (!pending_.empty()) {
        const size_t taken = host_->connection().write(id_, pending_);
        to_stream_ += taken;
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(taken));
        if (!pending_.empty()) return;
        if (tcp_ && !tcp_eof_) tcp_->resume_reading();
    }
    if (tcp_eof_ && !fin_sent_) {
        host_->connection().shutdown_write(id_);
        fin_sent_ = true;
    }
    host_->kick();
}

void StreamBridge::pump_to_tcp() {
    if (!host_ || !tcp_ || tcp_closed_ || tcp_shut_ || !tcp_->is_open()) return;
    Connection& conn = host_->connection();
    std::array<uint8_t, kReadChunk> buffer;
    bool read_any = false;
    while (true) {
        const size_t queued = tcp_->write_queue_bytes();
        const size_t limit = TcpOptions{}.max_write_queue;
        if (queued >= limit) {
            // Leave the rest in the stream; its credit stops until the client catches up.
            tcp_->notify_when_drained(limit / 2);
            break;
        }
        const size_t want = std::min(buffer.size(), limit - queued);
        const size_t n = conn.read(id_, MutableByteView(buffer.data(), want));
        if (n == 0) break;
        read_any = true;
        to_tcp_ += n;
        tcp_->write(ByteView(buffer.data(), n));
    }
    // A read may have produced StreamFinished; the session delivers it after this returns, but
    // peer_fin_ may already be known from an earlier event.
    if (peer_fin_ && conn.readable(id_) == 0 && !tcp_shut_) {
        tcp_shut_ = true;
        std::weak_ptr<StreamBridge> weak = weak_from_this();
        tcp_->shutdown([weak] {
            if (auto self = weak.lock()) self->maybe_close_tcp();
        });
    }
    if (read_any) host_->kick();  // the reads returned credit
}

void StreamBridge::maybe_close_tcp() {
    // Both directions finished: nothing more can pass; free the socket.
    if (tcp_ && tcp_eof_ && tcp_shut_ && tcp_->write_queue_bytes() == 0 && !tcp_closed_) {
        tcp_->close();
    }
}

void StreamBridge::maybe_done() {
    if (done_ || !stream_done_ || !tcp_closed_) return;
    done_ = true;
    if (host_) host_->bridge_done(id_);
}

}  // namespace burrow
