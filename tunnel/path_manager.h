// PathManager: which way a session's packets go, relay or a direct UDP path, sans-IO
// (docs/architecture.md §4 "Paths", §4 steps 3-4).
//
// The session starts on the server's relay. Once it has keys, the agent hands the peer's
// candidates here; from then on both agents send authenticated probes (tunnel/path_probe.h)
// to every candidate on a schedule that starts fast (the NAT mappings open in both directions
// within the first few tries) and slows down, and keep doing so while they stay on the relay.
//
//   probe challenge arrives from A        answer it on A; A becomes a candidate if it was not
//                                         (peer-reflexive: the peer's NAT mapped it there)
//   probe response from A matches one      A is validated; the first validated path becomes
//   of our challenges to A                 the active one
//   authenticated data from A             A is alive; a new A (the peer's NAT rebound, or
//                                         it kept another of its birthday sockets) is probed
//                                         before anything is sent to it; once validated, and
//                                         the path in use is quiet, A becomes the active
//                                         path: we answer the way the peer sends
//   active path silent kDirectKeepalive   a challenge on it
//   active path silent kDirectSilence     back to the relay, and probing goes on; back to
//                                         direct when a probe is answered again
//
// Direct TCP paths (docs/architecture.md §4 "Direct TCP paths"): the agent opens TCP connections
// to the peer (simultaneous open, or to a reachable side) and hands each established one here
// (add_tcp_path). Probes and data ride it length-prefixed (tunnel/stream_framer.h); it is
// validated by the same challenge and response before it carries data. Preference: a validated
// direct UDP path, then a validated TCP path, then the relay. On TCP the UDP candidates are
// still probed on their schedule, and the first to answer takes the traffic from TCP; a UDP
// path that goes silent falls back to a validated TCP path rather than to the relay; a TCP
// path that goes silent or closes falls back to the relay.
//
// A path is only used after a probe round trip on it, so a spoofed source address can never
// redirect traffic: the probe is sealed with the session keys, and the response must carry
// the random data we sent to that very address.
//
// It has no I/O and no clock, like every core; the agent's PeerLink (tunnel/peer_link.h) drives
// it beside the Session whose keys seal the probes.
#pragma once

#include <chrono>
#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tunnel/socket_address.h"
#include "tunnel/path_probe.h"
#include "tunnel/port_prediction.h"
#include "tunnel/rng.h"
#include "tunnel/time.h"

namespace burrow {

// The punching schedule, offsets from the start: dense first, as both NATs need an outgoing
// packet before they let the other side's in, then doubling (RFC 8445 paces checks at Ta =
// 50 ms; we have few candidates, so all are tried in each round).
inline constexpr std::array<Duration, 8> kPunchSchedule = {
    std::chrono::milliseconds(0),   std::chrono::milliseconds(50),
    std::chrono::milliseconds(100), std::chrono::milliseconds(200),
    std::chrono::milliseconds(400), std::chrono::milliseconds(800),
    std::chrono::milliseconds(1600), std::chrono::milliseconds(3200)};
// After the burst, while on the relay, every candidate is tried this often: a path that
// appears later (the other side's NAT changed) is found within a few seconds.
inline constexpr Duration kRediscoverInterval = std::chrono::seconds(5);
// When attempt number `tries` (0: the first) of a punch that started at `started` is due:
// kPunchSchedule's offsets, then every kRediscoverInterval from now. UDP candidates
// (PathManager) and the agent's TCP connects (signal/agent_core_tcp.cc) keep the same pace.
inline Time punch_attempt_at(Time started, size_t tries, Time now) {
    return tries < kPunchSchedule.size() ? std::max(now, started + kPunchSchedule[tries])
                                         : now + kRediscoverInterval;
}
// On a direct path that has been quiet this long, a challenge checks it is still there. It is
// also the keepalive: far below the 30 s after which many NATs drop a UDP mapping.
inline constexpr Duration kDirectKeepalive = std::chrono::seconds(1);
// A direct path heard nothing from for this long is given up for the relay (issue 6's target
// is 3 s from the break to the relay).
inline constexpr Duration kDirectSilence = std::chrono::milliseconds(2500);
// The peer's data comes from a validated path other than ours while ours has been silent this
// long: the peer has moved (its NAT rebound, or it kept another of its birthday sockets and
// closed ours), so we answer the way it sends, as QUIC follows a peer's non-probing packets
// (RFC 9000 §9.3). The silence guard keeps a replayed or reordered packet from an old path
// from pulling us off a path in use.
inline constexpr Duration kFollowQuiet = std::chrono::milliseconds(100);
// A triggered check (RFC 8445 §7.3.1.4): a probe or data from an address we have not validated,
// while on the relay, has it probed at once, but no more often than this.
inline constexpr Duration kTriggeredCheckGap = std::chrono::milliseconds(250);
// Among working direct paths (docs/architecture.md §3 "Path kinds"): the lowest RTT, and IPv6
// when two are within this margin of each other. Above the jitter of one probe's RTT on a
// quiet network, so that two equal paths do not trade places on noise; far below what a
// detour (a path through another continent) adds.
inline constexpr Duration kPathRttMargin = std::chrono::milliseconds(10);

// Whether direct path a (measured at a_rtt) should carry the traffic rather than b: clearly
// faster, or IPv6 against IPv4 and not clearly slower. IPv6 first on ties because it usually
// has no NAT whose mapping can expire or be rebound (issue 17).
bool better_path(const SocketAddress& a, Duration a_rtt, const SocketAddress& b, Duration b_rtt);

// Challenges older than this can no longer validate anything.
inline constexpr Duration kChallengeLifetime = std::chrono::seconds(10);
// Candidates kept per session: the peer's host and reflexive addresses plus a few learned
// from probes. More would only be an attacker's way to make us send probes.
inline constexpr size_t kMaxPathCandidates = 16;
// Probes waiting to be sent; beyond it the oldest are dropped (the schedule sends more).
inline constexpr size_t kMaxQueuedProbes = 64;

// The birthday technique (docs/architecture.md §5): when our NAT maps endpoint-independently and the
// peer's maps per destination, the peer opens kBirthdaySockets sockets that each send towards
// our reflexive address (each gets its own random public port), and we probe kSprayPorts
// random ports of the peer's public address. With 256 open mappings among the ~64500 ports
// MASQUERADE --random-fully draws from, one round of 1000 probes finds one with probability
// 1 - (1 - 256/64512)^1000 = 98%.
inline constexpr size_t kBirthdaySockets = 256;
inline constexpr size_t kSprayPorts = 1000;
inline constexpr uint16_t kSprayLowestPort = 1024;  // NATs do not map below it
// The first round waits for the peer's sockets to open their mappings; later rounds use fresh
// random ports, until a path is validated.
inline constexpr Duration kSprayFirstDelay = std::chrono::milliseconds(200);
inline constexpr Duration kSprayInterval = std::chrono::milliseconds(2500);
inline constexpr int kSprayRounds = 6;

// Lockstep (tunnel/punch_planner.h): probes per round from our one socket to the peer's
// predicted ports, each a new mapping of ours. The initiator probes the peer's next mappings
// one by one, the responder every other one (stride 2): then the i-th probe of one side and the
// j-th of the other travel between the same two ports in opposite directions (one of the pair
// gets through, the answer comes back along it) for any number E >= 0 of mappings either side
// made beyond what its peer predicted, as long as 2E < kLockstepProbes: the initiator's probe
// j + eps_responder meets the responder's probe j = E (tests/unit/port_prediction_test.cc).
// Later rounds send to the same ports again: through the mappings the first one made, so a
// lost probe or answer gets another chance and no new mapping upsets the count. (Fresh ports
// each round cannot work: the responder's targets span twice the initiator's mappings of a
// round, so its next round's would overlap them, and a reused destination opens no mapping.)
inline constexpr size_t kLockstepProbes = 128;
inline constexpr uint32_t kLockstepStrideInitiator = 1;
inline constexpr uint32_t kLockstepStrideResponder = 2;
static_assert(kLockstepProbes * kLockstepStrideResponder <= kSprayPorts);

// What the prediction probes this round, for `burrow status` and the debug log.
struct PredictionWindow {
    std::string mode;  // "window" (the peer's predicted ports), "lockstep"
    uint16_t first = 0;  // the first and last port probed this round, in probing order
    uint16_t last = 0;
    size_t ports = 0;
    int round = 0;  // 1 for the first; 0 before it
};

// What carries a direct path's datagrams: UDP datagrams, or a TCP connection between the two
// agents with each datagram length-prefixed on it.
enum class DirectKind : uint8_t { kUdp, kTcp };
// "direct", "direct-tcp": what `burrow status` calls a direct path of this kind.
const char* status_name(DirectKind k);

struct ProbeToSend {
    SocketAddress to;
    Probe probe;
    DirectKind kind = DirectKind::kUdp;
};

// The active path changed: direct is the new path (nullopt: the relay).
struct PathChange {
    std::optional<SocketAddress> direct;
    DirectKind kind = DirectKind::kUdp;  // of direct
    std::string reason;
    Duration rtt{};  // of the probe that validated a direct path
};

struct PathStats {
    uint64_t challenges_sent = 0;
    uint64_t responses_sent = 0;
    uint64_t paths_validated = 0;
    uint64_t fallbacks = 0;             // direct -> relay
    uint64_t drop_unmatched_response = 0;  // no challenge of ours to that address had that data
    uint64_t drop_candidate_limit = 0;  // full of given or working candidates
    uint64_t candidates_evicted = 0;    // learned ones that never answered
    uint64_t spray_rounds = 0;
    uint64_t spray_probes = 0;
    uint64_t predicted_rounds = 0;  // spray or lockstep rounds to predicted ports
    uint64_t predicted_probes = 0;
    uint64_t tcp_paths_added = 0;
    uint64_t tcp_paths_closed = 0;
};

class PathManager {
  public:
    explicit PathManager(Rng& rng) : rng_(rng) {}

    // The peer's candidates; probing starts at now. May be called again with more.
    void add_candidates(const std::vector<SocketAddress>& addresses, Time now);
    // Birthday spray: rounds of kSprayPorts probes to random ports of peer_ip (its port is
    // ignored), starting kSprayFirstDelay from now, until a direct path is validated.
    void start_spray(const SocketAddress& peer_ip, Time now);
    // Port prediction, the spray's shape with predicted ports: rounds of probes to these ports
    // of peer_ip (the peer's predicted window, tunnel/port_prediction.h predict_ports), every
    // other round a random spray's instead, until a direct path is validated.
    void start_predicted_spray(const SocketAddress& peer_ip, std::vector<uint16_t> window,
                               Time now);
    // Lockstep (see kLockstepProbes): kLockstepProbes probes to the ports the peer's
    // sequential NAT gives its next mappings, every stride-th one, in order; the same again
    // each round.
    void start_lockstep(const SocketAddress& peer_ip, const PortAllocation& peer,
                        uint32_t stride, Time now);
    // The prediction's current round; nullopt when not predicting (or a path was found).
    const std::optional<PredictionWindow>& prediction() const { return prediction_; }
    // A TCP connection to the peer at `peer` is established: probe it now, then on the schedule.
    void add_tcp_path(const SocketAddress& peer, Time now);
    // That connection closed (either side, or it failed): if it carried the traffic, back to
    // the relay at once.
    void remove_tcp_path(const SocketAddress& peer, Time now);
    // An authenticated probe from `from`, on a path of this kind.
    void on_probe(const SocketAddress& from, const Probe& probe, Time now,
                  DirectKind kind = DirectKind::kUdp);
    // An authenticated data packet from `from`, on a path of this kind.
    void on_authenticated(const SocketAddress& from, Time now, DirectKind kind = DirectKind::kUdp);
    void on_timer(Time now);

    std::optional<ProbeToSend> poll_probe();
    std::optional<PathChange> poll_change();
    Time next_deadline() const;

    // The direct path in use; nullopt while on the relay.
    const std::optional<SocketAddress>& active() const { return active_; }
    // The kind of the direct path in use (meaningful when active()).
    DirectKind active_kind() const { return active_kind_; }
    // Whether address is one of this session's UDP candidates (given, learned from a probe, or
    // a rebinding being checked): where a handshake from a direct address may belong.
    bool knows(const SocketAddress& address) const {
        return candidates_.contains(PathKey{DirectKind::kUdp, address});
    }
    const PathStats& stats() const { return stats_; }

  private:
    // A direct path: the same address may be a UDP candidate and a TCP connection at once.
    struct PathKey {
        DirectKind kind = DirectKind::kUdp;
        SocketAddress address;
        auto operator<=>(const PathKey&) const = default;
        bool operator==(const PathKey&) const = default;
    };
    struct Challenge {
        PathData data;
        Time sent_at;
    };
    struct Candidate {
        int tries = 0;
        Time started{};
        Time next_probe = kNever;
        std::deque<Challenge> challenges;
        Time last_heard{};
        Duration rtt{};  // smoothed over its answered challenges; zero before the first
        bool validated = false;
        // Learned from a probe or a packet rather than given by the server: a spoofed source
        // can put it here, so it leaves again if it never answers.
        bool learned = false;
    };

    Candidate* add(const PathKey& key, Time now, bool learned = false);
    void send_challenge(const PathKey& to, Candidate& c, Time now);
    void schedule_next(Candidate& c, Time now);
    void trigger_check(Candidate& c, Time now);
    void queue(ProbeToSend probe);
    void switch_to(std::optional<PathKey> direct, std::string reason, Duration rtt);
    // Moves to `from` when the peer sends its data from there (see kFollowQuiet).
    bool follow_peer(const PathKey& from, Time now, Duration rtt);
    std::optional<PathKey> active_key() const {
        return active_ ? std::optional(PathKey{active_kind_, *active_}) : std::nullopt;
    }
    // A validated TCP path to fall back to when the UDP path in use goes silent.
    std::optional<PathKey> standby_tcp(Time now) const;

    void spray_round(Time now);
    bool match_spray(const SocketAddress& from, const Probe& probe, Time now);

    Rng& rng_;
    std::map<PathKey, Candidate> candidates_;
    struct Spray {
        SocketAddress ip;
        std::map<uint16_t, PathData> ports;  // this round's challenges
        Time round_at = kNever;
        Time round_sent{};
        int rounds = 0;
        // Port prediction: a fixed window of the peer's ports, or lockstep with the peer's
        // allocation; neither: random ports.
        std::vector<uint16_t> window;
        bool lockstep = false;
        bool predicted() const { return !window.empty(); }
    };
    std::optional<PredictionWindow> prediction_;
    std::optional<Spray> spray_;
    std::deque<ProbeToSend> spray_out_;  // a round at a time; not capped like out_
    std::optional<SocketAddress> active_;
    DirectKind active_kind_ = DirectKind::kUdp;
    // Where the peer's latest authenticated data packet came from: the path it sends on.
    std::optional<PathKey> data_from_;
    Time keepalive_at_ = kNever;
    std::deque<ProbeToSend> out_;
    std::deque<PathChange> changes_;
    PathStats stats_;
};

}  // namespace burrow
