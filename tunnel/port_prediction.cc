#include "tunnel/port_prediction.h"

#include <algorithm>

namespace burrow {

namespace {

constexpr uint32_t kLowestMappedPort = 1024;  // NATs do not map below it
constexpr uint32_t kPortCount = 65536;

struct Ring {
    uint32_t base;
    uint32_t size;
    // The forward step from a to b on the ring.
    uint32_t step(uint16_t a, uint16_t b) const {
        return (uint32_t{b} - base + size - (uint32_t{a} - base)) % size;
    }
    uint16_t advance(uint16_t a, uint32_t by) const {
        return static_cast<uint16_t>(base + (uint32_t{a} - base + by) % size);
    }
};

Ring ring_for(std::span<const uint16_t> ports) {
    const bool high = std::all_of(ports.begin(), ports.end(),
                                  [](uint16_t p) { return p >= kLowestMappedPort; });
    return high ? Ring{kLowestMappedPort, kPortCount - kLowestMappedPort} : Ring{0, kPortCount};
}

}  // namespace

const char* to_string(PortAllocationKind k) {
    switch (k) {
        case PortAllocationKind::kUnknown:
            return "unknown";
        case PortAllocationKind::kSame:
            return "same";
        case PortAllocationKind::kSequential:
            return "sequential";
        case PortAllocationKind::kBlock:
            return "block";
        case PortAllocationKind::kRandom:
            return "random";
    }
    return "?";
}

std::string describe(const PortAllocation& a) {
    std::string s = to_string(a.kind);
    if (a.kind == PortAllocationKind::kSequential) {
        s += " delta " + std::to_string(a.delta);
        if (a.spread != a.delta) s += "-" + std::to_string(a.spread);
    } else if (a.kind == PortAllocationKind::kBlock) {
        s += " " + std::to_string(a.block_first) + "-" +
             std::to_string(a.block_first + a.block_size - 1);
    }
    return s;
}

PortAllocation measure_allocation(std::span<const uint16_t> ports) {
    PortAllocation a;
    if (ports.size() < kMinAllocationSamples) return a;
    a.last = ports.back();
    if (std::all_of(ports.begin(), ports.end(), [&](uint16_t p) { return p == ports[0]; })) {
        a.kind = PortAllocationKind::kSame;
        return a;
    }
    const Ring ring = ring_for(ports);
    uint32_t smallest = ring.size, largest = 0;
    for (size_t i = 1; i < ports.size(); ++i) {
        const uint32_t step = ring.step(ports[i - 1], ports[i]);
        smallest = std::min(smallest, step);
        largest = std::max(largest, step);
    }
    if (smallest > 0 && largest <= kMaxSequentialStep) {
        a.kind = PortAllocationKind::kSequential;
        a.delta = static_cast<uint16_t>(smallest);
        a.spread = static_cast<uint16_t>(largest);
        return a;
    }
    const auto [lo, hi] = std::minmax_element(ports.begin(), ports.end());
    for (uint32_t size = 2; size <= kMaxPredictedBlock; size *= 2) {
        const uint32_t first = *lo & ~(size - 1);
        if (*hi < first + size) {
            a.kind = PortAllocationKind::kBlock;
            a.block_first = static_cast<uint16_t>(first);
            a.block_size = size;
            return a;
        }
    }
    a.kind = PortAllocationKind::kRandom;
    return a;
}

std::vector<uint16_t> predict_ports(const PortAllocation& a, size_t mappings) {
    std::vector<uint16_t> out;
    if (a.kind == PortAllocationKind::kSequential) {
        const uint16_t last[] = {a.last};
        const Ring ring = ring_for(last);
        const uint64_t reach = std::max<uint64_t>(a.delta, uint64_t{a.spread} * mappings);
        for (uint64_t by = a.delta; by <= reach && out.size() < kMaxPredictedPorts; ++by) {
            out.push_back(ring.advance(a.last, static_cast<uint32_t>(by)));
        }
    } else if (a.kind == PortAllocationKind::kBlock) {
        // A few random samples often sit in one part of the true block, so the smallest block
        // that holds them is too small a guess: probe the aligned block of at least
        // kBlockWindow ports around it, which holds any true block up to that size.
        const uint32_t size = std::max(a.block_size, kBlockWindow);
        const uint32_t aligned = uint32_t{a.block_first} & ~(size - 1);
        const uint32_t lowest = a.last >= kLowestMappedPort ? kLowestMappedPort : 0;
        for (uint32_t p = std::max(aligned, lowest);
             p < aligned + size && out.size() < kMaxPredictedPorts; ++p) {
            if (p != a.last) out.push_back(static_cast<uint16_t>(p));
        }
    }
    return out;
}

bool predictable(const PortAllocation& a) {
    return a.kind == PortAllocationKind::kSequential || a.kind == PortAllocationKind::kBlock;
}

std::vector<uint16_t> lockstep_ports(const PortAllocation& a, size_t first, size_t count,
                                     uint32_t stride) {
    std::vector<uint16_t> out;
    if (a.kind != PortAllocationKind::kSequential || stride == 0) return out;
    const uint16_t last[] = {a.last};
    const Ring ring = ring_for(last);
    for (size_t k = 0; k < count; ++k) {
        const uint64_t index = 1 + first + uint64_t{stride} * k;
        out.push_back(ring.advance(a.last, static_cast<uint32_t>(index * a.delta % ring.size)));
    }
    return out;
}

}  // namespace burrow
