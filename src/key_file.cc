#include "src/key_file.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace burrow {

namespace {

constexpr mode_t kKeyFileMode = 0600;
constexpr mode_t kGroupOtherBits = 077;
constexpr size_t kMaxKeyFileSize = 4096;  // a key file is 45 bytes; anything this big is not one
constexpr int kB64Variant = sodium_base64_VARIANT_ORIGINAL;

KeyFileError error(const std::string& path, const std::string& what) {
    return {"key file " + path + ": " + what};
}

std::string os_error() {
    return std::strerror(errno);
}

std::string mode_text(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// "readable by others", "writable by group", ...: the worst thing the mode allows.
std::string exposure(mode_t mode) {
    const bool others = (mode & S_IRWXO) != 0;
    const mode_t r = others ? S_IROTH : S_IRGRP;
    const mode_t w = others ? S_IWOTH : S_IWGRP;
    const char* what = (mode & r) ? "readable" : (mode & w) ? "writable" : "accessible";
    return std::string(what) + " by " + (others ? "others" : "group");
}

bool write_all(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<size_t>(n);
    }
    return true;
}

// Writes the key line to a freshly created fd, forces mode 0600 whatever the umask, syncs and
// closes it. On failure errno says why.
bool fill_key_file(int fd, const std::string& line) {
    if (::fchmod(fd, kKeyFileMode) != 0 || !write_all(fd, line) || ::fsync(fd) != 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        return false;
    }
    return ::close(fd) == 0;
}

}  // namespace

std::variant<PrivateKey, KeyFileError> load_key_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return error(path, "not found; create one with: burrow keygen -o " + path);
        }
        return error(path, "cannot open: " + os_error());
    }
    // Checked on the open file, not the name, so the file cannot change in between.
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        const std::string why = os_error();
        ::close(fd);
        return error(path, "cannot stat: " + why);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return error(path, "not a regular file");
    }
    if ((st.st_mode & kGroupOtherBits) != 0) {
        ::close(fd);
        return error(path, exposure(st.st_mode) + " (mode " + mode_text(st.st_mode) +
                               "); run chmod 600 " + path);
    }

    std::array<char, kMaxKeyFileSize> buf;
    size_t len = 0;
    while (len < buf.size()) {
        const ssize_t n = ::read(fd, buf.data() + len, buf.size() - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const std::string why = os_error();
            ::close(fd);
            sodium_memzero(buf.data(), buf.size());
            return error(path, "cannot read: " + why);
        }
        if (n == 0) break;
        len += static_cast<size_t>(n);
    }
    ::close(fd);

    // Exactly the base64 line, with its newline or (hand-edited files) without.
    size_t b64_len = len;
    if (b64_len > 0 && buf[b64_len - 1] == '\n') --b64_len;
    std::array<uint8_t, 32> bin;
    size_t bin_len = 0;
    const char* end = nullptr;
    const bool decoded = b64_len == kKeyBase64Len &&
                         sodium_base642bin(bin.data(), bin.size(), buf.data(), b64_len, nullptr,
                                           &bin_len, &end, kB64Variant) == 0 &&
                         end == buf.data() + b64_len && bin_len == bin.size();
    sodium_memzero(buf.data(), buf.size());
    if (!decoded) {
        sodium_memzero(bin.data(), bin.size());
        return error(path,
                     "not a key file (expected one line: the base64 of a 32-byte key, "
                     "as written by burrow keygen)");
    }
    PrivateKey key(bin);
    sodium_memzero(bin.data(), bin.size());
    return key;
}

std::optional<KeyFileError> save_key_file(const std::string& path, const PrivateKey& key,
                                          bool overwrite) {
    std::string line = key_to_base64(key.bytes()) + "\n";
    std::optional<KeyFileError> result;
    if (!overwrite) {
        // O_EXCL: never replace an existing key (or follow a planted symlink) by accident.
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kKeyFileMode);
        if (fd < 0) {
            result = errno == EEXIST ? error(path, "already exists; pass --force to replace it")
                                     : error(path, "cannot create: " + os_error());
        } else if (!fill_key_file(fd, line)) {
            result = error(path, "cannot write: " + os_error());
            ::unlink(path.c_str());
        }
    } else {
        std::string temp = path + ".XXXXXX";
        const int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // creates with mode 0600
        if (fd < 0) {
            result = error(path, "cannot create a temporary file next to it: " + os_error());
        } else if (!fill_key_file(fd, line)) {
            result = error(path, "cannot write: " + os_error());
            ::unlink(temp.c_str());
        } else if (::rename(temp.c_str(), path.c_str()) != 0) {
            result = error(path, "cannot replace: " + os_error());
            ::unlink(temp.c_str());
        }
    }
    sodium_memzero(line.data(), line.size());
    return result;
}

}  // namespace burrow
