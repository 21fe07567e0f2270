// The server's link to Redis for a [cluster] section: two hiredis async connections driven by
// the libuv loop through hiredis's libuv adapter (the loop never blocks on Redis), one for
// commands and one SUBSCRIBEd to this server's channel (a subscribed connection takes no
// other commands). The cluster's decisions are ClusterCore's (signal/cluster_core.h); this
// file only runs its RedisCommands and reports replies, messages and reachability.
//
// "Up" means both connections are open and the subscription is confirmed. Losing either
// connection is "down": both are closed, and both are dialled again after a delay from
// ReconnectBackoff (signal/reconnect_backoff.h), until Redis answers. Going down and coming
// back each log one line; failed attempts in between log at debug level only.
//
// The address is an IP literal (config/ insists): hiredis resolves names with a blocking
// getaddrinfo, which would stall the loop.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "signal/cluster_core.h"
#include "signal/reconnect_backoff.h"
#include "src/system_rng.h"
#include "tunnel/socket_address.h"

struct redisAsyncContext;

namespace burrow {

class RedisLink {
  public:
    struct Handlers {
        std::function<void()> up;
        std::function<void()> down;
        std::function<void(uint64_t tag, const RedisReply& reply)> reply;
        std::function<void(ByteView payload)> message;
    };

    // Dials at once. The object must outlive the loop's run (close() first).
    RedisLink(uv_loop_t* loop, SocketAddress redis, std::string channel, Handlers handlers);
    ~RedisLink();
    RedisLink(const RedisLink&) = delete;
    RedisLink& operator=(const RedisLink&) = delete;

    bool up() const { return up_; }
    // Dropped (with a debug line) while down: the core knows, and fails what depends on it.
    void send(const RedisCommand& command);
    // Closes both connections and the retry timer; no handler runs afterwards.
    void close();

  private:
    static void on_connect(const redisAsyncContext* ctx, int status);
    static void on_disconnect(const redisAsyncContext* ctx, int status);
    static void on_command_reply(redisAsyncContext* ctx, void* reply, void* privdata);
    static void on_subscription(redisAsyncContext* ctx, void* reply, void* privdata);

    void dial();
    // One of the connections failed or ended: everything goes down and a retry is scheduled.
    void lost(const redisAsyncContext* ctx, const std::string& why);
    void check_up();

    uv_loop_t* loop_;
    SocketAddress address_;
    std::string where_;  // "127.0.0.1:6379" for the log
    std::string channel_;
    Handlers handlers_;
    redisAsyncContext* commands_ = nullptr;
    redisAsyncContext* subscriber_ = nullptr;
    bool commands_open_ = false;
    bool subscribed_ = false;
    bool up_ = false;
    bool ever_up_ = false;
    bool down_logged_ = false;
    bool closed_ = false;
    uv_timer_t* retry_ = nullptr;  // freed in its close callback
    ReconnectBackoff backoff_;
    SystemRng rng_;
};

}  // namespace burrow
