#include "src/open_files.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace burrow {

std::variant<OpenFilesLimit, OsError> raise_open_files_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return OsError{std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno)};
    }
    OpenFilesLimit out{limit.rlim_cur, limit.rlim_cur};
    if (limit.rlim_cur == limit.rlim_max) return out;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return OsError{"raising the open files limit from " + std::to_string(out.before) +
                       " to " + std::to_string(limit.rlim_max) + ": " + std::strerror(errno)};
    }
    out.now = limit.rlim_cur;
    return out;
}

std::string describe(const OpenFilesLimit& limit) {
    if (limit.before == limit.now) return "open files limit " + std::to_string(limit.now);
    return "open files limit " + std::to_string(limit.before) + " -> " +
           std::to_string(limit.now);
}

void raise_and_log_open_files_limit() {
    auto raised = raise_open_files_limit();
    if (auto* err = std::get_if<OsError>(&raised)) {
        spdlog::warn("{}", err->message);
        return;
    }
    spdlog::info("{}", describe(std::get<OpenFilesLimit>(raised)));
}

}  // namespace burrow
