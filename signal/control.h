// Control messages between an agent and the signalling server, carried over the TLS stream.
//
// Frame (all integers big-endian):
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |             length (32): bytes that follow, >= 2              |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  version = 1  |     type      |            body             ...
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// length is capped at kMaxControlFrame, and at kMaxPreAuthFrame until the server has accepted
// the agent's Auth, so an unauthenticated peer cannot make the server buffer more than that.
//
// Body fields, in the order the structs below list them:
//   u8/u16/u32/u64   fixed-size big-endian integers
//   key, nonce, ...  fixed-size byte arrays (32 or 16 bytes), no length
//   text             varint length (RFC 9000 §16) + UTF-8 bytes; each field has a cap, and
//                    control characters (< 0x20, 0x7f) are refused so a name or a reason
//                    can go into a one-line log entry as it is
//   address          u8 family (4 or 6) + 4 or 16 address bytes + u16 port
//   list             varint count (capped) + the elements
//   payload          the rest of the frame (RelayData only)
// A body must be consumed exactly: trailing bytes make the frame malformed.
//
//   type  message          direction        body
//   0x01  ServerHello      server -> agent  server_static_pub key, nonce[32]
//   0x02  Auth             agent -> server  agent_pub key, proof[32], software text
//   0x03  AuthOk           server -> agent  name text, udp_token[16], stun_ports u16 u16,
//                                           relay_udp_port u16
//   0x04  Error            both             code u16, message text
//   0x05  Register         agent -> server  candidates list of (kind u8, address), nat u8,
//                                           allocation
//                                           (a candidate of a kind this side does not know is
//                                           skipped, not an error: see CandidateKind; kinds
//                                           5 and 6 are TCP addresses)
//   0x06  ConnectRequest   agent -> server  peer text, service text, session_id u64
//   0x07  PeerInfo         server -> agent  session_id u64, peer text, peer_pub key,
//                                           candidates, nat u8, allocation, relay_token[16],
//                                           start_in_ms u32, role u8, service text,
//                                           opener u8 (0 or 1)
//   0x08  ConnectRefused   server -> agent  peer text, service text, reason text
//   0x09  RelayData        both             session_id u64, payload
//   0x0a  Ping             both             value u64
//   0x0b  Pong             both             value u64 (the Ping's)
//   0x0c  RelayAttach      agent -> server  session_id u64, peer text, relay_token[16],
//                                           role u8 (the sender's)
//   0x0d  RelayDetached    server -> agent  session_id u64, reason text
//   0x0e  PunchReport      agent -> server  peer text, nat u8, udp_to_server u8 (0 or 1),
//                                           candidates, tried list of address,
//                                           answered (u8 0 or 1 + address), strategy u8,
//                                           source u8, time_to_direct_ms u32, path u8
//   0x0f  DoctorRequest    agent -> server  request_id u32, peer text
//   0x10  DoctorReply      server -> agent  request_id u32, peer text, status u8,
//                                           rendezvous_age_ms u32, then for this agent and
//                                           for the peer: nat u8, online u8 (0 or 1),
//                                           udp_heard u8 (0 or 1),
//                                           candidates (as the server sent them at the
//                                           rendezvous), report (u8 0 or 1 + a PunchReport
//                                           body + age_ms u32)
//
// allocation (how the sender's NAT hands out ports, tunnel/port_prediction.h; 13 bytes):
//   kind u8 (0 unknown, 1 same, 2 sequential, 3 block, 4 random), delta u16, spread u16,
//   block_first u16, block_size u32 (0 or a power of two up to 65536), last u16
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tunnel/socket_address.h"
#include "tunnel/bytes.h"
#include "tunnel/frame.h"
#include "tunnel/nat_mapping.h"
#include "tunnel/noise.h"
#include "tunnel/port_prediction.h"
#include "tunnel/stream_framer.h"

namespace burrow {

// 2: one session per pair of agents (ConnectRequest names the requester's session with the
// peer, PeerInfo says which side opens the service).
// 3: RelayAttach/RelayDetached (relay sessions outlive a server restart), and the RelayFrom
// datagram (signal/udp_messages.h), which a version 2 server would drop.
// 4: PunchReport, DoctorRequest, DoctorReply (`burrow doctor`), and CandidateKind::kMapped. A
// version 3 server would close the connection on an agent's first PunchReport, and a version 3
// decoder refuses a candidate kind it does not know (the whole frame is malformed), so the
// mismatch is refused at once instead. From 4 on, unknown candidate kinds are skipped, so a
// later kind needs no new version.
// 5: Register and PeerInfo carry the NAT's port allocation (issue 16, port prediction), and
// PunchReport's strategy and source gain kPredicted. A body must be consumed exactly, so a
// version 4 decoder would refuse the longer Register as malformed (there is no skippable
// trailing field); and an allocation hidden in a candidate of an unknown kind would be
// dropped by a version 4 server before it reached the peer. So a version step: a mismatch is
// refused at once ("unsupported protocol version") rather than punching half-informed.
// 6: PunchReport's path gains kDirectTcp and its source the TCP candidates' kinds (tcp-host,
// tcp-srflx, tcp-prflx; issue 15, direct TCP paths), so `burrow doctor` can tell a direct TCP
// path from a UDP one. A version 5 server refuses the new enum bytes as malformed (closing the
// control connection on the agent's first report from a TCP path), so a version step instead.
inline constexpr uint8_t kControlVersion = 6;
inline constexpr size_t kControlLengthSize = 4;
inline constexpr size_t kControlHeaderSize = 2;  // version + type, counted in length
// Large enough for a RelayData carrying any UDP session packet plus headroom; small enough that
// a connection's buffer stays bounded.
inline constexpr size_t kMaxControlFrame = 64 * 1024;
// An Auth with the longest software text fits (2 + 32 + 32 + 2 + kMaxSoftwareLen).
inline constexpr size_t kMaxPreAuthFrame = 512;

inline constexpr size_t kAuthNonceSize = 32;
inline constexpr size_t kAuthProofSize = 32;
inline constexpr size_t kUdpTokenSize = 16;
inline constexpr size_t kRelayTokenSize = 16;

// Caps on text fields and lists. Agent names appear in logs, status output and ACLs; the
// short limit (and config/'s [a-z0-9-] alphabet) keeps them unambiguous there and safe in
// file names. Service names follow the tunnel's cap (tunnel/frame.h kMaxServiceNameLen) so a
// name that travels in STREAM_OPEN always fits.
inline constexpr size_t kMaxAgentNameLen = 32;
inline constexpr size_t kMaxSoftwareLen = 256;
inline constexpr size_t kMaxControlTextLen = 1024;  // error messages, refusal reasons
// Host addresses of every interface plus reflexive and predicted ones; far above real hosts.
inline constexpr size_t kMaxCandidates = 64;

using AuthNonce = std::array<uint8_t, kAuthNonceSize>;
using AuthProof = std::array<uint8_t, kAuthProofSize>;
using UdpToken = std::array<uint8_t, kUdpTokenSize>;
using RelayToken = std::array<uint8_t, kRelayTokenSize>;

// kMapped: a public address the agent's gateway mapped to its session socket on request (UPnP IGD
// PCP or NAT-PMP, signal/port_mapper.h). It is endpoint-independent by construction: any peer can
// reach it, even one behind a symmetric NAT.
// kTcpHost, kTcpServerReflexive (issue 15, direct TCP paths): TCP addresses, not UDP ones. A
// TCP host candidate is a local address and port on which the agent listens and from which its
// control connection leaves (SO_REUSEADDR + SO_REUSEPORT); the server answers an agent that
// offers one with a tcp-srflx candidate in PeerInfo: the address it sees that control
// connection come from (what the agent's NAT mapped the port to). A version 4 decoder that
// does not know them skips them (no new control version).
enum class CandidateKind : uint8_t {
    kHost = 1,
    kServerReflexive = 2,
    kPredicted = 3,
    kMapped = 4,
    kTcpHost = 5,
    kTcpServerReflexive = 6,
};
inline constexpr uint8_t kMaxKnownCandidateKind =
    static_cast<uint8_t>(CandidateKind::kTcpServerReflexive);
// Whether a candidate is a TCP address (a direct TCP path's), not a UDP one.
inline bool is_tcp(CandidateKind k) {
    return k == CandidateKind::kTcpHost || k == CandidateKind::kTcpServerReflexive;
}

struct Candidate {
    CandidateKind kind = CandidateKind::kHost;
    SocketAddress address;
    bool operator==(const Candidate&) const = default;
};

enum class SessionRole : uint8_t { kInitiator = 1, kResponder = 2 };

// Error codes the server sends before it closes a connection.
enum class ControlErrorCode : uint16_t {
    kProtocol = 1,       // malformed or unexpected message
    kUnknownKey = 2,     // the agent's key is not in server.toml
    kAuthFailed = 3,     // wrong or replayed proof
    kServerFull = 4,     // maximum agent count reached
    kTimeout = 5,        // no Auth before the deadline, or idle
    kReplaced = 6,       // the same agent connected again
    kTooManyPending = 7  // too many unauthenticated connections
};

struct ServerHello {
    PublicKey server_static_pub{};
    AuthNonce nonce{};
    bool operator==(const ServerHello&) const = default;
};
struct Auth {
    PublicKey agent_pub{};
    AuthProof proof{};
    std::string software;  // e.g. "burrow 0.1.0", for the server's log
    bool operator==(const Auth&) const = default;
};
struct AuthOk {
    std::string name;  // the agent's name in server.toml
    UdpToken udp_token{};
    std::array<uint16_t, 2> stun_ports{};
    uint16_t relay_udp_port = 0;
    bool operator==(const AuthOk&) const = default;
};
struct ControlErrorMessage {
    uint16_t code = 0;
    std::string message;
    bool operator==(const ControlErrorMessage&) const = default;
};
struct Register {
    std::vector<Candidate> candidates;
    NatMapping nat = NatMapping::kUnknown;
    // How the NAT gave out the ports of successive mappings (AgentClient::allocation): a peer
    // behind a per-destination NAT probes the ports it predicts from it.
    PortAllocation allocation = {};
    bool operator==(const Register&) const = default;
};
struct ConnectRequest {
    std::string peer;
    std::string service;
    // The relay session id of the requester's link with the peer; 0 when it has none. The
    // server keeps the pair on that session (one session per pair of agents).
    uint64_t session_id = 0;
    bool operator==(const ConnectRequest&) const = default;
};
struct PeerInfo {
    uint64_t session_id = 0;
    std::string peer;
    PublicKey peer_pub{};
    std::vector<Candidate> candidates;
    NatMapping nat = NatMapping::kUnknown;
    PortAllocation allocation = {};  // the peer's, as it registered it
    RelayToken relay_token{};
    // Start punching this many ms after receiving the message: both sides get it at about the
    // same time, and an offset needs no synchronised clocks.
    uint32_t start_in_ms = 0;
    // This agent's Noise role in the pair's session (fixed while the session lives).
    SessionRole role = SessionRole::kInitiator;
    std::string service;
    // true: this agent asked to open `service` on the peer; false: the peer may open `service`
    // on this agent.
    bool opener = true;
    bool operator==(const PeerInfo&) const = default;
};
struct ConnectRefused {
    std::string peer;
    std::string service;
    std::string reason;
    bool operator==(const ConnectRefused&) const = default;
};
struct RelayData {
    uint64_t session_id = 0;
    Bytes payload;  // an end-to-end encrypted session packet; the server cannot read it
    bool operator==(const RelayData&) const = default;
};
struct Ping {
    uint64_t value = 0;
    bool operator==(const Ping&) const = default;
};
struct Pong {
    uint64_t value = 0;
    bool operator==(const Pong&) const = default;
};

// After a reconnect (to the same server, or to one that restarted and forgot its relay table),
// an agent asks for each of its links' relay sessions back. The server derives every session's
// token from its identity key (signal/relay_token.h), so it can check the token without having
// kept any state, and re-creates the session under the same id and token: the agents' end-to-end
// session goes on as if the relay had only lost some packets.
struct RelayAttach {
    uint64_t session_id = 0;
    std::string peer;
    RelayToken relay_token{};
    SessionRole role = SessionRole::kInitiator;  // the sender's Noise role in the session
    bool operator==(const RelayAttach&) const = default;
};
// The server will not relay this session (the token does not verify: the server's identity key
// changed; or the ACL no longer joins the pair). A relayed link ends; a direct one goes on
// without a relay fallback.
struct RelayDetached {
    uint64_t session_id = 0;
    std::string reason;
    bool operator==(const RelayDetached&) const = default;
};

// How an agent's link with a peer ended up once punching settled (the first direct path, or
// kPunchVerdictAfter without one), for `burrow doctor` (signal/doctor_verdict.h). The values
// are the wire's; 0 is never sent for a path or a strategy. kDirect is a direct UDP path,
// kDirectTcp a direct TCP one (a TCP connection between the agents, tunnel/peer_link.h).
enum class ReportPath : uint8_t { kDirect = 1, kRelayUdp = 2, kRelayTcp = 3, kDirectTcp = 4 };
// How the link punches (tunnel/punch_planner.h PunchTechnique, plus one).
enum class ReportStrategy : uint8_t {
    kPlain = 1,
    kSpray = 2,
    kBirthday = 3,
    kMapped = 4,
    kPredicted = 5
};
// Where the direct path led (tunnel/peer_link.h DirectSource, plus one); kNone on the relay.
enum class ReportSource : uint8_t {
    kNone = 0,
    kHost = 1,
    kServerReflexive = 2,
    kPeerReflexive = 3,
    kBirthday = 4,
    kMapped = 5,
    kPredicted = 6,
    kTcpHost = 7,
    kTcpServerReflexive = 8,
    kTcpPeerReflexive = 9
};

struct PunchReport {
    std::string peer;
    NatMapping nat = NatMapping::kUnknown;  // the sender's NAT mapping, as it measured it
    bool udp_to_server = false;             // the server answered the sender's UDP (Bind)
    std::vector<Candidate> candidates;      // the sender's own, as it registered them
    std::vector<SocketAddress> tried;       // the peer's addresses it probed (at most the cap)
    std::optional<SocketAddress> answered;  // the peer's address that answered: the direct path
    ReportStrategy strategy = ReportStrategy::kPlain;
    ReportSource source = ReportSource::kNone;
    uint32_t time_to_direct_ms = 0;  // from the link's start; 0 when not direct
    ReportPath path = ReportPath::kRelayUdp;
    bool operator==(const PunchReport&) const = default;
};

// `burrow doctor PEER`: the agent asks the server for the pair's last rendezvous.
struct DoctorRequest {
    uint32_t request_id = 0;
    std::string peer;
    bool operator==(const DoctorRequest&) const = default;
};

enum class DoctorStatus : uint8_t {
    kOk = 0,
    kNotAllowed = 1,    // an unknown peer, or one the ACL does not join to the asker: no detail
    kNoRendezvous = 2,  // allowed, but the server has no rendezvous of the pair on record
};

// One side of the pair as the server knows it: what it sent the other side at the rendezvous,
// and the side's latest PunchReport (with its age).
struct DoctorSide {
    NatMapping nat = NatMapping::kUnknown;
    // The side is connected to the server now. An offline side's missing UDP says nothing about
    // its network, so udp_heard is only read when online.
    bool online = false;
    // The server holds a UDP address for the side now (its Bind got through): UDP works between
    // it and the server. Known without any report, so a blocked side is named at once.
    bool udp_heard = false;
    std::vector<Candidate> candidates;
    std::optional<PunchReport> report;
    uint32_t report_age_ms = 0;
    bool operator==(const DoctorSide&) const = default;
};

struct DoctorReply {
    uint32_t request_id = 0;
    std::string peer;
    DoctorStatus status = DoctorStatus::kOk;
    uint32_t rendezvous_age_ms = 0;
    DoctorSide self;       // the asking agent
    DoctorSide peer_side;  // the peer
    bool operator==(const DoctorReply&) const = default;
};

using ControlMessage =
    std::variant<ServerHello, Auth, AuthOk, ControlErrorMessage, Register, ConnectRequest, PeerInfo,
                 ConnectRefused, RelayData, Ping, Pong, RelayAttach, RelayDetached, PunchReport,
                 DoctorRequest, DoctorReply>;

// The message's name for logs ("Auth", "PeerInfo", ...).
const char* message_name(const ControlMessage& m);

// The whole frame, length prefix included. Preconditions (asserted): text and lists within
// their caps, and the frame within kMaxControlFrame.
Bytes encode_control(const ControlMessage& m);

// Why a stream of frames cannot be read on; the caller closes the connection.
enum class ControlDecodeError {
    kOversized,    // length above the current cap (or below the 2-byte header)
    kBadVersion,   // version byte other than kControlVersion
    kUnknownType,  // type byte not in the table above
    kMalformed     // body does not parse exactly
};
const char* to_string(ControlDecodeError e);

// Decodes one frame's version, type and body (everything after the length).
std::variant<ControlMessage, ControlDecodeError> decode_control_body(ByteView frame);

// Reassembles frames from a byte stream delivered in arbitrary pieces.
//
//   decoder.feed(bytes);
//   while (auto m = decoder.next()) handle(*m);
//   if (decoder.error()) close the connection;
//
// A frame's length is checked as soon as its 4 bytes arrive, so an oversized frame is refused
// before its body is buffered. After an error the decoder stays failed and ignores input.
class ControlDecoder {
  public:
    explicit ControlDecoder(size_t max_frame = kMaxPreAuthFrame)
        : frames_(kControlLengthSize, kControlHeaderSize, max_frame) {}

    // The cap applies to frames not yet returned by next(): raise it after authentication,
    // before asking for the next message.
    void set_max_frame(size_t max_frame) { frames_.set_max_frame(max_frame); }
    void feed(ByteView bytes) {
        if (!error_) frames_.feed(bytes);
    }
    std::optional<ControlMessage> next();
    std::optional<ControlDecodeError> error() const { return error_; }
    // Bytes received but not yet returned as messages.
    size_t buffered() const { return frames_.buffered(); }

  private:
    void fail(ControlDecodeError e);

    StreamDeframer frames_;  // the length prefix (tunnel/stream_framer.h)
    std::optional<ControlDecodeError> error_;
};

}  // namespace burrow
