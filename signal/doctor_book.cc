#include "signal/doctor_book.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace burrow {
namespace {

uint32_t age_ms(Time then, Time now) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - then).count();
    return static_cast<uint32_t>(
        std::clamp<int64_t>(ms, 0, std::numeric_limits<uint32_t>::max()));
}

}  // namespace

DoctorBook::Key DoctorBook::key(std::string_view a, std::string_view b) {
    return a < b ? Key(a, b) : Key(b, a);
}

const DoctorRecord* DoctorBook::find(std::string_view a, std::string_view b) const {
    auto it = records_.find(key(a, b));
    return it == records_.end() ? nullptr : &it->second;
}

void DoctorBook::on_rendezvous(std::string_view a, NatMapping a_nat,
                               std::vector<Candidate> a_candidates, std::string_view b,
                               NatMapping b_nat, std::vector<Candidate> b_candidates, Time now) {
    Key k = key(a, b);
    auto it = records_.find(k);
    if (it == records_.end()) {
        if (max_records_ == 0) return;
        if (records_.size() >= max_records_) {
            // Rendezvous are rare next to packets: a scan of the capped book is cheap enough.
            auto oldest = std::min_element(records_.begin(), records_.end(),
                                           [](const auto& x, const auto& y) {
                                               return x.second.rendezvous_at <
                                                      y.second.rendezvous_at;
                                           });
            records_.erase(oldest);
            evictions_++;
        }
        it = records_.emplace(k, DoctorRecord{}).first;
        it->second.agents = {k.first, k.second};
    }
    DoctorRecord& r = it->second;
    r.rendezvous_at = now;
    const size_t ia = r.agents[0] == a ? 0 : 1;
    r.nat[ia] = a_nat;
    r.candidates[ia] = std::move(a_candidates);
    r.nat[1 - ia] = b_nat;
    r.candidates[1 - ia] = std::move(b_candidates);
}

bool DoctorBook::on_report(std::string_view from, PunchReport report, Time now) {
    if (from == report.peer) return false;
    auto it = records_.find(key(from, report.peer));
    if (it == records_.end()) return false;
    DoctorRecord& r = it->second;
    const size_t i = r.agents[0] == from ? 0 : 1;
    r.reports[i] = std::move(report);
    r.report_at[i] = now;
    return true;
}

std::optional<DoctorReply> DoctorBook::reply(uint32_t request_id, std::string_view asker,
                                             std::string_view peer, Time now) const {
    const DoctorRecord* r = find(asker, peer);
    if (!r) return std::nullopt;
    DoctorReply out;
    out.request_id = request_id;
    out.peer = std::string(peer);
    out.status = DoctorStatus::kOk;
    out.rendezvous_age_ms = age_ms(r->rendezvous_at, now);
    const size_t self = r->agents[0] == asker ? 0 : 1;
    auto side = [&](size_t i) {
        DoctorSide s;
        s.nat = r->nat[i];
        s.candidates = r->candidates[i];
        s.report = r->reports[i];
        if (s.report) s.report_age_ms = age_ms(r->report_at[i], now);
        return s;
    };
    out.self = side(self);
    out.peer_side = side(1 - self);
    return out;
}

}  // namespace burrow
