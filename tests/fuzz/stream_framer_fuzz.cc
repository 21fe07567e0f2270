// Stream framer target: StreamDeframer on a direct TCP path (tunnel/stream_framer.h).
//
// Input: one byte that picks how the stream is cut into reads (its low 7 bits seed the piece
// sizes; 0 feeds everything at once), then the bytes of the TCP stream.
//
// Invariants: the datagrams and the error are those of a plain reference reading; however the
// stream is cut, the same datagrams come out in the same order, and the
// same error; framing those datagrams again gives back exactly the prefix of the stream they came
// from (parse(serialize(m)) == m); a frame is never empty nor longer than kMaxTcpPathFrame; the
// buffer never holds more than one frame's worth beyond the last read; after an error nothing
// more comes out and nothing is buffered; finish() says kTruncated exactly when a partial frame
// was left over.
#include <vector>

#include "tests/fuzz/fuzz_support.h"
#include "tunnel/stream_framer.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

struct Outcome {
    std::vector<Bytes> frames;
    std::optional<DeframeError> error;
    size_t leftover = 0;
};

Outcome run(ByteView stream, uint8_t cut) {
    StreamDeframer f(kTcpPathLengthSize, 1, kMaxTcpPathFrame);
    Outcome out;
    for (const ByteView piece : cut_into(stream, cut, 600)) {
        f.feed(piece);
        while (auto frame = f.next()) {
            FUZZ_CHECK(!frame->empty() && frame->size() <= kMaxTcpPathFrame);
            out.frames.emplace_back(frame->begin(), frame->end());
        }
        FUZZ_CHECK(f.buffered() < kTcpPathLengthSize + kMaxTcpPathFrame + piece.size());
        if (f.error()) {
            FUZZ_CHECK(f.buffered() == 0);
            f.feed(stream.subspan(0, std::min<size_t>(stream.size(), 8)));
            FUZZ_CHECK(!f.next() && f.buffered() == 0);
            break;
        }
    }
    out.leftover = f.buffered();
    const auto before_end = f.error();
    const auto end = f.finish();
    if (before_end) {
        FUZZ_CHECK(end == before_end);
    } else if (out.leftover > 0) {
        FUZZ_CHECK(end == DeframeError::kTruncated);
    } else {
        FUZZ_CHECK(!end);
    }
    out.error = end;
    return out;
}

// The obvious reading of the whole stream at once, for comparison.
Outcome reference(ByteView stream) {
    Outcome out;
    size_t at = 0;
    while (stream.size() - at >= kTcpPathLengthSize) {
        const size_t length = size_t{stream[at]} << 8 | stream[at + 1];
        if (length == 0 || length > kMaxTcpPathFrame) {
            out.error = DeframeError::kOversized;
            return out;
        }
        if (stream.size() - at - kTcpPathLengthSize < length) break;
        const ByteView d = stream.subspan(at + kTcpPathLengthSize, length);
        out.frames.emplace_back(d.begin(), d.end());
        at += kTcpPathLengthSize + length;
    }
    out.leftover = stream.size() - at;
    if (out.leftover > 0) out.error = DeframeError::kTruncated;
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzReader in(data, size);
    const uint8_t cut = in.u8() & 0x7f;
    const ByteView stream = in.rest();

    const Outcome whole = run(stream, 0);
    const Outcome pieces = run(stream, cut == 0 ? 1 : cut);
    FUZZ_CHECK(whole.frames == pieces.frames);
    FUZZ_CHECK(whole.error == pieces.error);
    const Outcome expected = reference(stream);
    FUZZ_CHECK(whole.frames == expected.frames);
    FUZZ_CHECK(whole.error == expected.error);

    // The datagrams, framed again, are the stream's prefix they were read from.
    Bytes again;
    for (const auto& d : whole.frames) {
        auto f = frame_for_tcp_path(d);
        FUZZ_CHECK(f);
        again.insert(again.end(), f->begin(), f->end());
    }
    FUZZ_CHECK(again.size() <= stream.size());
    FUZZ_CHECK(std::equal(again.begin(), again.end(), stream.begin()));
    if (!whole.error || whole.error == DeframeError::kTruncated) {
        FUZZ_CHECK(again.size() + whole.leftover == stream.size());
    }
    return 0;
}
