#include "src/doctor_json.h"

namespace burrow {
namespace {

using json = nlohmann::json;

json side_json(const DoctorSideView& s) {
    json j = {{"name", s.name},
              {"nat", {{"mapping", s.nat}, {"filtering", s.filtering}}},
              {"reported", s.reported},
              {"online", s.online},
              {"udp_blocked", s.udp_blocked},
              {"candidates", s.candidates},
              {"tried", s.tried},
              {"report_age_s", s.report_age_s}};
    j["udp_port"] = s.udp_port ? json(*s.udp_port) : json(nullptr);
    return j;
}

json address_or_null(const std::optional<SocketAddress>& a) {
    return a ? json(to_string(*a)) : json(nullptr);
}

}  // namespace

json doctor_json(std::string_view peer, const DoctorResult& result) {
    json j = {{"peer", peer}, {"ok", result.verdict.has_value()}};
    if (!result.verdict) {
        j["error"] = result.error;
        return j;
    }
    const DoctorVerdict& v = *result.verdict;
    std::string first_line = v.text.substr(0, v.text.find('\n'));
    j["verdict"] = first_line;
    j["text"] = v.text;
    j["path"] = v.path;
    j["technique"] = v.technique;
    j["strategy"] = v.strategy;
    j["time_to_direct_s"] = v.time_to_direct_s ? json(*v.time_to_direct_s) : json(nullptr);
    j["addresses"] = {{"self", address_or_null(v.self_address)},
                      {"peer", address_or_null(v.peer_address)}};
    j["rendezvous_age_s"] = v.rendezvous_age_s;
    j["udp_blocked"] = v.udp_blocked;
    j["self"] = side_json(v.self);
    j["peer"] = side_json(v.peer);
    j["findings"] = v.findings;
    j["advice"] = v.advice;
    return j;
}

}  // namespace burrow
