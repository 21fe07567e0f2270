// `burrow status [-c agent.toml] [--admin HOST:PORT] [--json]`: asks the running agent's admin
// endpoint (src/admin_server.h) for GET /status and prints it, as tables or as the raw JSON.
//
//   $ burrow status
//   agent   laptop  version 0.1.0  up 3m 12s  key ...
//   ...
//
// Where to ask: --admin, else the [agent] admin key of the config given with -c, else
// 127.0.0.1:7070. Exit status: 0 printed; 1 the agent could not be asked or sent something
// unreadable, with one line such as "burrow: cannot reach the agent's admin endpoint
// 127.0.0.1:7070: connection refused (is `burrow agent` running?)"; 2 bad input (a config
// error line, a bad --admin).
#pragma once

#include <string>
#include <variant>

#include "tunnel/socket_address.h"

namespace burrow {

struct StatusOptions {
    std::string config_path;  // "" for none
    std::string admin;        // "HOST:PORT", "" for none
    bool json = false;        // print the body as the agent sent it
};

int run_status(const StatusOptions& options);

// The admin endpoint to ask: --admin (an IP literal), else the config's [agent] admin, else
// 127.0.0.1:7070. A string: the one error line (bad flag, config error), exit status 2.
std::variant<SocketAddress, std::string> admin_address(const std::string& config_path,
                                                      const std::string& admin_flag);

}  // namespace burrow
