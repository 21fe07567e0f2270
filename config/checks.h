// Internal to config/: the checks the agent and server loaders share. Each one turns a read
// value into its validated form, or records an issue that quotes the value and says what a
// good one looks like.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "signal/host_port.h"
#include "config/file_probe.h"
#include "config/toml_reader.h"
#include "config/values.h"
#include "tunnel/time.h"

namespace burrow::config_detail {

enum class AddressUse {
    kConnect,   // any host: an IP literal or a DNS name
    kListen,    // an IP literal, since we bind it
    kLoopback,  // a loopback IP literal (local-only endpoints)
};

std::optional<HostPort> check_address(Issues& issues, const Located<std::string>& text,
                                      AddressUse use);
bool check_agent_name(Issues& issues, const Located<std::string>& name);
bool check_service_name(Issues& issues, const Located<std::string>& name);
std::optional<LogLevel> check_log_level(Issues& issues, const Located<std::string>& text);
// A duration written as a whole number of seconds or milliseconds ("5s", "2500ms") within
// [min, max].
std::optional<Duration> check_duration(Issues& issues, const Located<std::string>& text,
                                       Duration min, Duration max);

// Whether two sockets of one protocol would fight over a port when bound to a and b. A
// wildcard takes the port on every address of its family, and "::" on IPv4 as well (Linux
// binds it dual-stack by default).
bool addresses_overlap(const HostPort& a, const HostPort& b);

// An issue for each element equal to an earlier one ("what" names the kind, e.g. "agent").
void check_no_repeats(Issues& issues, const std::vector<Located<std::string>>& list,
                      std::string_view what);

// The values of a located list.
std::vector<std::string> values_of(const std::vector<Located<std::string>>& list);

// path as is when absolute, else base_dir/path, lexically normalised ("a/./b/../c" is "a/c");
// no file is looked at.
std::string resolve_path(std::string_view base_dir, std::string_view path);

// An issue unless the resolved file exists (existence only: the file's owner reads it).
// `fix` tells the user how to create it. files is how src/ answers "is there a file?".
bool check_file_exists(Issues& issues, const FileProbe& files, const Located<std::string>& text,
                       const std::string& resolved, std::string_view fix);

}  // namespace burrow::config_detail
