// PortMapper: when the agent asks its gateway for a UDP port mapping of its session socket
// (UPnP IGD, PCP or NAT-PMP), sans-IO. The protocols' libraries block, so src/ runs each request off
// the loop (src/port_mapping.h) and reports the answer with on_result(); this object decides
// when to ask, when to renew, when to give up and when to delete.
//
//   off --start--> asking --granted--> mapped --renew_at (half the lease)--> asking (renew)
//                    |                   |
//                    | nothing answered  | network changed: asking (a fresh mapping)
//                    v                   | stop: deleting (the mapping is removed at the gateway)
//                  waiting --retry_at--> asking ... after kMaxUnansweredAsks: gave up
//
// A renewal that fails drops the mapping (the candidate goes away) and starts the retry
// schedule. A network change restarts everything, the gave-up state too. An answer that
// arrives after stop() is deleted at once: nothing stays open at the gateway on our behalf.
//
// The granted public address is the agent's kMapped candidate (signal/control.h): reachable from
// any peer, even one behind a symmetric NAT, because the gateway forwards the port whoever sends.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

enum class PortMapProtocol : uint8_t { kUpnpIgd, kNatPmp, kPcp };
// "UPnP IGD", "NAT-PMP", "PCP".
const char* to_string(PortMapProtocol p);

// What we ask for: Tailscale's portmapper asks NAT-PMP and PCP for 7200 s too; long enough that
// renewals are rare, short enough that a crashed agent's mapping does not outlive the day.
inline constexpr Duration kPortMappingLease = std::chrono::hours(2);
// Renew at half the lease granted (RFC 6886 §3.3 advises renewing halfway), and never sooner
// than this: a gateway that grants a few seconds must not make us ask in a loop.
inline constexpr Duration kMinRenewInterval = std::chrono::seconds(30);
// UPnP gateways that only take permanent mappings (lease 0, error 725) keep them until deleted;
// we still look again this often, in case the router rebooted and forgot it.
inline constexpr Duration kPermanentRecheck = std::chrono::minutes(20);
// Nothing answered: ask again after these, then give up until the network changes. A router
// whose UPnP is off stays off; three asks cover one that was still booting.
inline constexpr Duration kRetryDelays[] = {std::chrono::minutes(1), std::chrono::minutes(5)};
inline constexpr int kMaxUnansweredAsks = 3;

// The answer src/ reports for a kMap request.
struct PortMappingGranted {
    PortMapProtocol protocol = PortMapProtocol::kUpnpIgd;
    std::string gateway;     // the gateway's address as text, for logs and status
    SocketAddress external;  // the public address and port the gateway maps to our socket
    Duration lease{};        // as granted; 0: permanent (UPnP only)
};
struct PortMappingResult {
    std::optional<PortMappingGranted> granted;  // nullopt: no protocol gave a mapping
    // Why not, one line per protocol asked ("UPnP IGD: no IGD found; PCP: no answer from 10.0.1.1").
    std::string detail;
};

struct PortMapRequest {
    enum class Op : uint8_t { kMap, kDelete };
    Op op = Op::kMap;
    uint16_t internal_port = 0;
    Duration lease = kPortMappingLease;
    // A renewal or a delete goes to the protocol (and port) that granted the mapping; a first
    // ask tries UPnP IGD, then PCP, then NAT-PMP.
    std::optional<PortMapProtocol> protocol;
    uint16_t external_port = 0;
};

enum class PortMapperState : uint8_t { kOff, kAsking, kMapped, kWaiting, kGaveUp, kStopped };
const char* to_string(PortMapperState s);

struct PortMapperStatus {
    PortMapperState state = PortMapperState::kOff;
    std::optional<PortMappingGranted> mapping;  // while mapped
    std::string last_failure;                   // the last unanswered ask's detail
    uint64_t asks = 0;
    uint64_t renewals = 0;
    uint64_t failures = 0;
};

class PortMapper {
  public:
    explicit PortMapper(bool enabled) : enabled_(enabled) {}

    // The session socket is bound to internal_port: ask now (nothing when disabled).
    void start(uint16_t internal_port, Time now);
    // Our addresses changed: the old mapping (if any) is stale; ask afresh.
    void on_network_changed(Time now);
    // The answer to the kMap request poll_request() last gave.
    void on_result(PortMappingResult result, Time now);
    void on_timer(Time now);
    // Clean shutdown: a mapping we hold is deleted (poll_request gives the kDelete).
    void stop();

    std::optional<PortMapRequest> poll_request();
    // One line per outcome worth the operator's eye ("port mapping: UPnP IGD at ... gave ...").
    std::optional<std::string> poll_log();
    Time next_deadline() const;

    bool enabled() const { return enabled_; }
    // The kMapped candidate while a mapping is held.
    std::optional<SocketAddress> mapped() const;
    const PortMapperStatus& status() const { return status_; }

  private:
    void ask(Time now, std::optional<PortMapProtocol> protocol);
    void unanswered(std::string detail, Time now);
    void queue_delete();

    bool enabled_;
    uint16_t internal_port_ = 0;
    PortMapperStatus status_;
    bool in_flight_ = false;
    bool stale_in_flight_ = false;  // the network changed while a request was out
    int unanswered_ = 0;            // consecutive asks nothing answered
    Time due_ = kNever;             // renew_at while mapped, retry_at while waiting
    std::deque<PortMapRequest> requests_;
    std::deque<std::string> logs_;
};

}  // namespace burrow
