#include "signal/udp_binding.h"

#include <sodium.h>

#include <algorithm>

#include "signal/udp_messages.h"

namespace burrow {

void UdpBinding::set_keepalive(std::optional<Duration> fixed) {
    fixed_ = fixed;
}

void UdpBinding::start(const UdpToken& token, Time now, std::deque<ServerDatagram>& out) {
    active_ = true;
    token_ = token;
    status_ = UdpBindingStatus::kUnknown;
    start_round(now, out);
}

void UdpBinding::stop() {
    active_ = false;
    sodium_memzero(token_.data(), token_.size());
    status_ = UdpBindingStatus::kUnknown;
    retry_.stop();
    next_round_ = kNever;
}

void UdpBinding::start_round(Time now, std::deque<ServerDatagram>& out) {
    next_round_ = kNever;
    retry_.start(now);
    on_timer(now, out);
}

void UdpBinding::on_timer(Time now, std::deque<ServerDatagram>& out) {
    if (!active_) return;
    if (now >= next_round_) {
        start_round(now, out);
        return;
    }
    if (retry_.due(now)) {
        out.push_back(ServerDatagram{UdpPort::kMain, encode_bind(token_)});
        retry_.sent(now);
    } else if (retry_.exhausted(now)) {
        retry_.stop();
        status_ = UdpBindingStatus::kBlocked;
        next_round_ = now + refresh_interval();
    }
}

BindAnswerKind UdpBinding::on_bind_ok(ByteView datagram, Time now) {
    std::optional<BindAnswer> answer = decode_bind_answer(datagram);
    // The token is a secret: compare in constant time, as the server does.
    if (!active_ || !answer ||
        sodium_memcmp(answer->token.data(), token_.data(), token_.size()) != 0) {
        return BindAnswerKind::kNotOurs;
    }
    status_ = UdpBindingStatus::kBound;
    if (answer->moved && !fixed_) learned_ = std::max(kMinLearnedKeepalive, learned_ / 2);
    // Duplicate answers to one round's retries must not push the next round further out.
    if (retry_.active() || next_round_ == kNever) next_round_ = now + refresh_interval();
    retry_.stop();
    return answer->moved ? BindAnswerKind::kMoved : BindAnswerKind::kOk;
}

Time UdpBinding::next_deadline() const {
    if (!active_) return kNever;
    return std::min(retry_.deadline(), next_round_);
}

}  // namespace burrow
