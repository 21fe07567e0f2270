#include "tunnel/congestion.h"

#include <algorithm>

#include "tunnel/bbr.h"
#include "tunnel/new_reno.h"

namespace burrow {

namespace {
constexpr uint64_t kInitialWindowPackets = 10;      // RFC 9002 §7.2
constexpr uint64_t kInitialWindowMinBytes = 14720;  // RFC 9002 §7.2
constexpr uint64_t kInitialWindowMinPackets = 2;    // RFC 9002 §7.2
}  // namespace

uint64_t initial_congestion_window(size_t max_datagram_size) {
    const uint64_t mds = max_datagram_size;
    return std::min(kInitialWindowPackets * mds,
                    std::max(kInitialWindowMinBytes, kInitialWindowMinPackets * mds));
}

std::unique_ptr<CongestionController> make_congestion_controller(CongestionKind kind,
                                                                 size_t max_datagram_size) {
    switch (kind) {
        case CongestionKind::kNewReno:
            return std::make_unique<NewReno>(max_datagram_size);
        case CongestionKind::kBbr:
            break;
    }
    return std::make_unique<Bbr>(max_datagram_size);
}

}  // namespace burrow
