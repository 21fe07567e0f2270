#include "tunnel/crypto_init.h"

#include <sodium.h>

namespace burrow {

bool crypto_init() {
    // 0 = initialised now, 1 = already initialised, -1 = failure.
    return sodium_init() >= 0;
}

}  // namespace burrow
