// Logging: spdlog, one line per event, to stderr.
//
// Code logs with spdlog directly (spdlog::info("listening on {}", addr)); this file only sets
// it up. Levels, from chatty to quiet: trace, debug, info (the default), warn, error.
//
//   2024-05-01 12:00:00.123 info listening on 0.0.0.0:7000
#pragma once

#include <spdlog/spdlog.h>

#include <optional>
#include <string_view>

namespace burrow {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

// "trace", "debug", "info", "warn" (or "warning"), "error"; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view name);
const char* log_level_name(LogLevel level);

// The level for the CLI's -v switch: none is info, -v is debug, -vv and more is trace.
LogLevel level_for_verbosity(int v_count);

// Sends the default logger to stderr with a timestamp on every line and sets its level.
void init_logging(LogLevel level);
void set_log_level(LogLevel level);
// False, and the level unchanged, when name is not a level.
bool set_log_level(std::string_view name);

}  // namespace burrow
