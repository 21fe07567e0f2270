// `burrow netcheck`'s TCP mapping test (issue 15): does this NAT keep a TCP connection's
// public port across destinations, which direct TCP punching needs (docs/architecture.md §4)?
//
// From one local port P (SO_REUSEADDR + SO_REUSEPORT, as the agent's control connection and
// its peer listener share theirs, src/tcp.h), a TCP connection to the server's first STUN port
// asks for its mapped address with a Binding request (signal/stun_tcp.h); then, the first
// still open, a second from the same P to the server's second STUN port. One mapped port both
// times: endpoint-independent; two: per destination. Each step (connect, answer) is given
// kNetcheckTcpStepTimeout; a server that does not answer STUN over TCP (an older one, or a
// filter) is a finding of the report, not a failure of netcheck.
#pragma once

#include <uv.h>

#include <array>
#include <memory>

#include "signal/stun_tcp.h"
#include "src/netcheck_report.h"
#include "src/tcp.h"
#include "tunnel/rng.h"

namespace burrow {

// A connect or an answer on loopback or across the internet takes well under a second; the
// kernel resends a lost SYN after 1 s, so 2 s allows one loss.
inline constexpr Duration kNetcheckTcpStepTimeout = std::chrono::seconds(2);

class NetcheckTcpTest {
  public:
    // to: the server's two STUN ports (one family).
    NetcheckTcpTest(uv_loop_t* loop, const std::array<SocketAddress, 2>& to, Rng& rng);
    // Starts on the loop; the loop's run ends when it has finished (no handle stays open).
    void start();
    const NetcheckTcp& result() const { return result_; }

  private:
    void connect(size_t i);
    void on_connected(size_t i, std::shared_ptr<TcpConnection> c, const OsError& error);
    void answered(size_t i);
    void finish(const std::string& error);

    uv_loop_t* loop_;
    std::array<SocketAddress, 2> to_;
    std::array<std::unique_ptr<StunTcpQuery>, 2> queries_;
    std::array<std::shared_ptr<TcpConnection>, 2> conns_;
    NetcheckTcp result_;
    bool finished_ = false;
};

}  // namespace burrow
