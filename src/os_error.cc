#include "src/os_error.h"

#include <uv.h>

namespace burrow {

std::string uv_error_text(int status) {
    return uv_strerror(status);
}

}  // namespace burrow
