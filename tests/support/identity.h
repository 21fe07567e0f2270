// A static key pair for tests of the handshake, the session and its cookies.
#pragma once

#include "tunnel/noise.h"
#include "tunnel/rng.h"

namespace burrow::test {

struct Identity {
    PrivateKey secret;
    PublicKey pub;
};

inline Identity make_identity(Rng& rng) {
    Identity id{PrivateKey::generate(rng), {}};
    id.pub = public_key(id.secret);
    return id;
}

}  // namespace burrow::test
