// STUN over TCP on the server's two STUN port numbers (issue 15): the sockets around
// signal/stun_tcp.h's StunTcpServer, which decides everything. A listener per STUN address,
// beside its UDP socket; each accepted connection's bytes go to the core and its answers back.
// The core's deadline joins the server's one timer (src/server_runtime.cc asks next_deadline()
// and calls on_timer()).
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "signal/stun_tcp.h"
#include "src/clock.h"
#include "src/os_error.h"
#include "src/tcp.h"

namespace burrow {

class StunTcpService {
  public:
    // deadline_changed: the core's next deadline may be earlier now (a connection opened).
    StunTcpService(uv_loop_t* loop, const LoopClock& clock, std::string software,
                   std::function<void()> deadline_changed)
        : loop_(loop),
          clock_(clock),
          core_(std::move(software)),
          deadline_changed_(std::move(deadline_changed)) {}

    // Listens on `where` (TCP, the same address as a STUN UDP socket).
    std::optional<OsError> listen(const SocketAddress& where, bool v6_only);
    const std::vector<std::shared_ptr<TcpListener>>& listeners() const { return listeners_; }

    void on_timer(Time now);
    Time next_deadline() const { return core_.next_deadline(); }
    const StunTcpStats& stats() const { return core_.stats(); }
    // Closes the listeners and every connection.
    void stop();

  private:
    void on_accept(std::shared_ptr<TcpConnection> tcp);
    void apply(ConnId id, StunTcpOutput out);

    uv_loop_t* loop_;
    const LoopClock& clock_;
    StunTcpServer core_;
    std::function<void()> deadline_changed_;
    std::vector<std::shared_ptr<TcpListener>> listeners_;
    std::map<ConnId, std::shared_ptr<TcpConnection>> conns_;
    ConnId next_id_ = 1;
};

}  // namespace burrow
