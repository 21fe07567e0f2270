// The gateway's side of signal/port_mapper.h: UPnP IGD through libminiupnpc, PCP (RFC 6887)
// with our own codec (signal/pcp.h) on a plain UDP socket, and NAT-PMP through libnatpmp. All
// of them block (SSDP discovery waits its whole window, SOAP calls are blocking HTTP, PCP and
// NAT-PMP wait for replies), so every call here runs on libuv's thread pool (uv_queue_work in
// src/agent_runtime.cc), never on the loop.
//
// Order: UPnP IGD, then PCP, then NAT-PMP. PCP and NAT-PMP share the gateway's port 5351: a
// NAT-PMP-only gateway answers our PCP request with a version 0 packet (RFC 6887 §9), and then we
// ask with NAT-PMP; a gateway that answers neither is not asked twice.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "signal/pcp.h"
#include "signal/port_mapper.h"

namespace burrow {

// SSDP discovery window (one search, for the IGD device type): miniupnpc's own example uses
// 2 s; a LAN gateway answers in milliseconds. It runs off the loop, but an agent that stops
// during it waits for the rest of it (a blocking call cannot be cancelled).
inline constexpr int kUpnpDiscoverMs = 2000;
// NAT-PMP retries at 250 ms doubling up to 9 times (RFC 6886 §3.1, about 2 min); a gateway that
// has not answered within this never will on a LAN. PCP (RFC 6887 §8.1.1: first retry after 3 s,
// then forever) gets the same: sends at 0, 250, 750 and 1750 ms, then we give up.
inline constexpr auto kNatPmpWait = std::chrono::seconds(2);
inline constexpr auto kPcpFirstRetry = std::chrono::milliseconds(250);

// What the last successful UPnP ask found, so a renewal or the delete at exit need not
// discover again. One request runs at a time (the core waits for each answer), but the cache
// is shared with the worker thread, so it has its own lock.
class PortMappingGateway {
  public:
    PortMappingGateway();
    // Blocking. kMap: UPnP IGD, PCP, NAT-PMP in turn (or only the protocol the request names).
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
    // silent: nothing answered on port 5351 at all (so NAT-PMP need not be asked).
    PortMappingResult map_pcp(const PortMapRequest& request, std::string& why, bool& silent);
    std::optional<UpnpIgd> discover_igd(std::string& why);

    std::atomic<bool> cancelled_{false};
    std::mutex mutex_;
    std::optional<UpnpIgd> igd_;
    // PCP's mapping nonce (RFC 6887 §11.2): one per agent, so renewals and the delete name the
    // mapping we made. Only the worker thread running a request touches it after construction.
    PcpNonce pcp_nonce_{};
};

// What `burrow netcheck` prints: does UPnP IGD answer, does NAT-PMP (the public address each
// reports). Blocking; asks for no mapping.
struct PortMappingProbe {
    std::string upnp;    // "192.168.1.1 (external 203.0.113.5)" or why not
    bool upnp_ok = false;
    std::string natpmp;  // the same for NAT-PMP
    bool natpmp_ok = false;
    std::string pcp;  // PCP (an ANNOUNCE): "10.0.1.1 answers (epoch 42 s)" or why not
    bool pcp_ok = false;
};
PortMappingProbe probe_port_mapping();

}  // namespace burrow
