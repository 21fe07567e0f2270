#include "signal/port_mapper.h"

#include <algorithm>
#include <iterator>

namespace burrow {

const char* to_string(PortMapProtocol p) {
    switch (p) {
        case PortMapProtocol::kUpnpIgd:
            return "UPnP IGD";
        case PortMapProtocol::kNatPmp:
            return "NAT-PMP";
        case PortMapProtocol::kPcp:
            return "PCP";
    }
    return "?";
}

const char* to_string(PortMapperState s) {
    switch (s) {
        case PortMapperState::kOff:
            return "off";
        case PortMapperState::kAsking:
            return "asking";
        case PortMapperState::kMapped:
            return "mapped";
        case PortMapperState::kWaiting:
            return "waiting";
        case PortMapperState::kGaveUp:
            return "gave up";
        case PortMapperState::kStopped:
            return "stopped";
    }
    return "?";
}

namespace {

// "2h", "90m", "45s", "permanent".
std::string lease_text(Duration d) {
    using namespace std::chrono;
    if (d <= Duration::zero()) return "permanent";
    const auto s = duration_cast<seconds>(d).count();
    if (s % 3600 == 0) return std::to_string(s / 3600) + "h";
    if (s % 60 == 0) return std::to_string(s / 60) + "m";
    return std::to_string(s) + "s";
}

}  // namespace

void PortMapper::start(uint16_t internal_port, Time now) {
    if (!enabled_ || status_.state == PortMapperState::kStopped) return;
    internal_port_ = internal_port;
    ask(now, std::nullopt);
}

void PortMapper::on_network_changed(Time now) {
    if (!enabled_ || internal_port_ == 0 || status_.state == PortMapperState::kStopped) return;
    unanswered_ = 0;
    if (in_flight_) {
        // Its answer describes the old network: ask again when it comes.
        stale_in_flight_ = true;
        return;
    }
    status_.mapping.reset();
    ask(now, std::nullopt);
}

void PortMapper::ask(Time now, std::optional<PortMapProtocol> protocol) {
    (void)now;
    PortMapRequest r;
    r.op = PortMapRequest::Op::kMap;
    r.internal_port = internal_port_;
    r.lease = kPortMappingLease;
    r.protocol = protocol;
    if (protocol && status_.mapping) r.external_port = status_.mapping->external.port;
    requests_.push_back(r);
    in_flight_ = true;
    due_ = kNever;
    ++status_.asks;
    // A renewal keeps offering the mapping while it is out; anything else is asking.
    status_.state = status_.mapping ? PortMapperState::kMapped : PortMapperState::kAsking;
}

void PortMapper::on_result(PortMappingResult result, Time now) {
    if (!in_flight_) return;  // nothing asked: a stray report changes nothing
    in_flight_ = false;
    if (status_.state == PortMapperState::kStopped) {
        // Asked before stop(), answered after: take it back at once.
        if (result.granted) {
            status_.mapping = std::move(result.granted);
            queue_delete();
        }
        return;
    }
    if (stale_in_flight_) {
        stale_in_flight_ = false;
        status_.mapping.reset();
        ask(now, std::nullopt);
        return;
    }
    if (!result.granted) {
        if (status_.mapping) {
            logs_.push_back("port mapping: renewing " + to_string(status_.mapping->external) +
                            " at " + status_.mapping->gateway + " failed (" + result.detail +
                            "); the mapped candidate is withdrawn");
            status_.mapping.reset();
        }
        unanswered(std::move(result.detail), now);
        return;
    }
    const bool renewal = status_.mapping && status_.mapping->protocol == result.granted->protocol &&
                         status_.mapping->external == result.granted->external;
    const PortMappingGranted& g = *result.granted;
    if (renewal) {
        ++status_.renewals;
    } else {
        logs_.push_back("port mapping: " + std::string(to_string(g.protocol)) + " at " + g.gateway +
                        " gave " + to_string(g.external) + " for " + lease_text(g.lease));
    }
    unanswered_ = 0;
    status_.last_failure.clear();
    status_.mapping = std::move(result.granted);
    status_.state = PortMapperState::kMapped;
    const Duration lease = status_.mapping->lease;
    due_ = now + (lease <= Duration::zero() ? kPermanentRecheck
                                            : std::max<Duration>(lease / 2, kMinRenewInterval));
}

void PortMapper::unanswered(std::string detail, Time now) {
    ++status_.failures;
    ++unanswered_;
    status_.last_failure = detail;
    if (unanswered_ >= kMaxUnansweredAsks) {
        status_.state = PortMapperState::kGaveUp;
        due_ = kNever;
        logs_.push_back("port mapping: no port mapping protocol answered (" + detail +
                        "); not asking again until the network changes");
        return;
    }
    const Duration wait = kRetryDelays[std::min<size_t>(static_cast<size_t>(unanswered_ - 1),
                                                        std::size(kRetryDelays) - 1)];
    status_.state = PortMapperState::kWaiting;
    due_ = now + wait;
    logs_.push_back("port mapping: no port mapping protocol answered (" + detail +
                    "); asking again in " + lease_text(wait));
}

void PortMapper::on_timer(Time now) {
    if (in_flight_ || now < due_) return;
    due_ = kNever;
    if (status_.state == PortMapperState::kMapped) {
        ask(now, status_.mapping->protocol);
    } else if (status_.state == PortMapperState::kWaiting) {
        ask(now, std::nullopt);
    }
}

void PortMapper::stop() {
    if (status_.state == PortMapperState::kStopped) return;
    const bool held = status_.mapping.has_value() && !in_flight_;
    status_.state = PortMapperState::kStopped;
    due_ = kNever;
    if (held) queue_delete();
}

void PortMapper::queue_delete() {
    PortMapRequest r;
    r.op = PortMapRequest::Op::kDelete;
    r.internal_port = internal_port_;
    r.lease = Duration::zero();
    r.protocol = status_.mapping->protocol;
    r.external_port = status_.mapping->external.port;
    requests_.push_back(r);
    status_.mapping.reset();
}

std::optional<PortMapRequest> PortMapper::poll_request() {
    if (requests_.empty()) return std::nullopt;
    PortMapRequest r = requests_.front();
    requests_.pop_front();
    return r;
}

std::optional<std::string> PortMapper::poll_log() {
    if (logs_.empty()) return std::nullopt;
    std::string s = std::move(logs_.front());
    logs_.pop_front();
    return s;
}

Time PortMapper::next_deadline() const { return in_flight_ ? kNever : due_; }

std::optional<SocketAddress> PortMapper::mapped() const {
    if (status_.state == PortMapperState::kStopped || !status_.mapping) return std::nullopt;
    return status_.mapping->external;
}

}  // namespace burrow
