// How config/ asks whether a file a config names exists, without touching the filesystem
// itself (docs/architecture.md: the cores take bytes and do no I/O). src/config_file.cc answers
// from the real filesystem; tests answer from a table.
#pragma once

#include <functional>
#include <string>

namespace burrow {

enum class FileKind { kMissing, kFile, kDirectory };
using FileProbe = std::function<FileKind(const std::string& path)>;

}  // namespace burrow
