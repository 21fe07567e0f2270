// The process's open-files limit (RLIMIT_NOFILE). Every forwarded connection holds a descriptor
// on each side, and many shells start programs with a soft limit of 1024, far below the hard
// limit the administrator allows: the agent and the server raise the soft limit to the hard
// one at start, so a busy forward is not capped by a default that only the systemd unit's
// LimitNOFILE used to lift.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "src/os_error.h"

namespace burrow {

struct OpenFilesLimit {
    uint64_t before = 0;  // the soft limit we started with
    uint64_t now = 0;     // the soft limit in force
};

// Raises the soft limit to the hard one. An error names what failed (the limit stays).
std::variant<OpenFilesLimit, OsError> raise_open_files_limit();
// One line for the log: "open files limit 1024 -> 1048576" or "open files limit 1048576".
std::string describe(const OpenFilesLimit& limit);
// Raises the limit and logs the line, or warns that it could not.
void raise_and_log_open_files_limit();

}  // namespace burrow
