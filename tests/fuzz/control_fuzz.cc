// Codec target: control messages (signal/control.h) through ControlDecoder, as the server and
// the agents read them from a TLS stream delivered in arbitrary pieces.
//
// Input: flags byte (bit 0: the post-auth frame cap instead of the pre-auth one; bits 1-7: the
// seed of the piece sizes), then the stream.
//
// Invariants: every message that comes out re-encodes, and decoding the re-encoding gives the
// same message; the decoder never holds more than one frame's worth of bytes (so an
// unauthenticated peer cannot make the server buffer more than kMaxPreAuthFrame + length); after
// an error it stays failed and returns nothing.
#include "signal/control.h"
#include "tests/fuzz/fuzz_support.h"
#include "tunnel/rng.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

void check_round_trip(const ControlMessage& m) {
    const Bytes encoded = encode_control(m);
    FUZZ_CHECK(encoded.size() >= kControlLengthSize + kControlHeaderSize);
    const uint32_t length = uint32_t{encoded[0]} << 24 | uint32_t{encoded[1]} << 16 |
                            uint32_t{encoded[2]} << 8 | encoded[3];
    FUZZ_CHECK(length == encoded.size() - kControlLengthSize);
    auto again = decode_control_body(ByteView(encoded).subspan(kControlLengthSize));
    auto* decoded = std::get_if<ControlMessage>(&again);
    FUZZ_CHECK(decoded != nullptr);
    FUZZ_CHECK(*decoded == m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzReader in(data, size);
    const uint8_t flags = in.u8();
    const size_t cap = (flags & 1) ? kMaxControlFrame : kMaxPreAuthFrame;
    ControlDecoder decoder(cap);
    SeededRng pieces(flags >> 1);
    const ByteView stream = in.rest();

    // The same bytes as one frame body, without the stream framing.
    auto direct = decode_control_body(stream);
    if (auto* m = std::get_if<ControlMessage>(&direct)) check_round_trip(*m);

    size_t pos = 0;
    while (pos < stream.size()) {
        const size_t n = std::min<size_t>(1 + pieces.uniform(64), stream.size() - pos);
        decoder.feed(stream.subspan(pos, n));
        pos += n;
        while (auto m = decoder.next()) {
            FUZZ_CHECK(!decoder.error());
            check_round_trip(*m);
        }
        if (decoder.error()) {
            FUZZ_CHECK(!decoder.next());
        } else {
            FUZZ_CHECK(decoder.buffered() < kControlLengthSize + cap);
        }
    }
    return 0;
}
