// One forwarded TCP connection joined to one session stream (DESIGN.md §3 "TCP semantics").
//
//   TCP bytes   -> Connection::write; what the stream does not take waits in `pending_` and the
//                  TCP socket stops reading until StreamWritable: a slow peer slows the client.
//   stream bytes -> TcpConnection::write, never more than its write queue has room for; the rest
//                  stays in the stream, whose credit then stops flowing back to the peer.
//   TCP FIN     -> shutdown_write (after pending bytes);  StreamFinished -> TCP shutdown.
//   TCP error   -> reset_stream(kAborted);  StreamReset -> TCP RST (kAborted) or a plain close
//                  (the peer refused: the client sees a clean end, and the log says why).
//
// A bridge is done once both its stream (closed, reset) and its TCP side (closed, or never
// attached) are; it then tells its host, which drops it. The host (the session that owns the
// stream) outlives its bridges' use of it: when the session goes, it calls session_gone() on
// each bridge, which closes the TCP side and never touches the session again.
#pragma once

#include <memory>
#include <string>

#include "src/tcp.h"
#include "tunnel/connection.h"

namespace burrow {

// "refused by the target", for log lines on both sides.
const char* reset_reason_text(ResetReason reason);

class StreamBridge : public std::enable_shared_from_this<StreamBridge> {
  public:
    class Host {
      public:
        virtual ~Host() = default;
        virtual Connection& connection() = 0;
        // After the bridge gave the connection data, credit or a FIN: send what is due.
        virtual void kick() = 0;
        // The bridge is finished; the host drops its reference.
        virtual void bridge_done(StreamId id) = 0;
    };

    // label names the connection in logs: "forward 127.0.0.1:8080 -> nas/web".
    StreamBridge(Host& host, StreamId id, std::string label);

    // Joins the TCP side and starts moving bytes; data the stream already holds is written out.
    void attach(std::shared_ptr<TcpConnection> tcp);
    // The TCP side could not be made (the target refused): reset the stream with reason.
    void refuse(ResetReason reason);

    // --- stream events, from the session ---
    void on_readable();
    void on_writable();
    void on_finished();
    void on_reset(ResetReason reason);
    void on_closed();
    // The session is gone: close the TCP side (RST: its bytes can no longer be delivered).
    void session_gone();

    StreamId id() const { return id_; }
    const std::string& label() const { return label_; }
    uint64_t bytes_to_stream() const { return to_stream_; }
    uint64_t bytes_to_tcp() const { return to_tcp_; }

  private:
    void on_tcp_data(ByteView data);
    void on_tcp_eof();
    void on_tcp_drained();
    void on_tcp_closed(const std::string& reason);
    void flush_pending();
    void pump_to_tcp();
    void maybe_close_tcp();
    void maybe_done();

    Host* host_;
    StreamId id_;
    std::string label_;
    std::shared_ptr<TcpConnection> tcp_;
    Bytes pending_;  // read from TCP, not yet taken by the stream
    bool tcp_eof_ = false;       // the TCP client sent FIN
    bool fin_sent_ = false;      // we shut the stream's write side
    bool peer_fin_ = false;      // the stream delivered every byte and its FIN
    bool tcp_shut_ = false;      // our TCP FIN went out
    bool tcp_closed_ = false;    // the TCP side is finished (or will never exist)
    bool stream_done_ = false;   // closed or reset
    bool done_ = false;
    uint64_t to_stream_ = 0;
    uint64_t to_tcp_ = 0;
};

}  // namespace burrow
