#include "signal/stun_servers.h"

#include <algorithm>

#include "signal/nat_probe.h"

namespace burrow {

const char* to_string(StunServerState s) {
    switch (s) {
        case StunServerState::kResolving:
            return "resolving";
        case StunServerState::kUnresolved:
            return "unresolved";
        case StunServerState::kIdle:
            return "idle";
        case StunServerState::kProbing:
            return "probing";
        case StunServerState::kAnswered:
            return "answered";
        case StunServerState::kNoAnswer:
            return "no answer";
    }
    return "?";
}

StunServerSet::StunServerSet(std::vector<HostPort> servers, std::string software)
    : software_(std::move(software)) {
    for (HostPort& h : servers) {
        Server s;
        s.address = literal_socket_address(h);
        s.resolved = s.address.has_value();
        s.config = std::move(h);
        servers_.push_back(std::move(s));
    }
}

void StunServerSet::set_address(size_t i, std::optional<SocketAddress> address,
                                std::string error) {
    if (i >= servers_.size()) return;
    Server& s = servers_[i];
    s.resolved = true;
    s.address = address;
    s.error = address ? std::string() : std::move(error);
    s.probing = false;
    s.next = kNever;
}

void StunServerSet::start(Rng& rng, Time now) {
    for (size_t i = 0; i < servers_.size(); ++i) probe(i, rng, now);
}

void StunServerSet::probe(size_t i, Rng& rng, Time now) {
    if (i >= servers_.size()) return;
    Server& s = servers_[i];
    s.probing = false;
    s.next = kNever;
    if (!s.address) return;
    rng.fill(s.txid);
    s.probing = true;
    s.requests = 0;
    s.next = now;
    on_timer(now);
}

void StunServerSet::stop() {
    for (Server& s : servers_) {
        s.probing = false;
        s.next = kNever;
    }
}

void StunServerSet::on_timer(Time now) {
    for (size_t i = 0; i < servers_.size(); ++i) {
        Server& s = servers_[i];
        if (!s.probing || now < s.next) continue;
        if (s.requests < kStunServerMaxRequests) {
            out_.push_back(StunServerDatagram{*s.address, encode_probe_request(s.txid, software_)});
            stats_.requests_sent++;
            s.last_sent = now;
            // RFC 8489 §6.2.1: the RTO doubles after each request; after the last one the
            // client waits Rm times the initial RTO for its answer.
            s.next = ++s.requests < kStunServerMaxRequests
                         ? now + kStunServerInitialRto * (1 << (s.requests - 1))
                         : now + kStunServerInitialRto * kStunServerLastWaitFactor;
            continue;
        }
        s.probing = false;
        s.next = kNever;
        s.last_gave_up = true;
        // An address it saw before may be stale by now (this round follows a reconnect or a
        // network change): it is no candidate any more.
        s.mapped.reset();
        stats_.gave_up++;
        if (!s.silent_reported) {
            s.silent_reported = true;
            events_.push_back(StunServerSilent{i});
        }
    }
}

StunServerSet::Server* StunServerSet::find(const SocketAddress& from) {
    for (Server& s : servers_) {
        if (s.address && *s.address == from) return &s;
    }
    return nullptr;
}

const StunServerSet::Server* StunServerSet::find(const SocketAddress& from) const {
    for (const Server& s : servers_) {
        if (s.address && *s.address == from) return &s;
    }
    return nullptr;
}

bool StunServerSet::knows(const SocketAddress& from) const {
    return find(from) != nullptr;
}

bool StunServerSet::expects(const SocketAddress& from, ByteView datagram) const {
    const Server* s = find(from);
    if (!s || !s->probing || datagram.size() < kStunHeaderSize) return false;
    return std::equal(s->txid.begin(), s->txid.end(),
                      datagram.begin() + (kStunHeaderSize - kStunTransactionIdSize));
}

StunServerVerdict StunServerSet::on_datagram(const SocketAddress& from, ByteView datagram,
                                             Time now) {
    Server* s = find(from);
    if (!s) return StunServerVerdict::kNotOurs;
    std::optional<StunMessage> m = decode_stun(datagram);
    // RFC 8489 §6.3.3: a response with an unknown comprehension-required attribute is dropped.
    if (!m || m->type != kStunBindingSuccess || !m->unknown_required.empty()) {
        stats_.drop_malformed++;
        return StunServerVerdict::kMalformed;
    }
    if (!s->probing || m->transaction_id != s->txid) {
        stats_.drop_unmatched++;
        return StunServerVerdict::kUnmatched;
    }
    // XOR-MAPPED-ADDRESS first; MAPPED-ADDRESS only from servers that predate it (§14.1).
    std::optional<SocketAddress> mapped = m->xor_mapped_address;
    if (!mapped) mapped = m->mapped_address;
    if (!mapped) {
        stats_.drop_malformed++;
        return StunServerVerdict::kMalformed;
    }
    const bool changed = !s->mapped || *s->mapped != *mapped;
    s->mapped = *mapped;
    s->rtt = now - s->last_sent;
    s->probing = false;
    s->next = kNever;
    s->last_gave_up = false;
    s->silent_reported = false;
    stats_.answers++;
    const auto index = static_cast<size_t>(s - servers_.data());
    events_.push_back(StunServerAnswered{index, *mapped, changed});
    return StunServerVerdict::kAccepted;
}

std::optional<StunServerDatagram> StunServerSet::poll_transmit() {
    if (out_.empty()) return std::nullopt;
    StunServerDatagram d = std::move(out_.front());
    out_.pop_front();
    return d;
}

std::optional<StunServerEvent> StunServerSet::poll_event() {
    if (events_.empty()) return std::nullopt;
    StunServerEvent e = events_.front();
    events_.pop_front();
    return e;
}

Time StunServerSet::next_deadline() const {
    Time next = kNever;
    for (const Server& s : servers_) {
        if (s.probing) next = std::min(next, s.next);
    }
    return next;
}

std::vector<SocketAddress> StunServerSet::mapped() const {
    std::vector<SocketAddress> out;
    for (const Server& s : servers_) {
        if (s.mapped) out.push_back(*s.mapped);
    }
    return out;
}

std::vector<StunServerStatus> StunServerSet::status() const {
    std::vector<StunServerStatus> out;
    for (const Server& s : servers_) {
        StunServerStatus st;
        st.server = to_string(s.config);
        st.address = s.address;
        st.mapped = s.mapped;
        st.rtt = s.rtt;
        st.requests = s.requests;
        st.error = s.error;
        if (!s.resolved) {
            st.state = StunServerState::kResolving;
        } else if (!s.address) {
            st.state = StunServerState::kUnresolved;
        } else if (s.probing) {
            // While a new round runs, an earlier answer still shows.
            st.state = s.mapped ? StunServerState::kAnswered : StunServerState::kProbing;
        } else if (s.last_gave_up) {
            st.state = StunServerState::kNoAnswer;
        } else if (s.mapped) {
            st.state = StunServerState::kAnswered;
        } else {
            st.state = StunServerState::kIdle;
        }
        out.push_back(std::move(st));
    }
    return out;
}

}  // namespace burrow
