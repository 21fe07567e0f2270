// The birthday technique under a bulk transfer, in virtual time (issue 19, "the birthday
// stall"): the NAS behind a port-restricted NAT sprays, the laptop behind a symmetric NAT opens
// its birthday sockets, and one spray round usually hits several of them (256 mappings among
// ~64500 ports, 1000 probes: about 4 hits). Every one of those is a working path; the two
// agents must settle on one of them at once and keep the transfer moving, not pick different
// ones and find out seconds later that the other side went quiet.
//
// Per seed: both agents register, the laptop fetches a large file from nas/web (it starts on
// the relay), and from the first direct path on either side until the transfer ends (or
// kWindow) the test watches
//
//   stall    the longest time the client received nothing
//   moves    direct path changes after the first one, on either side
//   settle   from the first direct path to the last change of either side's path
//
// and requires, for every seed, no stall over kMaxStall and no move (the path chosen first is
// the one that stays). BURROW_BIRTHDAY_SEEDS=N sets the seeds (default 200);
// BURROW_BIRTHDAY_SEED=N replays one, BURROW_BIRTHDAY_TRACE=1 prints its log.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/sim/net/agent_world.h"
#include "tests/sim/seed_range.h"

using namespace burrow;
using namespace burrow::sim;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kFileBytes = 12 * 1024 * 1024;
constexpr double kDirectMbit = 40;  // 5 MB/s: the file takes about 2.5 s on the direct path
// The session is idle when it goes direct (a first small request went through the relay), and
// the large one starts up to this long after the first direct path: inside the time the
// birthday side waits for the peer to show its choice (kBirthdayChoiceWait).
constexpr uint64_t kMaxStartDelayMs = 2500;
constexpr Duration kWindow = 6s;  // the transfer's limit (it takes about 2.5 s)
// A real stall is the 1-2.5 s until a quiet path is noticed (kDirectKeepalive,
// kDirectSilence); loss recovery on a healthy path is a few RTTs.
constexpr Duration kMaxStall = 500ms;
constexpr Duration kFirstBytesSpan = 1s;  // "bytes moved in the first second" of the transfer

SeedRange seeds() {
    return seed_range("BIRTHDAY", 300);
}

// One side's direct path as it changes.
struct PathWatch {
    std::optional<SocketAddress> current;
    int changes_after_first = 0;
    Time first = kNever;
    Time last_change = kNever;

    void see(const std::optional<SocketAddress>& direct, Time now) {
        if (direct == current) return;
        current = direct;
        if (first == kNever) {
            if (!direct) return;
            first = now;
        } else {
            ++changes_after_first;
        }
        last_change = now;
    }
};

struct Outcome {
    std::string problem;
    bool direct = false;
    Duration stall{0};
    Duration settle{0};
    int moves = 0;
    uint64_t first_bytes = 0;  // received in kFirstBytesSpan after the transfer started
};

Outcome run_one(uint64_t seed, bool trace) {
    SeededRng r(seed ^ 0x62646179);
    WorldConfig c;
    c.seed = seed;
    c.nas_nat = NatKind::kPortRestricted;
    c.laptop_nat = NatKind::kSymmetric;
    // A server near or far (a far one lets the NAS spray after the laptop's second round of
    // opening probes: the spray and the openings then both find mappings).
    c.server_one_way = std::chrono::milliseconds(10 + r.uniform(390));
    c.direct_one_way = std::chrono::milliseconds(2 + r.uniform(40));
    c.loss = r.unit() * 0.005;
    c.jitter = std::chrono::microseconds(r.uniform(3000));
    c.direct_rate_mbit = kDirectMbit;
    c.trace = trace;
    AgentWorld w(c);
    Outcome o;
    auto fail = [&](const std::string& why) {
        if (trace) std::printf("%s", w.log_tail(100000000).c_str());
        o.problem = why + "\n" + w.log_tail();
        return o;
    };
    if (!w.run_until_registered(w.now() + 20s)) {
        return fail("not registered after 20 s");
    }
    // A first request through the relay, then nothing while the agents punch.
    WorldClient& first_request = w.open("web", 4096);
    PathWatch nas, laptop;
    Time first_direct = kNever;
    const auto see_paths = [&] {
        const Time now = w.now();
        if (const PeerLink* l = w.link(WorldSide::kNas)) nas.see(l->direct(), now);
        if (const PeerLink* l = w.link(WorldSide::kLaptop)) laptop.see(l->direct(), now);
        if (first_direct == kNever && std::min(nas.first, laptop.first) != kNever) {
            first_direct = now;
        }
    };
    w.run_until(
        [&] {
            see_paths();
            return first_direct != kNever && first_request.finished;
        },
        w.now() + 30s);
    if (first_request.failed) return fail("first request: " + first_request.failure);
    if (first_direct == kNever) {
        // A birthday that found nothing in 30 s is the technique's ~2% per round, not the stall
        // this test looks for; the agent test covers reaching direct.
        if (!first_request.finished) return fail("first request: unanswered within 30 s");
        return o;
    }
    o.direct = true;
    const Time start = first_direct + std::chrono::milliseconds(r.uniform(kMaxStartDelayMs));
    w.run_until(
        [&] {
            see_paths();
            return false;
        },
        start);
    WorldClient& web = w.open("web", kFileBytes);
    // Stalls count from the first byte: before it, the request may still be on the relay.
    Time last_progress = kNever;
    uint64_t last_received = 0;
    w.run_until(
        [&] {
            see_paths();
            const Time now = w.now();
            if (web.received != last_received) {
                if (last_progress != kNever) o.stall = std::max(o.stall, now - last_progress);
                last_progress = now;
                last_received = web.received;
            }
            if (now <= web.opened + kFirstBytesSpan) o.first_bytes = web.received;
            return web.finished || web.failed;
        },
        start + kWindow);
    if (web.failed) return fail("web: " + web.failure);
    if (!web.finished) {
        o.stall = std::max(o.stall,
                           w.now() - (last_progress == kNever ? web.opened : last_progress));
    }
    o.moves = nas.changes_after_first + laptop.changes_after_first;
    o.settle = std::max(nas.last_change, laptop.last_change) - first_direct;
    if (trace) std::printf("%s", w.log_tail(100000000).c_str());
    return o;
}

double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

}  // namespace

TEST_CASE("birthday: several validated birthday ports, one path chosen at once, no stall") {
    const SeedRange s = seeds();
    const bool trace = std::getenv("BURROW_BIRTHDAY_TRACE") != nullptr;
    uint64_t runs = 0, direct = 0, stalled = 0, moved = 0, failed = 0;
    std::vector<double> stalls, settles, first_mib;
    std::string first;
    for (uint64_t seed = s.first; seed <= s.last; ++seed) {
        ++runs;
        const Outcome o = run_one(seed, trace);
        std::string problem = o.problem;
        if (problem.empty() && o.direct) {
            ++direct;
            stalls.push_back(to_ms(o.stall));
            settles.push_back(to_ms(o.settle));
            first_mib.push_back(static_cast<double>(o.first_bytes) / (1024 * 1024));
            if (o.stall > kMaxStall) {
                ++stalled;
                problem = "stalled " + std::to_string(to_ms(o.stall)) + " ms";
            }
            if (o.moves > 0) {
                ++moved;
                problem += (problem.empty() ? "" : ", ") + std::to_string(o.moves) +
                           " path moves after the first direct path (settled after " +
                           std::to_string(to_ms(o.settle)) + " ms)";
            }
        } else if (!problem.empty()) {
            ++failed;
        }
        if (!problem.empty()) {
            // One line per failing seed, to replay with BURROW_BIRTHDAY_SEED.
            std::printf("sim-birthday: seed %llu: %s\n", static_cast<unsigned long long>(seed),
                        problem.substr(0, problem.find('\n')).c_str());
        }
        if (!problem.empty() && first.empty()) {
            first = "seed " + std::to_string(seed) + ": " + problem;
        }
    }
    std::printf("sim-birthday: seeds=%llu direct=%llu failed=%llu stalled=%llu moved=%llu "
                "stall p50=%.0f p99=%.0f max=%.0f ms, settle p99=%.0f max=%.0f ms, "
                "first %.0f s of the transfer p1=%.1f p50=%.1f MiB\n",
                static_cast<unsigned long long>(runs), static_cast<unsigned long long>(direct),
                static_cast<unsigned long long>(failed), static_cast<unsigned long long>(stalled),
                static_cast<unsigned long long>(moved), quantile(stalls, 0.5),
                quantile(stalls, 0.99), quantile(stalls, 1), quantile(settles, 0.99),
                quantile(settles, 1), to_ms(kFirstBytesSpan) / 1000, quantile(first_mib, 0.01),
                quantile(first_mib, 0.5));
    INFO(first);
    CHECK(failed == 0);
    CHECK(stalled == 0);
    CHECK(moved == 0);
    // Most seeds must reach direct, or the stall checks above judged nothing.
    CHECK(direct * 10 >= runs * 9);
}
