// The signalling server's counters as Prometheus metrics, for GET /metrics on the address
// `[server] metrics` names. docs/metrics.md lists every metric.
#pragma once

#include <cstdint>
#include <string>

#include "signal/server_core.h"
#include "signal/stun_tcp.h"

namespace burrow {

// TLS handshakes on the control port, counted by src/server_runtime.cc (TLS lives in src/).
struct TlsHandshakeStats {
    uint64_t completed = 0;
    uint64_t failed = 0;  // the connection closed before its handshake finished
};

// stun_tcp: STUN over TCP on the STUN ports (src/stun_tcp_service.h).
std::string server_metrics_text(const ServerCore& core, const TlsHandshakeStats& tls,
                                const StunTcpStats& stun_tcp, double uptime_s);

}  // namespace burrow
