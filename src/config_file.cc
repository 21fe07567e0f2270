#include "src/config_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace burrow {
namespace {

namespace fs = std::filesystem;

// Far beyond any real config (a server.toml listing 10000 agents is about 1 MiB); stops a
// mistaken path such as /dev/zero from eating memory.
constexpr size_t kMaxConfigSize = 16 * 1024 * 1024;
constexpr size_t kReadChunk = 4096;  // one page per fread

std::variant<std::string, ConfigError> read_config_text(const std::string& path) {
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!file) return ConfigError{path + ": cannot open: " + std::strerror(errno)};
    std::string text;
    char buf[kReadChunk];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file.get())) > 0) {
        text.append(buf, n);
        if (text.size() > kMaxConfigSize) {
            return ConfigError{path + ": too large for a config file (over " +
                               std::to_string(kMaxConfigSize) + " bytes)"};
        }
    }
    if (std::ferror(file.get()))
        return ConfigError{path + ": cannot read: " + std::strerror(errno)};
    return text;
}

// Reads the file at path and hands its text, its name and its folder to parse.
template <class Config, class Parse>
std::variant<Config, ConfigError> load(const std::string& path, Parse parse) {
    auto text = read_config_text(path);
    if (auto* error = std::get_if<ConfigError>(&text)) return *error;
    return parse(std::get<std::string>(text), path, fs::path(path).parent_path().string());
}

}  // namespace

FileKind probe_file(const std::string& path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (fs::is_directory(status)) return FileKind::kDirectory;
    return fs::exists(status) ? FileKind::kFile : FileKind::kMissing;
}

std::variant<AgentConfig, ConfigError> load_agent_config(const std::string& path) {
    return load<AgentConfig>(
        path, [](std::string_view text, std::string_view name, std::string_view dir) {
            return parse_agent_config(text, name, dir, probe_file);
        });
}

std::variant<ServerConfig, ConfigError> load_server_config(const std::string& path) {
    return load<ServerConfig>(path, parse_server_config);
}

}  // namespace burrow
