// TLS 1.2 over a libuv TCP connection, with mbedTLS: the agents' control connection to the
// signalling server (docs/architecture.md §6).
//
// mbedTLS never touches the socket. Its BIO callbacks move bytes between the TCP connection
// (src/tcp.h) and the TLS engine: ciphertext read from the socket is offered to
// mbedtls_ssl_read/handshake until they say WANT_READ, and every record mbedTLS produces is
// handed to the TCP write queue at once.
//
// Policy, not negotiable by configuration: TLS 1.2 or newer, ECDHE-ECDSA with AEAD ciphers
// only, no renegotiation, and no way to skip verifying the server: a client either pins the
// server certificate's SHA-256 fingerprint (constant-time compare) or checks it against a CA
// file. A mismatch fails the handshake with one log line:
//
//   tls 203.0.113.7:7000: server certificate fingerprint sha256:ab.. does not match the pinned
//   sha256:cd..
//
// Handshake and protocol failures are logged here, once (error on a client, info on a server,
// where strangers probing the port are routine); on_closed carries the same reason, so the
// owner need not log it again. Connect failures and resets are left to the owner.
//
// Lifetime: like TcpConnection. After start(), on_closed(reason) is the last callback, always
// delivered from the loop (never from inside a method of ours); the object stays usable (as an
// inert one) as long as someone holds the shared_ptr. No callback runs before start().
#pragma once

#include <mbedtls/ssl.h>
#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "tunnel/socket_address.h"
#include "src/os_error.h"
#include "src/tcp.h"
#include "tunnel/bytes.h"
#include "tunnel/time.h"

namespace burrow {

struct TlsClientConfig {
    // Exactly one of these two says how the server is trusted.
    std::string pinned_fingerprint;  // "sha256:<64 hex>" of the server's DER certificate
    std::string ca_file;             // PEM certificates of the CAs we trust
    // Sent as SNI; with ca_file, the name the server certificate must carry.
    std::string server_name;
    // RFC 6066 maximum fragment length to ask for (512, 1024, 2048 or 4096; 0 = don't ask).
    // It does not save memory with Debian's mbedTLS 2.28 (buffers are fixed at 16 KiB); see
    // the measurement in tests/unit/tls_test.cc. What does: release_buffers_after below.
    unsigned max_fragment_length = 0;
};

// Shared, read-only TLS configuration: one for the server, one per server a client talks to.
class TlsContext {
  public:
    static std::variant<std::shared_ptr<TlsContext>, OsError> server(const std::string& cert_file,
                                                                     const std::string& key_file);
    static std::variant<std::shared_ptr<TlsContext>, OsError> client(const TlsClientConfig& config);
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    bool is_server() const;
    // The server's own certificate fingerprint (empty for a client context).
    const std::string& fingerprint() const;

    struct Impl;

  private:
    TlsContext();
    friend class TlsConnection;
    std::unique_ptr<Impl> impl_;
};

struct TlsOptions {
    Duration connect_timeout = std::chrono::seconds(10);  // client: the TCP connect
    // From the first TCP byte to the end of the handshake; a peer that has not finished by
    // then (a silent or trickling client holding a slot) is disconnected.
    Duration handshake_timeout = std::chrono::seconds(10);
    // Bytes a peer may send before its handshake completes. Honest flights are small (a
    // ClientHello and a key exchange are well under 1 KiB; a server with a long CA chain sends
    // a few KiB), so this stops a peer that feeds us handshake traffic without end. mbedTLS
    // itself holds at most one partial record (16 KiB plus header) at a time.
    size_t max_handshake_bytes = 64 * 1024;
    // write() refuses beyond this many bytes not yet taken by the kernel (plaintext queued
    // before the handshake included); on_writable follows when half of it has drained.
    size_t max_write_buffer = 256 * 1024;
    // How long our last records (close_notify, an alert) may take to leave before we close
    // regardless.
    Duration close_linger = std::chrono::seconds(2);
    // An open connection that has moved no record for between one and two of these gives the
    // pages of its two 16 KiB record buffers back to the kernel (docs/architecture.md §6: an
    // idle agent's control connection costs a server about 5 KiB instead of 37). Zero keeps
    // them resident.
    Duration release_buffers_after = std::chrono::seconds(1);
    // Client: leave from this local port, shared with the agent's peer listener
    // (TcpOptions::reuse_port; issue 15). 0: any port.
    uint16_t local_port = 0;
};

struct TlsCallbacks {
    std::function<void()> on_connected;  // handshake done and the server verified
    std::function<void(ByteView data)> on_data;
    std::function<void()> on_writable;  // a refused write() may be retried
    std::function<void(const std::string& reason)> on_closed;
};

class TlsConnection : public std::enable_shared_from_this<TlsConnection> {
  public:
    // Server side of an accepted TCP connection.
    static std::shared_ptr<TlsConnection> accept(std::shared_ptr<TcpConnection> tcp,
                                                 std::shared_ptr<TlsContext> context,
                                                 TlsOptions options = {});
    // Client side: connects to server, then shakes hands. Connect failures arrive as
    // on_closed("connect 192.0.2.1:7000: connection refused").
    static std::shared_ptr<TlsConnection> connect(uv_loop_t* loop, const SocketAddress& server,
                                                  std::shared_ptr<TlsContext> context,
                                                  TlsOptions options = {});
    ~TlsConnection();
    TlsConnection(const TlsConnection&) = delete;
    TlsConnection& operator=(const TlsConnection&) = delete;

    void start(TlsCallbacks callbacks);

    // Encrypts and queues data; before the handshake completes it is held and sent right
    // after. False when closing, or when it would go beyond max_write_buffer (then nothing is
    // queued and on_writable follows); a write into an empty buffer is always taken whole.
    bool write(ByteView data);
    size_t buffered_bytes() const;

    // Stop and restart delivering on_data (and reading the socket). resume_reading() may
    // deliver data held back before it returns.
    void pause_reading();
    void resume_reading();

    // Graceful: close_notify, then FIN once everything queued has gone out, then close.
    void close();

    bool is_established() const { return state_ == State::kOpen; }
    const SocketAddress& peer_address() const { return peer_; }
    // "TLSv1.2 TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256" once established.
    std::string protocol() const;

    // Bytes of the record buffers that are resident in memory now (mincore), and how many
    // times idle buffers were given back: for tests and benchmarks.
    size_t resident_record_bytes() const;
    uint64_t buffer_releases() const { return buffer_releases_; }

  private:
    enum class State { kIdle, kConnecting, kHandshake, kOpen, kClosing, kClosed };

    TlsConnection(std::shared_ptr<TlsContext> context, TlsOptions options);
    void on_tcp_connected(std::shared_ptr<TcpConnection> tcp, const OsError& error);
    void attach(std::shared_ptr<TcpConnection> tcp);
    void on_ciphertext(ByteView bytes);
    void on_peer_eof();
    void on_tcp_drained();
    void on_tcp_closed(const std::string& reason);
    void drive();
    void finish_handshake();
    void read_records();
    void keep_leftover();
    bool encrypt(ByteView data);
    void maybe_writable();
    void note_activity();
    void on_idle_timer();
    bool release_record_buffers();
    void fail(const std::string& reason);
    void begin_close(const std::string& reason);
    void deliver_closed(const std::string& reason);
    std::string handshake_error(int rc);
    static int bio_send(void* self, const unsigned char* buf, size_t len);
    static int bio_recv(void* self, unsigned char* buf, size_t len);
    static int verify_pinned(void* self, mbedtls_x509_crt* crt, int depth, uint32_t* flags);

    std::shared_ptr<TlsContext> context_;
    TlsOptions options_;
    std::shared_ptr<TcpConnection> tcp_;
    uv_loop_t* loop_ = nullptr;  // client: where to connect
    SocketAddress peer_;
    TlsCallbacks callbacks_;
    State state_ = State::kIdle;
    mbedtls_ssl_context ssl_;
    bool ssl_ready_ = false;  // mbedtls_ssl_setup done (its buffers allocated)
    ByteView feed_;           // the TCP read being processed
    Bytes backlog_;           // ciphertext received but not yet consumed by mbedTLS
    size_t backlog_pos_ = 0;
    Bytes pending_plaintext_;     // written before the handshake completed
    size_t handshake_bytes_ = 0;  // received from the peer during the handshake
    bool pin_matched_ = false;
    std::string verify_failure_;  // set by verify_pinned
    bool paused_ = false;
    bool write_blocked_ = false;
    std::string close_reason_;
    bool idle_timer_armed_ = false;
    bool active_since_timer_ = false;  // a record moved since the idle timer was armed
    uint64_t buffer_releases_ = 0;
};

}  // namespace burrow
