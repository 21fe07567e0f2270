// Path management in the loop: two PeerLinks (tunnel/peer_link.h, the objects the agent ships),
// joined by the relay and a direct path (tests/sim/net/path_network.h). Every scenario runs hundreds of seeds with random loss and reordering on both paths,
// a byte-exact bulk transfer each way and an interactive request/response stream:
//
//   1. relay first, then direct within a bound;
//   2. the direct path blackholed mid-transfer: relay within kDirectSilence, back when restored;
//   3. the responder's NAT rebinds mid-transfer, while a third address sends garbage and
//      replays: the initiator moves only after a probe round trip to the new address, and the
//      third address never becomes the path;
//   4. the direct path never works: relay all along, probes on the documented schedule;
//   5. a handshake flood of mac1-valid initiations from many addresses (A's among them,
//      spoofed) while A connects: cookie replies keep B's Diffie-Hellman work within its
//      budget, and A's handshake completes;
//   6. both sides initiate at the same virtual time: one winner by key order, one session;
//   7. UDP blocked, a direct TCP connection between the agents (issue 15): on it within a
//      probe round trip, with no retransmission or probe timeout of the session's while on it;
//      up to direct UDP when UDP comes back, down to TCP when UDP is blackholed, to the relay
//      when the connection dies: the streams never notice.
//
// A failing seed is printed ("seed N: ...") so it can be replayed alone.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "tunnel/path_manager.h"
#include "tunnel/peer_link.h"
#include "tunnel/socket_address.h"
#include "tests/sim/net/path_network.h"
#include "tests/sim/net/transfer.h"
#include "tests/sim/seed_range.h"
#include "tunnel/crypto_init.h"
#include "tunnel/packet.h"
#include "tunnel/session.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kWallClock = 1'700'000'000'000'000;  // microseconds since the Unix epoch
// Seeds per scenario: enough that the rare orders (a lost handshake, a lost probe at the
// moment that matters, a replay that beats the original) all occur, within the ctest budget.
constexpr uint64_t kSeeds = 500;

// BURROW_PATH_SEED=N replays one seed (the number a failure prints); BURROW_PATH_SEEDS=N runs
// seeds 1..N (the sanitizer build, ten times slower, runs fewer: CMakeLists.txt).
SeedRange seeds() {
    return seed_range("PATH", kSeeds);
}

// Made-up public addresses (RFC 5737 documentation ranges).
const SocketAddress kAddrA = SocketAddress::ipv4({198, 51, 100, 10}, 41000);
const SocketAddress kAddrB = SocketAddress::ipv4({203, 0, 113, 20}, 42000);
const SocketAddress kAddrBRebound = SocketAddress::ipv4({203, 0, 113, 20}, 42999);
const SocketAddress kAttacker = SocketAddress::ipv4({192, 0, 2, 66}, 6666);

std::string at_ms(Time t) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f ms", to_ms(t - Time{}));
    return buf;
}

// --- one agent's side: the PeerLink that ships, its datagrams carried by the PathNetwork ------

struct PathEvent {
    Time at;
    std::optional<SocketAddress> direct;  // nullopt: the relay
    std::string reason;
    DirectKind kind = DirectKind::kUdp;
};

// Hands the PathNetwork's datagrams to a PeerLink as AgentCore does (the relay by its route, a
// direct datagram only when the link claims it) and records what the link says it sent and
// accepted: the adapter makes no decision of its own.
class AgentEndpoint final : public PathEndpoint {
  public:
    AgentEndpoint(Role role, const PrivateKey& self, const PublicKey& peer, uint64_t seed,
                  std::vector<SocketAddress> peer_candidates)
        : rng_(seed), link_(config(role, self, peer), rng_, Time{}) {
        PunchPlan plan;
        plan.candidates = std::move(peer_candidates);
        link_.set_punch_plan(std::move(plan), Time{});
        link_.start(Time{});  // relay first: the handshake goes through the server at once
        after_input(Time{});
    }

    void on_relay(ByteView d, Time now) override {
        link_.on_datagram(kRouteRelay, SocketAddress{}, d, now);
        after_input(now);
    }

    void on_direct(const SocketAddress& from, ByteView d, Time now) override {
        if (!link_.claims(from, d)) {
            ++udp_from_unknown_;
            return;
        }
        const LinkVerdict v = link_.on_datagram(kRouteMain, from, d, now);
        if (const auto* ok = std::get_if<LinkAccepted>(&v)) {
            if (ok->kind != DatagramKind::kHandshake) last_authenticated_[from] = now;
            if (ok->kind == DatagramKind::kResponse) responses_from_[from].push_back(now);
        }
        after_input(now);
    }

    // The TCP connection (PathNetwork's): a route of its own, as AgentCore hands one out for
    // each connection; its datagrams need no claims(): the route names the link.
    void on_tcp(const SocketAddress& from, ByteView d, Time now) override {
        link_.on_datagram(kTcpRoute, from, d, now);
        after_input(now);
    }
    void on_tcp_writable(bool writable, Time now) override {
        link_.set_tcp_writable(kTcpRoute, writable);
        after_input(now);
    }
    void tcp_connected(const SocketAddress& peer, Time now) {
        link_.add_tcp_path(kTcpRoute, peer, now);
        after_input(now);
    }
    void tcp_closed(Time now) {
        link_.remove_tcp_path(kTcpRoute, now);
        after_input(now);
    }

    void on_timer(Time now) override {
        link_.on_timer(now);
        after_input(now);
    }

    std::optional<Outgoing> poll_transmit(Time now) override {
        auto t = link_.poll_transmit(now);
        if (!t) return std::nullopt;
        if (t->route == kRouteRelay) return Outgoing{std::nullopt, std::move(t->data)};
        if (t->path == DirectKind::kTcp) {
            REQUIRE(t->route == kTcpRoute);
            ++tcp_sent_;
            return Outgoing{t->to, std::move(t->data), true};
        }
        switch (t->kind) {
            case DatagramKind::kChallenge: challenges_to_[t->to].push_back(now); break;
            case DatagramKind::kResponse: ++responses_to_[t->to]; break;
            case DatagramKind::kData: ++data_to_[t->to]; break;
            case DatagramKind::kHandshake:
            case DatagramKind::kOpening: break;
        }
        return Outgoing{t->to, std::move(t->data)};
    }

    Time next_deadline() const override { return link_.next_deadline(); }

    static constexpr RouteId kTcpRoute = 77;
    PeerLink& link() { return link_; }
    uint64_t tcp_sent() const { return tcp_sent_; }
    Session& session() { return link_.session(); }
    Connection& connection() { return link_.connection(); }
    const PathManager& paths() const { return link_.paths(); }
    Time probing_since() const { return probing_since_; }
    const std::vector<PathEvent>& changes() const { return changes_; }
    // Times at which each address was sent a challenge / answered one of ours.
    const std::map<SocketAddress, std::vector<Time>>& challenges_to() const {
        return challenges_to_;
    }
    const std::map<SocketAddress, std::vector<Time>>& responses_from() const {
        return responses_from_;
    }
    const std::map<SocketAddress, uint64_t>& responses_to() const { return responses_to_; }
    const std::map<SocketAddress, uint64_t>& data_to() const { return data_to_; }
    // The last probe or data packet from each address that authenticated.
    const std::map<SocketAddress, Time>& last_authenticated() const {
        return last_authenticated_;
    }
    // Stream bytes the session had sent when it first went direct: they went by the relay.
    uint64_t stream_bytes_before_direct() const { return stream_bytes_before_direct_; }
    uint64_t udp_from_unknown() const { return udp_from_unknown_; }

  private:
    static PeerLinkConfig config(Role role, const PrivateKey& self, const PublicKey& peer) {
        PeerLinkConfig c;
        c.role = role;
        c.local_key = self;
        c.peer_key = peer;
        c.wall_clock_at_zero_us = kWallClock;
        return c;
    }

    void after_input(Time now) {
        while (auto e = link_.poll_event()) {
            if (std::holds_alternative<LinkPunching>(*e)) probing_since_ = now;
            if (const auto* c = std::get_if<LinkPathChanged>(&*e)) {
                if (c->direct && changes_.empty()) {
                    stream_bytes_before_direct_ = link_.connection().stats().stream_bytes_sent;
                }
                changes_.push_back(PathEvent{now, c->direct, c->reason, c->kind});
            }
        }
    }

    SeededRng rng_;
    PeerLink link_;
    Time probing_since_ = kNever;
    std::vector<PathEvent> changes_;
    std::map<SocketAddress, std::vector<Time>> challenges_to_;
    std::map<SocketAddress, std::vector<Time>> responses_from_;
    std::map<SocketAddress, uint64_t> responses_to_;
    std::map<SocketAddress, uint64_t> data_to_;
    std::map<SocketAddress, Time> last_authenticated_;
    uint64_t stream_bytes_before_direct_ = 0;
    uint64_t udp_from_unknown_ = 0;
    uint64_t tcp_sent_ = 0;
};

// --- the application: a bulk stream each way and interactive requests from A ----------------

constexpr size_t kChunk = 16 * 1024;
constexpr uint64_t kTagBulkAB = 0, kTagBulkBA = 1, kTagRequest = 2, kTagResponse = 3;
constexpr size_t kRequestSize = 200;  // a keystroke-sized exchange next to the bulk
constexpr Duration kRequestInterval = 100ms;
// No byte read and no FIN for this long is a stall: longer than a fallback (2.5 s) plus a few
// backed-off probe timeouts, shorter than the 30 s idle timeout.
constexpr Duration kStallTimeout = 20s;

class TwoWayTransfer {
  public:
    TwoWayTransfer(uint64_t seed, Connection& a, Connection& b, uint64_t bytes_ab,
                   uint64_t bytes_ba)
        : seed_(seed), a_(a, bytes_ab, kTagBulkAB), b_(b, bytes_ba, kTagBulkBA) {}

    // After every network event.
    void step(Time now) {
        if (failed()) return;
        for (int round = 0; round < 16; ++round) {  // until nothing more happens this instant
            bool acted = false;
            acted |= events(a_, b_, now);
            acted |= events(b_, a_, now);
            acted |= open_and_write(a_);
            acted |= open_and_write(b_);
            acted |= read_bulk(a_, b_, now);
            acted |= read_bulk(b_, a_, now);
            acted |= interactive(now);
            if (!acted || failed()) break;
        }
        if (!bulk_done_ && a_.in_finished && b_.in_finished) {
            bulk_done_ = true;
            bulk_done_at_ = now;
        }
        if (!failed() && !done() && now - last_progress_ >= kStallTimeout) {
            fail("no progress for 20 s at " + at_ms(now) + ": A->B " +
                 std::to_string(b_.in_received) + "/" + std::to_string(a_.out_size) +
                 ", B->A " + std::to_string(a_.in_received) + "/" + std::to_string(b_.out_size));
        }
    }

    // Requests stop once the scenario has seen what it watches for; done when every one of
    // them has been answered and both bulk streams have ended.
    void stop_requests() { requests_stopped_ = true; }
    bool done() const {
        return failed() || (bulk_done_ && requests_stopped_ && request_times_.empty());
    }
    bool bulk_done() const { return bulk_done_; }
    Time bulk_done_at() const { return bulk_done_at_; }
    // When the next request is due; nullopt once they have stopped.
    std::optional<Time> next_request() const {
        if (requests_stopped_ || failed()) return std::nullopt;
        return next_request_;
    }
    bool failed() const { return !failure_.empty(); }
    const std::string& failure() const { return failure_; }
    size_t answered() const { return answered_; }

  private:
    struct Side {
        Side(Connection& c, uint64_t size, uint64_t tag) : conn(c), out_size(size), out_tag(tag) {}
        Connection& conn;
        // our bulk stream to the peer
        uint64_t out_size;
        uint64_t out_tag;
        std::optional<StreamId> out_id;
        uint64_t written = 0;
        bool blocked = false;
        bool fin_sent = false;
        // the peer's bulk stream to us
        std::optional<StreamId> in_id;
        uint64_t in_received = 0;
        bool in_finished = false;
        // interactive (A opens it; B answers)
        std::optional<StreamId> inter_id;
        bool inter_blocked = false;
    };

    void fail(const std::string& why) {
        if (failure_.empty()) failure_ = why;
    }

    bool write_content(Side& s, StreamId id, uint64_t tag, uint64_t& written, uint64_t target,
                       bool& blocked) {
        bool acted = false;
        while (written < target) {
            const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, target - written));
            fill_content(seed_, tag, written, MutableByteView(scratch_.data(), n));
            const size_t took = s.conn.write(id, ByteView(scratch_.data(), n));
            written += took;
            acted |= took > 0;
            if (took < n) {
                blocked = true;
                break;
            }
        }
        return acted;
    }

    bool open_and_write(Side& s) {
        bool acted = false;
        if (!s.out_id) {
            s.out_id = s.conn.open_stream("bulk");
            if (!s.out_id) return false;
            acted = true;
        }
        if (!s.blocked && !s.fin_sent) {
            acted |= write_content(s, *s.out_id, s.out_tag, s.written, s.out_size, s.blocked);
            if (s.written == s.out_size) {
                s.conn.shutdown_write(*s.out_id);
                s.fin_sent = true;
                acted = true;
            }
        }
        return acted;
    }

    bool events(Side& s, Side& peer, Time now) {
        const char* who = &s == &a_ ? "A" : "B";
        bool any = false;
        while (std::optional<ConnectionEvent> ev = s.conn.poll_event()) {
            any = true;
            std::visit(
                [&](auto&& e) {
                    using E = std::decay_t<decltype(e)>;
                    if constexpr (std::is_same_v<E, StreamOpened>) {
                        if (e.service == "bulk" && !s.in_id) {
                            s.in_id = e.id;
                        } else if (e.service == "interactive" && &s == &b_ && !s.inter_id) {
                            s.inter_id = e.id;
                        } else {
                            fail(std::string(who) + ": unexpected stream '" + e.service + "'");
                        }
                        last_progress_ = now;
                    } else if constexpr (std::is_same_v<E, StreamWritable>) {
                        if (e.id == s.out_id) s.blocked = false;
                        if (e.id == s.inter_id) s.inter_blocked = false;
                    } else if constexpr (std::is_same_v<E, StreamFinished>) {
                        if (e.id == s.in_id) {
                            if (s.in_finished || s.in_received != peer.out_size) {
                                fail(std::string(who) + ": FIN after " +
                                     std::to_string(s.in_received) + " of " +
                                     std::to_string(peer.out_size) + " bytes");
                            }
                            s.in_finished = true;
                            s.conn.shutdown_write(e.id);  // our empty direction ends too
                            last_progress_ = now;
                        } else if (e.id != s.out_id) {
                            fail(std::string(who) + ": the interactive stream finished");
                        }
                    } else if constexpr (std::is_same_v<E, StreamReset>) {
                        fail(std::string(who) + ": stream " + std::to_string(e.id) +
                             " reset, reason " + std::to_string(static_cast<uint64_t>(e.reason)));
                    } else if constexpr (std::is_same_v<E, ConnectionClosed>) {
                        fail(std::string(who) + ": connection closed: " + e.reason);
                    }
                },
                *ev);
        }
        return any;
    }

    bool read_bulk(Side& s, Side& peer, Time now) {
        const char* who = &s == &a_ ? "A" : "B";
        bool acted = false;
        if (s.out_id) {  // the peer never writes on our bulk stream: any byte is a mismatch
            if (s.conn.read(*s.out_id, MutableByteView(scratch_.data(), kChunk)) != 0) {
                fail(std::string(who) + ": bytes on its own bulk stream");
            }
        }
        if (!s.in_id) return false;
        while (const size_t got = s.conn.read(*s.in_id, MutableByteView(scratch_.data(), kChunk))) {
            const ByteView data(scratch_.data(), got);
            if (s.in_received + got > peer.out_size) {
                fail(std::string(who) + ": more bulk bytes than were written");
                return true;
            }
            const size_t bad = first_content_mismatch(seed_, peer.out_tag, s.in_received, data);
            if (bad != got) {
                fail(std::string(who) + ": bulk byte " + std::to_string(s.in_received + bad) +
                     " differs");
                return true;
            }
            s.in_received += got;
            last_progress_ = now;
            acted = true;
        }
        return acted;
    }

    bool interactive(Time now) {
        bool acted = false;
        if (!a_.inter_id) {
            a_.inter_id = a_.conn.open_stream("interactive");
            if (!a_.inter_id) return false;
            next_request_ = now;
            acted = true;
        }
        while (!requests_stopped_ && now >= next_request_) {
            request_due_ += kRequestSize;
            request_times_.push_back(next_request_);
            next_request_ += kRequestInterval;
            acted = true;
        }
        if (!a_.inter_blocked) {
            acted |= write_content(a_, *a_.inter_id, kTagRequest, request_written_, request_due_,
                                   a_.inter_blocked);
        }
        if (b_.inter_id) {
            while (const size_t got =
                       b_.conn.read(*b_.inter_id, MutableByteView(scratch_.data(), kChunk))) {
                const ByteView data(scratch_.data(), got);
                if (first_content_mismatch(seed_, kTagRequest, request_read_, data) != got) {
                    fail("B: an interactive request differs");
                    return true;
                }
                request_read_ += got;
                last_progress_ = now;
                acted = true;
            }
            if (!b_.inter_blocked) {
                const uint64_t owed = request_read_ / kRequestSize * kRequestSize;
                acted |= write_content(b_, *b_.inter_id, kTagResponse, response_written_, owed,
                                       b_.inter_blocked);
            }
        }
        while (const size_t got =
                   a_.conn.read(*a_.inter_id, MutableByteView(scratch_.data(), kChunk))) {
            const ByteView data(scratch_.data(), got);
            if (first_content_mismatch(seed_, kTagResponse, response_read_, data) != got) {
                fail("A: an interactive response differs");
                return true;
            }
            const uint64_t before = response_read_ / kRequestSize;
            response_read_ += got;
            for (uint64_t k = before; k < response_read_ / kRequestSize; ++k) {
                if (request_times_.empty()) {
                    fail("A: a response to a request never sent");
                    return true;
                }
                request_times_.pop_front();
                ++answered_;
            }
            last_progress_ = now;
            acted = true;
        }
        return acted;
    }

    uint64_t seed_;
    Side a_;
    Side b_;
    bool bulk_done_ = false;
    Time bulk_done_at_ = kNever;
    bool requests_stopped_ = false;
    Time next_request_{};
    uint64_t request_due_ = 0;
    uint64_t request_written_ = 0;
    uint64_t request_read_ = 0;
    uint64_t response_written_ = 0;
    uint64_t response_read_ = 0;
    std::deque<Time> request_times_;
    size_t answered_ = 0;
    Time last_progress_{};
    std::string failure_;
    std::array<uint8_t, kChunk> scratch_{};
};

// --- one run: the two agents, the network, the transfer --------------------------------------

// The seed picks the paths' delays, loss and reordering and the transfer sizes.
struct Conditions {
    LinkConfig relay;
    LinkConfig direct;
    uint64_t bytes_ab = 0;
    uint64_t bytes_ba = 0;

    // The longest a direct datagram can take: a packet sent just before a break arrives this
    // much later (behind a full bottleneck queue), and keeps the path "heard" that long.
    Duration direct_max_one_way() const {
        const double queue_us = static_cast<double>(default_queue_bytes(direct)) * 8.0 /
                                direct.rate_mbit;  // bits / (Mbit/s) = us
        return direct.delay + direct.jitter + direct.reorder_delay +
               Duration(static_cast<int64_t>(queue_us) + 1);
    }
};

Conditions conditions(uint64_t seed) {
    SeededRng r(seed ^ 0x636f6e64);
    auto ms = [&](uint64_t lo, uint64_t span) {
        return Duration(std::chrono::milliseconds(lo + r.uniform(span)));
    };
    Conditions c;
    c.relay.delay = ms(30, 4);  // the server's detour
    c.relay.jitter = ms(0, 3);
    c.relay.loss = r.unit() * 0.02;
    c.relay.reorder = r.unit() * 0.05;
    c.relay.reorder_delay = ms(5, 10);
    c.relay.rate_mbit = 1.0;  // a shared relay is the slower path
    c.direct.delay = ms(10, 3);
    c.direct.jitter = ms(0, 2);
    c.direct.loss = r.unit() * 0.02;
    c.direct.reorder = r.unit() * 0.05;
    c.direct.reorder_delay = ms(5, 10);
    c.direct.rate_mbit = 2.0;
    // A few seconds of bulk each way at these rates, so the scenarios' events land mid-transfer.
    c.bytes_ab = 192 * 1024 + r.uniform(192 * 1024);
    c.bytes_ba = 96 * 1024 + r.uniform(160 * 1024);
    return c;
}

Conditions scaled(Conditions c, uint64_t bulk_scale) {
    c.bytes_ab *= bulk_scale;
    c.bytes_ba *= bulk_scale;
    return c;
}

struct Keys {
    PrivateKey a, b;
};

Keys keys(uint64_t seed) {
    REQUIRE(crypto_init());
    SeededRng r(seed ^ 0x6b657973);
    return Keys{PrivateKey::generate(r), PrivateKey::generate(r)};
}

class Run {
  public:
    // b_role kInitiator: both sides initiate at the same virtual time (simultaneous
    // initiation).
    // bulk_scale multiplies the bulk sizes (a scenario with many phases needs a longer one).
    explicit Run(uint64_t seed, Role b_role = Role::kResponder, uint64_t bulk_scale = 1)
        : seed_(seed),
          cond_(scaled(conditions(seed), bulk_scale)),
          keys_(keys(seed)),
          a_(Role::kInitiator, keys_.a, public_key(keys_.b), seed * 2 + 1, {kAddrB}),
          b_(b_role, keys_.b, public_key(keys_.a), seed * 2 + 2, {kAddrA}),
          net_(seed, PathNetworkConfig{cond_.relay, cond_.relay, cond_.direct, cond_.direct,
                                       kAddrA, kAddrB}),
          transfer_(seed, a_.connection(), b_.connection(), cond_.bytes_ab, cond_.bytes_ba) {
        net_.attach(a_, b_);
        net_.set_on_step([this](Time now) {
            transfer_.step(now);
            if (watch_) watch_(now);
            if (auto t = transfer_.next_request()) net_.wake_at(*t);
        });
    }

    // Runs until the transfer is done (the watcher calls stop_requests() once it has seen
    // what it waits for) or the virtual time limit. Returns "" or why the run failed.
    std::string run(Duration limit = 120s) {
        net_.wake_at(Time{});  // the application opens its streams before any packet
        const bool finished =
            net_.run_until([this] { return transfer_.done(); }, Time{} + limit);
        if (transfer_.failed()) return transfer_.failure();
        if (!finished) return "virtual time limit reached";
        return "";
    }

    std::string problem(const std::string& what) const {
        return "seed " + std::to_string(seed_) + ": " + what;
    }

    uint64_t seed_;
    Conditions cond_;
    Keys keys_;
    AgentEndpoint a_;
    AgentEndpoint b_;
    PathNetwork net_;
    TwoWayTransfer transfer_;
    std::function<void(Time)> watch_;
};

// The direct address in use at time t, from a side's log of changes (nullopt: the relay).
std::optional<SocketAddress> path_at(const AgentEndpoint& e, Time t) {
    std::optional<SocketAddress> p;
    for (const auto& c : e.changes()) {
        if (c.at <= t) p = c.direct;
    }
    return p;
}

// The first change at or after t, if any.
const PathEvent* first_change_from(const AgentEndpoint& e, Time t) {
    for (const auto& c : e.changes()) {
        if (c.at >= t) return &c;
    }
    return nullptr;
}

// Counts the first failure and keeps its message.
struct Failures {
    uint64_t count = 0;
    std::string first;
    void add(const std::string& problem) {
        if (!problem.empty() && count++ == 0) first = problem;
    }
};

// Session-level drops that must stay zero when no one attacks.
uint64_t unexpected_drops(const SessionStats& s) {
    return s.drop_malformed + s.drop_bad_mac1 + s.drop_unknown_peer + s.drop_decrypt_failed +
           s.drop_key_expired + s.drop_unsupported_suite + s.drop_bad_probe;
}

}  // namespace

TEST_CASE("relay first, then direct within a bound; byte-exact both ways") {
    // Each side probes from the moment it has keys. A probe round trip that fails (a lost
    // packet, or the responder not yet holding keys to answer under) is retried on the punch
    // schedule; by the 400 ms try, four tries have had their chance.
    const Duration kDirectBound = kPunchSchedule[4] + 100ms;
    Failures failures;
    Duration worst{0};
    for (uint64_t seed = seeds().first; seed <= seeds().last; ++seed) {
        Run run(seed);
        run.watch_ = [&](Time) {
            if (run.a_.paths().active() && run.b_.paths().active() && run.transfer_.bulk_done()) {
                run.transfer_.stop_requests();
            }
        };
        std::string problem = run.run();
        for (AgentEndpoint* e : {&run.a_, &run.b_}) {
            if (!problem.empty()) break;
            const char* who = e == &run.a_ ? "A" : "B";
            const SocketAddress peer = e == &run.a_ ? kAddrB : kAddrA;
            if (e->changes().empty() || e->changes().front().direct != peer) {
                problem = std::string(who) + " never went direct";
            } else if (e->changes().size() != 1) {
                problem = std::string(who) + " changed path " +
                          std::to_string(e->changes().size()) + " times";
            } else if (e->changes().front().at - e->probing_since() > kDirectBound) {
                problem = std::string(who) + " direct only " +
                          at_ms(Time{} + (e->changes().front().at - e->probing_since())) +
                          " after probing started";
            } else if (e->stream_bytes_before_direct() == 0) {
                problem = std::string(who) + " sent no stream data through the relay first";
            } else if (e->data_to().count(peer) == 0) {
                problem = std::string(who) + " sent no data on the direct path";
            } else if (unexpected_drops(e->session().stats()) != 0) {
                problem = std::string(who) + " dropped session packets nobody forged";
            }
            if (problem.empty()) {
                worst = std::max(worst, e->changes().front().at - e->probing_since());
            }
        }
        if (!problem.empty()) failures.add(run.problem(problem));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
    std::printf("direct within %.1f ms of probing (bound %.1f ms), %llu seeds\n", to_ms(worst),
                to_ms(kDirectBound), static_cast<unsigned long long>(seeds().count()));
}

TEST_CASE("direct path blackholed mid-transfer: relay within kDirectSilence, back when restored") {
    Failures failures;
    Duration worst_fallback{0}, worst_return{0};
    for (uint64_t seed = seeds().first; seed <= seeds().last; ++seed) {
        Run run(seed);
        SeededRng r(seed ^ 0x686f6c65);
        // The break comes 300-800 ms after both sides are direct and lasts 3.5-7 s: longer than
        // kDirectSilence, so both sides must leave the path.
        const Duration after_direct = std::chrono::milliseconds(300 + r.uniform(500));
        const Duration outage = std::chrono::milliseconds(3500 + r.uniform(3500));
        Time both_direct = kNever, broken = kNever, restored = kNever;
        bool bulk_running_at_break = false;
        run.watch_ = [&](Time now) {
            const bool direct = run.a_.paths().active() && run.b_.paths().active();
            if (both_direct == kNever && direct) {
                both_direct = now;
                run.net_.wake_at(now + after_direct);
            }
            if (broken == kNever && both_direct != kNever && now >= both_direct + after_direct) {
                broken = now;
                bulk_running_at_break = !run.transfer_.bulk_done();
                run.net_.set_direct_up(false);
                run.net_.wake_at(now + outage);
            }
            if (restored == kNever && broken != kNever && now >= broken + outage) {
                restored = now;
                run.net_.set_direct_up(true);
            }
            if (restored != kNever && direct) run.transfer_.stop_requests();
        };
        std::string problem = run.run();
        if (problem.empty() && broken == kNever) problem = "never both direct";
        if (problem.empty() && !bulk_running_at_break) problem = "the bulk ended before the break";
        for (AgentEndpoint* e : {&run.a_, &run.b_}) {
            if (!problem.empty()) break;
            const std::string who = e == &run.a_ ? "A" : "B";
            const SocketAddress peer = e == &run.a_ ? kAddrB : kAddrA;
            // Before the break: direct, and no fallback.
            const PathEvent* fallback = first_change_from(*e, broken);
            if (path_at(*e, broken) != peer) {
                problem = who + " not direct when the path broke";
            } else if (e->paths().stats().fallbacks != 1) {
                problem = who + " fell back " + std::to_string(e->paths().stats().fallbacks) +
                          " times";
            } else if (!fallback || fallback->direct) {
                problem = who + " did not fall back to the relay";
            } else if (fallback->at > broken + kDirectSilence + run.cond_.direct_max_one_way()) {
                problem = who + " fell back at " + at_ms(fallback->at) + ", the path broke at " +
                          at_ms(broken);
            } else if (fallback->at >= restored) {
                problem = who + " fell back only after the path came back";
            }
            if (!problem.empty()) break;
            worst_fallback = std::max(worst_fallback, fallback->at - broken);
            // Back to direct, at the first probe answered after the path came back; and that
            // probe went out no later than one rediscovery interval after.
            const PathEvent* back = first_change_from(*e, restored);
            const auto& sent = e->challenges_to().at(peer);
            auto next_probe = std::lower_bound(sent.begin(), sent.end(), restored);
            const auto& answered = e->responses_from().count(peer) ? e->responses_from().at(peer)
                                                                   : std::vector<Time>{};
            auto first_answer = std::lower_bound(answered.begin(), answered.end(), restored);
            if (!back || back->direct != peer) {
                problem = who + " did not return to the direct path";
            } else if (next_probe == sent.end() || *next_probe > restored + kRediscoverInterval) {
                problem = who + " sent no probe within kRediscoverInterval of the restore";
            } else if (first_answer == answered.end() || back->at != *first_answer) {
                problem = who + " returned at " + at_ms(back->at) +
                          ", not at the first answered probe";
            } else if (path_at(*e, run.net_.now()) != peer) {
                problem = who + " not direct at the end";
            }
            if (problem.empty()) worst_return = std::max(worst_return, back->at - restored);
        }
        if (!problem.empty()) failures.add(run.problem(problem));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
    std::printf("fallback within %.1f ms of the break (kDirectSilence %.1f ms), back direct "
                "within %.1f ms of the restore, %llu seeds\n",
                to_ms(worst_fallback), to_ms(kDirectSilence), to_ms(worst_return),
                static_cast<unsigned long long>(seeds().count()));
}

TEST_CASE("NAT rebinding mid-transfer under spoofing: moves after a probe round trip only") {
    Failures failures;
    Duration worst_switch{0};
    uint64_t replays_refused = 0, forged_refused = 0, forged_decrypted = 0;
    uint64_t replayed_probes_answered = 0;
    for (uint64_t seed = seeds().first; seed <= seeds().last; ++seed) {
        Run run(seed);
        SeededRng r(seed ^ 0x6e6174);
        const Duration after_direct = std::chrono::milliseconds(300 + r.uniform(500));
        Time both_direct = kNever, rebound = kNever;
        bool bulk_running_at_rebind = false;

        // The third address: replays a fifth of what each side sends the other (on either
        // path) to that side, 5-40 ms later, so a replay sometimes comes before its original
        // (whose copy the direct path lost, or that the relay still carries); and forges a
        // datagram to each side every 20 ms, half of them with a receiver index that side's
        // session owns so they get as far as decryption. It spoofs: what is sent to its
        // address never reaches it (an attacker that receives there and forwards both ways
        // is a working relay, not a spoofer).
        std::optional<std::array<uint8_t, 4>> index_to_a, index_to_b;
        run.net_.set_tap([&](PathSide from, const Outgoing& out, Time now) {
            if (out.to == kAttacker) return;
            const PathSide to = from == PathSide::kA ? PathSide::kB : PathSide::kA;
            if (Session::receiver_index(out.data)) {
                auto& slot = to == PathSide::kA ? index_to_a : index_to_b;
                slot.emplace();
                std::copy(out.data.begin() + 1, out.data.begin() + 5, slot->begin());
            }
            if (r.chance(0.2)) {
                run.net_.inject(to, kAttacker, out.data,
                                now + std::chrono::milliseconds(5 + r.uniform(36)));
            }
        });
        Time next_forgery{};
        auto forge = [&](Time now) {
            while (now >= next_forgery) {
                for (PathSide to : {PathSide::kA, PathSide::kB}) {
                    const auto& index = to == PathSide::kA ? index_to_a : index_to_b;
                    const size_t size = r.chance(0.5) ? kProbeSize : 1 + r.uniform(1400);
                    Bytes junk(size);
                    r.fill(junk);
                    if (index && size >= kPacketHeaderSize && r.chance(0.5)) {
                        junk[0] = r.chance(0.5) ? kPacketTypeProbe : kPacketTypeData;
                        std::copy(index->begin(), index->end(), junk.begin() + 1);
                    }
                    run.net_.inject(to, kAttacker, std::move(junk), next_forgery);
                }
                next_forgery += 20ms;
            }
            if (!run.transfer_.done()) run.net_.wake_at(next_forgery);
        };

        run.watch_ = [&](Time now) {
            forge(now);
            const bool direct = run.a_.paths().active() && run.b_.paths().active();
            if (both_direct == kNever && direct) {
                both_direct = now;
                run.net_.wake_at(now + after_direct);
            }
            if (rebound == kNever && both_direct != kNever && now >= both_direct + after_direct) {
                rebound = now;
                bulk_running_at_rebind = !run.transfer_.bulk_done();
                run.net_.rebind(PathSide::kB, kAddrBRebound);
            }
            if (rebound != kNever && run.a_.paths().active() == kAddrBRebound) {
                run.transfer_.stop_requests();
            }
        };
        std::string problem = run.run();
        if (problem.empty() && rebound == kNever) problem = "never both direct";
        if (problem.empty() && !bulk_running_at_rebind) problem = "the bulk ended before rebind";
        // Neither side ever moved to the third address or sent it data.
        for (AgentEndpoint* e : {&run.a_, &run.b_}) {
            if (!problem.empty()) break;
            const std::string who = e == &run.a_ ? "A" : "B";
            for (const auto& c : e->changes()) {
                if (c.direct == kAttacker) problem = who + " moved to the third address";
            }
            if (e->data_to().count(kAttacker)) problem = who + " sent data to the third address";
        }
        // B (whose address changed) keeps A's address or the relay.
        for (const auto& c : run.b_.changes()) {
            if (problem.empty() && c.direct && *c.direct != kAddrA) {
                problem = "B moved to " + to_string(*c.direct);
            }
        }
        if (problem.empty()) {
            // A: on the old address until the new one answers a probe, then on the new one
            // (at that answer, or at B's next data from it).
            const AgentEndpoint& a = run.a_;
            const auto& answers = a.responses_from().count(kAddrBRebound)
                                      ? a.responses_from().at(kAddrBRebound)
                                      : std::vector<Time>{};
            const PathEvent* moved = nullptr;
            for (const auto& c : a.changes()) {
                if (c.at >= rebound && c.direct == kAddrBRebound) {
                    moved = &c;
                    break;
                }
            }
            const Time old_heard = a.last_authenticated().count(kAddrB)
                                       ? a.last_authenticated().at(kAddrB)
                                       : Time{};
            // The first answer from the new address once the old one has been quiet long
            // enough for PathManager to leave it (or A is on the relay by then).
            auto due = std::lower_bound(answers.begin(), answers.end(),
                                        old_heard + kDirectKeepalive);
            if (path_at(a, rebound) != kAddrB) {
                problem = "A not on B's first address at the rebind";
            } else if (!moved) {
                problem = "A never moved to B's new address";
            } else if (answers.empty() || answers.front() > moved->at) {
                // It moves at an answer, or at B's data once an answer validated the address.
                problem = "A moved at " + at_ms(moved->at) +
                          " before a probe was answered from the new address";
            } else if (due != answers.end() && moved->at > *due) {
                problem = "A answered from the new address at " + at_ms(*due) +
                          " but moved only at " + at_ms(moved->at);
            }
            for (const auto& c : a.changes()) {
                if (!problem.empty()) break;
                if (c.at >= rebound && c.at < moved->at && c.direct) {
                    problem = "A moved to " + to_string(*c.direct) + " before the new address";
                }
            }
            if (problem.empty()) {
                worst_switch = std::max(worst_switch, moved->at - rebound);
                if (run.net_.stats().dropped_stale == 0) {
                    problem = "nothing went to the stale mapping: the rebind did not bite";
                }
            }
        }
        for (AgentEndpoint* e : {&run.a_, &run.b_}) {
            replays_refused += e->connection().stats().drop_duplicate;
            const uint64_t opened_and_refused =
                e->session().stats().drop_decrypt_failed + e->session().stats().drop_bad_probe;
            forged_decrypted += opened_and_refused;
            forged_refused += opened_and_refused + e->session().stats().drop_malformed +
                              e->udp_from_unknown();
            if (e->responses_to().count(kAttacker)) {
                replayed_probes_answered += e->responses_to().at(kAttacker);
            }
        }
        if (!problem.empty()) failures.add(run.problem(problem));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
    // The attack reached the checks: replays were refused by the replay window, forgeries
    // with an index we own got as far as decryption and were refused there, and replayed
    // challenges were answered (to the address they came from, never moving the path).
    CHECK(replays_refused > 0);
    CHECK(forged_decrypted > 0);
    CHECK(replayed_probes_answered > 0);
    std::printf("moved to the rebound address within %.1f ms; %llu replays and %llu forgeries "
                "refused, %llu replayed challenges answered, %llu seeds\n",
                to_ms(worst_switch), static_cast<unsigned long long>(replays_refused),
                static_cast<unsigned long long>(forged_refused),
                static_cast<unsigned long long>(replayed_probes_answered),
                static_cast<unsigned long long>(seeds().count()));
}

TEST_CASE("direct path never works: relay throughout, probes on the documented schedule") {
    // Watch long enough for the dense burst and a few rediscovery rounds after it.
    constexpr Duration kWatch = 20s;
    Failures failures;
    for (uint64_t seed = seeds().first; seed <= seeds().last; ++seed) {
        Run run(seed);
        run.net_.set_direct_up(false);
        run.watch_ = [&](Time now) {
            if (now >= Time{} + kWatch) run.transfer_.stop_requests();
        };
        run.net_.wake_at(Time{} + kWatch);
        std::string problem = run.run();
        const Time end = run.net_.now();
        for (AgentEndpoint* e : {&run.a_, &run.b_}) {
            if (!problem.empty()) break;
            const std::string who = e == &run.a_ ? "A" : "B";
            const SocketAddress peer = e == &run.a_ ? kAddrB : kAddrA;
            if (!e->changes().empty()) {
                problem = who + " changed path";
                break;
            }
            if (!e->data_to().empty()) {
                problem = who + " sent data on a direct path";
                break;
            }
            // The schedule: kPunchSchedule's offsets from the start of probing, then one
            // try every kRediscoverInterval after the last of them.
            std::vector<Time> expected;
            for (Duration d : kPunchSchedule) expected.push_back(e->probing_since() + d);
            while (expected.back() + kRediscoverInterval <= end) {
                expected.push_back(expected.back() + kRediscoverInterval);
            }
            const auto& probes = e->challenges_to();
            if (probes.size() != 1 || !probes.count(peer)) {
                problem = who + " probed " + std::to_string(probes.size()) + " addresses";
                break;
            }
            const auto& sent = probes.at(peer);
            if (sent.size() != expected.size()) {
                problem = who + " sent " + std::to_string(sent.size()) + " probes by " +
                          at_ms(end) + ", the schedule has " + std::to_string(expected.size());
                break;
            }
            for (size_t i = 0; i < sent.size() && problem.empty(); ++i) {
                // 1 us: the simulator steps that far past a deadline that does not move.
                if (sent[i] < expected[i] || sent[i] > expected[i] + 1us) {
                    problem = who + " probe " + std::to_string(i) + " at " + at_ms(sent[i]) +
                              ", scheduled for " + at_ms(expected[i]);
                }
            }
            if (problem.empty() && (e->paths().stats().responses_sent != 0 ||
                                    e->paths().stats().paths_validated != 0)) {
                problem = who + " heard a probe through the blackhole";
            }
        }
        if (problem.empty() && run.net_.stats().dropped_direct_down == 0) {
            problem = "no probe reached the blackhole";
        }
        if (!problem.empty()) failures.add(run.problem(problem));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
}

TEST_CASE("a handshake flood from many addresses: DH within budget, the real peer connects") {
    // Distinct mac1-valid initiations from strangers (anyone who knows B's public key can
    // make them), sent from random addresses and from A's own address (spoofed: B's link
    // claims datagrams from there, so these reach its session).
    constexpr int kDistinct = 8;
    constexpr Duration kFloodFor = 4s;
    constexpr Duration kFloodGap = 500us;  // 2,000 initiations a second
    Failures failures;
    uint64_t worst_dh = 0, flood_total = 0;
    Duration worst_connect{0};
    const uint64_t count = std::min<uint64_t>(seeds().count(), 60);
    for (uint64_t seed = seeds().first; seed < seeds().first + count; ++seed) {
        Run run(seed);
        SeededRng rng(seed ^ 0xf100d);
        std::vector<Bytes> flood;
        for (int i = 0; i < kDistinct; ++i) {
            const PrivateKey stranger = PrivateKey::generate(rng);
            auto h = InitiatorHandshake::create(stranger, public_key(run.keys_.b),
                                                CipherSuite::kChaCha20Poly1305,
                                                static_cast<uint32_t>(rng.next_u64()),
                                                tai64n_from_unix_us(kWallClock), rng);
            REQUIRE(h);
            flood.push_back(h->initiation());
        }
        uint64_t sent = 0;
        for (Time t{}; t < Time{} + kFloodFor; t += kFloodGap) {
            const SocketAddress from =
                rng.chance(0.5) ? kAddrA
                                : SocketAddress::ipv4({192, 0, 2, static_cast<uint8_t>(rng.uniform(256))},
                                                      static_cast<uint16_t>(rng.uniform(60000) + 1024));
            run.net_.inject(PathSide::kB, from, flood[rng.uniform(flood.size())], t);
            ++sent;
        }
        flood_total += sent;
        Time connected = kNever;
        run.watch_ = [&](Time now) {
            if (connected == kNever && run.a_.session().established()) connected = now;
            if (run.transfer_.bulk_done() && now >= Time{} + kFloodFor) {
                run.transfer_.stop_requests();
            }
        };
        std::string problem = run.run();
        const SessionStats sb = run.b_.session().stats();
        const SessionStats sa = run.a_.session().stats();
        // The burst, then at most a burst per kUnderLoadLinger while the flood lasts, plus
        // A's own handshakes.
        const double seconds = std::chrono::duration<double>(kFloodFor).count();
        const auto budget = static_cast<uint64_t>(
            kHandshakeLoadBurst * (1 + seconds / std::chrono::duration<double>(kUnderLoadLinger).count()) + 4);
        if (problem.empty()) {
            if (!run.a_.session().established() || !run.b_.session().established()) {
                problem = "the real handshake did not complete";
            } else if (sb.handshake_noise_reads > budget) {
                problem = "B did " + std::to_string(sb.handshake_noise_reads) +
                          " DH reads under the flood, budget " + std::to_string(budget);
            } else if (sb.cookie_replies_sent == 0) {
                problem = "B sent no cookie reply under the flood";
            } else if (sa.handshakes_completed != 1 || sb.handshakes_completed != 1) {
                problem = "more than one handshake completed";
            }
        }
        worst_dh = std::max(worst_dh, sb.handshake_noise_reads);
        if (connected != kNever) worst_connect = std::max(worst_connect, connected - Time{});
        if (!problem.empty()) failures.add(run.problem(problem));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
    std::printf("flood: %llu initiations over %llu seeds, at most %llu DH reads per seed; A "
                "established within %.1f ms\n",
                static_cast<unsigned long long>(flood_total),
                static_cast<unsigned long long>(count), static_cast<unsigned long long>(worst_dh),
                to_ms(worst_connect));
}

TEST_CASE("simultaneous initiation through the relay: one winner by key order, one session") {
    Failures failures;
    const uint64_t count = std::min<uint64_t>(seeds().count(), 200);
    for (uint64_t seed = seeds().first; seed < seeds().first + count; ++seed) {
        Run run(seed, Role::kInitiator);  // both start at t = 0
        run.watch_ = [&](Time) {
            if (run.a_.paths().active() && run.b_.paths().active() && run.transfer_.bulk_done()) {
                run.transfer_.stop_requests();
            }
        };
        std::string problem = run.run();
        const bool a_larger = stream_role(public_key(run.keys_.a), public_key(run.keys_.b)) ==
                              Role::kInitiator;
        Session& winner = (a_larger ? run.a_ : run.b_).session();
        Session& loser = (a_larger ? run.b_ : run.a_).session();
        if (problem.empty()) {
            if (winner.role() != Role::kInitiator || loser.role() != Role::kResponder) {
                problem = "the roles did not settle by key order";
            } else if (loser.stats().initiations_tie_yielded != 1) {
                problem = "the loser yielded " +
                          std::to_string(loser.stats().initiations_tie_yielded) + " times";
            } else if (winner.stats().handshakes_completed < 1 ||
                       loser.stats().handshakes_completed < 1) {
                problem = "no handshake completed";
            } else if (!winner.snapshot().current || !loser.snapshot().current ||
                       winner.snapshot().current->local_index !=
                           loser.snapshot().current->remote_index) {
                problem = "the two sides hold different sessions";
            } else if (unexpected_drops(winner.stats()) + unexpected_drops(loser.stats()) != 0) {
                problem = "dropped session packets nobody forged";
            }
        }
        if (!problem.empty()) failures.add(run.problem(problem));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
}

TEST_CASE("direct TCP when UDP is blocked: no retransmission over it, up to UDP, down to TCP, "
          "relay when it dies") {
    Failures failures;
    Duration worst_tcp{0}, worst_up{0}, worst_down{0};
    uint64_t tcp_seeds = 0;
    // Each run is long (five phases of one bulk transfer): a fifth of the seeds.
    const uint64_t last = std::min(seeds().last, seeds().first + seeds().count() / 5);
    for (uint64_t seed = seeds().first; seed <= last; ++seed) {
        ++tcp_seeds;
        // A side is on TCP once a probe round trip succeeds on it: the punch schedule's tries
        // (a first probe may find the peer without keys yet), plus the peer's send buffer
        // (kTcpSendBuffer at the link's 2 Mbit/s: 262 ms) that its answer waits behind once the
        // peer itself sends its bulk on TCP.
        const Duration kTcpBound = kPunchSchedule[4] + 300ms;
        Run run(seed, Role::kResponder, 12);
        SeededRng r(seed ^ 0x746370);
        const Duration on_tcp_for = std::chrono::milliseconds(300 + r.uniform(500));
        run.net_.set_direct_up(false);  // UDP blocked between the agents
        run.a_.tcp_connected(kAddrB, Time{});
        run.b_.tcp_connected(kAddrA, Time{});
        enum class Phase { kStart, kTcp, kUdpBack, kUdp, kUdpBroken, kTcpAgain, kRelay };
        Phase phase = Phase::kStart;
        Time tcp_at = kNever, udp_back_at = kNever, udp_broken_at = kNever, tcp_died_at = kNever;
        ConnectionStats a_on_tcp, b_on_tcp;
        std::string problem;
        auto kind = [](AgentEndpoint& e) -> std::optional<DirectKind> {
            if (!e.paths().active()) return std::nullopt;
            return e.paths().active_kind();
        };
        auto both = [&](std::optional<DirectKind> k) {
            return kind(run.a_) == k && kind(run.b_) == k;
        };
        auto check_quiet_on_tcp = [&](const char* when) {
            for (AgentEndpoint* e : {&run.a_, &run.b_}) {
                const ConnectionStats& before = e == &run.a_ ? a_on_tcp : b_on_tcp;
                const ConnectionStats& now_s = e->connection().stats();
                const std::string who = e == &run.a_ ? "A" : "B";
                if (!e->connection().path_reliable()) {
                    problem = who + " not in reliable mode on TCP (" + when + ")";
                } else if (now_s.packets_lost != before.packets_lost) {
                    // (Frames requeued once by the move onto TCP may still be going out: they
                    // are counted as requeued, not lost.)
                    problem = who + " declared packets lost over TCP (" + when + ")";
                } else if (now_s.pto_count != before.pto_count) {
                    problem = who + " had a probe timeout over TCP (" + when + ")";
                } else if (now_s.packets_sent_reliable == before.packets_sent_reliable) {
                    problem = who + " sent nothing on TCP (" + when + ")";
                }
            }
        };
        run.watch_ = [&](Time now) {
            if (!problem.empty()) {
                run.transfer_.stop_requests();
                return;
            }
            switch (phase) {
                case Phase::kStart:
                    if (both(DirectKind::kTcp)) {
                        phase = Phase::kTcp;
                        tcp_at = now;
                        a_on_tcp = run.a_.connection().stats();
                        b_on_tcp = run.b_.connection().stats();
                        run.net_.wake_at(now + on_tcp_for);
                    }
                    break;
                case Phase::kTcp:
                    if (now >= tcp_at + on_tcp_for) {
                        check_quiet_on_tcp("before UDP came back");
                        if (run.transfer_.bulk_done()) problem = "the bulk ended on TCP";
                        phase = Phase::kUdpBack;
                        udp_back_at = now;
                        run.net_.set_direct_up(true);
                    }
                    break;
                case Phase::kUdpBack:
                    if (both(DirectKind::kUdp)) {
                        phase = Phase::kUdp;
                        worst_up = std::max(worst_up, now - udp_back_at);
                        run.net_.wake_at(now + on_tcp_for);
                    }
                    break;
                case Phase::kUdp:
                    if (now >= udp_back_at + on_tcp_for) {
                        phase = Phase::kUdpBroken;
                        udp_broken_at = now;
                        run.net_.set_direct_up(false);
                    }
                    break;
                case Phase::kUdpBroken:
                    if (both(std::nullopt)) problem = "fell to the relay with TCP working";
                    if (both(DirectKind::kTcp)) {
                        phase = Phase::kTcpAgain;
                        worst_down = std::max(worst_down, now - udp_broken_at);
                        a_on_tcp = run.a_.connection().stats();
                        b_on_tcp = run.b_.connection().stats();
                        run.net_.wake_at(now + on_tcp_for);
                        tcp_died_at = now + on_tcp_for;
                    }
                    break;
                case Phase::kTcpAgain:
                    if (now >= tcp_died_at) {
                        check_quiet_on_tcp("before the connection died");
                        if (run.transfer_.bulk_done()) problem = "the bulk ended before TCP died";
                        phase = Phase::kRelay;
                        tcp_died_at = now;
                        run.net_.set_tcp_up(false);
                        run.a_.tcp_closed(now);
                        run.b_.tcp_closed(now);
                        if (!both(std::nullopt)) problem = "not on the relay once TCP died";
                        if (run.a_.connection().path_reliable()) problem = "A still reliable";
                    }
                    break;
                case Phase::kRelay:
                    if (run.transfer_.bulk_done()) run.transfer_.stop_requests();
                    break;
            }
        };
        std::string failed = run.run(300s);
        if (failed.empty()) failed = problem;
        if (failed.empty() && phase != Phase::kRelay) {
            failed = "stopped in phase " + std::to_string(static_cast<int>(phase));
        }
        if (failed.empty()) {
            for (AgentEndpoint* e : {&run.a_, &run.b_}) {
                const PathEvent& first = e->changes().front();
                if (first.kind != DirectKind::kTcp || !first.direct) {
                    failed = "the first path was not direct TCP";
                } else if (first.at - e->probing_since() > kTcpBound) {
                    failed = std::string(e == &run.a_ ? "A" : "B") + ": direct TCP only " +
                             at_ms(Time{} + (first.at - e->probing_since())) +
                             " after probing started at " + at_ms(e->probing_since());
                } else if (e->tcp_sent() == 0) {
                    failed = "nothing sent on TCP";
                } else if (unexpected_drops(e->session().stats()) != 0) {
                    failed = "dropped session packets nobody forged";
                }
                if (failed.empty()) worst_tcp = std::max(worst_tcp, first.at - e->probing_since());
            }
        }
        if (worst_up > kRediscoverInterval + kPunchSchedule.back() && failed.empty()) {
            failed = "up to UDP took " + at_ms(Time{} + worst_up);
        }
        if (!failed.empty()) failures.add(run.problem(failed));
    }
    INFO(failures.first);
    CHECK(failures.count == 0);
    std::printf("direct TCP within %.1f ms of probing, up to UDP within %.1f ms, down to TCP "
                "within %.1f ms (kDirectSilence %.1f ms), %llu seeds\n",
                to_ms(worst_tcp), to_ms(worst_up), to_ms(worst_down), to_ms(kDirectSilence),
                static_cast<unsigned long long>(tcp_seeds));
}
