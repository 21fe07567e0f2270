#pragma once

namespace burrow {
const char* version_string();
}  // namespace burrow
