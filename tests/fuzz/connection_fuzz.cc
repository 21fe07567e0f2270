// Stateful target: two Connections (tunnel/connection.h) over NullProtection, so the fuzzer can
// also speak the frame layer directly: op 7 takes fuzzer bytes as a packet's plaintext, and if
// they decode as frames, rewrites every STREAM frame's data to what the stream's sender writes
// at that offset (tests/fuzz/fuzz_pair.h stream_content) before sealing it under a
// fuzzer-chosen packet number. Reassembly then meets arbitrary offsets, lengths, overlaps, FINs,
// resets, ACKs and credits, and must still deliver each byte once, in order, as written.
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_pair.h"
#include "tunnel/frame.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {


// The plaintext with STREAM data replaced by the sender's content; nullopt if it does not
// decode (it is then injected as it is, and must be dropped).
std::optional<Bytes> consistent_frames(ByteView plaintext, int sender) {
    auto frames = decode_frames(plaintext);
    if (!frames) return std::nullopt;
    std::vector<Bytes> owned;  // keeps rewritten data alive until encoded
    owned.reserve(frames->size());
    Bytes out;
    for (Frame& f : *frames) {
        if (auto* s = std::get_if<StreamFrame>(&f)) {
            Bytes& d = owned.emplace_back(s->data.size());
            for (size_t i = 0; i < d.size(); ++i) {
                d[i] = stream_content(sender, s->id, s->offset + i);
            }
            s->data = d;
        }
        encode_frame(f, out);
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzReader in(data, size);
    const SessionConfig config = session_config(in.u8());
    NullProtection prot_a, prot_b;  // both use receiver index 0, as the unit tests do
    Connection a(Role::kInitiator, config.connection, prot_a, Time{});
    Connection b(Role::kResponder, config.connection, prot_b, Time{});
    PairDriver<Connection> pair(a, b, Time{}, kPacketHeaderSize);
    while (!in.empty()) {
        const uint8_t op = in.u8();
        if (pair.step(op, in)) continue;
        const int to = in.u8() & 1;
        // Any number: duplicates, numbers far ahead, below the replay window.
        const uint64_t packet_number = in.u32();
        ByteView plaintext = in.take(in.u16() % (kMaxInjected + 1));
        Bytes datagram;
        NullProtection seal;
        if (auto rewritten = consistent_frames(plaintext, 1 - to)) {
            pair.taint();
            seal.seal(packet_number, *rewritten, datagram);
        } else {
            seal.seal(packet_number, plaintext, datagram);
        }
        pair.deliver(to, datagram);
    }
    pair.settle();
    return 0;
}
