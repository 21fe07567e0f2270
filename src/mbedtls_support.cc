#include "src/mbedtls_support.h"

#include <mbedtls/error.h>

#include <array>

namespace burrow {

namespace {
// Mixed into the seed so that this DRBG's stream differs from any other program's seeded at
// the same instant from the same source (SP 800-90A "personalization string").
constexpr std::string_view kPersonalization = "burrow drbg";
constexpr size_t kErrorTextSize = 160;  // mbedTLS's longest descriptions are ~100 characters
}  // namespace

Drbg::Drbg() {
    mbedtls_entropy_init(&entropy_);
    mbedtls_ctr_drbg_init(&ctr_drbg_);
}

Drbg::~Drbg() {
    mbedtls_ctr_drbg_free(&ctr_drbg_);
    mbedtls_entropy_free(&entropy_);
}

std::variant<std::unique_ptr<Drbg>, OsError> Drbg::create() {
    std::unique_ptr<Drbg> drbg(new Drbg());
    const int rc = mbedtls_ctr_drbg_seed(
        &drbg->ctr_drbg_, mbedtls_entropy_func, &drbg->entropy_,
        reinterpret_cast<const unsigned char*>(kPersonalization.data()), kPersonalization.size());
    if (rc != 0) return OsError{"seeding the random generator: " + mbedtls_error_text(rc)};
    return drbg;
}

int Drbg::random(void* drbg, unsigned char* out, size_t len) {
    return mbedtls_ctr_drbg_random(drbg, out, len);
}

std::string mbedtls_error_text(int code) {
    std::array<char, kErrorTextSize> text{};
    mbedtls_strerror(code, text.data(), text.size());
    return text.data();
}

}  // namespace burrow
