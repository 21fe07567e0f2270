#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "tests/unit/heap_counter.h"
#include "tunnel/recv_stream.h"
#include "tunnel/rng.h"
#include "tunnel/send_stream.h"

using namespace burrow;

namespace {

constexpr uint64_t kNoFlowLimit = UINT64_MAX;

Bytes numbered(size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + i / 251);
    return b;
}

bool same_bytes(ByteView a, ByteView b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// Sends everything currently sendable in chunks of at most max_len.
std::vector<SendStream::Chunk> drain(SendStream& tx, size_t max_len, uint64_t flow_limit) {
    std::vector<SendStream::Chunk> out;
    while (auto c = tx.next_chunk(max_len, flow_limit)) out.push_back(*c);
    return out;
}

}  // namespace

TEST_CASE("write accepts up to the buffer limit and frees space on acks") {
    SendStream tx(100);
    const Bytes data = numbered(150);
    CHECK(tx.writable() == 100);
    CHECK(tx.write(data) == 100);
    CHECK(tx.writable() == 0);
    CHECK(tx.write(data) == 0);
    CHECK(tx.bytes_written() == 100);

    const auto c = tx.next_chunk(40, kNoFlowLimit);
    REQUIRE(c);
    CHECK(c->offset == 0);
    CHECK(c->data.size() == 40);
    CHECK(tx.writable() == 0);  // sent is not acknowledged: still held
    tx.on_acked(0, 40, false);
    CHECK(tx.writable() == 40);
    CHECK(tx.bytes_buffered() == 60);
    CHECK(tx.write(ByteView(data).subspan(100)) == 40);

    tx.finish();
    CHECK(tx.writable() == 0);
    CHECK(tx.write(data) == 0);
}

TEST_CASE("chunks carry the written bytes and respect max_len") {
    SendStream tx(1 << 20);
    const Bytes data = numbered(5000);
    REQUIRE(tx.write(data) == data.size());
    uint64_t expect = 0;
    for (const auto& c : drain(tx, 700, kNoFlowLimit)) {
        CHECK(c.offset == expect);
        CHECK(c.data.size() <= 700);
        CHECK_FALSE(c.data.empty());
        CHECK(same_bytes(c.data, ByteView(data).subspan(c.offset, c.data.size())));
        CHECK_FALSE(c.fin);
        expect += c.data.size();
    }
    CHECK(expect == data.size());
    CHECK(tx.highest_sent() == data.size());
    CHECK_FALSE(tx.next_chunk(0, kNoFlowLimit));
}

TEST_CASE("new data never passes the flow limit") {
    SendStream tx(1 << 20);
    REQUIRE(tx.write(numbered(1000)) == 1000);
    CHECK(tx.has_pending(300));
    const auto chunks = drain(tx, 128, 300);
    REQUIRE_FALSE(chunks.empty());
    CHECK(chunks.back().offset + chunks.back().data.size() == 300);
    CHECK(tx.highest_sent() == 300);
    CHECK_FALSE(tx.has_pending(300));
    CHECK_FALSE(tx.next_chunk(128, 300));
    CHECK(tx.has_pending(301));
    const auto more = tx.next_chunk(128, 301);
    REQUIRE(more);
    CHECK(more->offset == 300);
    CHECK(more->data.size() == 1);
}

TEST_CASE("retransmissions are not held back by the flow limit") {
    // The data was within the limit when first sent; limits never shrink.
    SendStream tx(1 << 20);
    REQUIRE(tx.write(numbered(100)) == 100);
    REQUIRE(tx.next_chunk(100, 100));
    tx.on_lost(0, 100, false);
    CHECK(tx.has_pending(0));
    const auto c = tx.next_chunk(100, 0);
    REQUIRE(c);
    CHECK(c->offset == 0);
    CHECK(c->data.size() == 100);
}

TEST_CASE("FIN rides on the last data chunk") {
    SendStream tx(1 << 20);
    REQUIRE(tx.write(numbered(10)) == 10);
    tx.finish();
    CHECK(tx.finished());
    const auto c = tx.next_chunk(100, kNoFlowLimit);
    REQUIRE(c);
    CHECK(c->data.size() == 10);
    CHECK(c->fin);
    CHECK_FALSE(tx.has_pending(kNoFlowLimit));
    CHECK_FALSE(tx.all_acked());
    tx.on_acked(0, 10, true);
    CHECK(tx.all_acked());
}

TEST_CASE("FIN waits for the flow limit when data is still blocked") {
    SendStream tx(1 << 20);
    REQUIRE(tx.write(numbered(10)) == 10);
    tx.finish();
    const auto c = tx.next_chunk(100, 5);
    REQUIRE(c);
    CHECK(c->data.size() == 5);
    CHECK_FALSE(c->fin);
    CHECK_FALSE(tx.next_chunk(100, 5));
    const auto last = tx.next_chunk(100, 10);
    REQUIRE(last);
    CHECK(last->fin);
}

TEST_CASE("FIN-only chunks: after all data went out, and on an empty stream") {
    SECTION("finish after the data was sent") {
        SendStream tx(1 << 20);
        REQUIRE(tx.write(numbered(10)) == 10);
        const auto data = tx.next_chunk(100, kNoFlowLimit);
        REQUIRE(data);
        CHECK_FALSE(data->fin);
        CHECK_FALSE(tx.has_pending(kNoFlowLimit));
        tx.finish();
        CHECK(tx.has_pending(kNoFlowLimit));
        const auto fin = tx.next_chunk(100, kNoFlowLimit);
        REQUIRE(fin);
        CHECK(fin->offset == 10);
        CHECK(fin->data.empty());
        CHECK(fin->fin);
        CHECK_FALSE(tx.next_chunk(100, kNoFlowLimit));
        tx.on_acked(10, 0, true);
        CHECK_FALSE(tx.all_acked());  // the data itself is not acknowledged yet
        tx.on_acked(0, 10, false);
        CHECK(tx.all_acked());
    }
    SECTION("an empty stream sends a lone FIN at offset 0") {
        SendStream tx(1 << 20);
        CHECK_FALSE(tx.has_pending(kNoFlowLimit));
        tx.finish();
        const auto fin = tx.next_chunk(0, 0);
        REQUIRE(fin);
        CHECK(fin->offset == 0);
        CHECK(fin->data.empty());
        CHECK(fin->fin);
        tx.on_lost(0, 0, true);
        const auto again = tx.next_chunk(100, 0);
        REQUIRE(again);
        CHECK(again->fin);
        tx.on_acked(0, 0, true);
        CHECK(tx.all_acked());
        tx.on_lost(0, 0, true);  // a late loss verdict after the ack changes nothing
        CHECK_FALSE(tx.has_pending(kNoFlowLimit));
    }
}

TEST_CASE("lost ranges go out first, lowest offset first, with the FIN if it was lost") {
    SendStream tx(1 << 20);
    const Bytes data = numbered(400);
    REQUIRE(tx.write(data) == 400);
    tx.finish();
    const auto sent = drain(tx, 100, 300);  // [0,100) [100,200) [200,300)
    REQUIRE(sent.size() == 3);
    tx.on_lost(200, 100, false);
    tx.on_lost(0, 100, false);
    auto c = tx.next_chunk(1000, 400);
    REQUIRE(c);
    CHECK(c->offset == 0);
    CHECK(c->data.size() == 100);
    c = tx.next_chunk(1000, 400);
    REQUIRE(c);
    CHECK(c->offset == 200);
    CHECK(same_bytes(c->data, ByteView(data).subspan(200, 100)));
    c = tx.next_chunk(1000, 400);  // now new data, carrying the FIN
    REQUIRE(c);
    CHECK(c->offset == 300);
    CHECK(c->fin);
    tx.on_lost(300, 100, true);
    c = tx.next_chunk(60, 400);
    REQUIRE(c);
    CHECK(c->offset == 300);
    CHECK_FALSE(c->fin);  // does not reach the end yet
    c = tx.next_chunk(60, 400);
    REQUIRE(c);
    CHECK(c->offset == 360);
    CHECK(c->fin);
}

TEST_CASE("a range that is lost and then acknowledged is not resent") {
    SendStream tx(1 << 20);
    REQUIRE(tx.write(numbered(300)) == 300);
    REQUIRE(drain(tx, 100, kNoFlowLimit).size() == 3);
    tx.on_acked(100, 100, false);  // acknowledged first ...
    tx.on_lost(0, 300, false);     // ... so a loss of a packet covering it skips it
    tx.on_acked(250, 50, false);   // a late ack of the original overtakes the resend
    CHECK(tx.bytes_lost() == 150);
    const auto chunks = drain(tx, 1000, kNoFlowLimit);
    REQUIRE(chunks.size() == 2);
    CHECK(chunks[0].offset == 0);
    CHECK(chunks[0].data.size() == 100);
    CHECK(chunks[1].offset == 200);
    CHECK(chunks[1].data.size() == 50);
}

TEST_CASE("memory is freed as the acknowledged prefix advances") {
    SendStream tx(1 << 20);
    const size_t n = 100'000;
    REQUIRE(tx.write(numbered(n)) == n);
    const auto chunks = drain(tx, 1200, kNoFlowLimit);
    // Acknowledge everything but the first chunk: nothing can be freed yet.
    for (size_t i = 1; i < chunks.size(); ++i) {
        tx.on_acked(chunks[i].offset, chunks[i].data.size(), false);
    }
    CHECK(tx.bytes_buffered() == n);
    tx.on_acked(0, chunks[0].data.size(), false);
    CHECK(tx.bytes_buffered() == 0);
    CHECK(tx.writable() == size_t{1} << 20);
}

TEST_CASE("streams hold no heap memory when idle or drained") {
    using test::live_allocations;
    const Bytes data = numbered(50'000);
    Bytes sink(data.size());
    const int64_t base = live_allocations;
    int64_t after_construct = -1, while_holding = -1, after_drain = -1;
    {
        SendStream tx(1 << 20);
        RecvStream rx(1 << 20, 1 << 20);
        after_construct = live_allocations - base;
        tx.write(data);
        tx.finish();
        while (auto c = tx.next_chunk(1300, kNoFlowLimit)) {
            uint64_t newly = 0;
            rx.on_data(c->offset, c->data, c->fin, newly);
            tx.on_acked(c->offset, c->data.size(), c->fin);
            if (c->offset == 0) while_holding = live_allocations - base;
        }
        rx.read(sink);
        after_drain = live_allocations - base;
    }
    CHECK(sink == data);
    CHECK(after_construct == 0);
    CHECK(while_holding > 0);  // the counter does see the blocks
    CHECK(after_drain == 0);
    // Thousands of idle streams must cost little: the objects themselves are all there is.
    CHECK(sizeof(SendStream) <= 256);
    CHECK(sizeof(RecvStream) <= 256);
}

namespace {

// A randomized transfer from a SendStream to a RecvStream with loss, reordering,
// duplication, spurious loss verdicts, random ack order and delayed credit updates.
struct Packet {
    uint64_t offset;
    Bytes data;
    bool fin;
};

void run_round_trip(uint64_t seed) {
    INFO("seed " << seed);
    SeededRng rng(seed);
    const size_t total = rng.uniform(4) == 0 ? 0 : static_cast<size_t>(rng.uniform(200'000));
    Bytes source(total);
    rng.fill(source);
    const size_t buffer_limit = 1 + static_cast<size_t>(rng.uniform(80'000));
    const uint64_t window = 1 + rng.uniform(120'000);
    const double loss = rng.unit() * 0.3;
    const size_t max_write = 1 + static_cast<size_t>(rng.uniform(30'000));
    const size_t max_chunk = 1 + static_cast<size_t>(rng.uniform(3000));

    SendStream tx(buffer_limit);
    RecvStream rx(window, window);
    uint64_t flow_limit = window;
    std::vector<uint64_t> credit_in_flight;
    std::vector<Packet> in_flight;  // sent, not yet delivered or lost
    std::vector<Packet> to_ack;     // delivered, acknowledgement not yet back
    std::vector<bool> acked(total, false), arrived(total, false);
    bool fin_acked = false;
    uint64_t contiguous = 0;  // reference: first byte not yet arrived
    size_t written = 0;
    Bytes app;

    for (int step = 0; !(tx.all_acked() && rx.finished()); ++step) {
        REQUIRE(step < 1'000'000);
        switch (rng.uniform(6)) {
            case 0: {  // the application writes
                const size_t want =
                    std::min(total - written, 1 + static_cast<size_t>(rng.uniform(max_write)));
                const size_t room = tx.writable();
                const size_t got = tx.write(ByteView(source).subspan(written, want));
                REQUIRE(got == std::min(want, room));
                written += got;
                if (written == total && !tx.finished() && rng.chance(0.5)) tx.finish();
                break;
            }
            case 1: {  // the connection asks for something to send
                const size_t max_len = static_cast<size_t>(rng.uniform(max_chunk + 1));
                const bool pending = tx.has_pending(flow_limit);
                const auto c = tx.next_chunk(max_len, flow_limit);
                if (max_len > 0) REQUIRE(c.has_value() == pending);
                if (!c) break;
                REQUIRE(c->data.size() <= max_len);
                REQUIRE(c->offset + c->data.size() <= flow_limit);
                REQUIRE((!c->data.empty() || c->fin));
                REQUIRE(c->offset + c->data.size() <= written);
                REQUIRE(same_bytes(c->data, ByteView(source).subspan(c->offset, c->data.size())));
                for (size_t i = 0; i < c->data.size(); ++i) REQUIRE_FALSE(acked[c->offset + i]);
                if (c->fin) REQUIRE((c->offset + c->data.size() == total && !fin_acked));
                in_flight.push_back({c->offset, Bytes(c->data.begin(), c->data.end()), c->fin});
                break;
            }
            case 2: {  // the network delivers, drops or duplicates a packet
                if (in_flight.empty()) break;
                const size_t i = static_cast<size_t>(rng.uniform(in_flight.size()));
                Packet p = std::move(in_flight[i]);
                in_flight[i] = std::move(in_flight.back());
                in_flight.pop_back();
                if (rng.chance(loss)) {
                    tx.on_lost(p.offset, p.data.size(), p.fin);
                    break;
                }
                if (rng.chance(0.05)) in_flight.push_back(p);  // duplicated on the way
                uint64_t newly = 0;
                const uint64_t highest = rx.highest_received();
                REQUIRE(rx.on_data(p.offset, p.data, p.fin, newly) == RecvStream::Result::kOk);
                REQUIRE(newly == std::max(highest, p.offset + p.data.size()) - highest);
                for (size_t b = 0; b < p.data.size(); ++b) arrived[p.offset + b] = true;
                while (contiguous < total && arrived[contiguous]) ++contiguous;
                to_ack.push_back(std::move(p));
                break;
            }
            case 3: {  // an acknowledgement comes back, in any order, or its packet is
                       // wrongly declared lost (the ACK was lost, or came too late)
                if (to_ack.empty()) break;
                const size_t i = static_cast<size_t>(rng.uniform(to_ack.size()));
                const Packet p = std::move(to_ack[i]);
                to_ack[i] = std::move(to_ack.back());
                to_ack.pop_back();
                if (rng.chance(loss / 2)) {
                    tx.on_lost(p.offset, p.data.size(), p.fin);
                    if (rng.chance(0.5)) break;  // the ack never comes
                }
                tx.on_acked(p.offset, p.data.size(), p.fin);
                for (size_t b = 0; b < p.data.size(); ++b) acked[p.offset + b] = true;
                fin_acked = fin_acked || p.fin;
                break;
            }
            case 4: {  // the application reads; credit goes back
                Bytes buf(1 + static_cast<size_t>(rng.uniform(40'000)));
                const size_t n = rx.read(buf);
                app.insert(app.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
                REQUIRE(same_bytes(app, ByteView(source).first(app.size())));
                if (const auto update = rx.take_max_stream_data_update()) {
                    credit_in_flight.push_back(*update);
                }
                break;
            }
            case 5: {  // a MAX_STREAM_DATA arrives (possibly reordered)
                if (credit_in_flight.empty()) break;
                const size_t i = static_cast<size_t>(rng.uniform(credit_in_flight.size()));
                flow_limit = std::max(flow_limit, credit_in_flight[i]);
                credit_in_flight.erase(credit_in_flight.begin() + static_cast<ptrdiff_t>(i));
                break;
            }
        }
        // Reassembly: the first gap is exactly where delivery stops.
        REQUIRE(rx.read_offset() == app.size());
        REQUIRE(rx.read_offset() + rx.readable() == contiguous);
        REQUIRE(tx.bytes_buffered() <= buffer_limit);
        REQUIRE(rx.bytes_buffered() <= rx.flow().max() - rx.read_offset());
    }
    CHECK(app == source);
    CHECK(tx.bytes_buffered() == 0);
    CHECK(rx.bytes_buffered() == 0);
    CHECK(rx.allocated_bytes() == 0);
    CHECK(tx.highest_sent() == total);
}

}  // namespace

TEST_CASE("round trip under random writes, chunking, loss and ack order") {
    for (uint64_t seed = 1; seed <= 400; ++seed) run_round_trip(seed);
}
