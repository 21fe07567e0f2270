// One-time set-up of the crypto library.
#pragma once

namespace burrow {

// Initialises libsodium (CPU feature detection picks the fast AES-GCM and ChaCha20 code paths).
// Call once before any other crypto; calling again is harmless. False means libsodium could not
// initialise and nothing in tunnel/aead.h or tunnel/noise.h may be used.
bool crypto_init();

}  // namespace burrow
