// Datagrams on a byte stream: a length in front of each, so that a TCP connection can carry
// what is otherwise a sequence of UDP datagrams. Sans-IO (docs/architecture.md §2).
//
//    0                   1                   2
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   | length (2 or 4 bytes, big-endian) | frame ... |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Two users, one reassembly:
//   - the control connection to the server (signal/control.h): a 4-byte length, frames of
//     2 bytes up to kMaxControlFrame;
//   - a direct TCP path between two agents (docs/architecture.md §4 "Paths"): a 2-byte length
//     in front of each session datagram (handshake, probe or data packet), as RFC 4571 frames
//     RTP and RTCP packets on TCP; frames of 1 byte up to kMaxTcpPathFrame.
//
//   deframer.feed(bytes);                        // any split, any coalescing
//   while (auto frame = deframer.next()) use(*frame);
//   if (deframer.error()) close the connection;  // and count the reason
//   on the stream's end: if (deframer.finish()) count a truncated frame
//
// A frame's length is checked as soon as its length bytes arrive, so an oversized frame is
// refused before its body is buffered; the buffer never holds more than one frame beyond what
// was fed in one call. After an error the deframer stays failed and ignores input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "tunnel/bytes.h"

namespace burrow {

// RFC 4571 §2: a 16-bit length in front of each packet.
inline constexpr size_t kTcpPathLengthSize = 2;
// Largest session datagram a direct TCP path carries: far above the largest one the session
// builds (ConnectionConfig::max_datagram_size, 1350 bytes; handshake messages are smaller), and
// small enough that a peer cannot make us buffer more than a few KiB per connection before we
// see it misbehave.
inline constexpr size_t kMaxTcpPathFrame = 4096;

// Why a stream of frames cannot be read on: the caller closes the connection and counts it.
enum class DeframeError : uint8_t {
    kOversized,  // a length above the cap (or below the minimum: 0 on a TCP path)
    kTruncated,  // the stream ended inside a frame
};
const char* to_string(DeframeError e);

class StreamDeframer {
  public:
    // length_size is 2 or 4; frames shorter than min_frame or longer than max_frame are errors.
    StreamDeframer(size_t length_size, size_t min_frame, size_t max_frame);

    // The cap applies to frames not yet returned by next().
    void set_max_frame(size_t max_frame) { max_frame_ = max_frame; }
    void feed(ByteView bytes);
    // The next whole frame, without its length; valid until the next feed() or next(). The
    // caller may change its bytes (a session packet is opened in place).
    std::optional<MutableByteView> next();
    // The stream ended: kTruncated (and failed from now on) when part of a frame was buffered.
    std::optional<DeframeError> finish();
    std::optional<DeframeError> error() const { return error_; }
    // Bytes received but not yet returned as frames.
    size_t buffered() const { return buffer_.size() - read_pos_; }

  private:
    void fail(DeframeError e);
    void compact();

    size_t length_size_;
    size_t min_frame_;
    size_t max_frame_;
    Bytes buffer_;
    size_t read_pos_ = 0;  // consumed prefix of buffer_, dropped when it is worth the move
    std::optional<DeframeError> error_;
};

// The length in front of a frame of `size` bytes, for a writer: length_size bytes into out.
// Precondition: size fits in length_size bytes.
void write_frame_length(size_t length_size, size_t size, MutableByteView out);

// One datagram framed for a TCP path (length + bytes) appended to out, as a writer batches
// them; false, and out unchanged, when it is empty or longer than kMaxTcpPathFrame.
bool append_tcp_path_frame(ByteView datagram, Bytes& out);
// The same as a frame of its own, or nullopt.
std::optional<Bytes> frame_for_tcp_path(ByteView datagram);

}  // namespace burrow
