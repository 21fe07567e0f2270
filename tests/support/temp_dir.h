// A fresh directory for a test's files, removed with everything in it at scope end.
#pragma once

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace burrow::test {

class TempDir {
public:
    TempDir() {
        std::string templ =
            (std::filesystem::temp_directory_path() / "burrow-test-XXXXXX").string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string path() const { return path_.string(); }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    // Writes `text` to `name` (creating parent folders), replacing what was there.
    void write(const std::string& name, const std::string& text) const {
        std::filesystem::create_directories((path_ / name).parent_path());
        std::ofstream out(file(name), std::ios::binary | std::ios::trunc);
        out << text;
    }
    // A file whose content does not matter (the config loaders check key files exist).
    void touch(const std::string& name) const { write(name, "placeholder\n"); }

private:
    std::filesystem::path path_;
};

// Permission bits of a file (st_mode & 07777).
inline mode_t mode_of(const std::string& path) {
    struct stat st;
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

}  // namespace burrow::test
