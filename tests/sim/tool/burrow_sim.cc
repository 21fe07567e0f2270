// burrow-sim: runs Connection transfers over the seeded virtual network from the command line,
// many seeds at once, and prints one summary line. A failing seed can be replayed alone with
// --seed-start <seed> --seeds 1 and the same flags.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tests/sim/net/transfer.h"

namespace {

using burrow::CongestionKind;
using burrow::Duration;
using burrow::Time;
using namespace burrow::sim;

struct TransferOptions {
    uint64_t seeds = 100;
    uint64_t seed_start = 1;
    size_t streams = 8;
    uint64_t bytes = 64 * 1024;
    bool mixed = false;
    double loss = 0;
    double reorder = 0;
    double dup = 0;
    double burst = 0;
    double delay_ms = 10;
    double jitter_ms = 0;
    double rate_mbit = 0;
    double blackhole_ms = 0;
    double blackhole_at_ms = 1000;
    bool interactive = false;
    double interval_ms = 50;
    uint64_t slow_reader = 0;
    std::string cc = "bbr";
    bool verbose = false;
};

Duration from_ms(double ms) {
    constexpr double kUsPerMs = 1000;
    return Duration(static_cast<int64_t>(ms * kUsPerMs));
}

TransferConfig make_config(const TransferOptions& o, uint64_t seed) {
    TransferConfig c;
    c.seed = seed;
    c.streams = o.streams;
    c.bytes_per_stream = o.bytes;
    c.mixed_sizes = o.mixed;
    LinkConfig link;
    link.loss = o.loss;
    link.reorder = o.reorder;
    link.duplicate = o.dup;
    link.burst_loss = o.burst;
    link.delay = from_ms(o.delay_ms);
    link.jitter = from_ms(o.jitter_ms);
    link.rate_mbit = o.rate_mbit;
    if (o.blackhole_ms > 0) {
        const Time from = Time{} + from_ms(o.blackhole_at_ms);
        link.blackholes = {{from, from + from_ms(o.blackhole_ms)}};
    }
    c.a_to_b = link;
    c.b_to_a = link;
    c.connection.congestion = o.cc == "newreno" ? CongestionKind::kNewReno : CongestionKind::kBbr;
    c.interactive = o.interactive;
    c.interactive_interval = from_ms(o.interval_ms);
    c.slow_reader_bytes_per_ms = o.slow_reader;
    return c;
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t mid = v.size() / 2;
    return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

int run_transfers(const TransferOptions& o) {
    uint64_t failures = 0;
    uint64_t first_failed = 0;
    std::string first_reason;
    std::vector<double> goodputs;
    std::vector<double> latencies;
    for (uint64_t seed = o.seed_start; seed < o.seed_start + o.seeds; ++seed) {
        const TransferResult r = TransferScenario(make_config(o, seed)).run();
        if (o.verbose) {
            std::printf("seed %llu: %s duration_ms=%.1f goodput=%.3f lost=%llu pto=%llu "
                        "p50_ms=%.1f p99_ms=%.1f srtt_ms=%.1f %s\n",
                        static_cast<unsigned long long>(seed), r.ok ? "ok" : "FAIL",
                        burrow::to_ms(r.duration),
                        o.rate_mbit > 0 ? r.goodput_fraction : r.goodput_bytes_per_sec,
                        static_cast<unsigned long long>(r.a_stats.packets_lost),
                        static_cast<unsigned long long>(r.a_stats.pto_count), r.p50_ms, r.p99_ms,
                        r.a_srtt_ms, r.reason.c_str());
        }
        if (!r.ok) {
            if (failures++ == 0) {
                first_failed = seed;
                first_reason = std::string(failure_name(r.failure)) + ": " + r.reason;
            }
            continue;
        }
        goodputs.push_back(o.rate_mbit > 0 ? r.goodput_fraction : r.goodput_bytes_per_sec);
        latencies.insert(latencies.end(), r.interactive_latency_ms.begin(),
                         r.interactive_latency_ms.end());
    }

    if (failures > 0) {
        std::printf("seed %llu failed: %s\n", static_cast<unsigned long long>(first_failed),
                    first_reason.c_str());
    }
    std::string line =
        "sim-transfer: seeds=" + std::to_string(o.seeds) + " failures=" + std::to_string(failures);
    char buf[64];
    std::snprintf(buf, sizeof buf, o.rate_mbit > 0 ? "%.3f" : "%.0f", median(goodputs));
    line += std::string(" goodput=") + buf;
    if (o.interactive) {
        std::snprintf(buf, sizeof buf, "%.1f", percentile(latencies, 0.99));
        line += std::string(" p99_rtt_ms=") + buf;
    }
    if (failures > 0) line += " worst_seed=" + std::to_string(first_failed);
    std::printf("%s\n", line.c_str());
    return failures > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "burrow-sim: burrow's transport over a seeded virtual network (no sleeping, "
        "no sockets)"};
    app.require_subcommand(1);

    TransferOptions o;
    CLI::App* transfer = app.add_subcommand(
        "transfer",
        "A opens --streams streams to B and sends --bytes on each; B verifies every byte and "
        "FIN. Link impairments apply to both directions. Prints one line: "
        "sim-transfer: seeds=N failures=F goodput=G [p99_rtt_ms=X] [worst_seed=K], where G is "
        "the median over seeds of bulk goodput as a fraction of --rate-mbit (bytes per virtual "
        "second when the link is unlimited). Exit status 1 if any seed fails.");
    transfer->option_defaults()->always_capture_default();
    transfer->add_option("--seeds", o.seeds, "number of seeds to run")->check(CLI::PositiveNumber);
    transfer->add_option("--seed-start", o.seed_start, "first seed");
    transfer->add_option("--streams", o.streams, "concurrent bulk streams");
    transfer->add_option("--bytes", o.bytes, "bytes per stream (maximum with --mixed)");
    transfer->add_flag("--mixed", o.mixed, "draw each stream's size from [0, --bytes]");
    transfer->add_option("--loss", o.loss, "independent loss probability per packet")
        ->check(CLI::Range(0.0, 1.0));
    transfer->add_option("--reorder", o.reorder, "probability a packet is delayed 10 ms extra")
        ->check(CLI::Range(0.0, 1.0));
    transfer->add_option("--dup", o.dup, "probability a packet is delivered twice")
        ->check(CLI::Range(0.0, 1.0));
    transfer
        ->add_option("--burst", o.burst,
                     "Gilbert-Elliott P(good->bad); the bad state loses every packet and "
                     "recovers with probability 0.3 per packet")
        ->check(CLI::Range(0.0, 1.0));
    transfer
        ->add_option("--delay-ms", o.delay_ms,
                     "ONE-WAY propagation delay in ms (the RTT is twice this)")
        ->check(CLI::NonNegativeNumber);
    transfer->add_option("--jitter-ms", o.jitter_ms, "uniform extra one-way delay in [0, J] ms")
        ->check(CLI::NonNegativeNumber);
    transfer->add_option("--rate-mbit", o.rate_mbit, "bottleneck rate in Mbit/s (0: unlimited)")
        ->check(CLI::NonNegativeNumber);
    transfer
        ->add_option("--blackhole-ms", o.blackhole_ms,
                     "lose every packet, both ways, for this many ms")
        ->check(CLI::NonNegativeNumber);
    transfer
        ->add_option("--blackhole-at-ms", o.blackhole_at_ms, "virtual time the blackhole starts")
        ->check(CLI::NonNegativeNumber);
    transfer->add_flag("--interactive", o.interactive,
                       "add a stream with a 1 KB request/response every --interval-ms; "
                       "reports p99 request->response time");
    transfer->add_option("--interval-ms", o.interval_ms, "interactive request interval")
        ->check(CLI::PositiveNumber);
    transfer->add_option("--slow-reader", o.slow_reader, "B reads at most this many bytes per ms");
    transfer->add_option("--cc", o.cc, "congestion controller")
        ->check(CLI::IsMember({"bbr", "newreno"}));
    transfer->add_flag("--verbose", o.verbose, "one line per seed");

    CLI11_PARSE(app, argc, argv);
    if (transfer->parsed()) return run_transfers(o);
    return 2;
}
