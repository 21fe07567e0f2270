// STUN over TCP target: StunStreamFramer and StunTcpServer (signal/stun_tcp.h), the server's
// STUN port as a TCP byte stream, and StunTcpQuery reading the answers back.
//
// Input: one byte that picks how the stream is cut into reads (its low 7 bits seed the piece
// sizes; 0 feeds everything at once), then the bytes the client sends.
//
// Invariants: however the stream is cut, the same messages come out of the framer in the same
// order with the same error, and the server writes the same reply bytes and closes for the
// same reason; a message is never shorter than a header nor longer than kStunTcpMaxMessage,
// and its declared length matches its size; the framer never buffers more than one message;
// after an error nothing more comes out; the server's reply is a sequence of whole STUN
// messages (its own framer reads them back, each decodes, each a Binding answer), one per
// request answered, at most max_requests of them; after a close nothing more is written; the
// stats count exactly one close.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "signal/stun_tcp.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

const SocketAddress kPeer = SocketAddress::ipv4({203, 0, 113, 5}, 50001);

struct Outcome {
    std::vector<Bytes> messages;
    std::optional<StunStreamError> error;
    Bytes reply;
    std::optional<StunTcpClose> close;
};

Outcome run(ByteView stream, uint8_t cut) {
    Outcome out;
    StunStreamFramer f;
    StunTcpServer server("burrow/fuzz", {.max_connections = 1, .max_requests = 3});
    FUZZ_CHECK(server.on_open(1, kPeer, Time{}));
    for (ByteView piece : cut_into(stream, cut, 64)) {
        ByteView in = piece;
        while (auto m = f.next(in)) {
            FUZZ_CHECK(m->size() >= kStunHeaderSize && m->size() <= kStunTcpMaxMessage);
            FUZZ_CHECK(m->size() == kStunHeaderSize + (size_t{(*m)[2]} << 8 | (*m)[3]));
            out.messages.emplace_back(m->begin(), m->end());
        }
        FUZZ_CHECK(in.empty());
        FUZZ_CHECK(f.buffered() <= kStunTcpMaxMessage);
        if (f.error()) FUZZ_CHECK(f.buffered() == 0);

        const StunTcpOutput o = server.on_bytes(1, piece);
        if (out.close) FUZZ_CHECK(o.reply.empty() && !o.close);
        out.reply.insert(out.reply.end(), o.reply.begin(), o.reply.end());
        if (o.close) out.close = o.close;
    }
    out.error = f.finish();
    if (!out.close) {
        const StunTcpOutput o = server.on_eof(1);
        FUZZ_CHECK(o.reply.empty() && o.close);
        out.close = o.close;
    }
    server.on_closed(1);
    FUZZ_CHECK(server.open_count() == 0);
    uint64_t closes = 0;
    for (uint64_t c : server.stats().closed) closes += c;
    FUZZ_CHECK(closes == 1);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzReader in(data, size);
    const uint8_t cut = in.u8() & 0x7f;
    const ByteView stream = in.rest();

    const Outcome whole = run(stream, 0);
    const Outcome pieces = run(stream, cut == 0 ? 1 : cut);
    FUZZ_CHECK(whole.messages == pieces.messages);
    FUZZ_CHECK(whole.error == pieces.error);
    FUZZ_CHECK(whole.reply == pieces.reply);
    FUZZ_CHECK(whole.close == pieces.close);
    // The messages are the stream's prefix, back to back.
    size_t at = 0;
    for (const Bytes& m : whole.messages) {
        FUZZ_CHECK(std::equal(m.begin(), m.end(), stream.begin() + static_cast<ptrdiff_t>(at)));
        at += m.size();
    }

    // The reply: whole Binding answers, one per answered request, at most max_requests.
    StunStreamFramer back;
    ByteView reply(whole.reply);
    size_t answers = 0;
    while (auto m = back.next(reply)) {
        const auto decoded = decode_stun(*m);
        FUZZ_CHECK(decoded);
        FUZZ_CHECK(decoded->type == kStunBindingSuccess || decoded->type == kStunBindingError);
        if (decoded->type == kStunBindingSuccess) {
            FUZZ_CHECK(decoded->xor_mapped_address == kPeer);
        }
        // The client's side reads the same answer.
        StunTcpQuery q(decoded->transaction_id);
        FUZZ_CHECK(q.on_bytes(*m));
        FUZZ_CHECK(q.mapped().has_value() == (decoded->type == kStunBindingSuccess));
        ++answers;
    }
    FUZZ_CHECK(!back.error() && back.buffered() == 0);
    FUZZ_CHECK(answers <= 3 && answers <= whole.messages.size());
    if (whole.close == StunTcpClose::kDone && answers == 3) FUZZ_CHECK(whole.messages.size() >= 3);
    return 0;
}
