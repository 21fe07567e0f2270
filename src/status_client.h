// `burrow status`'s side of the admin endpoint (src/admin_server.h): one GET /status.
//
// A plain blocking socket with one deadline for the whole exchange: the CLI asks once and
// exits, so a private event loop would add nothing. The response is parsed by
// nodejs/http-parser, like the request on the server side.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "tunnel/socket_address.h"
#include "tunnel/time.h"

namespace burrow {

// The path the agent serves its status JSON at.
inline constexpr const char* kStatusPath = "/status";

// GET /status from admin within timeout. Index 0: the body of a 200 response. Index 1: one line
// for the user, such as
//   "cannot reach the agent's admin endpoint 127.0.0.1:7070: connection refused
//    (is `burrow agent` running?)"
//   "the agent's admin endpoint 127.0.0.1:7070 answered 404 Not Found"
std::variant<std::string, std::string> fetch_status(const SocketAddress& admin, Duration timeout);
// The same for any path the endpoint serves ("/doctor/nas").
std::variant<std::string, std::string> fetch_admin(const SocketAddress& admin,
                                                   std::string_view path, Duration timeout);

}  // namespace burrow
