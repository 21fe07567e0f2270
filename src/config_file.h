// Config files from disk: src/ reads the text and answers config/'s questions about other
// files; config/ (pure) validates. Errors are one line naming the file (docs/architecture.md §7).
#pragma once

#include <string>
#include <variant>

#include "config/agent_config.h"
#include "config/config_error.h"
#include "config/server_config.h"

namespace burrow {

// Reads and validates the file at path; relative paths inside resolve against its folder.
std::variant<AgentConfig, ConfigError> load_agent_config(const std::string& path);
std::variant<ServerConfig, ConfigError> load_server_config(const std::string& path);

// Whether path is a file, a directory or nothing, as config/ asks it (config/file_probe.h).
FileKind probe_file(const std::string& path);

}  // namespace burrow
