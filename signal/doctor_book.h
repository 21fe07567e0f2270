// What the server remembers for `burrow doctor`: per unordered pair of agents, the last
// rendezvous (when, and each side's NAT mapping and candidates as the server sent them to the
// other) and each side's latest PunchReport. Pure bookkeeping; ServerCore checks the ACL before
// anything is recorded or answered.
//
// Bounded: at most kMaxDoctorRecords pairs. A rendezvous of a new pair when the book is full
// evicts the pair whose last rendezvous is oldest. A record holds at most 2 x (kMaxCandidates
// candidates + a report of 2 x kMaxCandidates addresses), about 8 KiB at worst and a few hundred
// bytes in practice, so the book stays under 8 MiB however many agents come and go.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "signal/control.h"
#include "tunnel/time.h"

namespace burrow {

inline constexpr size_t kMaxDoctorRecords = 1024;

struct DoctorRecord {
    Time rendezvous_at{};
    // Ordered by name: sides[0] is the agent whose name sorts first.
    std::array<std::string, 2> agents;
    std::array<NatMapping, 2> nat{NatMapping::kUnknown, NatMapping::kUnknown};
    std::array<std::vector<Candidate>, 2> candidates;
    std::array<std::optional<PunchReport>, 2> reports;
    std::array<Time, 2> report_at{};
};

class DoctorBook {
  public:
    explicit DoctorBook(size_t max_records = kMaxDoctorRecords) : max_records_(max_records) {}

    // A rendezvous of a and b: what each side was told about the other. Earlier reports of
    // the pair are kept (they describe the path that may still be in use) until new ones come.
    void on_rendezvous(std::string_view a, NatMapping a_nat, std::vector<Candidate> a_candidates,
                       std::string_view b, NatMapping b_nat, std::vector<Candidate> b_candidates,
                       Time now);
    // `from`'s report about report.peer. false (and nothing kept) when the pair has no
    // rendezvous on record: the server never joined them, so the report is not about a path
    // it knows.
    bool on_report(std::string_view from, PunchReport report, Time now);
    // The pair as `asker` sees it, or nullopt when no rendezvous of the pair is on record.
    std::optional<DoctorReply> reply(uint32_t request_id, std::string_view asker,
                                     std::string_view peer, Time now) const;

    const DoctorRecord* find(std::string_view a, std::string_view b) const;
    size_t size() const { return records_.size(); }
    size_t max_records() const { return max_records_; }
    uint64_t evictions() const { return evictions_; }

  private:
    using Key = std::pair<std::string, std::string>;
    static Key key(std::string_view a, std::string_view b);

    size_t max_records_;
    std::map<Key, DoctorRecord, std::less<>> records_;
    uint64_t evictions_ = 0;
};

}  // namespace burrow
