#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"
#include "src/key_file.h"
#include "tunnel/crypto_init.h"
#include "tunnel/rng.h"

using namespace burrow;
using burrow::test::TempDir;
using burrow::test::mode_of;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text, mode_t mode) {
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << text;
    }
    REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string error_of(const std::variant<PrivateKey, KeyFileError>& r) {
    const auto* e = std::get_if<KeyFileError>(&r);
    REQUIRE(e != nullptr);
    return e->message;
}

// Restores the umask when the test ends.
class UmaskGuard {
public:
    explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
    ~UmaskGuard() { ::umask(old_); }

private:
    mode_t old_;
};

}  // namespace

TEST_CASE("save then load gives the same key, over many seeds") {
    REQUIRE(crypto_init());
    TempDir dir;
    for (uint64_t seed = 1; seed <= 50; ++seed) {
        INFO("seed " << seed);
        SeededRng rng(seed);
        const PrivateKey key = PrivateKey::generate(rng);
        const std::string path = dir.file("k" + std::to_string(seed) + ".key");
        REQUIRE_FALSE(save_key_file(path, key, false));
        auto loaded = load_key_file(path);
        REQUIRE(std::holds_alternative<PrivateKey>(loaded));
        CHECK(std::get<PrivateKey>(loaded).equals(key));
        // One line of base64 and a newline.
        const std::string text = read_text(path);
        CHECK(text == key_to_base64(key.bytes()) + "\n");
        CHECK(text.size() == 45);
    }
}

TEST_CASE("saved key files have mode 0600 whatever the umask") {
    REQUIRE(crypto_init());
    TempDir dir;
    UmaskGuard permissive(0);
    SeededRng rng(1);
    const std::string path = dir.file("nas.key");
    REQUIRE_FALSE(save_key_file(path, PrivateKey::generate(rng), false));
    CHECK(mode_of(path) == 0600);
    REQUIRE_FALSE(save_key_file(path, PrivateKey::generate(rng), true));
    CHECK(mode_of(path) == 0600);
}

TEST_CASE("an existing file is not overwritten without force, and is replaced with it") {
    REQUIRE(crypto_init());
    TempDir dir;
    SeededRng rng(2);
    const PrivateKey first = PrivateKey::generate(rng);
    const PrivateKey second = PrivateKey::generate(rng);
    const std::string path = dir.file("nas.key");
    REQUIRE_FALSE(save_key_file(path, first, false));

    auto err = save_key_file(path, second, false);
    REQUIRE(err);
    CHECK(err->message == "key file " + path + ": already exists; pass --force to replace it");
    CHECK(std::get<PrivateKey>(load_key_file(path)).equals(first));

    REQUIRE_FALSE(save_key_file(path, second, true));
    CHECK(std::get<PrivateKey>(load_key_file(path)).equals(second));
    // No temporary file left behind.
    CHECK(std::distance(fs::directory_iterator(fs::path(path).parent_path()),
                        fs::directory_iterator()) == 1);
}

TEST_CASE("force also creates a file that does not exist yet") {
    REQUIRE(crypto_init());
    TempDir dir;
    SeededRng rng(3);
    const PrivateKey key = PrivateKey::generate(rng);
    const std::string path = dir.file("new.key");
    REQUIRE_FALSE(save_key_file(path, key, true));
    CHECK(std::get<PrivateKey>(load_key_file(path)).equals(key));
    CHECK(mode_of(path) == 0600);
}

TEST_CASE("a key file readable or writable by group or others is refused, naming the file") {
    REQUIRE(crypto_init());
    TempDir dir;
    SeededRng rng(4);
    const std::string path = dir.file("nas.key");
    REQUIRE_FALSE(save_key_file(path, PrivateKey::generate(rng), false));

    REQUIRE(::chmod(path.c_str(), 0644) == 0);
    CHECK(error_of(load_key_file(path)) ==
          "key file " + path + ": readable by others (mode 0644); run chmod 600 " + path);

    REQUIRE(::chmod(path.c_str(), 0640) == 0);
    CHECK(error_of(load_key_file(path)) ==
          "key file " + path + ": readable by group (mode 0640); run chmod 600 " + path);

    REQUIRE(::chmod(path.c_str(), 0620) == 0);
    CHECK(error_of(load_key_file(path)).find("writable by group (mode 0620)") != std::string::npos);

    for (mode_t bad : {0601, 0602, 0604, 0610, 0660, 0666, 0700 | 0001}) {
        INFO("mode " << std::oct << bad);
        REQUIRE(::chmod(path.c_str(), bad) == 0);
        CHECK_FALSE(std::holds_alternative<PrivateKey>(load_key_file(path)));
    }
    for (mode_t good : {0600, 0400, 0700}) {
        INFO("mode " << std::oct << good);
        REQUIRE(::chmod(path.c_str(), good) == 0);
        CHECK(std::holds_alternative<PrivateKey>(load_key_file(path)));
    }
}

TEST_CASE("malformed key files are refused with one line naming the file") {
    REQUIRE(crypto_init());
    TempDir dir;
    SeededRng rng(5);
    const std::string good = key_to_base64(PrivateKey::generate(rng).bytes());
    const std::string path = dir.file("bad.key");

    write_text(path, good + "\n", 0600);
    REQUIRE(std::holds_alternative<PrivateKey>(load_key_file(path)));
    write_text(path, good, 0600);  // a missing final newline is tolerated
    REQUIRE(std::holds_alternative<PrivateKey>(load_key_file(path)));

    const std::string cases[] = {
        "",
        "\n",
        good + "\n\n",                  // extra line
        good + "\nmore\n",              // extra content
        good + " \n",                   // trailing space
        " " + good + "\n",              // leading space
        good + "\r\n",                  // CRLF
        good.substr(0, 43) + "\n",      // too short
        good.substr(0, 40) + "AAAA\n",  // 30 bytes + padding missing: wrong length
        key_to_base64(std::array<uint8_t, 32>{}).substr(0, 42) + "==\n",  // 31 bytes
        std::string(44, '!') + "\n",                                      // not base64
        good.substr(0, 10) + "-" + good.substr(11) + "\n",                // URL-safe alphabet
        std::string(5000, 'A'),                                           // far too long
    };
    for (const std::string& text : cases) {
        INFO("contents [" << text.substr(0, 60) << "]");
        write_text(path, text, 0600);
        const std::string message = error_of(load_key_file(path));
        CHECK(message.rfind("key file " + path + ": not a key file", 0) == 0);
        CHECK(message.find('\n') == std::string::npos);
    }
}

TEST_CASE("missing files, directories and unreadable files are refused") {
    REQUIRE(crypto_init());
    TempDir dir;
    const std::string missing = dir.file("missing.key");
    CHECK(error_of(load_key_file(missing)) ==
          "key file " + missing + ": not found; create one with: burrow keygen -o " + missing);

    const std::string sub = dir.file("sub");
    REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
    CHECK(error_of(load_key_file(sub)) == "key file " + sub + ": not a regular file");

    if (::geteuid() != 0) {  // root reads anything, so the check would not test the code
        SeededRng rng(6);
        const std::string locked = dir.file("locked.key");
        REQUIRE_FALSE(save_key_file(locked, PrivateKey::generate(rng), false));
        REQUIRE(::chmod(locked.c_str(), 0000) == 0);
        CHECK(error_of(load_key_file(locked)).rfind("key file " + locked + ": cannot open:", 0) ==
              0);
    }

    SeededRng rng(7);
    const std::string nowhere = dir.file("no/such/dir/x.key");
    auto err = save_key_file(nowhere, PrivateKey::generate(rng), false);
    REQUIRE(err);
    CHECK(err->message.rfind("key file " + nowhere + ": cannot create:", 0) == 0);
    err = save_key_file(nowhere, PrivateKey::generate(rng), true);
    REQUIRE(err);
    CHECK(err->message.rfind("key file " + nowhere + ": cannot create", 0) == 0);
}

TEST_CASE("save refuses to follow a symlink planted at the path") {
    REQUIRE(crypto_init());
    TempDir dir;
    SeededRng rng(8);
    const std::string target = dir.file("target");
    const std::string link = dir.file("link.key");
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
    CHECK(save_key_file(link, PrivateKey::generate(rng), false));
    CHECK_FALSE(fs::exists(target));
}
