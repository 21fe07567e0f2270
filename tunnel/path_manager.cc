#include "tunnel/path_manager.h"

#include <cstdio>

namespace burrow {

namespace {

std::string ms_text(Duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", to_ms(d));
    return buf;
}

// Challenges kept per candidate: enough for the responses of a burst still in flight.
constexpr size_t kMaxChallengesPerCandidate = 8;

}  // namespace

const char* status_name(DirectKind k) { return k == DirectKind::kTcp ? "direct-tcp" : "direct"; }

PathManager::Candidate* PathManager::add(const PathKey& address, Time now, bool learned) {
    auto it = candidates_.find(address);
    if (it != candidates_.end()) return &it->second;
    if (candidates_.size() >= kMaxPathCandidates) {
        // Make room by the oldest learned candidate that never answered (likely spoofed), else
        // by the learned one silent longest past kDirectSilence (it worked once, but the peer
        // closed it: a birthday socket it did not keep); never by one the server gave, the
        // active path, or one that works.
        // (class, age): lower evicts first.
        auto rank = [&](const auto& entry) -> std::optional<std::pair<int, Time>> {
            const Candidate& k = entry.second;
            if (!k.learned || entry.first == active_key()) return std::nullopt;
            if (!k.validated) return std::pair{0, k.started};
            if (now - k.last_heard >= kDirectSilence) return std::pair{1, k.last_heard};
            return std::nullopt;
        };
        auto victim = candidates_.end();
        std::optional<std::pair<int, Time>> victim_rank;
        for (auto c = candidates_.begin(); c != candidates_.end(); ++c) {
            const auto r = rank(*c);
            if (r && (!victim_rank || *r < *victim_rank)) {
                victim = c;
                victim_rank = r;
            }
        }
        if (victim == candidates_.end()) {
            stats_.drop_candidate_limit++;
            return nullptr;
        }
        candidates_.erase(victim);
        stats_.candidates_evicted++;
    }
    Candidate& c = candidates_[address];
    c.started = now;
    c.next_probe = now;
    c.learned = learned;
    return &c;
}

void PathManager::add_candidates(const std::vector<SocketAddress>& addresses, Time now) {
    for (const auto& a : addresses) add(PathKey{DirectKind::kUdp, a}, now);
}

void PathManager::add_tcp_path(const SocketAddress& peer, Time now) {
    const PathKey key{DirectKind::kTcp, peer};
    candidates_.erase(key);  // a new connection to the same address starts over
    if (add(key, now)) stats_.tcp_paths_added++;
}

void PathManager::remove_tcp_path(const SocketAddress& peer, Time now) {
    const PathKey key{DirectKind::kTcp, peer};
    if (candidates_.erase(key) == 0) return;
    stats_.tcp_paths_closed++;
    if (data_from_ == key) data_from_.reset();
    if (active_key() == key) {
        stats_.fallbacks++;
        const auto standby = standby_tcp(now);
        switch_to(standby, "the direct TCP connection closed", {});
    }
}

std::optional<PathManager::PathKey> PathManager::standby_tcp(Time now) const {
    for (const auto& [key, c] : candidates_) {
        if (key.kind == DirectKind::kTcp && key != active_key() && c.validated &&
            now - c.last_heard < kRediscoverInterval + kDirectSilence) {
            return key;
        }
    }
    return std::nullopt;
}

void PathManager::start_spray(const SocketAddress& peer_ip, Time now) {
    Spray sp;
    sp.ip = peer_ip;
    sp.round_at = now + kSprayFirstDelay;
    spray_ = std::move(sp);
}

void PathManager::start_predicted_spray(const SocketAddress& peer_ip,
                                        std::vector<uint16_t> window, Time now) {
    if (window.empty()) return;
    start_spray(peer_ip, now);
    spray_->window = std::move(window);
}

void PathManager::start_lockstep(const SocketAddress& peer_ip, const PortAllocation& peer,
                                 uint32_t stride, Time now) {
    auto window = lockstep_ports(peer, 0, kLockstepProbes, stride);
    if (window.empty()) return;
    start_predicted_spray(peer_ip, std::move(window), now);
    spray_->lockstep = true;
}

void PathManager::spray_round(Time now) {
    Spray& sp = *spray_;
    sp.ports.clear();
    spray_out_.clear();
    const auto probe = [&](uint16_t port) {
        if (sp.ports.contains(port)) return;
        const PathData data = random_path_data(rng_);
        sp.ports[port] = data;
        SocketAddress to = sp.ip;
        to.port = port;
        spray_out_.push_back(ProbeToSend{to, Probe{ProbeKind::kChallenge, data}});
    };
    // A window against an endpoint-independent peer's birthday sockets alternates with random
    // rounds: a few random ports of a block may pass for sequential steps (ports 32-36 apart),
    // and then the window misses the block, while the sockets are there for a random spray.
    const bool random_round = !sp.lockstep && sp.rounds % 2 == 1;
    if (sp.predicted() && !random_round) {
        // In order: on a sequential NAT our k-th new mapping is the k-th probe's (the lockstep
        // arithmetic counts on it), so nothing else may open a mapping in between.
        for (uint16_t port : sp.window) probe(port);
        stats_.predicted_rounds++;
        stats_.predicted_probes += sp.ports.size();
        prediction_ = PredictionWindow{sp.lockstep ? "lockstep" : "window", sp.window.front(),
                                       sp.window.back(), sp.ports.size(), sp.rounds + 1};
    } else {
        const uint64_t span = 65536 - kSprayLowestPort;
        while (sp.ports.size() < kSprayPorts) {
            probe(static_cast<uint16_t>(kSprayLowestPort + rng_.uniform(span)));
        }
        stats_.spray_rounds++;
        stats_.spray_probes += kSprayPorts;
    }
    sp.round_sent = now;
    sp.rounds++;
    sp.round_at = sp.rounds < kSprayRounds ? now + kSprayInterval : kNever;
}

// A response to one of the spray's probes: the port it came from is a path.
bool PathManager::match_spray(const SocketAddress& from, const Probe& probe, Time now) {
    if (!spray_ || from.ip != spray_->ip.ip || from.v6 != spray_->ip.v6) return false;
    auto it = spray_->ports.find(from.port);
    if (it == spray_->ports.end() || it->second != probe.data) return false;
    if (now - spray_->round_sent > kChallengeLifetime) return false;
    const Duration rtt = now - spray_->round_sent;
    const bool predicted = spray_->predicted();
    spray_.reset();
    spray_out_.clear();
    const PathKey key{DirectKind::kUdp, from};
    Candidate* c = add(key, now);
    if (!c) return false;
    c->last_heard = now;
    c->validated = true;
    stats_.paths_validated++;
    if (!active_ || active_kind_ == DirectKind::kTcp) {
        switch_to(key,
                  predicted ? "predicted port " + std::to_string(from.port) + " answered"
                            : std::string("birthday probe answered"),
                  rtt);
    }
    return true;
}

void PathManager::queue(ProbeToSend probe) {
    if (out_.size() >= kMaxQueuedProbes) out_.pop_front();
    out_.push_back(std::move(probe));
}

void PathManager::send_challenge(const PathKey& to, Candidate& c, Time now) {
    Challenge ch;
    ch.data = random_path_data(rng_);
    ch.sent_at = now;
    if (c.challenges.size() >= kMaxChallengesPerCandidate) c.challenges.pop_front();
    c.challenges.push_back(ch);
    queue(ProbeToSend{to.address, Probe{ProbeKind::kChallenge, ch.data}, to.kind});
    stats_.challenges_sent++;
}

void PathManager::schedule_next(Candidate& c, Time now) {
    ++c.tries;
    c.next_probe = punch_attempt_at(c.started, static_cast<size_t>(c.tries), now);
}

void PathManager::on_probe(const SocketAddress& from_address, const Probe& probe, Time now,
                           DirectKind kind) {
    const PathKey from{kind, from_address};
    if (probe.kind == ProbeKind::kChallenge) {
        // Answer on the path it came by: that is the path the peer is testing.
        queue(ProbeToSend{from_address, Probe{ProbeKind::kResponse, probe.data}, kind});
        stats_.responses_sent++;
        // A TCP path exists only once its connection is handed in (add_tcp_path).
        Candidate* c = kind == DirectKind::kUdp ? add(from, now, true) : nullptr;
        if (kind == DirectKind::kTcp) {
            auto it = candidates_.find(from);
            if (it != candidates_.end()) c = &it->second;
        }
        if (c) {
            c->last_heard = now;
            trigger_check(*c, now);
        }
        return;
    }
    if (kind == DirectKind::kUdp && match_spray(from_address, probe, now)) return;
    auto it = candidates_.find(from);
    if (it == candidates_.end()) {
        stats_.drop_unmatched_response++;
        return;
    }
    Candidate& c = it->second;
    const Challenge* match = nullptr;
    for (const auto& ch : c.challenges) {
        if (ch.data == probe.data && now - ch.sent_at <= kChallengeLifetime) match = &ch;
    }
    if (!match) {
        stats_.drop_unmatched_response++;
        return;
    }
    const Duration rtt = now - match->sent_at;
    c.challenges.clear();
    c.last_heard = now;
    // Smoothed as RFC 6298 does (alpha 1/8), so that one probe delayed by jitter does not make
    // a path look worse than its twin.
    c.rtt = c.rtt == Duration{} ? rtt : (c.rtt * 7 + rtt) / 8;
    if (!c.validated) stats_.paths_validated++;
    c.validated = true;
    if (!active_) {
        switch_to(from, kind == DirectKind::kTcp ? "probe answered on TCP" : "probe answered", rtt);
        return;
    }
    const PathKey cur_key = *active_key();
    if (cur_key == from) return;
    if (kind != active_kind_) {
        // Direct UDP before direct TCP (docs/architecture.md §4 "Path kinds"), whatever the
        // RTTs: TCP's head-of-line blocking and retransmission delays are not in a probe's RTT.
        if (kind == DirectKind::kUdp) {
            switch_to(from, "direct UDP answered (preferred to direct TCP)", rtt);
        }
        return;
    }
    const Candidate& cur = candidates_[cur_key];
    if (cur.validated && better_path(from_address, c.rtt, *active_, cur.rtt)) {
        switch_to(from,
                  "a better path than " + to_string(*active_) + " (" + ms_text(c.rtt) +
                      " against " + ms_text(cur.rtt) + ")",
                  rtt);
        return;
    }
    // Two paths work; move when the peer sends its data from this one (it chose it: with
    // the birthday technique it keeps one socket of many and closes the rest), or when the
    // one in use has gone quiet (the peer's NAT rebound, or the old path broke).
    if (!follow_peer(from, now, rtt) &&
        now - candidates_[cur_key].last_heard >= kDirectKeepalive) {
        switch_to(from, "the previous direct path went quiet", rtt);
    }
}

bool PathManager::follow_peer(const PathKey& from, Time now, Duration rtt) {
    // Within one kind only: each side ranks UDP above TCP by itself.
    if (!active_ || from.kind != active_kind_ || *active_key() == from || data_from_ != from) {
        return false;
    }
    auto it = candidates_.find(from);
    if (it == candidates_.end() || !it->second.validated) return false;
    const Candidate& cur = candidates_[*active_key()];
    if (now - cur.last_heard < kFollowQuiet) return false;
    // The peer still sends on the other family's path it has not yet given up for ours (it
    // validated ours later, or not yet): keep the better path while it answers, or the two
    // sides would trade places. Within one family the peer's choice wins, as before (its NAT
    // rebound, or it kept another birthday socket).
    if (from.address.v6 != active_->v6 && cur.validated &&
        now - cur.last_heard < kDirectKeepalive &&
        better_path(*active_, cur.rtt, from.address, it->second.rtt)) {
        return false;
    }
    switch_to(from, "the peer sends from this path", rtt);
    return true;
}

// The peer reaches us from an address we have not validated while we are on the relay: check it
// now rather than at the schedule's next step, which may be 5 s away (kRediscoverInterval). With
// the birthday technique the spraying side is often direct long before the other's own schedule
// comes round (issue 19). At most one such check per kTriggeredCheckGap, so two sides that
// hear each other's challenges but not the answers cannot trade challenges in a loop.
void PathManager::trigger_check(Candidate& c, Time now) {
    // On the relay or on TCP: a UDP path found now moves the traffic up.
    if ((active_ && active_kind_ == DirectKind::kUdp) || c.validated || c.next_probe <= now) return;
    if (!c.challenges.empty() && now - c.challenges.back().sent_at < kTriggeredCheckGap) return;
    c.next_probe = now;
}

void PathManager::on_authenticated(const SocketAddress& from_address, Time now, DirectKind kind) {
    if (candidates_.empty()) return;  // not probing yet: the session is still on its first keys
    const PathKey from{kind, from_address};
    data_from_ = from;
    auto it = candidates_.find(from);
    if (it != candidates_.end()) {
        it->second.last_heard = now;
        trigger_check(it->second, now);
        follow_peer(from, now, {});
        return;
    }
    // A new source for this session's packets: probe it before sending anything there. (A TCP
    // connection is known from add_tcp_path, never learned from its data.)
    if (kind != DirectKind::kUdp) return;
    if (Candidate* c = add(from, now, true)) c->last_heard = now;
}

bool better_path(const SocketAddress& a, Duration a_rtt, const SocketAddress& b, Duration b_rtt) {
    if (a_rtt + kPathRttMargin < b_rtt) return true;   // clearly faster
    if (b_rtt + kPathRttMargin < a_rtt) return false;  // clearly slower
    return a.v6 && !b.v6;
}

void PathManager::switch_to(std::optional<PathKey> direct, std::string reason, Duration rtt) {
    active_ = direct ? std::optional(direct->address) : std::nullopt;
    active_kind_ = direct ? direct->kind : DirectKind::kUdp;
    keepalive_at_ = Time{};
    changes_.push_back(PathChange{active_, active_kind_, std::move(reason), rtt});
}

void PathManager::on_timer(Time now) {
    if (spray_ && active_ && active_kind_ == DirectKind::kUdp) {
        // A UDP path was found some other way. A TCP path does not end the spray: direct UDP
        // is preferred, and between NATs that map per destination only the spray finds it.
        spray_.reset();
        spray_out_.clear();
    }
    if (spray_ && now >= spray_->round_at) spray_round(now);
    if (active_) {
        const PathKey cur_key = *active_key();
        Candidate& cur = candidates_[cur_key];
        const Duration quiet = now - cur.last_heard;
        if (quiet >= kDirectSilence) {
            stats_.fallbacks++;
            cur.validated = false;
            cur.learned = false;  // it worked once: keep probing it however it was found
            // Try it again at once, then on the schedule: it may come back.
            cur.tries = 0;
            cur.started = now;
            cur.next_probe = now;
            // A silent UDP path falls back to a working TCP one, a silent TCP path to the relay.
            const auto standby =
                cur_key.kind == DirectKind::kUdp ? standby_tcp(now) : std::nullopt;
            switch_to(standby,
                      std::string(status_name(cur_key.kind)) + " path silent for " +
                          ms_text(quiet),
                      {});
        } else if (quiet >= kDirectKeepalive && now >= keepalive_at_) {
            send_challenge(cur_key, cur, now);
            keepalive_at_ = now + kDirectKeepalive / 2;
        }
    }
    for (auto it = candidates_.begin(); it != candidates_.end();) {
        Candidate& c = it->second;
        const PathKey& address = it->first;
        if (address == active_key() || now < c.next_probe) {
            ++it;
            continue;
        }
        if (c.learned && !c.validated && c.tries >= static_cast<int>(kPunchSchedule.size())) {
            // A learned address that let the whole punching schedule go unanswered.
            it = candidates_.erase(it);
            stats_.candidates_evicted++;
            continue;
        }
        send_challenge(address, c, now);
        schedule_next(c, now);
        ++it;
    }
}

std::optional<ProbeToSend> PathManager::poll_probe() {
    if (out_.empty() && !spray_out_.empty()) {
        ProbeToSend p = std::move(spray_out_.front());
        spray_out_.pop_front();
        return p;
    }
    if (out_.empty()) return std::nullopt;
    ProbeToSend p = std::move(out_.front());
    out_.pop_front();
    return p;
}

std::optional<PathChange> PathManager::poll_change() {
    if (changes_.empty()) return std::nullopt;
    PathChange c = std::move(changes_.front());
    changes_.pop_front();
    return c;
}

Time PathManager::next_deadline() const {
    if (!out_.empty() || !spray_out_.empty()) return Time{};
    Time t = spray_ ? spray_->round_at : kNever;
    if (active_) {
        auto it = candidates_.find(*active_key());
        if (it != candidates_.end()) {
            t = std::min(t, it->second.last_heard + kDirectSilence);
            t = std::min(t, std::max(it->second.last_heard + kDirectKeepalive, keepalive_at_));
        }
    }
    for (const auto& [address, c] : candidates_) {
        if (address == active_key()) continue;
        t = std::min(t, c.next_probe);
    }
    return t;
}

}  // namespace burrow
