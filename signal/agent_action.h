// What the agent's core (signal/agent_core.h) asks src/ to do. src/agent_runtime.cc carries each
// action out on the OS and reports back through the core's on_* calls; it decides nothing.
//
//   the server     DialServer -> on_control_connected | on_control_closed;  WriteControl;
//                  CloseControl;  ResolveStunServer -> on_stun_server_resolved
//   UDP sockets    OpenUdpSocket -> on_udp_socket_failed if the OS refuses;  CloseUdpSocket.
//                  (Links' birthday sockets, UDP forwards' listen sockets and UDP flows'
//                  sockets towards their targets: all routes, their datagrams go through
//                  on_udp and write_transmit.)
//                  (The main socket, route kRouteMain, is src/'s from the start.)
//   forwards       ListenTcp -> on_listen_failed if the OS refuses;  StopListening;
//                  PauseAccepting, ResumeAccepting (after on_descriptors_low)
//   TCP            ConnectTcp -> on_tcp_connected | on_tcp_connect_failed;  TcpFlush,
//                  TcpPauseReading, TcpResumeReading, TcpShutdown, TcpFinish, TcpClose,
//                  TcpReset (tunnel/stream_pipe.h says what each means)
//   peer TCP       (direct TCP paths, issue 15) src/ listens from the start on the port its
//                  control connection leaves from (AgentCore::enable_tcp_paths) and hands
//                  accepted connections to on_peer_tcp_accepted; ConnectPeerTcp ->
//                  on_peer_tcp_connected | on_peer_tcp_closed; on_peer_tcp_data,
//                  on_peer_tcp_writable, on_peer_tcp_closed; ClosePeerTcp. Session
//                  datagrams for such a route leave as UdpWrites with tcp set: src/ puts the
//                  2-byte length in front (tunnel/stream_framer.h)
//   the gateway    MapPort (UPnP IGD / PCP / NAT-PMP; blocking libraries, run off the loop) ->
//                  on_port_mapping_result for a kMap (a kDelete is not answered)
//   the process    Log (one line), Exit
//   the admin      DoctorResult (answers doctor(); src/ replies to the waiting HTTP request)
//
// UDP datagrams do not come as actions: src/ drains AgentCore::poll_transmit() after every
// input, in the same turn.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "signal/doctor_verdict.h"
#include "signal/host_port.h"
#include "signal/port_mapper.h"
#include "tunnel/bytes.h"
#include "tunnel/peer_link.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

// One forwarded TCP connection, named by the core; never reused while the agent runs.
using TcpId = uint64_t;

enum class Severity : uint8_t { kDebug, kInfo, kWarn, kError };

struct DialServer {
    HostPort server;
};
struct WriteControl {
    Bytes bytes;
};
struct CloseControl {};
// Resolve `[agent] stun_servers` entry `index` (a DNS name) and report it with
// AgentCore::on_stun_server_resolved.
struct ResolveStunServer {
    size_t index = 0;
    HostPort server;
};
struct OpenUdpSocket {
    RouteId route;
    int buffer_bytes;  // the socket buffers to ask for
    // Where to bind: nullopt for 0.0.0.0:0 (a link's socket, a UDP flow's socket towards its
    // target); a UDP forward's listen address.
    std::optional<SocketAddress> bind = std::nullopt;
    // The largest datagram to take (0: the socket's default); larger ones are truncated and
    // dropped by src/. A UDP forward takes any, so the core sees and counts what is too large.
    size_t max_datagram = 0;
};
struct CloseUdpSocket {
    RouteId route;
};
struct ListenTcp {
    std::string forward;  // the forward's key: its listen address as written
    SocketAddress address;
};
struct StopListening {
    std::string forward;
};
// Leave new connections in the listener's backlog (the kernel holds them, the clients wait)
// until ResumeAccepting: the process is short of descriptors.
struct PauseAccepting {
    std::string forward;
};
struct ResumeAccepting {
    std::string forward;
};
struct ConnectTcp {
    TcpId id;
    HostPort target;   // a DNS name is resolved by src/
    Duration timeout;  // give up (on_tcp_connect_failed) after this
};
// Connect to a peer's TCP candidate from the shared listening port (the crossing SYNs of a
// simultaneous open, or a connect to a reachable peer), under route.
struct ConnectPeerTcp {
    RouteId route;
    SocketAddress to;
    Duration timeout;
};
struct ClosePeerTcp {
    RouteId route;
};
struct TcpFlush {
    TcpId id;
};
struct TcpPauseReading {
    TcpId id;
};
struct TcpResumeReading {
    TcpId id;
};
struct TcpShutdown {
    TcpId id;
};
struct TcpFinish {
    TcpId id;
};
struct TcpClose {
    TcpId id;
};
struct TcpReset {
    TcpId id;
};
struct Log {
    Severity severity;
    std::string line;
};
// Ask the gateway (signal/port_mapper.h says what and when).
struct MapPort {
    PortMapRequest request;
};
// Finish the current drain (send what poll_transmit still returns), then close everything and
// end the loop. A message is the one line to print on stderr ("burrow: <message>").
struct Exit {
    int status = 0;
    std::string message;
};

// The answer to AgentCore::doctor(request_id): a verdict, or one line saying why there is none.
struct DoctorResult {
    uint32_t request_id = 0;
    std::optional<DoctorVerdict> verdict;
    std::string error;
};

using AgentAction =
    std::variant<DialServer, WriteControl, CloseControl, ResolveStunServer, OpenUdpSocket,
                 CloseUdpSocket, ListenTcp,
                 StopListening, PauseAccepting, ResumeAccepting, ConnectTcp, ConnectPeerTcp,
                 ClosePeerTcp, TcpFlush,
                 TcpPauseReading, TcpResumeReading, TcpShutdown, TcpFinish, TcpClose, TcpReset,
                 Log, MapPort, Exit, DoctorResult>;

// A datagram AgentCore::write_transmit built into the caller's buffer (its first `size`
// bytes), to send on the main socket or a link's own socket, to `to`.
struct UdpWrite {
    SocketAddress to;
    RouteId route = kRouteMain;
    size_t size = 0;
    // A session datagram for a direct TCP connection (route names it): length-prefixed on it.
    bool tcp = false;
};

// A datagram to send: on the main socket or a link's own socket, to `to`.
struct UdpTransmit {
    RouteId route = kRouteMain;
    SocketAddress to;
    Bytes data;
    bool tcp = false;  // as UdpWrite::tcp
};

}  // namespace burrow
