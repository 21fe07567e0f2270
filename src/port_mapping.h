// The gateway's side of signal/port_mapper.h: UPnP IGD through libminiupnpc and NAT-PMP through
// libnatpmp. Both libraries block (SSDP discovery waits its whole window, SOAP calls are
// blocking HTTP, NAT-PMP waits for replies), so every call here runs on libuv's thread pool
// (uv_queue_work in src/agent_runtime.cc), never on the loop. PCP (RFC 6887) is not spoken:
// miniupnpd and most home routers that speak PCP answer NAT-PMP too.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "signal/port_mapper.h"

namespace burrow {

// SSDP discovery window (one search, for the IGD device type): miniupnpc's own example uses
// 2 s; a LAN gateway answers in milliseconds. It runs off the loop, but an agent that stops
// during it waits for the rest of it (a blocking call cannot be cancelled).
inline constexpr int kUpnpDiscoverMs = 2000;
// NAT-PMP retries at 250 ms doubling up to 9 times (RFC 6886 §3.1, about 2 min); a gateway that
// has not answered within this never will on a LAN.
inline constexpr auto kNatPmpWait = std::chrono::seconds(2);

// What the last successful UPnP ask found, so a renewal or the delete at exit need not
// discover again. One request runs at a time (the core waits for each answer), but the cache
// is shared with the worker thread, so it has its own lock.
class PortMappingGateway {
  public:
    // Blocking. kMap: UPnP IGD first, then NAT-PMP (or only the protocol the request names).
    PortMappingResult map(const PortMapRequest& request);
    // Blocking, best effort: failures are logged at debug level (the lease ends it anyway).
    void remove(const PortMapRequest& request);
    PortMappingResult run(const PortMapRequest& request);
    // The agent is stopping: a mapping request still out gives up at its next step (between
    // protocols, or within 100 ms of a NAT-PMP wait), so SIGTERM does not wait for it. Deletes
    // still run to the end: they are why the loop waits.
    void cancel() { cancelled_ = true; }

  private:
    struct UpnpIgd {
        std::string control_url;
        std::string service_type;
        std::string lan_address;  // ours, as the IGD sees it
        std::string gateway;      // the control URL's host
    };
    PortMappingResult map_upnp(const PortMapRequest& request, std::string& why);
    PortMappingResult map_natpmp(const PortMapRequest& request, std::string& why);
    std::optional<UpnpIgd> discover_igd(std::string& why);

    std::atomic<bool> cancelled_{false};
    std::mutex mutex_;
    std::optional<UpnpIgd> igd_;
};

// What `burrow netcheck` prints: does UPnP IGD answer, does NAT-PMP (the public address each
// reports). Blocking; asks for no mapping.
struct PortMappingProbe {
    std::string upnp;    // "192.168.1.1 (external 203.0.113.5)" or why not
    bool upnp_ok = false;
    std::string natpmp;  // the same for NAT-PMP
    bool natpmp_ok = false;
};
PortMappingProbe probe_port_mapping();

}  // namespace burrow
