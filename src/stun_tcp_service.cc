#include "src/stun_tcp_service.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace burrow {
namespace {

// After the last answer: our FIN, then up to this long for the client's before the socket
// closes anyway (TcpConnection::finish).
constexpr Duration kFinishLinger = std::chrono::seconds(1);

}  // namespace

std::optional<OsError> StunTcpService::listen(const SocketAddress& where, bool v6_only) {
    TcpOptions options;
    options.v6_only = v6_only;
    auto listener = TcpListener::listen(
        loop_, where, [this](auto tcp) { on_accept(std::move(tcp)); }, options);
    if (auto* err = std::get_if<OsError>(&listener)) return *err;
    listeners_.push_back(std::get<std::shared_ptr<TcpListener>>(listener));
    return std::nullopt;
}

void StunTcpService::on_accept(std::shared_ptr<TcpConnection> tcp) {
    const ConnId id = next_id_++;
    if (!core_.on_open(id, tcp->peer_address(), clock_.now())) {
        spdlog::debug("stun tcp from {}: closed: {} connections open",
                      to_string(tcp->peer_address()), core_.open_count());
        tcp->close();
        return;
    }
    conns_[id] = tcp;
    tcp->start(TcpCallbacks{
        .on_data = [this, id](ByteView data) { apply(id, core_.on_bytes(id, data)); },
        .on_eof = [this, id] { apply(id, core_.on_eof(id)); },
        .on_drained = {},
        .on_closed =
            [this, id](const std::string&) {
                conns_.erase(id);
                core_.on_closed(id);
            },
    });
    if (deadline_changed_) deadline_changed_();
}

void StunTcpService::apply(ConnId id, StunTcpOutput out) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    auto tcp = it->second;  // close() may run callbacks that erase the entry
    // An answer is under 100 bytes and a connection gets at most kStunTcpMaxRequests: far
    // below the write queue's bound, so a refused write means the client does not read.
    if (!out.reply.empty() && !tcp->write(out.reply)) {
        tcp->close();
        return;
    }
    if (!out.close) return;
    if (*out.close == StunTcpClose::kDone) {
        tcp->finish(kFinishLinger);
    } else {
        spdlog::debug("stun tcp from {}: closed: {}", to_string(tcp->peer_address()),
                      to_string(*out.close));
        tcp->close();
    }
}

void StunTcpService::on_timer(Time now) {
    for (ConnId id : core_.on_timer(now)) {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        auto tcp = it->second;
        tcp->close();
    }
}

void StunTcpService::stop() {
    for (auto& listener : listeners_) listener->close();
    std::vector<std::shared_ptr<TcpConnection>> open;
    for (auto& [id, c] : conns_) open.push_back(c);
    for (auto& c : open) c->close();
}

}  // namespace burrow
