#include "src/resolve.h"

#include <netdb.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "src/defer.h"
#include "src/os_error.h"
#include "src/sockaddr.h"

namespace burrow {
namespace {

struct ResolveRequest {
    uv_getaddrinfo_t req;
    HostPort where;
    ResolveAllDone done;
};

void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
    std::unique_ptr<ResolveRequest> request(static_cast<ResolveRequest*>(req->data));
    std::vector<SocketAddress> found;
    for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
        auto a = from_sockaddr(ai->ai_addr);
        if (!a) continue;
        a->port = request->where.port;
        if (std::find(found.begin(), found.end(), *a) == found.end()) found.push_back(*a);
    }
    if (result != nullptr) uv_freeaddrinfo(result);
    if (!found.empty()) {
        request->done(std::move(found), "");
        return;
    }
    const std::string why = status < 0 ? uv_error_text(status) : "no IPv4 or IPv6 address";
    request->done({}, "resolve " + request->where.host + ": " + why);
}

}  // namespace

void resolve(uv_loop_t* loop, const HostPort& where, ResolveDone done) {
    resolve_all(loop, where,
                [done = std::move(done)](std::vector<SocketAddress> found, const std::string& e) {
                    if (found.empty()) return done(std::nullopt, e);
                    done(found.front(), "");
                });
}

void resolve_all(uv_loop_t* loop, const HostPort& where, ResolveAllDone done) {
    // A literal needs no lookup: answered from the loop, in the order asked (defer is FIFO),
    // without a trip through the thread pool, whose workers finish in any order.
    if (std::optional<SocketAddress> literal = literal_socket_address(where)) {
        defer(loop, [done = std::move(done), address = *literal] {
            done(std::vector<SocketAddress>{address}, "");
        });
        return;
    }
    auto request = std::make_unique<ResolveRequest>();
    request->req.data = request.get();
    request->where = where;
    request->done = std::move(done);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (where.ip_literal()) hints.ai_flags = AI_NUMERICHOST;
    const int rc = uv_getaddrinfo(loop, &request->req, on_resolved, where.host.c_str(), nullptr,
                                  &hints);
    if (rc == 0) {
        request.release();  // on_resolved owns it now
        return;
    }
    // Could not even queue the lookup: report it from the loop like any other failure.
    std::shared_ptr<ResolveRequest> failed(std::move(request));
    defer(loop, [failed, rc] {
        failed->done({}, "resolve " + failed->where.host + ": " + uv_error_text(rc));
    });
}

}  // namespace burrow
