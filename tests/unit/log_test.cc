#include <catch2/catch.hpp>

#include "src/log.h"

using namespace burrow;

TEST_CASE("log: level names parse and print") {
    for (auto level :
         {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
        const auto parsed = parse_log_level(to_string(level));
        REQUIRE(parsed);
        CHECK(*parsed == level);
    }
    CHECK_FALSE(parse_log_level("loud"));
    CHECK_FALSE(parse_log_level("INFO"));  // the CLI documents lowercase
    CHECK_FALSE(parse_log_level(""));
}

TEST_CASE("log: -v is debug, -vv is trace, none is info") {
    CHECK(level_for_verbosity(0) == LogLevel::kInfo);
    CHECK(level_for_verbosity(1) == LogLevel::kDebug);
    CHECK(level_for_verbosity(2) == LogLevel::kTrace);
    CHECK(level_for_verbosity(5) == LogLevel::kTrace);
}

TEST_CASE("log: setting the level by name, and refusing a bad name") {
    init_logging(LogLevel::kInfo);
    CHECK(spdlog::get_level() == spdlog::level::info);
    CHECK(set_log_level("debug"));
    CHECK(spdlog::get_level() == spdlog::level::debug);
    CHECK(spdlog::default_logger()->should_log(spdlog::level::debug));
    CHECK_FALSE(set_log_level("chatty"));
    CHECK(spdlog::get_level() == spdlog::level::debug);  // unchanged
    set_log_level(LogLevel::kError);
    CHECK_FALSE(spdlog::default_logger()->should_log(spdlog::level::warn));
    set_log_level(LogLevel::kInfo);
}
