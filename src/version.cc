#include "src/version.h"

namespace burrow {
const char* version_string() { return BURROW_VERSION; }
}  // namespace burrow
