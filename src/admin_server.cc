#include "src/admin_server.h"

#include <http_parser.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <utility>

#include "src/log.h"

namespace burrow {

namespace {

constexpr std::array<uint8_t, kIpv4Size> kLoopback4 = {127, 0, 0, 1};

const http_parser_settings& request_settings();

}  // namespace

SocketAddress default_admin_address() {
    return SocketAddress::ipv4(kLoopback4, kDefaultAdminPort);
}

// One connection and the request on it.
struct AdminServer::Exchange {
    std::shared_ptr<TcpConnection> connection;
    http_parser parser;
    std::string url;
    size_t header_bytes = 0;  // fed to the parser before the headers ended
    bool received_any = false;
    bool headers_done = false;
    bool responded = false;  // the connection is finishing (TcpConnection::finish)
    uint64_t serial = 0;
    bool awaiting = false;  // an AsyncHandler took the request: its reply is the response
};

namespace {

int on_url(http_parser* parser, const char* at, size_t length) {
    // Bounded: the parser only sees max_header_bytes before the headers end.
    static_cast<std::string*>(parser->data)->append(at, length);
    return 0;
}

int on_headers_complete(http_parser* parser) {
    // Stop here: we answer from the request line and headers alone, and whatever follows
    // (a body, a second request) is read and dropped, never parsed.
    http_parser_pause(parser, 1);
    return 0;
}

const http_parser_settings& request_settings() {
    static const http_parser_settings settings = [] {
        http_parser_settings s;
        http_parser_settings_init(&s);
        s.on_url = on_url;
        s.on_headers_complete = on_headers_complete;
        return s;
    }();
    return settings;
}

std::string error_body(std::string_view what) {
    return "{\"error\":\"" + std::string(what) + "\"}\n";
}

}  // namespace

std::variant<std::shared_ptr<AdminServer>, OsError> AdminServer::listen(
    uv_loop_t* loop, const SocketAddress& local, Handler handler, AdminServerOptions options) {
    std::shared_ptr<AdminServer> server(new AdminServer(std::move(handler), options));
    std::weak_ptr<AdminServer> weak = server;
    auto listened = TcpListener::listen(loop, local, [weak](std::shared_ptr<TcpConnection> c) {
        if (auto s = weak.lock()) {
            s->on_accept(std::move(c));
        } else {
            c->close();
        }
    });
    if (auto* err = std::get_if<OsError>(&listened)) return *err;
    server->listener_ = std::get<std::shared_ptr<TcpListener>>(std::move(listened));
    server->local_ = server->listener_->local_address();
    return server;
}

AdminServer::AdminServer(Handler handler, AdminServerOptions options)
    : handler_(std::move(handler)), options_(options) {}

AdminServer::~AdminServer() {
    close();
}

void AdminServer::close() {
    if (listener_) listener_->close();
    listener_.reset();
    // Each on_closed comes later from the loop and erases its own entry.
    for (auto& [raw, exchange] : exchanges_) exchange->connection->close();
}

void AdminServer::on_accept(std::shared_ptr<TcpConnection> connection) {
    if (exchanges_.size() >= options_.max_connections) {
        ++stats_.over_capacity;
        spdlog::debug("admin {}: {} connections open, closing a new one",
                      to_string(connection->peer_address()), exchanges_.size());
        connection->close();
        return;
    }
    auto owned = std::make_unique<Exchange>();
    Exchange* exchange = owned.get();
    TcpConnection* raw = connection.get();
    exchange->connection = std::move(connection);
    exchange->serial = next_serial_++;
    http_parser_init(&exchange->parser, HTTP_REQUEST);
    exchange->parser.data = &exchange->url;
    exchanges_.emplace(raw, std::move(owned));

    // While the server lives, exchange lives: it is erased only by on_closed, the
    // connection's last callback.
    std::weak_ptr<AdminServer> weak = weak_from_this();
    raw->set_timer(options_.request_timeout, [weak, exchange] {
        auto self = weak.lock();
        if (!self) return;
        ++self->stats_.timed_out;
        spdlog::debug(
            "admin {}: no complete request within {} ms",
            to_string(exchange->connection->peer_address()),
            std::chrono::duration_cast<std::chrono::milliseconds>(self->options_.request_timeout)
                .count());
        exchange->connection->close();
    });
    raw->start(TcpCallbacks{
        .on_data =
            [weak, exchange](ByteView data) {
                if (auto self = weak.lock()) self->on_data(*exchange, data);
            },
        .on_eof =
            [weak, exchange] {
                auto self = weak.lock();
                if (!self) return;
                if (exchange->responded || exchange->awaiting) return;
                if (!exchange->received_any) {  // connected and left: not a request at all
                    exchange->connection->close();
                    return;
                }
                ++self->stats_.bad_request;  // the request stopped half way
                self->respond(*exchange, 400, "Bad Request", error_body("incomplete request"),
                              false);
            },
        .on_drained = nullptr,
        .on_closed =
            [weak, raw](const std::string&) {
                if (auto self = weak.lock()) self->exchanges_.erase(raw);
            },
    });
}

void AdminServer::on_data(Exchange& exchange, ByteView data) {
    // Awaiting: the request is complete; whatever follows is read and dropped.
    if (exchange.responded || exchange.awaiting) return;
    exchange.received_any = true;
    // Never let the parser see more than the header budget, so an oversized request is
    // refused here however it is split into reads.
    const size_t room = options_.max_header_bytes - exchange.header_bytes;
    const size_t n = std::min(room, data.size());
    http_parser_execute(&exchange.parser, &request_settings(),
                        reinterpret_cast<const char*>(data.data()), n);
    if (exchange.parser.http_errno == HPE_PAUSED) {
        answer(exchange);
        return;
    }
    if (exchange.parser.http_errno != HPE_OK) {
        ++stats_.bad_request;
        const auto error = static_cast<http_errno>(exchange.parser.http_errno);
        spdlog::debug("admin {}: bad request ({})",
                      to_string(exchange.connection->peer_address()),
                      http_errno_description(error));
        respond(exchange, 400, "Bad Request", error_body("bad request"), false);
        return;
    }
    exchange.header_bytes += n;
    if (exchange.header_bytes >= options_.max_header_bytes) {
        ++stats_.headers_too_large;
        respond(exchange, 431, "Request Header Fields Too Large",
                error_body("request headers too large"), false);
    }
}

void AdminServer::answer(Exchange& exchange) {
    const auto method = static_cast<http_method>(exchange.parser.method);
    const bool head = method == HTTP_HEAD;
    if (method != HTTP_GET && !head) {
        ++stats_.method_not_allowed;
        respond(exchange, 405, "Method Not Allowed", error_body("only GET and HEAD"), false,
                "Allow: GET, HEAD\r\n");
        return;
    }
    http_parser_url url;
    http_parser_url_init(&url);
    if (http_parser_parse_url(exchange.url.data(), exchange.url.size(), 0, &url) != 0) {
        ++stats_.bad_request;
        respond(exchange, 400, "Bad Request", error_body("bad request target"), head);
        return;
    }
    std::string_view path = "/";
    if (url.field_set & (1u << UF_PATH)) {
        path = std::string_view(exchange.url).substr(url.field_data[UF_PATH].off,
                                                     url.field_data[UF_PATH].len);
    }
    const std::optional<AdminResponse> body = handler_(path);
    if (!body && async_handler_) {
        std::weak_ptr<AdminServer> weak = weak_from_this();
        TcpConnection* raw = exchange.connection.get();
        const uint64_t serial = exchange.serial;
        // Set first: the reply may come before the handler returns.
        exchange.awaiting = true;
        const bool taken = async_handler_(path, [weak, raw, serial, head](AdminResponse r) {
            auto self = weak.lock();
            if (!self) return;
            auto it = self->exchanges_.find(raw);
            if (it == self->exchanges_.end() || it->second->serial != serial ||
                it->second->responded) {
                return;  // closed, timed out, or a new connection at the same address
            }
            ++self->stats_.served;
            self->respond(*it->second, 200, "OK", r.body, head, r.headers, r.content_type);
        });
        if (taken) return;
        exchange.awaiting = false;
    }
    if (!body) {
        ++stats_.not_found;
        respond(exchange, 404, "Not Found", error_body("not found"), head);
        return;
    }
    ++stats_.served;
    respond(exchange, 200, "OK", body->body, head, body->headers, body->content_type);
}

void AdminServer::respond(Exchange& exchange, int status, std::string_view reason,
                          std::string_view body, bool head_only, std::string_view extra_headers,
                          std::string_view content_type) {
    exchange.responded = true;
    std::string response = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                           "\r\nContent-Type: " + std::string(content_type) +
                           "\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\nConnection: close\r\n" +
                           std::string(extra_headers) + "\r\n";
    if (!head_only) response += body;
    TcpConnection& connection = *exchange.connection;
    // An empty queue takes the whole response (tcp.h), so this cannot be refused for size.
    connection.write(as_bytes(response));
    // Our FIN once the response is out; what the client still sends is read and dropped until
    // its FIN or the linger deadline, and no callback of ours runs again but on_closed.
    connection.finish(options_.linger);
}

}  // namespace burrow
