#include "signal/stun_tcp.h"

#include <algorithm>
#include <cstring>

#include "signal/stun_answer.h"

namespace burrow {
namespace {

// RFC 7983 §7: a first byte 0-3 is STUN (the two top bits zero, RFC 8489 §6, and a method
// below 0x080, which every STUN method registered is); 20-63 is (D)TLS, so a TLS ClientHello
// (0x16) sent to a STUN port is refused at its first byte.
constexpr uint8_t kStunMaxFirstByte = 3;

}  // namespace

const char* to_string(StunStreamError e) {
    switch (e) {
        case StunStreamError::kNotStun:
            return "not STUN";
        case StunStreamError::kTooLong:
            return "message too long";
        case StunStreamError::kTruncated:
            return "ended inside a message";
    }
    return "?";
}

const char* to_string(StunTcpClose c) {
    switch (c) {
        case StunTcpClose::kDone:
            return "done";
        case StunTcpClose::kNotStun:
            return "not_stun";
        case StunTcpClose::kTooLong:
            return "too_long";
        case StunTcpClose::kTruncated:
            return "truncated";
        case StunTcpClose::kMalformed:
            return "malformed";
        case StunTcpClose::kNotRequest:
            return "not_request";
        case StunTcpClose::kTimeout:
            return "timeout";
        case StunTcpClose::kFull:
            return "full";
        case StunTcpClose::kCount:
            break;
    }
    return "?";
}

// The header's Message Length (bytes 2-3): the attributes' bytes after the 20-byte header.
size_t StunStreamFramer::declared_length() const {
    return size_t{buffer_[2]} << 8 | buffer_[3];
}

// What the bytes buffered so far say about the header; checked after every copy, so a bad
// stream is refused at the first byte that shows it.
std::optional<StunStreamError> StunStreamFramer::check_header() const {
    if (have_ >= 1 && buffer_[0] > kStunMaxFirstByte) return StunStreamError::kNotStun;
    if (have_ >= 4) {
        const size_t length = declared_length();
        if (length % 4 != 0) return StunStreamError::kNotStun;  // RFC 8489 §5
        if (kStunHeaderSize + length > kStunTcpMaxMessage) return StunStreamError::kTooLong;
    }
    if (have_ >= 8) {
        const uint32_t cookie = uint32_t{buffer_[4]} << 24 | uint32_t{buffer_[5]} << 16 |
                                uint32_t{buffer_[6]} << 8 | buffer_[7];
        if (cookie != kStunMagicCookie) return StunStreamError::kNotStun;
    }
    return std::nullopt;
}

std::optional<ByteView> StunStreamFramer::next(ByteView& in) {
    if (error_) {
        in = {};
        return std::nullopt;
    }
    if (complete_) {
        have_ = 0;
        complete_ = false;
    }
    while (!in.empty()) {
        // Up to the end of the header first, then up to the end of the message it declares.
        size_t want = kStunHeaderSize;
        if (have_ >= kStunHeaderSize) want += declared_length();
        // The checks need bytes 0, 2-3 and 4-7 as soon as they come: copy in small steps
        // until the header is whole.
        const size_t step_end = have_ < 1 ? 1 : have_ < 4 ? 4 : have_ < 8 ? 8 : want;
        const size_t n = std::min(in.size(), step_end - have_);
        std::memcpy(buffer_.data() + have_, in.data(), n);
        have_ += n;
        in = in.subspan(n);
        if (auto e = check_header()) {
            error_ = e;
            have_ = 0;
            in = {};
            return std::nullopt;
        }
        if (have_ >= kStunHeaderSize && have_ == kStunHeaderSize + declared_length()) {
            complete_ = true;
            return ByteView(buffer_.data(), have_);
        }
    }
    return std::nullopt;
}

std::optional<StunStreamError> StunStreamFramer::finish() {
    if (!error_ && !complete_ && have_ > 0) {
        error_ = StunStreamError::kTruncated;
        have_ = 0;
    }
    return error_;
}

bool StunTcpServer::on_open(ConnId id, const SocketAddress& peer, Time now) {
    if (conns_.size() >= limits_.max_connections) {
        stats_.closed[static_cast<size_t>(StunTcpClose::kFull)]++;
        return false;
    }
    stats_.accepted++;
    conns_.insert_or_assign(id, Conn{peer, now + limits_.lifetime, {}, 0, false});
    return true;
}

StunTcpOutput StunTcpServer::close(Conn& c, StunTcpOutput out, StunTcpClose why) {
    c.closing = true;
    stats_.closed[static_cast<size_t>(why)]++;
    out.close = why;
    return out;
}

StunTcpOutput StunTcpServer::on_bytes(ConnId id, ByteView data) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.closing) return {};
    Conn& c = it->second;
    StunTcpOutput out;
    while (auto message = c.framer.next(data)) {
        // Cheapest check first: the framer has seen the header; now the whole message.
        std::optional<StunMessage> request = decode_stun(*message);
        if (!request) return close(c, std::move(out), StunTcpClose::kMalformed);
        if (request->type != kStunBindingRequest) {
            return close(c, std::move(out), StunTcpClose::kNotRequest);
        }
        // No size limit: the handshake proved the address (see the header).
        std::optional<Bytes> answer =
            stun_binding_answer(*request, c.peer, software_, kStunTcpMaxMessage);
        if (!answer) return close(c, std::move(out), StunTcpClose::kMalformed);
        out.reply.insert(out.reply.end(), answer->begin(), answer->end());
        stats_.answered++;
        if (++c.requests >= limits_.max_requests) {
            return close(c, std::move(out), StunTcpClose::kDone);
        }
    }
    if (auto e = c.framer.error()) {
        return close(c, std::move(out), *e == StunStreamError::kTooLong ? StunTcpClose::kTooLong
                                                                         : StunTcpClose::kNotStun);
    }
    return out;
}

StunTcpOutput StunTcpServer::on_eof(ConnId id) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.closing) return {};
    const bool inside = it->second.framer.finish() == StunStreamError::kTruncated;
    return close(it->second, {}, inside ? StunTcpClose::kTruncated : StunTcpClose::kDone);
}

std::vector<ConnId> StunTcpServer::on_timer(Time now) {
    std::vector<ConnId> expired;
    for (auto& [id, c] : conns_) {
        if (c.closing || c.deadline > now) continue;
        close(c, {}, StunTcpClose::kTimeout);
        expired.push_back(id);
    }
    return expired;
}

void StunTcpServer::on_closed(ConnId id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    if (!it->second.closing) {
        const bool inside = it->second.framer.finish() == StunStreamError::kTruncated;
        stats_.closed[static_cast<size_t>(inside ? StunTcpClose::kTruncated
                                                 : StunTcpClose::kDone)]++;
    }
    conns_.erase(it);
}

Time StunTcpServer::next_deadline() const {
    Time next = kNever;
    for (const auto& [id, c] : conns_) {
        if (!c.closing) next = std::min(next, c.deadline);
    }
    return next;
}

Bytes StunTcpQuery::request() const {
    return encode_binding_request(txid_, true);
}

bool StunTcpQuery::on_bytes(ByteView data) {
    if (done()) return true;
    while (auto message = framer_.next(data)) {
        std::optional<StunMessage> m = decode_stun(*message);
        // An answer to another request (none was sent) or an indication: not ours, read on.
        if (!m || m->transaction_id != txid_) continue;
        if (m->type == kStunBindingSuccess && m->xor_mapped_address) {
            mapped_ = m->xor_mapped_address;
        } else if (m->type == kStunBindingError && m->error_code) {
            error_ = "error " + std::to_string(m->error_code->code) + " " + m->error_code->reason;
        } else {
            error_ = "an answer without XOR-MAPPED-ADDRESS";
        }
        return true;
    }
    if (auto e = framer_.error()) {
        error_ = std::string("the server's answer is ") + to_string(*e);
        return true;
    }
    return false;
}

void StunTcpQuery::on_closed() {
    if (!done()) error_ = "the server closed the connection without an answer";
}

}  // namespace burrow
