// What a config loader returns instead of a config: one line for the user, naming the file,
// the position and the key, and saying what is wrong, e.g.
//
//   nas.toml:12:10: expose[1].target: "127.0.0.1:99999" is not a valid address (port 1-65535)
//
// The caller prints it and exits with status 2 (docs/architecture.md §7) before opening any socket.
#pragma once

#include <string>

namespace burrow {

struct ConfigError {
    std::string message;
};

}  // namespace burrow
