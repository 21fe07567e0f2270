// Path probes: the authenticated PATH_CHALLENGE / PATH_RESPONSE exchange that proves a direct
// UDP path works before it carries data (docs/architecture.md §4 "Paths", §4 step 3). A probe is its own
// small packet rather than a frame inside a data packet, because it must travel on the path it
// tests and its answer must come back on that same path, while data packets go wherever the
// session's active path is.
//
//    0               1               2               3
//   +---------------+---------------+---------------+---------------+
//   |  type = 0x05  |       receiver session index (32)             |
//   +---------------+-----------------------------------------------+
//   |               |  counter (64), top bit set                    |
//   +---------------+                                               +
//   |                                               |  kind (enc)   |
//   +---------------+---------------+---------------+---------------+
//   |                path data, 8 bytes (encrypted)                 |
//   +                                                               +
//   |                                                               |
//   +---------------------------------------------------------------+
//   |                   AEAD tag (16)                               |
//   +---------------------------------------------------------------+
//
// Sealed with the session's current data keys. The counter's top bit keeps probe nonces apart
// from data packet numbers (a Connection never reaches 2^63 packets), so the same key never sees
// a nonce twice. A challenge and its response have the same size: answering an attacker's
// probe sends back no more than it sent (and nothing at all without the session keys).
#pragma once

#include <array>
#include <cstdint>

#include "tunnel/bytes.h"
#include "tunnel/frame.h"
#include "tunnel/rng.h"

namespace burrow {

inline constexpr uint8_t kPacketTypeProbe = 0x05;
inline constexpr uint64_t kProbeCounterBit = uint64_t{1} << 63;
inline constexpr size_t kProbeSize = 1 + 4 + 8 + 1 + kPathDataLen + 16;

enum class ProbeKind : uint8_t { kChallenge = 1, kResponse = 2 };

using PathData = std::array<uint8_t, kPathDataLen>;

// Fresh random data for a challenge: what the answer must echo.
inline PathData random_path_data(Rng& rng) {
    PathData data;
    rng.fill(data);
    return data;
}

struct Probe {
    ProbeKind kind = ProbeKind::kChallenge;
    PathData data{};
    bool operator==(const Probe&) const = default;
};

}  // namespace burrow
