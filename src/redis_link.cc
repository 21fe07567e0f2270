#include "src/redis_link.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <vector>

namespace burrow {
namespace {

std::string ip_text(const SocketAddress& a) {
    std::string text = to_string(a);
    text.resize(text.rfind(':'));
    if (a.v6) text = text.substr(1, text.size() - 2);  // "[::1]" -> "::1"
    return text;
}

std::string seconds_text(Duration d) {
    return std::to_string(to_ms(d) / 1000.0).substr(0, 4) + " s";
}

RedisReply convert(const redisReply* r) {
    RedisReply out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
            out.kind = RedisReply::Kind::kString;
            out.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.kind = RedisReply::Kind::kInteger;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_NIL:
            out.kind = RedisReply::Kind::kNil;
            break;
        case REDIS_REPLY_ERROR:
            out.kind = RedisReply::Kind::kError;
            out.text.assign(r->str, r->len);
            break;
        default:
            out.kind = RedisReply::Kind::kOther;
            break;
    }
    return out;
}

bool element_is(const redisReply* r, size_t i, std::string_view text) {
    return r->elements > i && r->element[i]->type == REDIS_REPLY_STRING &&
           std::string_view(r->element[i]->str, r->element[i]->len) == text;
}

}  // namespace

RedisLink::RedisLink(uv_loop_t* loop, SocketAddress redis, std::string channel,
                     Handlers handlers)
    : loop_(loop),
      address_(redis),
      where_(to_string(redis)),
      channel_(std::move(channel)),
      handlers_(std::move(handlers)) {
    retry_ = new uv_timer_t;
    uv_timer_init(loop_, retry_);
    retry_->data = this;
    dial();
}

RedisLink::~RedisLink() { close(); }

void RedisLink::dial() {
    if (closed_) return;
    const std::string ip = ip_text(address_);
    for (redisAsyncContext** slot : {&commands_, &subscriber_}) {
        redisAsyncContext* ctx = redisAsyncConnect(ip.c_str(), address_.port);
        if (ctx == nullptr || ctx->err) {
            const std::string why = ctx ? ctx->errstr : "out of memory";
            if (ctx) redisAsyncFree(ctx);
            lost(nullptr, why);
            return;
        }
        ctx->data = this;
        // Notices a Redis host that vanished without closing the connection.
        redisEnableKeepAlive(&ctx->c);
        redisLibuvAttach(ctx, loop_);
        redisAsyncSetConnectCallback(ctx, &RedisLink::on_connect);
        redisAsyncSetDisconnectCallback(ctx, &RedisLink::on_disconnect);
        *slot = ctx;
    }
}

void RedisLink::on_connect(const redisAsyncContext* ctx, int status) {
    auto* self = static_cast<RedisLink*>(ctx->data);
    if (self->closed_ || (ctx != self->commands_ && ctx != self->subscriber_)) return;
    if (status != REDIS_OK) {
        // hiredis frees the context after this callback.
        if (ctx == self->commands_) self->commands_ = nullptr;
        if (ctx == self->subscriber_) self->subscriber_ = nullptr;
        self->lost(nullptr, ctx->errstr);
        return;
    }
    if (ctx == self->commands_) {
        self->commands_open_ = true;
    } else {
        const char* argv[] = {"SUBSCRIBE", self->channel_.c_str()};
        const size_t lens[] = {9, self->channel_.size()};
        redisAsyncCommandArgv(self->subscriber_, &RedisLink::on_subscription, nullptr, 2, argv,
                              lens);
    }
    self->check_up();
}

void RedisLink::on_disconnect(const redisAsyncContext* ctx, int) {
    auto* self = static_cast<RedisLink*>(ctx->data);
    if (self->closed_ || (ctx != self->commands_ && ctx != self->subscriber_)) return;
    // hiredis frees the context after this callback.
    if (ctx == self->commands_) self->commands_ = nullptr;
    if (ctx == self->subscriber_) self->subscriber_ = nullptr;
    self->lost(nullptr, ctx->err ? ctx->errstr : "connection closed");
}

void RedisLink::on_subscription(redisAsyncContext* ctx, void* reply, void*) {
    auto* self = static_cast<RedisLink*>(ctx->data);
    auto* r = static_cast<redisReply*>(reply);
    if (r == nullptr || self->closed_ || ctx != self->subscriber_) return;
    if (r->type != REDIS_REPLY_ARRAY) return;
    if (element_is(r, 0, "subscribe")) {
        self->subscribed_ = true;
        self->check_up();
    } else if (element_is(r, 0, "message") && r->elements == 3 &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        if (self->handlers_.message) {
            self->handlers_.message(ByteView(reinterpret_cast<const uint8_t*>(r->element[2]->str),
                                             r->element[2]->len));
        }
    }
}

void RedisLink::on_command_reply(redisAsyncContext* ctx, void* reply, void* privdata) {
    auto* self = static_cast<RedisLink*>(ctx->data);
    auto* r = static_cast<redisReply*>(reply);
    // No reply: the connection went away; on_disconnect tells the core, which fails what waits.
    if (r == nullptr || self->closed_) return;
    const auto tag = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(privdata));
    if (tag != 0 && self->handlers_.reply) self->handlers_.reply(tag, convert(r));
}

void RedisLink::check_up() {
    if (up_ || !commands_open_ || !subscribed_) return;
    up_ = true;
    down_logged_ = false;
    backoff_.reset();
    spdlog::info("cluster: connected to Redis at {}{}", where_, ever_up_ ? " again" : "");
    ever_up_ = true;
    if (handlers_.up) handlers_.up();
}

void RedisLink::lost(const redisAsyncContext*, const std::string& why) {
    if (closed_) return;
    const bool was_up = up_;
    up_ = false;
    commands_open_ = false;
    subscribed_ = false;
    // Both connections start over together; null the pointers first, since freeing runs
    // their callbacks.
    for (redisAsyncContext** slot : {&commands_, &subscriber_}) {
        if (redisAsyncContext* ctx = *slot) {
            *slot = nullptr;
            redisAsyncFree(ctx);
        }
    }
    const Duration delay = backoff_.next_delay(rng_);
    if (!down_logged_) {
        spdlog::warn("cluster: Redis at {} {}: {}; retrying (connects to agents on other "
                     "servers fail meanwhile)",
                     where_, was_up ? "lost" : "unreachable", why);
        down_logged_ = true;
    } else {
        spdlog::debug("cluster: Redis at {} still unreachable: {}; next try in {}", where_, why,
                      seconds_text(delay));
    }
    if (was_up && handlers_.down) handlers_.down();
    if (closed_) return;
    uv_timer_start(
        retry_, [](uv_timer_t* t) { static_cast<RedisLink*>(t->data)->dial(); },
        static_cast<uint64_t>(to_ms(delay)), 0);
}

void RedisLink::send(const RedisCommand& command) {
    if (!up_ || commands_ == nullptr) {
        spdlog::debug("cluster: Redis down, {} not sent", command.args.empty() ? "" : command.args[0]);
        return;
    }
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : command.args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    redisAsyncCommandArgv(commands_, &RedisLink::on_command_reply,
                          reinterpret_cast<void*>(static_cast<uintptr_t>(command.tag)),
                          static_cast<int>(argv.size()), argv.data(), lens.data());
}

void RedisLink::close() {
    if (closed_) return;
    closed_ = true;
    up_ = false;
    for (redisAsyncContext** slot : {&commands_, &subscriber_}) {
        if (redisAsyncContext* ctx = *slot) {
            *slot = nullptr;
            redisAsyncFree(ctx);
        }
    }
    uv_timer_stop(retry_);
    uv_close(reinterpret_cast<uv_handle_t*>(retry_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    retry_ = nullptr;
}

}  // namespace burrow
