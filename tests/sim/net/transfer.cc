#include "tests/sim/net/transfer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <sstream>
#include <type_traits>
#include <variant>

namespace burrow::sim {

namespace {

constexpr size_t kWriteChunk = 16 * 1024;                       // what A offers write() at once
constexpr size_t kReadChunk = 16 * 1024;                        // scratch buffer for every read()
constexpr Duration kReaderTick = std::chrono::milliseconds(1);  // slow reader's budget period
// An app action can raise an event that allows another action in the same instant (a read
// that completes a stream raises StreamFinished); repeat a step until nothing changes, with a
// bound in case a side keeps reporting something forever.
constexpr int kMaxStepRounds = 64;
constexpr uint64_t kSizeChoices = 8;  // mixed sizes: 1 in 8 empty, 1 in 8 full
constexpr double kBitsPerByte = 8.0;
constexpr double kBitsPerMbit = 1e6;

const std::string kBulkPrefix = "bulk-";
const std::string kInteractiveService = "interactive";

uint64_t mix(uint64_t z) {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t content_word(uint64_t seed, uint64_t stream, uint64_t word) {
    return mix(mix(seed * 0x9e3779b97f4a7c15ULL + stream) + word);
}

uint64_t to_u64(size_t n) {
    return static_cast<uint64_t>(n);
}

std::unique_ptr<TransferEndpoint> make_endpoint(const TransferConfig& config, Role role,
                                                uint64_t seed) {
    if (config.make_endpoint) return config.make_endpoint(role, config.connection, seed, Time{});
    return std::make_unique<ConnectionEndpoint>(role, config.connection, Time{});
}

}  // namespace

ConnectionEndpoint::ConnectionEndpoint(Role role, const ConnectionConfig& config, Time now)
    : protection_(), conn_(role, config, protection_, now) {}

uint8_t content_byte(uint64_t seed, uint64_t stream, uint64_t offset) {
    return static_cast<uint8_t>(content_word(seed, stream, offset / 8) >> (8 * (offset % 8)));
}

void fill_content(uint64_t seed, uint64_t stream, uint64_t offset, MutableByteView out) {
    // Raw pointers and one hash per 8 bytes: this runs over every byte of every transfer, in
    // unoptimised sanitizer builds too.
    uint8_t* p = out.data();
    uint8_t* const end = p + out.size();
    uint64_t pos = offset;
    while (p != end) {
        uint64_t w = content_word(seed, stream, pos / 8) >> (8 * (pos % 8));
        for (uint64_t b = pos % 8; b < 8 && p != end; ++b, ++pos, w >>= 8) {
            *p++ = static_cast<uint8_t>(w);
        }
    }
}

size_t first_content_mismatch(uint64_t seed, uint64_t stream, uint64_t offset, ByteView data) {
    std::array<uint8_t, 4096> expect;
    for (size_t done = 0; done < data.size();) {
        const size_t n = std::min(expect.size(), data.size() - done);
        fill_content(seed, stream, offset + done, MutableByteView(expect.data(), n));
        if (std::memcmp(expect.data(), data.data() + done, n) != 0) {
            for (size_t i = 0; i < n; ++i) {
                if (expect[i] != data[done + i]) return done + i;
            }
        }
        done += n;
    }
    return data.size();
}

std::vector<uint64_t> stream_sizes(const TransferConfig& config) {
    std::vector<uint64_t> sizes(config.streams, config.bytes_per_stream);
    if (!config.mixed_sizes) return sizes;
    SeededRng rng(mix(config.seed ^ 0x5157u));  // its own stream: sizes never shift the links
    const double log_max = std::log(static_cast<double>(config.bytes_per_stream) + 1);
    for (uint64_t& s : sizes) {
        const uint64_t choice = rng.uniform(kSizeChoices);
        if (choice == 0) {
            s = 0;
        } else if (choice == 1) {
            s = config.bytes_per_stream;
        } else {
            s = static_cast<uint64_t>(std::exp(rng.unit() * log_max)) - 1;
            s = std::min(s, config.bytes_per_stream);
        }
    }
    return sizes;
}

const char* failure_name(TransferFailure f) {
    switch (f) {
        case TransferFailure::kNone:
            return "none";
        case TransferFailure::kMismatch:
            return "mismatch";
        case TransferFailure::kMissingFin:
            return "missing-fin";
        case TransferFailure::kStall:
            return "stall";
        case TransferFailure::kConnectionClosed:
            return "connection-closed";
        case TransferFailure::kStreamReset:
            return "stream-reset";
        case TransferFailure::kBufferOverrun:
            return "buffer-overrun";
        case TransferFailure::kProtocol:
            return "protocol";
        case TransferFailure::kTimeLimit:
            return "time-limit";
    }
    return "?";
}

double percentile(std::vector<double> samples, double q) {
    if (samples.empty()) return 0;
    std::sort(samples.begin(), samples.end());
    const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(samples.size())));
    return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

namespace {

// One run of a TransferScenario: both application sides, driven from Network's step hook.
class TransferRun {
  public:
    explicit TransferRun(const TransferConfig& config)
        : config_(config),
          sizes_(stream_sizes(config)),
          a_(make_endpoint(config, Role::kInitiator, mix(config.seed ^ 0xa))),
          b_(make_endpoint(config, Role::kResponder, mix(config.seed ^ 0xb))),
          net_(config.seed, config.a_to_b, config.b_to_a),
          senders_(sizes_.size()) {
        for (size_t i = 0; i < sizes_.size(); ++i) {
            senders_[i].size = sizes_[i];
            result_.bulk_bytes += sizes_[i];
        }
        net_.attach(*a_, *b_);
        net_.set_on_step([this](Time now) { step(now); });
    }

    TransferResult run();

  private:
    struct Sender {  // A's side of one bulk stream
        uint64_t size = 0;
        uint64_t written = 0;
        std::optional<StreamId> id;
        bool blocked = false;  // write() took less than offered: wait for StreamWritable
        bool fin_sent = false;
        bool peer_fin = false;  // B's (empty) direction has ended too
    };
    struct Receiver {  // B's side of one bulk stream
        size_t index = 0;
        uint64_t received = 0;
        bool finished = false;
    };
    struct Interactive {
        // A: requests
        std::optional<StreamId> a_id;
        bool a_blocked = false;
        uint64_t request_bytes_due = 0;  // scheduled so far
        uint64_t request_bytes_written = 0;
        std::deque<Time> request_times;  // one per request not yet answered
        uint64_t response_bytes_read = 0;
        Time next_request{};
        // B: responses
        std::optional<StreamId> b_id;
        bool b_blocked = false;
        uint64_t request_bytes_read = 0;
        uint64_t response_bytes_written = 0;
    };

    Connection& a() { return a_->connection(); }
    Connection& b() { return b_->connection(); }
    uint64_t request_stream() const { return sizes_.size(); }
    uint64_t response_stream() const { return sizes_.size() + 1; }

    void fail(TransferFailure kind, const std::string& reason);
    void progress(Time now) { last_progress_ = now; }
    bool done() const;

    void step(Time now);
    bool step_once(Time now);
    bool a_events();
    bool b_events(Time now);
    bool a_open_and_write();
    bool a_interactive(Time now);
    bool b_read(Time now);
    bool b_interactive(Time now);
    bool write_content(Connection& c, StreamId id, uint64_t stream, uint64_t& written,
                       uint64_t target);
    void check_bounds();
    void finish_result();

    const TransferConfig& config_;
    std::vector<uint64_t> sizes_;
    std::unique_ptr<TransferEndpoint> a_;
    std::unique_ptr<TransferEndpoint> b_;
    Network net_;
    std::vector<Sender> senders_;
    size_t next_to_open_ = 0;
    std::map<StreamId, Receiver> receivers_;
    size_t bulk_finished_ = 0;
    uint64_t b_bulk_read_ = 0;
    Interactive inter_;
    bool interactive_opened_ = false;
    uint64_t reader_tokens_ = 0;
    Time reader_refilled_{};
    size_t reader_rotation_ = 0;
    bool bulk_done_ = false;
    Time last_progress_{};
    std::array<uint8_t, kReadChunk> scratch_{};
    TransferResult result_;
};

void TransferRun::fail(TransferFailure kind, const std::string& reason) {
    if (result_.failure != TransferFailure::kNone) return;  // keep the first cause
    result_.failure = kind;
    result_.reason = reason;
}

bool TransferRun::done() const {
    if (result_.failure != TransferFailure::kNone) return true;
    if (!bulk_done_) return false;
    return !config_.interactive || inter_.request_times.empty();
}

void TransferRun::step(Time now) {
    for (int round = 0; round < kMaxStepRounds && !done(); ++round) {
        if (!step_once(now)) break;
    }
    check_bounds();
    if (!bulk_done_ && bulk_finished_ == sizes_.size() && next_to_open_ == sizes_.size()) {
        bulk_done_ = true;
        result_.duration = now - Time{};
    }
    // Wake-ups on fixed boundaries, so asking again on every step adds no new events.
    if (config_.slow_reader_bytes_per_ms != 0 && !bulk_done_) {
        net_.wake_at(reader_refilled_ + kReaderTick);
    }
    if (config_.interactive && !bulk_done_) net_.wake_at(inter_.next_request);
    if (config_.on_step) config_.on_step(now);
}

bool TransferRun::step_once(Time now) {
    bool acted = false;
    acted |= a_events();
    acted |= b_events(now);
    acted |= a_open_and_write();
    if (config_.interactive) acted |= a_interactive(now);
    acted |= b_read(now);
    if (config_.interactive) acted |= b_interactive(now);
    return acted;
}

bool TransferRun::a_events() {
    bool any = false;
    while (std::optional<ConnectionEvent> ev = a().poll_event()) {
        any = true;
        std::visit(
            [&](auto&& e) {
                using E = std::decay_t<decltype(e)>;
                if constexpr (std::is_same_v<E, StreamWritable>) {
                    if (inter_.a_id == e.id) inter_.a_blocked = false;
                    for (Sender& s : senders_) {
                        if (s.id == e.id) s.blocked = false;
                    }
                } else if constexpr (std::is_same_v<E, StreamOpened>) {
                    fail(TransferFailure::kProtocol,
                         "A saw an incoming stream '" + e.service + "' nobody opened");
                } else if constexpr (std::is_same_v<E, StreamReset>) {
                    fail(TransferFailure::kStreamReset,
                         "A: stream " + std::to_string(e.id) + " reset, reason " +
                             std::to_string(static_cast<uint64_t>(e.reason)));
                } else if constexpr (std::is_same_v<E, ConnectionClosed>) {
                    fail(TransferFailure::kConnectionClosed,
                         std::string("A: connection closed ") +
                             (e.by_peer ? "by peer" : "locally") + ", code " +
                             std::to_string(e.error_code) + ": " + e.reason);
                } else if constexpr (std::is_same_v<E, StreamFinished>) {
                    // B half-closes each bulk stream once it has read it; nothing else ends.
                    if (inter_.a_id == e.id) {
                        fail(TransferFailure::kProtocol, "A: interactive stream finished by B");
                    }
                    for (Sender& s : senders_) {
                        if (s.id == e.id) s.peer_fin = true;
                    }
                }
                // StreamReadable (interactive responses are polled anyway), StreamClosed: fine.
            },
            *ev);
    }
    return any;
}

bool TransferRun::b_events(Time now) {
    bool any = false;
    while (std::optional<ConnectionEvent> ev = b().poll_event()) {
        any = true;
        std::visit(
            [&](auto&& e) {
                using E = std::decay_t<decltype(e)>;
                if constexpr (std::is_same_v<E, StreamOpened>) {
                    progress(now);
                    if (e.service == kInteractiveService && config_.interactive && !inter_.b_id) {
                        inter_.b_id = e.id;
                        return;
                    }
                    size_t index = 0;
                    const bool bulk = e.service.rfind(kBulkPrefix, 0) == 0;
                    if (bulk) {
                        std::istringstream in(e.service.substr(kBulkPrefix.size()));
                        in >> index;
                    }
                    if (!bulk || index >= sizes_.size() || receivers_.count(e.id) != 0) {
                        fail(TransferFailure::kProtocol, "B: unexpected StreamOpened '" +
                                                             e.service + "' id " +
                                                             std::to_string(e.id));
                        return;
                    }
                    receivers_[e.id] = Receiver{index, 0, false};
                } else if constexpr (std::is_same_v<E, StreamFinished>) {
                    progress(now);
                    auto it = receivers_.find(e.id);
                    if (it == receivers_.end()) {
                        fail(TransferFailure::kProtocol,
                             "B: StreamFinished on unknown stream " + std::to_string(e.id));
                        return;
                    }
                    Receiver& r = it->second;
                    if (r.finished || r.received != sizes_[r.index]) {
                        fail(TransferFailure::kMissingFin,
                             "B: stream " + std::to_string(r.index) + " finished after " +
                                 std::to_string(r.received) + " of " +
                                 std::to_string(sizes_[r.index]) + " bytes" +
                                 (r.finished ? " (twice)" : ""));
                        return;
                    }
                    r.finished = true;
                    ++bulk_finished_;
                    b().shutdown_write(e.id);  // close our empty direction too
                } else if constexpr (std::is_same_v<E, StreamWritable>) {
                    if (inter_.b_id == e.id) inter_.b_blocked = false;
                } else if constexpr (std::is_same_v<E, StreamReset>) {
                    fail(TransferFailure::kStreamReset,
                         "B: stream " + std::to_string(e.id) + " reset, reason " +
                             std::to_string(static_cast<uint64_t>(e.reason)));
                } else if constexpr (std::is_same_v<E, ConnectionClosed>) {
                    fail(TransferFailure::kConnectionClosed,
                         std::string("B: connection closed ") +
                             (e.by_peer ? "by peer" : "locally") + ", code " +
                             std::to_string(e.error_code) + ": " + e.reason);
                }
            },
            *ev);
    }
    return any;
}

bool TransferRun::write_content(Connection& c, StreamId id, uint64_t stream, uint64_t& written,
                                uint64_t target) {
    // Returns true when write() took less than offered (backpressure).
    while (written < target) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kWriteChunk, target - written));
        fill_content(config_.seed, stream, written, MutableByteView(scratch_.data(), n));
        const size_t took = c.write(id, ByteView(scratch_.data(), n));
        written += took;
        if (took < n) return true;
    }
    return false;
}

bool TransferRun::a_open_and_write() {
    bool acted = false;
    while (next_to_open_ < senders_.size()) {
        const std::optional<StreamId> id =
            a().open_stream(kBulkPrefix + std::to_string(next_to_open_));
        if (!id) break;  // the peer's stream limit: try again on a later step
        senders_[next_to_open_++].id = id;
        acted = true;
    }
    for (size_t i = 0; i < senders_.size(); ++i) {
        Sender& s = senders_[i];
        if (!s.id) continue;
        // A reads its bulk streams too, until B's FIN: B never writes on them, so any byte
        // is a mismatch.
        if (!s.peer_fin) {
            if (const size_t got = a().read(*s.id, MutableByteView(scratch_.data(), kReadChunk))) {
                fail(TransferFailure::kMismatch, "A read " + std::to_string(got) +
                                                     " bytes B never wrote on stream " +
                                                     std::to_string(i));
            }
        }
        if (s.blocked || s.fin_sent) continue;
        const uint64_t before = s.written;
        if (write_content(a(), *s.id, i, s.written, s.size)) {
            s.blocked = true;
            ++result_.write_blocked;
        }
        acted |= s.written != before;
        if (s.written == s.size) {
            a().shutdown_write(*s.id);
            s.fin_sent = true;
            acted = true;
        }
    }
    return acted;
}

bool TransferRun::a_interactive(Time now) {
    bool acted = false;
    if (!interactive_opened_) {
        inter_.a_id = a().open_stream(kInteractiveService);
        if (!inter_.a_id) return false;
        interactive_opened_ = true;
        inter_.next_request = now;
        acted = true;
    }
    const StreamId id = *inter_.a_id;
    // Schedule requests on the clock, whether or not earlier ones were answered: a queue of
    // unanswered requests is exactly the latency under load we want to see.
    while (!bulk_done_ && now >= inter_.next_request) {
        inter_.request_bytes_due += config_.interactive_message;
        inter_.request_times.push_back(inter_.next_request);
        inter_.next_request += config_.interactive_interval;
        acted = true;
    }
    if (!inter_.a_blocked) {
        const uint64_t before = inter_.request_bytes_written;
        if (write_content(a(), id, request_stream(), inter_.request_bytes_written,
                          inter_.request_bytes_due)) {
            inter_.a_blocked = true;
        }
        acted |= inter_.request_bytes_written != before;
    }
    while (const size_t got = a().read(id, MutableByteView(scratch_.data(), kReadChunk))) {
        const ByteView data(scratch_.data(), got);
        const size_t bad = first_content_mismatch(config_.seed, response_stream(),
                                                  inter_.response_bytes_read, data);
        if (bad != got) {
            fail(TransferFailure::kMismatch, "A: interactive response byte " +
                                                 std::to_string(inter_.response_bytes_read + bad) +
                                                 " differs");
            return true;
        }
        const uint64_t before = inter_.response_bytes_read / config_.interactive_message;
        inter_.response_bytes_read += got;
        const uint64_t after = inter_.response_bytes_read / config_.interactive_message;
        for (uint64_t k = before; k < after; ++k) {
            if (inter_.request_times.empty()) {
                fail(TransferFailure::kProtocol, "A: a response to a request never sent");
                return true;
            }
            result_.interactive_latency_ms.push_back(to_ms(now - inter_.request_times.front()));
            inter_.request_times.pop_front();
        }
        progress(now);
        acted = true;
    }
    return acted;
}

bool TransferRun::b_read(Time now) {
    const uint64_t rate = config_.slow_reader_bytes_per_ms;
    if (rate != 0) {
        // Refill at `rate` per tick, holding at most one tick's worth: no bursts after idling.
        const auto ticks = static_cast<uint64_t>((now - reader_refilled_) / kReaderTick);
        if (ticks > 0) {
            reader_tokens_ = std::min(rate, reader_tokens_ + ticks * rate);
            reader_refilled_ += kReaderTick * static_cast<int64_t>(ticks);
        }
    }
    bool acted = false;
    if (receivers_.empty()) return false;
    // Rotate the starting stream so a slow reader shares its budget fairly.
    auto it = receivers_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(reader_rotation_++ % receivers_.size()));
    for (size_t visited = 0; visited < receivers_.size(); ++visited, ++it) {
        if (it == receivers_.end()) it = receivers_.begin();
        const StreamId id = it->first;
        Receiver& r = it->second;
        for (;;) {
            size_t want = kReadChunk;
            if (rate != 0) want = static_cast<size_t>(std::min<uint64_t>(want, reader_tokens_));
            if (want == 0) break;
            const size_t got = b().read(id, MutableByteView(scratch_.data(), want));
            if (got == 0) break;
            if (rate != 0) reader_tokens_ -= got;
            const ByteView data(scratch_.data(), got);
            const uint64_t expected = sizes_[r.index];
            if (r.received + got > expected) {
                fail(TransferFailure::kMismatch, "B: stream " + std::to_string(r.index) +
                                                     " carried " +
                                                     std::to_string(r.received + got) + " bytes, " +
                                                     std::to_string(expected) + " were written");
                return true;
            }
            const size_t bad = first_content_mismatch(config_.seed, r.index, r.received, data);
            if (bad != got) {
                fail(TransferFailure::kMismatch, "B: stream " + std::to_string(r.index) + " byte " +
                                                     std::to_string(r.received + bad) + " differs");
                return true;
            }
            r.received += got;
            b_bulk_read_ += got;
            progress(now);
            acted = true;
        }
    }
    return acted;
}

bool TransferRun::b_interactive(Time now) {
    if (!inter_.b_id) return false;
    const StreamId id = *inter_.b_id;
    bool acted = false;
    while (const size_t got = b().read(id, MutableByteView(scratch_.data(), kReadChunk))) {
        const ByteView data(scratch_.data(), got);
        const size_t bad =
            first_content_mismatch(config_.seed, request_stream(), inter_.request_bytes_read, data);
        if (bad != got) {
            fail(TransferFailure::kMismatch, "B: interactive request byte " +
                                                 std::to_string(inter_.request_bytes_read + bad) +
                                                 " differs");
            return true;
        }
        inter_.request_bytes_read += got;
        progress(now);
        acted = true;
    }
    if (!inter_.b_blocked) {
        // Answer every complete request with a response of the same size.
        const uint64_t owed =
            inter_.request_bytes_read / config_.interactive_message * config_.interactive_message;
        const uint64_t before = inter_.response_bytes_written;
        if (write_content(b(), id, response_stream(), inter_.response_bytes_written, owed)) {
            inter_.b_blocked = true;
        }
        acted |= inter_.response_bytes_written != before;
    }
    return acted;
}

void TransferRun::check_bounds() {
    const ConnectionConfig& cc = config_.connection;
    const uint64_t a_buf = a().buffered_bytes();
    const uint64_t b_buf = b().buffered_bytes();
    result_.max_buffered_a = std::max(result_.max_buffered_a, a_buf);
    result_.max_buffered_b = std::max(result_.max_buffered_b, b_buf);

    // B receives on every open stream, within both the per-stream and the session windows,
    // and sends only interactive responses.
    const uint64_t b_streams = std::max<uint64_t>(1, b().open_stream_count());
    const uint64_t recv_bound =
        std::min(cc.stream_receive_window * b_streams, cc.session_receive_window);
    const uint64_t b_bound = recv_bound + (config_.interactive ? to_u64(cc.stream_send_buffer) : 0);
    // A sends on every open stream and receives only interactive responses.
    const uint64_t a_streams = std::max<uint64_t>(1, a().open_stream_count());
    const uint64_t a_bound =
        to_u64(cc.stream_send_buffer) * a_streams +
        (config_.interactive ? std::min(cc.stream_receive_window, cc.session_receive_window) : 0);
    // A can only have sent what B's reader consumed plus the credit still outstanding.
    const uint64_t b_app_read = b_bulk_read_ + inter_.request_bytes_read;
    const uint64_t a_sent = a().stats().stream_bytes_sent;
    const uint64_t ahead = a_sent > b_app_read ? a_sent - b_app_read : 0;
    result_.max_send_ahead = std::max(result_.max_send_ahead, ahead);
    const uint64_t ahead_bound =
        std::min(cc.session_receive_window, cc.stream_receive_window * to_u64(senders_.size() + 1));

    if (b_buf > b_bound) {
        fail(TransferFailure::kBufferOverrun, "B buffers " + std::to_string(b_buf) +
                                                  " bytes, windows allow " +
                                                  std::to_string(b_bound));
    } else if (a_buf > a_bound) {
        fail(TransferFailure::kBufferOverrun, "A buffers " + std::to_string(a_buf) +
                                                  " bytes, send buffers allow " +
                                                  std::to_string(a_bound));
    } else if (ahead > ahead_bound) {
        fail(TransferFailure::kBufferOverrun, "A sent " + std::to_string(ahead) +
                                                  " bytes beyond what B's reader consumed, " +
                                                  "windows allow " + std::to_string(ahead_bound));
    }
}

void TransferRun::finish_result() {
    TransferResult& r = result_;
    r.ok = r.failure == TransferFailure::kNone;
    r.a_stats = a().stats();
    r.a_srtt_ms = to_ms(a().rtt().smoothed());
    r.b_stats = b().stats();
    r.ab = net_.link_ab().stats();
    r.ba = net_.link_ba().stats();
    r.network = net_.stats();
    if (r.ok && r.duration.count() > 0) {
        r.goodput_bytes_per_sec =
            static_cast<double>(r.bulk_bytes) / (static_cast<double>(to_us(r.duration)) / 1e6);
        if (config_.a_to_b.rate_mbit > 0) {
            r.goodput_fraction =
                r.goodput_bytes_per_sec * kBitsPerByte / (config_.a_to_b.rate_mbit * kBitsPerMbit);
        }
    }
    r.p50_ms = percentile(r.interactive_latency_ms, 0.5);
    r.p99_ms = percentile(r.interactive_latency_ms, 0.99);
}

TransferResult TransferRun::run() {
    const Time limit = Time{} + config_.time_limit;
    net_.wake_at(Time{});  // the application acts before the first packet: open, write
    for (;;) {
        if (done()) break;
        const Time stall_at = last_progress_ + config_.stall_timeout;
        if (net_.run_until([this] { return done(); }, std::min(stall_at, limit))) break;
        if (net_.now() >= limit) {
            fail(TransferFailure::kTimeLimit, "virtual time limit reached");
            break;
        }
        if (last_progress_ + config_.stall_timeout <= net_.now()) {
            bool all_read = true;
            for (const auto& [id, r] : receivers_) all_read &= r.received == sizes_[r.index];
            all_read &= receivers_.size() == sizes_.size();
            std::ostringstream why;
            why << "no progress for " << to_ms(config_.stall_timeout)
                << " ms at t=" << to_ms(net_.now() - Time{}) << " ms: B read " << b_bulk_read_
                << " of " << result_.bulk_bytes << " bulk bytes, " << bulk_finished_ << "/"
                << sizes_.size() << " FINs";
            fail(all_read ? TransferFailure::kMissingFin : TransferFailure::kStall, why.str());
            break;
        }
    }
    finish_result();
    return result_;
}

}  // namespace

TransferResult TransferScenario::run() const {
    TransferRun run(config_);
    return run.run();
}

TransferConfig mixed_transfer(uint64_t seed, const std::function<void(LinkConfig&)>& impair) {
    using namespace std::chrono_literals;
    TransferConfig c;
    c.seed = seed;
    c.streams = 8;
    c.bytes_per_stream = 64 * 1024;
    c.mixed_sizes = true;
    LinkConfig link;
    link.delay = Duration(5ms) + Duration(1ms) * static_cast<int64_t>(seed % 16);
    link.jitter = Duration(1ms) * static_cast<int64_t>(seed % 4);
    impair(link);
    c.a_to_b = link;
    c.b_to_a = link;
    return c;
}

std::string describe(uint64_t seed, const TransferResult& r) {
    std::ostringstream out;
    out << "seed " << seed << ": " << failure_name(r.failure) << ": " << r.reason;
    return out.str();
}

}  // namespace burrow::sim
