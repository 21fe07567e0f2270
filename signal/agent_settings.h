// What an agent offers and uses, as config/ reads it from [[expose]] and [[forward]] and as
// the agent's core (signal/agent_core.h) acts on it: plain validated values, no I/O.
#pragma once

#include <string>
#include <vector>

#include "signal/host_port.h"

namespace burrow {

struct ExposeConfig {
    std::string service;
    HostPort target;                 // IP literal or DNS name
    std::vector<std::string> allow;  // peer agent names, non-empty, no repeats

    bool operator==(const ExposeConfig&) const = default;
};

struct ForwardConfig {
    HostPort listen;  // IP literal; no two forwards can bind the same port
    std::string peer;
    std::string service;

    bool operator==(const ForwardConfig&) const = default;
};

}  // namespace burrow
