// Drives two endpoints (two Sessions, or two Connections over NullProtection) through a network
// the fuzzer controls: every in-flight datagram is delivered, dropped, duplicated, corrupted or
// reordered at the fuzzer's choice, the clock moves forward by fuzzer-chosen steps, and the
// application side opens streams, writes, half-closes and resets them.
//
// Invariant (ngtcp2 fuzz/rob.cc; docs/architecture.md §12): a stream delivers exactly the bytes its
// sender wrote, in order, each once. Every byte written is a pure function of (sender, stream,
// offset), so a reader can check each byte it gets against the offset it expects next; a byte
// delivered twice or out of order breaks the match, and more bytes than were written breaks the
// count. A FIN must come after exactly the bytes written, unless the target injected stream
// data of its own (then only the content check holds).
//
// Datagrams take the data path's own route: each is built into a buffer by write_transmit and
// opened in place from a mutable view (on_datagram(MutableByteView)), injected ones included.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "tests/fuzz/fuzz_support.h"
#include "tunnel/connection.h"
#include "tunnel/session.h"

namespace burrow::fuzz {

// Byte `offset` of what `side` (0 = A, 1 = B) writes on stream `id`; splitmix64 of the position,
// so no shift of a run of bytes matches itself.
inline uint8_t stream_content(int side, StreamId id, uint64_t offset) {
    uint64_t z = (id * 2 + static_cast<uint64_t>(side)) * 0x9e3779b97f4a7c15ULL + offset / 8;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<uint8_t>((z ^ (z >> 31)) >> (8 * (offset % 8)));
}

inline Connection& connection_of(Session& s) { return s.connection(); }
inline Connection& connection_of(Connection& c) { return c; }

// Bounds that keep one input fast; they do not limit what is explored (the fuzzer can drop).
inline constexpr size_t kMaxInFlight = 256;    // per direction; more is lost
inline constexpr size_t kMaxWrite = 16384;     // bytes per write op
inline constexpr size_t kMaxInjected = 1500;   // bytes per injected datagram
inline constexpr int kSettleRounds = 64;       // network rounds after the last op

template <class Endpoint>
class PairDriver {
  public:
    // corrupt_limit: how many leading bytes of a datagram the corrupt op may touch. Sessions
    // authenticate everything (no limit); over NullProtection only the header may change, since
    // a flipped plaintext byte would be stream data no one wrote.
    PairDriver(Endpoint& a, Endpoint& b, Time start, size_t corrupt_limit = SIZE_MAX)
        : ep_{&a, &b}, now_(start), corrupt_limit_(corrupt_limit) {}

    Time now() const { return now_; }
    Endpoint& endpoint(int side) { return *ep_[side]; }
    // Stream data came from elsewhere than the sender's writes: FIN sizes are no longer known.
    void taint() { tainted_ = true; }

    // Delivers a datagram to `side` as if from the network (a copy, opened in place).
    void deliver(int side, ByteView d) {
        scratch_.assign(d.begin(), d.end());
        ep_[side]->on_datagram(MutableByteView(scratch_), now_);
        service();
    }

    // Runs one op; returns false when the op byte is not one of the common ops (the caller's).
    bool step(uint8_t op, FuzzReader& in) {
        switch (op % 8) {
            case 0: {  // the clock: up to 6.5 s in 100 us steps, never backwards
                now_ += Duration(uint64_t{in.u16()} * 100);
                break;
            }
            case 1: deliver_front(in.u8() & 1, false); break;
            case 2: {
                auto& q = queue_[in.u8() & 1];
                if (!q.empty()) q.pop_front();
                break;
            }
            case 3: deliver_front(in.u8() & 1, true); break;
            case 4: {  // corrupt one byte, then deliver
                const int side = in.u8() & 1;
                auto& q = queue_[side];
                const uint16_t pos = in.u16();
                const uint8_t mask = in.u8() | 1;
                if (!q.empty() && !q.front().empty()) {
                    Bytes& d = q.front();
                    d[pos % std::min(d.size(), corrupt_limit_)] ^= mask;
                }
                deliver_front(side, false);
                break;
            }
            case 5: {  // reorder: the front goes to the back
                auto& q = queue_[in.u8() & 1];
                if (q.size() > 1) {
                    q.push_back(std::move(q.front()));
                    q.pop_front();
                }
                break;
            }
            case 6: app(in); break;
            default: return false;
        }
        service();
        return true;
    }

    // A calm network after the ops: everything delivered, time moving, so retransmissions, ACKs
    // and FINs get their chance to run through the checks.
    void settle() {
        for (int round = 0; round < kSettleRounds; ++round) {
            for (int side : {0, 1}) {
                while (!queue_[side].empty()) deliver_front(side, false);
            }
            const Time next = std::min(ep_[0]->next_deadline(), ep_[1]->next_deadline());
            now_ = std::max(now_ + std::chrono::milliseconds(5),
                            std::min(next, now_ + std::chrono::milliseconds(200)));
            service();
        }
    }

  private:
    struct StreamLog {
        uint64_t written = 0;    // bytes this side's write() accepted
        bool fin_written = false;
        uint64_t read = 0;       // bytes this side read
        bool gone = false;       // reset or closed: no more reads
    };

    void deliver_front(int side, bool keep_copy) {
        auto& q = queue_[side];
        if (q.empty()) return;
        scratch_ = q.front();
        if (!keep_copy) q.pop_front();
        ep_[side]->on_datagram(MutableByteView(scratch_), now_);
    }

    // Timers that are due, everything the endpoints want to send, and the application's reads.
    void service() {
        for (int side : {0, 1}) {
            if (ep_[side]->next_deadline() <= now_) ep_[side]->on_timer(now_);
        }
        for (int side : {0, 1}) {
            transmit_.resize(connection_of(*ep_[side]).max_datagram_size());
            while (const size_t n = ep_[side]->write_transmit(now_, transmit_)) {
                auto& q = queue_[1 - side];
                if (q.size() < kMaxInFlight) {
                    q.emplace_back(transmit_.begin(), transmit_.begin() + static_cast<ptrdiff_t>(n));
                }
            }
            drain_events(side);
        }
    }

    void drain_events(int side) {
        Connection& c = connection_of(*ep_[side]);
        while (auto e = c.poll_event()) {
            if (auto* o = std::get_if<StreamOpened>(&*e)) {
                logs_[side][o->id];
            } else if (auto* f = std::get_if<StreamFinished>(&*e)) {
                read_all(side, f->id);
                StreamLog& peer = logs_[1 - side][f->id];
                if (!tainted_) {
                    FUZZ_CHECK(peer.fin_written);
                    FUZZ_CHECK(logs_[side][f->id].read == peer.written);
                }
            } else if (auto* r = std::get_if<StreamReset>(&*e)) {
                logs_[side][r->id].gone = true;
            } else if (auto* cl = std::get_if<StreamClosed>(&*e)) {
                logs_[side][cl->id].gone = true;
            }
        }
        for (auto& [id, log] : logs_[side]) {
            if (!log.gone) read_all(side, id);
        }
    }

    void read_all(int side, StreamId id) {
        Connection& c = connection_of(*ep_[side]);
        StreamLog& log = logs_[side][id];
        uint8_t buf[2048];
        for (;;) {
            const size_t n = c.read(id, buf);
            if (n == 0) break;
            for (size_t i = 0; i < n; ++i) {
                FUZZ_CHECK(buf[i] == stream_content(1 - side, id, log.read + i));
            }
            log.read += n;
            if (!tainted_) FUZZ_CHECK(log.read <= logs_[1 - side][id].written);
        }
    }

    void app(FuzzReader& in) {
        const uint8_t choice = in.u8();
        const int side = choice & 1;
        Connection& c = connection_of(*ep_[side]);
        std::vector<StreamId> live;
        for (auto& [id, log] : logs_[side]) {
            if (!log.gone) live.push_back(id);
        }
        const size_t pick = in.u8();
        const StreamId* id = live.empty() ? nullptr : &live[pick % live.size()];
        switch ((choice >> 1) % 5) {
            case 0:
                if (auto opened = c.open_stream("svc")) logs_[side][*opened];
                break;
            case 1:
            case 2: {  // write, more often than the rest
                if (!id) break;
                StreamLog& log = logs_[side][*id];
                if (log.fin_written) break;
                const size_t n = std::min<size_t>(in.u16() % (kMaxWrite + 1), c.writable(*id));
                Bytes data(n);
                for (size_t i = 0; i < n; ++i) data[i] = stream_content(side, *id, log.written + i);
                const size_t accepted = c.write(*id, data);
                FUZZ_CHECK(accepted <= n);
                log.written += accepted;
                break;
            }
            case 3:
                if (id && !logs_[side][*id].fin_written) {
                    c.shutdown_write(*id);
                    logs_[side][*id].fin_written = true;
                }
                break;
            case 4:
                if (id) {
                    c.reset_stream(*id, ResetReason::kAborted);
                    logs_[side][*id].gone = true;
                }
                break;
        }
    }

    Endpoint* ep_[2];
    Bytes scratch_;   // the datagram being delivered, opened in place
    Bytes transmit_;  // the datagram being built
    Time now_;
    size_t corrupt_limit_;
    std::deque<Bytes> queue_[2];  // queue_[side]: datagrams on their way to side
    std::map<StreamId, StreamLog> logs_[2];
    bool tainted_ = false;
};

}  // namespace burrow::fuzz
