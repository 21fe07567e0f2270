// The agent's status page, GET / on the admin endpoint: src/status_page.html, compiled in
// (cmake/embed_file.cmake). The page reads GET /status once a second and renders it.
#pragma once

#include "src/admin_server.h"

namespace burrow {

// The page with its Content-Type and a Content-Security-Policy that lets it load nothing from
// anywhere but its inline style and script, and fetch only from the endpoint it came from: a
// page that pulls no assets cannot leak the agent's status to another origin.
AdminResponse status_page_response();

}  // namespace burrow
