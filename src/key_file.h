// Key files: one X25519 private key per file, as one line of base64 (libsodium's ORIGINAL
// variant, with padding) and a newline, readable by its owner only.
//
//   $ cat nas.key
//   yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
//
// Every error is one line that names the file and says what to do.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "tunnel/noise.h"

namespace burrow {

struct KeyFileError {
    std::string message;
};

// The key, or an error when the file is missing or unreadable, is not exactly one line of
// base64 for 32 bytes, or is accessible to group or others (st_mode & 077).
std::variant<PrivateKey, KeyFileError> load_key_file(const std::string& path);

// Writes key to a new file created with mode 0600. An existing file is an error unless
// overwrite is set; then the key goes to a temporary file in the same directory that is
// renamed over the old one, so a reader sees the old key or the new one, never a mix.
std::optional<KeyFileError> save_key_file(const std::string& path, const PrivateKey& key,
                                          bool overwrite);

}  // namespace burrow
