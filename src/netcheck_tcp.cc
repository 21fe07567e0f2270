#include "src/netcheck_tcp.h"

#include <chrono>
#include <string>

namespace burrow {

NetcheckTcpTest::NetcheckTcpTest(uv_loop_t* loop, const std::array<SocketAddress, 2>& to,
                                 Rng& rng)
    : loop_(loop), to_(to) {
    for (auto& q : queries_) {
        StunTransactionId txid;
        rng.fill(txid);
        q = std::make_unique<StunTcpQuery>(txid);
    }
    result_.asked = true;
    result_.server_ports = {to[0].port, to[1].port};
}

void NetcheckTcpTest::start() {
    connect(0);
}

void NetcheckTcpTest::connect(size_t i) {
    TcpOptions options;
    options.reuse_port = true;
    options.local_port = result_.local_port;  // 0 for the first: any port, then kept
    tcp_connect(
        loop_, to_[i], kNetcheckTcpStepTimeout,
        [this, i](std::shared_ptr<TcpConnection> c, OsError error) {
            on_connected(i, std::move(c), error);
        },
        options);
}

void NetcheckTcpTest::on_connected(size_t i, std::shared_ptr<TcpConnection> c,
                                   const OsError& error) {
    if (finished_) {
        if (c) c->close();
        return;
    }
    if (!c) return finish(error.message);
    conns_[i] = c;
    if (i == 0) result_.local_port = c->local_address().port;
    StunTcpQuery& q = *queries_[i];
    c->start(TcpCallbacks{
        .on_data =
            [this, i](ByteView data) {
                if (finished_ || queries_[i]->done()) return;
                if (queries_[i]->on_bytes(data)) answered(i);
            },
        .on_eof =
            [this, i] {
                if (finished_ || queries_[i]->done()) return;
                queries_[i]->on_closed();
                answered(i);
            },
        .on_drained = {},
        .on_closed =
            [this, i](const std::string& reason) {
                conns_[i].reset();
                if (finished_ || queries_[i]->done()) return;
                queries_[i]->on_closed();
                finish(to_string(to_[i]) + ": " + reason);
            },
    });
    c->set_timer(kNetcheckTcpStepTimeout, [this, i] {
        if (!finished_) {
            finish("no answer in " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      kNetcheckTcpStepTimeout)
                                      .count()) +
                   " ms");
        }
    });
    c->write(q.request());
}

void NetcheckTcpTest::answered(size_t i) {
    const StunTcpQuery& q = *queries_[i];
    if (!q.mapped()) return finish(q.error());
    result_.mapped[i] = q.mapped();
    if (i == 0) {
        // The first connection stays open: its mapping must exist while the second is made.
        connect(1);
    } else {
        finish("");
    }
}

void NetcheckTcpTest::finish(const std::string& error) {
    if (finished_) return;
    finished_ = true;
    result_.error = error;
    for (auto& c : conns_) {
        if (c) {
            auto keep = c;
            keep->close();
        }
    }
}

}  // namespace burrow
