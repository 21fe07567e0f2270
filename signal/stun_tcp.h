// STUN over TCP (RFC 8489 §6.2.2) on the server's two STUN port numbers, and the client's side
// that `burrow netcheck` uses for its TCP mapping test (issue 15). Sans-IO: bytes in, bytes
// out; src/stun_tcp_service.cc owns the sockets.
//
// On a stream, STUN messages follow each other back to back; the 20-byte header's Message
// Length (signal/stun.h) says where each one ends:
//
//   +----------------------+-----------------------+----------------------+----
//   | header (20 bytes)    | attributes (Length)   | header (20 bytes)    | ...
//   +----------------------+-----------------------+----------------------+----
//
// StunStreamFramer cuts the stream into messages and refuses a stream that is not STUN as soon
// as the bytes that show it arrive, before it buffers anything more: the first byte must be
// 0-3 (RFC 7983 §7; the two top bits zero, RFC 8489 §6), the Length a multiple of 4 and the
// whole message at most kStunTcpMaxMessage bytes, bytes 4-7 the magic cookie. It never holds
// more than one message.
//
// StunTcpServer is one executor's set of connections: each may send up to kStunTcpMaxRequests
// Binding requests, each answered with XOR-MAPPED-ADDRESS = the connection's peer address
// (signal/stun_answer.h, the answer the UDP ports give). Anything else closes the connection,
// counted by reason; so does a connection still open kStunTcpLifetime after it was accepted,
// and one beyond kStunTcpMaxConnections is closed as soon as it is accepted.
//
// Amplification is no concern here: the TCP handshake has proven the client's address before
// any answer goes out, so the answer is the full one (SOFTWARE, FINGERPRINT when asked)
// whatever the request's size, and stun_standard_clients (which on UDP lets a 20-byte request
// get an answer larger than itself) does not apply.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "signal/server_action.h"
#include "signal/stun.h"
#include "tunnel/bytes.h"
#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

// RFC 8489 §6.1: a STUN message is 548 bytes or less unless the path MTU is known to be larger
// (576 bytes of IPv4 datagram minus its headers). A Binding request or answer is far smaller
// (ours is under 100 bytes with SOFTWARE); a longer declared Length is a client we need not
// serve, and the cap keeps each connection's buffer small and fixed.
inline constexpr size_t kStunTcpMaxMessage = 548;
// A client learns its mapping with one request; a few allow a retry on the same connection.
inline constexpr size_t kStunTcpMaxRequests = 4;
// A netcheck's connection asks once and reads one answer, one round trip; 5 s is ample and
// bounds how long a silent or trickling client holds a slot (an absolute limit, not an idle
// one, so a byte every few seconds does not keep it open).
inline constexpr Duration kStunTcpLifetime = std::chrono::seconds(5);
// Open connections at once; one more is accepted and closed at once (counted).
inline constexpr size_t kStunTcpMaxConnections = 256;

enum class StunStreamError : uint8_t {
    kNotStun,    // a first byte above 3, a Length not a multiple of 4, or no magic cookie
    kTooLong,    // a declared message longer than kStunTcpMaxMessage
    kTruncated,  // the stream ended inside a message
};
const char* to_string(StunStreamError e);

class StunStreamFramer {
  public:
    // Takes bytes from the front of `in` up to the end of the current message. Returns the
    // message once it is whole (valid until the next call), else nullopt: either `in` is used
    // up (more bytes needed) or error() is set (and stays set; nothing more comes out).
    std::optional<ByteView> next(ByteView& in);
    // The stream ended: kTruncated when part of a message was buffered.
    std::optional<StunStreamError> finish();
    std::optional<StunStreamError> error() const { return error_; }
    size_t buffered() const { return have_; }

  private:
    std::optional<StunStreamError> check_header() const;
    size_t declared_length() const;  // needs the first 4 bytes

    std::array<uint8_t, kStunTcpMaxMessage> buffer_{};
    size_t have_ = 0;
    bool complete_ = false;  // buffer_ holds a whole message that next() returned
    std::optional<StunStreamError> error_;
};

// Why the server ends a STUN-over-TCP connection; one counter each.
enum class StunTcpClose : uint8_t {
    kDone,        // answered its last allowed request, or the client finished between messages
    kNotStun,     // StunStreamError::kNotStun
    kTooLong,     // StunStreamError::kTooLong
    kTruncated,   // the client ended (FIN or reset) inside a message
    kMalformed,   // a whole message that does not decode
    kNotRequest,  // a response, an indication or another method than Binding
    kTimeout,     // still open kStunTcpLifetime after it was accepted
    kFull,        // kStunTcpMaxConnections were open: closed as soon as accepted
    kCount
};
const char* to_string(StunTcpClose c);

struct StunTcpStats {
    uint64_t accepted = 0;  // connections served (not those closed kFull)
    uint64_t answered = 0;  // Binding answers written (success or 420)
    std::array<uint64_t, static_cast<size_t>(StunTcpClose::kCount)> closed{};
    uint64_t closed_by(StunTcpClose c) const { return closed[static_cast<size_t>(c)]; }
};

// What the executor does after an input: write `reply` (may be empty), then, when `close` is
// set, end the connection: kDone with a FIN after the reply, any other reason at once.
struct StunTcpOutput {
    Bytes reply;
    std::optional<StunTcpClose> close;
};

struct StunTcpLimits {
    size_t max_connections = kStunTcpMaxConnections;
    size_t max_requests = kStunTcpMaxRequests;
    Duration lifetime = kStunTcpLifetime;
};

class StunTcpServer {
  public:
    explicit StunTcpServer(std::string software, StunTcpLimits limits = {})
        : software_(std::move(software)), limits_(limits) {}

    // A connection was accepted from `peer`. False: too many are open; close it now (counted
    // kFull; do not call on_closed for it).
    bool on_open(ConnId id, const SocketAddress& peer, Time now);
    // Bytes the client sent.
    StunTcpOutput on_bytes(ConnId id, ByteView data);
    // The client's FIN.
    StunTcpOutput on_eof(ConnId id);
    // Connections past their lifetime, each counted kTimeout once: close them.
    std::vector<ConnId> on_timer(Time now);
    // The connection is gone, whoever closed it; a reset inside a message counts kTruncated.
    void on_closed(ConnId id);

    Time next_deadline() const;
    size_t open_count() const { return conns_.size(); }
    const StunTcpStats& stats() const { return stats_; }

  private:
    struct Conn {
        SocketAddress peer;
        Time deadline;
        StunStreamFramer framer;
        size_t requests = 0;
        bool closing = false;  // a close was decided; the executor's on_closed is awaited
    };
    StunTcpOutput close(Conn& c, StunTcpOutput out, StunTcpClose why);

    std::string software_;
    StunTcpLimits limits_;
    std::map<ConnId, Conn> conns_;
    StunTcpStats stats_;
};

// The client's side of one connection: a Binding request, then its answer read off the stream.
class StunTcpQuery {
  public:
    explicit StunTcpQuery(const StunTransactionId& txid) : txid_(txid) {}
    // The request to write: with FINGERPRINT, so that the answer carries one too.
    Bytes request() const;
    // Bytes the server sent. True once the query is over: mapped() or error() says how.
    bool on_bytes(ByteView data);
    // The server ended the connection (FIN or reset); the query is over.
    void on_closed();
    bool done() const { return mapped_.has_value() || !error_.empty(); }
    const std::optional<SocketAddress>& mapped() const { return mapped_; }
    const std::string& error() const { return error_; }

  private:
    StunTransactionId txid_;
    StunStreamFramer framer_;
    std::optional<SocketAddress> mapped_;
    std::string error_;
};

}  // namespace burrow
