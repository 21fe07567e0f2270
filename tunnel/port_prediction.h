// Port prediction for NATs that map per destination (issue 16): from the public ports a NAT
// gave successive new mappings of one socket, in the order it gave them, how it allocates, and
// which ports it will probably give the next ones. Pure arithmetic; the agent feeds it the
// mapped ports its STUN probes saw.
//
//   same        every probe saw one port: the NAT maps endpoint-independently
//   sequential  each new mapping is the last one plus a small step (RFC 4787 §4.2.1's
//               "sequential" allocators: many home routers); the step may vary when other
//               hosts behind the NAT take ports in between, so the delta is the smallest
//               step seen and the spread the largest
//   block       not sequential, but inside one aligned power-of-two block of at most
//               kMaxPredictedBlock ports: a carrier-grade NAT's per-subscriber block (RFC 7422)
//   random      anything else: no prediction (the birthday technique's ground)
//
// Ports are counted on the ring a NAT maps, 1024-65535 (a sequential allocator at 65535 goes on
// at 1024), when every observed port is at or above 1024; on the whole 0-65535 ring otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace burrow {

// More than two observations: two ports always differ by some delta, a third shows whether the
// delta holds.
inline constexpr size_t kMinAllocationSamples = 3;
// The largest step still read as sequential: other hosts' new mappings between two of ours
// push a shared counter on, but not by hundreds in the second the probes take.
inline constexpr uint32_t kMaxSequentialStep = 64;
// The largest per-subscriber block read as one: RFC 7422 §2's example is 1024 ports; 4096
// leaves room for the bigger blocks carriers hand out while random ports (1 in 16 of the
// range per sample) rarely fit one by chance.
inline constexpr uint32_t kMaxPredictedBlock = 4096;
// The ports a side probes at most for one predicted window: about one spray round
// (tunnel/path_manager.h kSprayPorts).
inline constexpr size_t kMaxPredictedPorts = 1024;
// A block's window: four random samples of a 512-port block fall in one half of it one time in
// eight, so the window is the aligned block of this many ports that holds the samples' block.
inline constexpr uint32_t kBlockWindow = 1024;

enum class PortAllocationKind : uint8_t { kUnknown, kSame, kSequential, kBlock, kRandom };
const char* to_string(PortAllocationKind k);

struct PortAllocation {
    PortAllocationKind kind = PortAllocationKind::kUnknown;
    uint16_t delta = 0;        // kSequential: the smallest step (forward on the ring)
    uint16_t spread = 0;       // kSequential: the largest step
    uint16_t block_first = 0;  // kBlock: the block's first port
    uint32_t block_size = 0;   // kBlock: a power of two
    uint16_t last = 0;         // the last port observed
    bool operator==(const PortAllocation&) const = default;
};

// "sequential delta 1", "sequential delta 1-3", "block 1024-1535", "random", "same", "unknown".
std::string describe(const PortAllocation& a);

// How a NAT allocates, from the ports of successive new mappings in the order they were made.
PortAllocation measure_allocation(std::span<const uint16_t> ports);

// The ports the next `mappings` new mappings will probably get (at most kMaxPredictedPorts),
// nearest first: for sequential allocation every port from last + delta to
// last + mappings x spread on the ring; for a block every port of the aligned kBlockWindow
// (or the block, if larger) around it but the observed last one, none below 1024 when the NAT
// maps above it; nothing for the rest.
std::vector<uint16_t> predict_ports(const PortAllocation& a, size_t mappings);

// Whether ports can be predicted from the allocation at all (sequential or block).
bool predictable(const PortAllocation& a);

// Lockstep for two sequential per-destination NATs (tunnel/punch_planner.h): the ports of the
// peer's new mappings number first, first + stride, ... (count of them), its next new mapping
// being number 0: last + delta x (1 + first + stride x k) on the ring. Empty unless the
// allocation is sequential; stride >= 1.
std::vector<uint16_t> lockstep_ports(const PortAllocation& a, size_t first, size_t count,
                                     uint32_t stride);

}  // namespace burrow
