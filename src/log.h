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

#include "config/values.h"

namespace burrow {

// LogLevel, parse_log_level and to_string(LogLevel) come from config/values.h: the same
// names the config files' log_level takes.

// The level for the CLI's -v switch: none is info, -v is debug, -vv and more is trace.
LogLevel level_for_verbosity(int v_count);

// Sends the default logger to stderr with a timestamp on every line and sets its level.
void init_logging(LogLevel level);
void set_log_level(LogLevel level);
// False, and the level unchanged, when name is not a level.
bool set_log_level(std::string_view name);

}  // namespace burrow
