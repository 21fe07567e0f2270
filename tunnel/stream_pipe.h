// StreamPipe: one forwarded TCP connection joined to one session stream, as a pure state
// machine (docs/architecture.md §4 "TCP semantics"). The agent's core (signal/agent_core.h) owns one per
// forwarded connection; src/ holds the socket and does what the pipe's actions say.
//
//   TCP bytes    -> Connection::write. src/ reads at most read_space() bytes at a time, so the
//                   stream takes all of them; when it has no room, reading pauses until
//                   StreamWritable: a slow peer slows the client, nothing buffers without bound.
//   stream bytes -> read_output() into src/'s buffer, then the socket, only while the socket's
//                   write queue has room; the rest stays in the stream, whose credit then stops
//                   flowing back to the peer.
//   TCP FIN      -> shutdown_write (after pending bytes);  StreamFinished -> our TCP FIN.
//   TCP error    -> reset_stream(kAborted);  StreamReset -> a TCP RST (kAborted) or a clean
//                   close (a refusal: the client sees an answer, the log says why).
//
// A pipe is done once both its stream (closed, reset) and its TCP side (closed, or never
// opened) are; the owner then forgets it. When the session goes, session_gone() ends the TCP
// side with an RST (its bytes can no longer be delivered) and never touches the session again.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "tunnel/bytes.h"
#include "tunnel/connection.h"
#include "tunnel/frame.h"

namespace burrow {

// What the TCP side must do next; src/ carries each out on its socket.
enum class PipeAction : uint8_t {
    kResumeReading,  // the stream has room: read (read_space() bytes at most)
    kPauseReading,   // the stream is full: stop reading until kResumeReading
    kFlush,          // stream bytes wait: read_output() while the socket's queue has room
    kShutdown,       // our FIN, after what is queued; report on_tcp_shutdown_done()
    kFinish,         // end as an answer (a refusal): FIN, read and discard the rest, close
    kClose,          // both directions are finished: close the socket
    kReset,          // end with an RST
};

// Why a pipe gave up, for one log line on this side.
enum class PipeNote : uint8_t {
    kRefusedByPeer,  // the peer reset the stream with a refusal (reset_reason())
    kResetByPeer,    // the peer aborted the stream
    kClientAborted,  // our TCP side closed before both directions finished
};

// "refused by the target", for log lines on both sides.
const char* reset_reason_text(ResetReason reason);
// Whether reason answers the connection (no such service, refused, not allowed) rather than
// aborting it: the TCP side then ends cleanly.
bool is_refusal(ResetReason reason);

class StreamPipe {
  public:
    // tcp_open: the TCP side exists already (an accepted connection); false: it is being
    // connected (on_tcp_connected or refuse() follows).
    StreamPipe(StreamId id, bool tcp_open) : id_(id), tcp_open_(tcp_open) {}

    StreamId id() const { return id_; }

    // --- the TCP side, from src/ ---
    void on_tcp_connected(Connection& conn);
    // The TCP side could not be made (the target refused): reset the stream with reason.
    // conn is null once the session is gone.
    void refuse(Connection* conn, ResetReason reason);
    // How many bytes the stream takes now; src/ reads no more than this.
    size_t read_space(const Connection& conn) const;
    void on_tcp_data(Connection& conn, ByteView data);
    void on_tcp_eof(Connection& conn);
    // Stream bytes for the socket: at most out.size(); 0 when none wait.
    size_t read_output(Connection& conn, MutableByteView out);
    void on_tcp_drained(Connection& conn);
    void on_tcp_shutdown_done();
    // The socket is gone; conn is null once the session is gone.
    void on_tcp_closed(Connection* conn);

    // --- the stream side, from the Connection's events ---
    void on_readable();
    void on_writable(Connection& conn);
    void on_finished();
    void on_reset(ResetReason reason);
    void on_closed();
    // The session is gone (closed, dead, agent stopping).
    void session_gone();

    std::optional<PipeAction> poll_action();
    // Set once, when the pipe ended the connection for a reason worth a log line.
    std::optional<PipeNote> note() const { return note_; }
    ResetReason reset_reason() const { return reset_reason_; }
    bool done() const { return stream_done_ && tcp_closed_; }

    uint64_t bytes_to_stream() const { return to_stream_; }
    uint64_t bytes_to_tcp() const { return to_tcp_; }

  private:
    void act(PipeAction a) { actions_.push_back(a); }
    void flush_pending(Connection& conn);
    void maybe_close_tcp();

    StreamId id_;
    bool tcp_open_;              // the socket exists (accepted, or connected)
    Bytes pending_;              // read from TCP beyond read_space(): kept in order
    size_t pending_head_ = 0;    // ... of which the stream took this many already
    bool has_pending() const { return pending_head_ < pending_.size(); }
    bool tcp_eof_ = false;       // the TCP client sent FIN
    bool fin_sent_ = false;      // we shut the stream's write side
    bool peer_fin_ = false;      // the stream delivered its FIN (every byte then read)
    bool tcp_shut_ = false;      // our TCP FIN was asked for
    bool tcp_fin_out_ = false;   // ... and has gone out
    bool tcp_closed_ = false;    // the TCP side is finished (or will never exist)
    bool stream_done_ = false;   // closed or reset
    bool want_flush_ = false;    // a kFlush is outstanding
    bool session_gone_ = false;  // the Connection must not be touched again
    std::optional<PipeNote> note_;
    ResetReason reset_reason_ = ResetReason::kAborted;
    std::deque<PipeAction> actions_;
    uint64_t to_stream_ = 0;
    uint64_t to_tcp_ = 0;
};

}  // namespace burrow
