// Path probe target: Session::open_probe (tunnel/path_probe.h) on an established pair.
//
// Input: mode byte. Even: the rest is a datagram given to both sessions' open_probe. Odd: kind
// bit, 8 bytes of path data, then up to 3 (position, xor mask) corruptions: A seals the probe,
// the corruptions are applied, and B opens it.
//
// Invariants: a sealed probe opens to exactly what was sealed; a probe with any byte changed
// never opens (header bytes are the AEAD's associated data, so index, counter and type are
// covered too); whatever opens was addressed to one of the session's own indexes; a failed open
// changes nothing but drop_bad_probe, a successful one nothing but probes_opened.
//
// The pair is built once: open_probe changes only counters, and sealing only advances A's
// probe counter (a nonce), so inputs do not influence one another.
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_support.h"

using namespace burrow;
using namespace burrow::fuzz;

namespace {

std::optional<Probe> open_checked(Session& s, ByteView d, Time now) {
    const SessionStats before = s.stats();
    const SessionSnapshot snapshot = s.snapshot();
    auto probe = s.open_probe(d, now);
    SessionStats expected = before;
    if (probe) {
        ++expected.probes_opened;
        auto index = Session::receiver_index(d);
        FUZZ_CHECK(index && s.owns_index(*index));
        FUZZ_CHECK(d.size() == kProbeSize);
    } else {
        ++expected.drop_bad_probe;
    }
    FUZZ_CHECK(s.stats() == expected);
    FUZZ_CHECK(s.snapshot() == snapshot);
    return probe;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static EstablishedPair pair;
    FuzzReader in(data, size);
    const uint8_t mode = in.u8();
    if ((mode & 1) == 0) {
        const ByteView d = in.rest();
        open_checked(pair.a, d, pair.now);
        open_checked(pair.b, d, pair.now);
        return 0;
    }
    Probe probe;
    probe.kind = (in.u8() & 1) ? ProbeKind::kResponse : ProbeKind::kChallenge;
    const ByteView path_data = in.take(kPathDataLen);
    std::copy(path_data.begin(), path_data.end(), probe.data.begin());
    auto sealed = pair.a.seal_probe(probe, pair.now);
    FUZZ_CHECK(sealed && sealed->size() == kProbeSize);
    Bytes d = *sealed;
    const int corruptions = in.u8() % 4;
    for (int i = 0; i < corruptions; ++i) {
        const size_t pos = in.u8() % d.size();
        d[pos] ^= in.u8();
    }
    auto opened = open_checked(pair.b, d, pair.now);
    if (d == *sealed) {
        FUZZ_CHECK(opened == probe);
    } else {
        FUZZ_CHECK(!opened);
    }
    // The sender cannot open its own probe: it is sealed under the key of the other direction.
    FUZZ_CHECK(!open_checked(pair.a, *sealed, pair.now));
    return 0;
}
