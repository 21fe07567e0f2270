#include "src/port_mapping.h"

#include <arpa/inet.h>
#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>
// Debian's libnatpmp exports strnatpmperr; the header declares it only when asked.
#define ENABLE_STRNATPMPERR
#include <natpmp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

namespace burrow {

namespace {

// UPnP IGD error codes (WANIPConnection:1 §2.4.16).
constexpr int kUpnpConflictInMappingEntry = 718;
constexpr int kUpnpOnlyPermanentLeasesSupported = 725;
// upnpDiscover() searches four device and service types one after another, each for the whole
// window (8 s when nothing answers, and the agent's exit waits for it): an IGD answers a search
// for its own type.
constexpr const char* kUpnpIgdType = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
// Ports to try when the gateway already maps the one we ask for to someone else.
constexpr int kUpnpPortAttempts = 3;

// "http://192.168.1.1:5000/ctl/IPConn" -> "192.168.1.1".
std::string url_host(const std::string& url) {
    size_t start = url.find("://");
    start = start == std::string::npos ? 0 : start + 3;
    size_t end = url.find_first_of(":/", start);
    return url.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::optional<SocketAddress> ipv4_address(const char* text, uint16_t port) {
    in_addr a{};
    if (inet_pton(AF_INET, text, &a) != 1) return std::nullopt;
    std::array<uint8_t, 4> b{};
    std::memcpy(b.data(), &a.s_addr, 4);
    return SocketAddress::ipv4(b, port);
}

std::string upnp_error(int code) {
    const char* s = strupnperror(code);
    return s ? std::string(s) + " (" + std::to_string(code) + ")" : "error " + std::to_string(code);
}

// One NAT-PMP exchange: waits for the reply up to kNatPmpWait, as libnatpmp's retries would take
// minutes.
// cancelled: checked at least every kCancelCheck.
constexpr auto kCancelCheck = std::chrono::milliseconds(100);
int natpmp_wait(natpmp_t& n, natpmpresp_t& response, const std::atomic<bool>* cancelled) {
    const auto deadline = std::chrono::steady_clock::now() + kNatPmpWait;
    for (;;) {
        if (cancelled != nullptr && *cancelled) return NATPMP_ERR_RECVFROM;
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(n.s, &fds);
        timeval timeout{};
        getnatpmprequesttimeout(&n, &timeout);
        const auto left = std::min<std::chrono::microseconds>(
            std::chrono::duration_cast<std::chrono::microseconds>(
                deadline - std::chrono::steady_clock::now()),
            kCancelCheck);
        if (std::chrono::steady_clock::now() >= deadline) return NATPMP_ERR_RECVFROM;
        const int64_t wait_us = int64_t{timeout.tv_sec} * 1000000 + timeout.tv_usec;
        if (wait_us > left.count()) {
            timeout.tv_sec = static_cast<time_t>(left.count() / 1000000);
            timeout.tv_usec = static_cast<suseconds_t>(left.count() % 1000000);
        }
        if (left.count() > 0) select(n.s + 1, &fds, nullptr, nullptr, &timeout);
        const int r = readnatpmpresponseorretry(&n, &response);
        if (r != NATPMP_TRYAGAIN) return r;
    }
}

std::string natpmp_error(int code) {
    if (code == NATPMP_ERR_RECVFROM || code == NATPMP_TRYAGAIN) return "no answer";
    const char* s = strnatpmperr(code);
    return s ? s : "error " + std::to_string(code);
}

std::string gateway_text(in_addr_t gw) {
    char buf[INET_ADDRSTRLEN] = {};
    in_addr a{};
    a.s_addr = gw;
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

// The default gateway, as libnatpmp finds it (it reads the routing table; no packet is sent).
std::optional<in_addr_t> default_gateway() {
    natpmp_t n{};
    if (initnatpmp(&n, 0, 0) < 0) return std::nullopt;
    const in_addr_t gw = n.gateway;
    closenatpmp(&n);
    return gw;
}

// A UDP socket connected to the gateway's PCP port, and our address as the gateway sees it
// (the PCP client address every request carries, §8.1).
struct PcpSocket {
    int fd = -1;
    std::string gateway;
    SocketAddress client;
    ~PcpSocket() {
        if (fd >= 0) ::close(fd);
    }
};

bool pcp_open(PcpSocket& s, std::string& why) {
    const auto gw = default_gateway();
    if (!gw) {
        why = "no default gateway";
        return false;
    }
    s.gateway = gateway_text(*gw);
    s.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(kPcpServerPort);
    to.sin_addr.s_addr = *gw;
    sockaddr_in local{};
    socklen_t len = sizeof local;
    if (s.fd < 0 || ::connect(s.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 ||
        ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
        why = std::string("socket to ") + s.gateway + ": " + std::strerror(errno);
        return false;
    }
    std::array<uint8_t, 4> ip{};
    std::memcpy(ip.data(), &local.sin_addr.s_addr, 4);
    s.client = SocketAddress::ipv4(ip, ntohs(local.sin_port));
    return true;
}

// Sends request and waits for the datagram accept() takes, resending at 250 ms doubling until
// kNatPmpWait has passed (or cancelled turns true, checked every kCancelCheck). An ICMP port
// unreachable (nothing listens on 5351) ends the wait at once.
enum class PcpWait : uint8_t { kAnswered, kSilent, kRefused, kCancelled };
template <typename Accept>
PcpWait pcp_exchange(const PcpSocket& s, ByteView request, const std::atomic<bool>* cancelled,
                     Accept accept) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + kNatPmpWait;
    auto interval = std::chrono::duration_cast<clock::duration>(kPcpFirstRetry);
    auto next_send = clock::now();
    std::array<uint8_t, kPcpMaxPacket + 4> buf{};
    for (;;) {
        if (cancelled != nullptr && *cancelled) return PcpWait::kCancelled;
        const auto now = clock::now();
        if (now >= deadline) return PcpWait::kSilent;
        if (now >= next_send) {
            if (::send(s.fd, request.data(), request.size(), 0) < 0 && errno == ECONNREFUSED) {
                return PcpWait::kRefused;
            }
            next_send = now + interval;
            interval *= 2;
        }
        const auto until = std::min({deadline, next_send, now + kCancelCheck});
        pollfd p{s.fd, POLLIN, 0};
        const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
        if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(wait_ms.count(), 1))) <= 0) continue;
        const ssize_t n = ::recv(s.fd, buf.data(), buf.size(), 0);
        if (n < 0) {
            if (errno == ECONNREFUSED) return PcpWait::kRefused;
            continue;
        }
        if (accept(ByteView(buf.data(), static_cast<size_t>(n)))) return PcpWait::kAnswered;
    }
}

}  // namespace

PortMappingGateway::PortMappingGateway() {
    randombytes_buf(pcp_nonce_.data(), pcp_nonce_.size());
}

PortMappingResult PortMappingGateway::run(const PortMapRequest& request) {
    if (request.op == PortMapRequest::Op::kDelete) {
        remove(request);
        return {};
    }
    return map(request);
}

PortMappingResult PortMappingGateway::map(const PortMapRequest& request) {
    std::string upnp_why, pcp_why, natpmp_why;
    const auto asks = [&](PortMapProtocol p) { return !request.protocol || *request.protocol == p; };
    if (asks(PortMapProtocol::kUpnpIgd)) {
        PortMappingResult r = map_upnp(request, upnp_why);
        if (r.granted) return r;
    }
    if (cancelled_) return PortMappingResult{std::nullopt, "the agent is stopping"};
    bool port_5351_silent = false;
    if (asks(PortMapProtocol::kPcp)) {
        PortMappingResult r = map_pcp(request, pcp_why, port_5351_silent);
        if (r.granted) return r;
    }
    if (cancelled_) return PortMappingResult{std::nullopt, "the agent is stopping"};
    // NAT-PMP listens where PCP does: when nothing answered there, it will not either.
    if (asks(PortMapProtocol::kNatPmp) && !(port_5351_silent && !request.protocol)) {
        PortMappingResult r = map_natpmp(request, natpmp_why);
        if (r.granted) return r;
    }
    std::string detail;
    const auto add = [&](const char* name, const std::string& why) {
        if (why.empty()) return;
        detail += (detail.empty() ? "" : "; ") + std::string(name) + ": " + why;
    };
    add("UPnP IGD", upnp_why);
    add("PCP", pcp_why);
    add("NAT-PMP", natpmp_why);
    return PortMappingResult{std::nullopt, detail};
}

std::optional<PortMappingGateway::UpnpIgd> PortMappingGateway::discover_igd(std::string& why) {
    int error = 0;
    UPNPDev* devices =
        upnpDiscoverDevice(kUpnpIgdType, kUpnpDiscoverMs, nullptr, nullptr, UPNP_LOCAL_PORT_ANY,
                           0, 2, &error);
    if (devices == nullptr) {
        why = "no IGD answered discovery";
        return std::nullopt;
    }
    UPNPUrls urls{};
    IGDdatas data{};
    char lan[64] = {};
    const int found = UPNP_GetValidIGD(devices, &urls, &data, lan, sizeof lan);
    freeUPNPDevlist(devices);
    std::optional<UpnpIgd> igd;
    // 1: a connected IGD; 2: an IGD that says it is not connected (it may still map).
    if ((found == 1 || found == 2) && urls.controlURL != nullptr) {
        igd = UpnpIgd{urls.controlURL, data.first.servicetype, lan, url_host(urls.controlURL)};
    } else {
        why = found == 0 ? "no IGD found" : "a UPnP device answered, but it is no IGD";
    }
    if (found != 0) FreeUPNPUrls(&urls);
    return igd;
}

PortMappingResult PortMappingGateway::map_upnp(const PortMapRequest& request, std::string& why) {
    std::optional<UpnpIgd> igd;
    {
        std::lock_guard lock(mutex_);
        igd = igd_;
    }
    if (!igd) igd = discover_igd(why);
    if (!igd) return {};
    char external_ip[40] = {};
    int rc = UPNP_GetExternalIPAddress(igd->control_url.c_str(), igd->service_type.c_str(),
                                       external_ip);
    if (rc != UPNPCOMMAND_SUCCESS) {
        // A cached IGD that stopped answering (the router rebooted, we moved): discover again.
        std::lock_guard lock(mutex_);
        igd_.reset();
        why = "GetExternalIPAddress at " + igd->gateway + ": " + upnp_error(rc);
        return {};
    }
    const std::string internal = std::to_string(request.internal_port);
    long lease_s = static_cast<long>(
        std::chrono::duration_cast<std::chrono::seconds>(request.lease).count());
    uint16_t port = request.external_port != 0 ? request.external_port : request.internal_port;
    std::minstd_rand ports(std::random_device{}());
    for (int attempt = 0; attempt < kUpnpPortAttempts; ++attempt) {
        const std::string external = std::to_string(port);
        rc = UPNP_AddPortMapping(igd->control_url.c_str(), igd->service_type.c_str(),
                                 external.c_str(), internal.c_str(), igd->lan_address.c_str(),
                                 "burrow", "UDP", nullptr, std::to_string(lease_s).c_str());
        if (rc == kUpnpOnlyPermanentLeasesSupported && lease_s != 0) {
            lease_s = 0;
            --attempt;
            continue;
        }
        if (rc != kUpnpConflictInMappingEntry) break;
        port = static_cast<uint16_t>(1024 + ports() % (65536 - 1024));
    }
    if (rc != UPNPCOMMAND_SUCCESS) {
        why = "AddPortMapping at " + igd->gateway + ": " + upnp_error(rc);
        return {};
    }
    std::optional<SocketAddress> public_address = ipv4_address(external_ip, port);
    if (!public_address) {
        why = "the IGD at " + igd->gateway + " reports no usable external address (\"" +
              std::string(external_ip) + "\")";
        return {};
    }
    {
        std::lock_guard lock(mutex_);
        igd_ = igd;
    }
    return PortMappingResult{PortMappingGranted{PortMapProtocol::kUpnpIgd, igd->gateway,
                                                *public_address, std::chrono::seconds(lease_s)},
                             ""};
}

PortMappingResult PortMappingGateway::map_pcp(const PortMapRequest& request, std::string& why,
                                                bool& silent) {
    PcpSocket s;
    if (!pcp_open(s, why)) return {};
    PcpMapRequest ask;
    ask.nonce = pcp_nonce_;
    ask.client = s.client;
    ask.internal_port = request.internal_port;
    ask.suggested_external_port =
        request.external_port != 0 ? request.external_port : request.internal_port;
    ask.lifetime_s = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(request.lease).count());
    std::optional<PcpMapResponse> answer;
    bool natpmp_only = false;
    const PcpWait waited = pcp_exchange(s, encode_pcp_map(ask), &cancelled_, [&](ByteView d) {
        auto decoded = decode_pcp_map_response(d, ask);
        if (auto* r = std::get_if<PcpMapResponse>(&decoded)) {
            answer = *r;
            return true;
        }
        natpmp_only = std::get<PcpDecodeError>(decoded) == PcpDecodeError::kNatPmpOnly;
        if (!natpmp_only) {
            spdlog::debug("port mapping: PCP from {}: {}", s.gateway,
                          to_string(std::get<PcpDecodeError>(decoded)));
        }
        return natpmp_only;  // anything else: keep waiting for our answer
    });
    switch (waited) {
        case PcpWait::kCancelled:
            why = "the agent is stopping";
            return {};
        case PcpWait::kSilent:
            silent = true;
            why = "no answer from " + s.gateway;
            return {};
        case PcpWait::kRefused:
            silent = true;
            why = s.gateway + " refuses port " + std::to_string(kPcpServerPort);
            return {};
        case PcpWait::kAnswered:
            break;
    }
    if (natpmp_only) {
        why = s.gateway + " speaks NAT-PMP only";
        return {};
    }
    if (answer->result != 0) {
        why = s.gateway + " refused: " + pcp_result_text(answer->result);
        return {};
    }
    if (answer->external.v6 || answer->external.port == 0) {
        why = s.gateway + " assigned " + to_string(answer->external) + ", not an IPv4 address";
        return {};
    }
    return PortMappingResult{PortMappingGranted{PortMapProtocol::kPcp, s.gateway,
                                                answer->external,
                                                std::chrono::seconds(answer->lifetime_s)},
                             ""};
}

PortMappingResult PortMappingGateway::map_natpmp(const PortMapRequest& request, std::string& why) {
    natpmp_t n{};
    int rc = initnatpmp(&n, 0, 0);
    if (rc < 0) {
        why = natpmp_error(rc);
        return {};
    }
    const std::string gateway = gateway_text(n.gateway);
    natpmpresp_t response{};
    rc = sendpublicaddressrequest(&n);
    if (rc >= 0) rc = natpmp_wait(n, response, &cancelled_);
    if (rc < 0) {
        why = natpmp_error(rc) + " from " + gateway;
        closenatpmp(&n);
        return {};
    }
    const in_addr public_ip = response.pnu.publicaddress.addr;
    const auto lease_s = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(request.lease).count());
    rc = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, request.internal_port,
                                   request.external_port != 0 ? request.external_port
                                                              : request.internal_port,
                                   lease_s);
    if (rc >= 0) rc = natpmp_wait(n, response, &cancelled_);
    closenatpmp(&n);
    if (rc < 0) {
        why = "mapping at " + gateway + ": " + natpmp_error(rc);
        return {};
    }
    std::array<uint8_t, 4> b{};
    std::memcpy(b.data(), &public_ip.s_addr, 4);
    const SocketAddress external =
        SocketAddress::ipv4(b, response.pnu.newportmapping.mappedpublicport);
    return PortMappingResult{
        PortMappingGranted{PortMapProtocol::kNatPmp, gateway, external,
                           std::chrono::seconds(response.pnu.newportmapping.lifetime)},
        ""};
}

void PortMappingGateway::remove(const PortMapRequest& request) {
    if (request.protocol == PortMapProtocol::kUpnpIgd) {
        std::optional<UpnpIgd> igd;
        {
            std::lock_guard lock(mutex_);
            igd = igd_;
        }
        std::string why;
        if (!igd) igd = discover_igd(why);
        if (!igd) {
            spdlog::debug("port mapping: not deleted ({})", why);
            return;
        }
        const std::string external = std::to_string(request.external_port);
        const int rc = UPNP_DeletePortMapping(igd->control_url.c_str(), igd->service_type.c_str(),
                                              external.c_str(), "UDP", nullptr);
        if (rc != UPNPCOMMAND_SUCCESS) {
            spdlog::debug("port mapping: DeletePortMapping at {}: {}", igd->gateway,
                          upnp_error(rc));
        } else {
            spdlog::info("port mapping: deleted UDP port {} at {}", request.external_port,
                         igd->gateway);
        }
        return;
    }
    if (request.protocol == PortMapProtocol::kPcp) {
        // §15: a MAP with lifetime 0 and our nonce deletes the mapping.
        PcpSocket s;
        std::string why;
        if (!pcp_open(s, why)) {
            spdlog::debug("port mapping: PCP delete: {}", why);
            return;
        }
        PcpMapRequest del;
        del.nonce = pcp_nonce_;
        del.client = s.client;
        del.internal_port = request.internal_port;
        del.suggested_external_port = request.external_port;
        del.lifetime_s = 0;
        std::optional<PcpMapResponse> answer;
        pcp_exchange(s, encode_pcp_map(del), nullptr, [&](ByteView d) {
            auto decoded = decode_pcp_map_response(d, del);
            if (auto* r = std::get_if<PcpMapResponse>(&decoded)) answer = *r;
            return answer.has_value();
        });
        if (answer && answer->result == 0) {
            spdlog::info("port mapping: deleted UDP port {} at {}", request.external_port,
                         s.gateway);
        } else {
            spdlog::debug("port mapping: PCP delete at {}: {}", s.gateway,
                          answer ? pcp_result_text(answer->result) : "no answer");
        }
        return;
    }
    natpmp_t n{};
    if (initnatpmp(&n, 0, 0) < 0) return;
    natpmpresp_t response{};
    // RFC 6886 §3.4: lifetime 0 and suggested external port 0 delete the mapping.
    int rc = sendnewportmappingrequest(&n, NATPMP_PROTOCOL_UDP, request.internal_port, 0, 0);
    if (rc >= 0) rc = natpmp_wait(n, response, nullptr);
    if (rc < 0) {
        spdlog::debug("port mapping: NAT-PMP delete at {}: {}", gateway_text(n.gateway),
                      natpmp_error(rc));
    } else {
        spdlog::info("port mapping: deleted UDP port {} at {}", request.external_port,
                     gateway_text(n.gateway));
    }
    closenatpmp(&n);
}

PortMappingProbe probe_port_mapping() {
    PortMappingProbe p;
    int error = 0;
    UPNPDev* devices =
        upnpDiscoverDevice(kUpnpIgdType, kUpnpDiscoverMs, nullptr, nullptr, UPNP_LOCAL_PORT_ANY,
                           0, 2, &error);
    if (devices == nullptr) {
        p.upnp = "no answer to discovery";
    } else {
        UPNPUrls urls{};
        IGDdatas data{};
        char lan[64] = {};
        const int found = UPNP_GetValidIGD(devices, &urls, &data, lan, sizeof lan);
        freeUPNPDevlist(devices);
        if ((found == 1 || found == 2) && urls.controlURL != nullptr) {
            char external_ip[40] = {};
            const int rc =
                UPNP_GetExternalIPAddress(urls.controlURL, data.first.servicetype, external_ip);
            p.upnp_ok = rc == UPNPCOMMAND_SUCCESS;
            p.upnp = url_host(urls.controlURL) +
                     (p.upnp_ok ? " (external " + std::string(external_ip) + ")"
                                : ": GetExternalIPAddress: " + upnp_error(rc));
        } else {
            p.upnp = found == 0 ? "no IGD found" : "a UPnP device answered, but it is no IGD";
        }
        if (found != 0) FreeUPNPUrls(&urls);
    }
    {
        PcpSocket s;
        std::string why;
        std::optional<std::variant<uint8_t, PcpDecodeError>> answer;
        if (pcp_open(s, why)) {
            const PcpWait waited =
                pcp_exchange(s, encode_pcp_announce(s.client), nullptr, [&](ByteView d) {
                    auto decoded = decode_pcp_announce_response(d);
                    if (auto* e = std::get_if<PcpDecodeError>(&decoded);
                        e != nullptr && *e == PcpDecodeError::kNotOurs) {
                        return false;
                    }
                    answer = decoded;
                    return true;
                });
            if (waited == PcpWait::kSilent) why = "no answer from " + s.gateway;
            if (waited == PcpWait::kRefused) {
                why = s.gateway + " refuses port " + std::to_string(kPcpServerPort);
            }
        }
        if (answer) {
            if (auto* result = std::get_if<uint8_t>(&*answer)) {
                p.pcp_ok = *result == 0;
                p.pcp = s.gateway + (p.pcp_ok ? " answers" : ": " + pcp_result_text(*result));
            } else {
                p.pcp = s.gateway + ": " + to_string(std::get<PcpDecodeError>(*answer));
            }
        } else {
            p.pcp = why;
        }
    }
    natpmp_t n{};
    int rc = initnatpmp(&n, 0, 0);
    if (rc < 0) {
        p.natpmp = natpmp_error(rc);
        return p;
    }
    natpmpresp_t response{};
    rc = sendpublicaddressrequest(&n);
    if (rc >= 0) rc = natpmp_wait(n, response, nullptr);
    if (rc < 0) {
        p.natpmp = natpmp_error(rc) + " from " + gateway_text(n.gateway);
    } else {
        char buf[INET_ADDRSTRLEN] = {};
        inet_ntop(AF_INET, &response.pnu.publicaddress.addr, buf, sizeof buf);
        p.natpmp_ok = true;
        p.natpmp = gateway_text(n.gateway) + " (external " + buf + ")";
    }
    closenatpmp(&n);
    return p;
}

}  // namespace burrow
