// Stateful target: two Sessions (tunnel/session.h), initiator A and responder B, joined by a
// network the fuzzer runs (tests/fuzz/fuzz_pair.h): handshake, rekeys, loss, duplication,
// corruption, reordering, garbage datagrams, a fuzzer-chosen monotonic clock, and streams whose
// delivered bytes are checked against what was written.
//
// Input: flags byte (tests/fuzz/fuzz_fixtures.h session_config), then ops. Op 7 (the one the
// pair driver leaves to us) injects up to 255 fuzzer bytes into A or B; without the session
// keys they can never carry stream data, so the content invariant stays exact.
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_pair.h"

using namespace burrow;
using namespace burrow::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Identities& ids = identities();
    FuzzReader in(data, size);
    const SessionConfig config = session_config(in.u8());
    SeededRng rng_a(1), rng_b(2);
    Session a(Role::kInitiator, ids.initiator, ids.responder_pub, config, rng_a, Time{},
              kWallClock);
    Session b(Role::kResponder, ids.responder, ids.initiator_pub, config, rng_b, Time{},
              kWallClock);
    PairDriver<Session> pair(a, b, Time{});
    a.start(Time{});
    while (!in.empty()) {
        const uint8_t op = in.u8();
        if (pair.step(op, in)) continue;
        const int side = in.u8() & 1;
        pair.deliver(side, in.take(in.u8()));
    }
    pair.settle();
    return 0;
}
