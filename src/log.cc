#include "src/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <utility>

namespace burrow {

namespace {

// Local time to the millisecond, then the level, then the message: sortable, grep-able, and
// short enough that a line stays one line in a terminal.
constexpr const char* kPattern = "%Y-%m-%d %H:%M:%S.%e %l %v";

spdlog::level::level_enum to_spdlog(LogLevel level) {
    switch (level) {
        case LogLevel::kTrace:
            return spdlog::level::trace;
        case LogLevel::kDebug:
            return spdlog::level::debug;
        case LogLevel::kInfo:
            return spdlog::level::info;
        case LogLevel::kWarn:
            return spdlog::level::warn;
        case LogLevel::kError:
            return spdlog::level::err;
    }
    return spdlog::level::info;
}

}  // namespace

LogLevel level_for_verbosity(int v_count) {
    if (v_count <= 0) return LogLevel::kInfo;
    if (v_count == 1) return LogLevel::kDebug;
    return LogLevel::kTrace;
}

void init_logging(LogLevel level) {
    // The locking sink: the loop thread logs, but a helper thread (a resolver, say) may too.
    auto logger = std::make_shared<spdlog::logger>(
        "burrow", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern(kPattern);
    spdlog::set_default_logger(std::move(logger));
    set_log_level(level);
}

void set_log_level(LogLevel level) {
    spdlog::set_level(to_spdlog(level));
}

bool set_log_level(std::string_view name) {
    const auto level = parse_log_level(name);
    if (!level) return false;
    set_log_level(*level);
    return true;
}

}  // namespace burrow
