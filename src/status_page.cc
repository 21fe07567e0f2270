#include "src/status_page.h"

#include <string>

#include "generated/status_page_html.h"

namespace burrow {

namespace {

constexpr const char* kHtmlContentType = "text/html; charset=utf-8";
constexpr const char* kPageHeaders =
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Cache-Control: no-store\r\n";

}  // namespace

AdminResponse status_page_response() {
    return AdminResponse(std::string(status_page_html()), kHtmlContentType, kPageHeaders);
}

}  // namespace burrow
