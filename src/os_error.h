// An operating-system operation that failed, said in one line for the user.
//
// Messages name the operation and the address or file, then what the OS said, in the form the
// CLI prints as is: "listen 127.0.0.1:8080: address already in use".
#pragma once

#include <string>

namespace burrow {

struct OsError {
    std::string message;
};

// libuv's text for a negative status ("connection refused"), for messages like the above.
std::string uv_error_text(int status);

}  // namespace burrow
