#include "signal/control.h"

#include <cassert>
#include <string_view>
#include <type_traits>

#include "tunnel/wire.h"

namespace burrow {
namespace {

enum class Type : uint8_t {
    kServerHello = 0x01,
    kAuth = 0x02,
    kAuthOk = 0x03,
    kError = 0x04,
    kRegister = 0x05,
    kConnectRequest = 0x06,
    kPeerInfo = 0x07,
    kConnectRefused = 0x08,
    kRelayData = 0x09,
    kPing = 0x0a,
    kPong = 0x0b,
    kRelayAttach = 0x0c,
    kRelayDetached = 0x0d,
    kPunchReport = 0x0e,
    kDoctorRequest = 0x0f,
    kDoctorReply = 0x10,
};

constexpr uint8_t kFamilyIpv4 = 4;
constexpr uint8_t kFamilyIpv6 = 6;
constexpr uint8_t kFirstPrintable = 0x20;  // below: C0 control characters (newline, escape...)
constexpr uint8_t kDelete = 0x7f;

// --- encoding ---------------------------------------------------------------------------------

void put_text(ByteWriter& w, std::string_view s, size_t cap) {
    assert(s.size() <= cap);
    (void)cap;
    w.varint(s.size());
    w.bytes(as_bytes(s));
}

void put_address(ByteWriter& w, const SocketAddress& a) {
    w.u8(a.v6 ? kFamilyIpv6 : kFamilyIpv4);
    w.bytes(a.ip_bytes());
    w.u16(a.port);
}

void put_candidates(ByteWriter& w, const std::vector<Candidate>& cs) {
    assert(cs.size() <= kMaxCandidates);
    w.varint(cs.size());
    for (const Candidate& c : cs) {
        w.u8(static_cast<uint8_t>(c.kind));
        put_address(w, c.address);
    }
}

void put_allocation(ByteWriter& w, const PortAllocation& a) {
    w.u8(static_cast<uint8_t>(a.kind));
    w.u16(a.delta);
    w.u16(a.spread);
    w.u16(a.block_first);
    w.u32(a.block_size);
    w.u16(a.last);
}

void put_addresses(ByteWriter& w, const std::vector<SocketAddress>& as) {
    assert(as.size() <= kMaxCandidates);
    w.varint(as.size());
    for (const SocketAddress& a : as) put_address(w, a);
}

void put_report(ByteWriter& w, const PunchReport& m) {
    put_text(w, m.peer, kMaxAgentNameLen);
    w.u8(static_cast<uint8_t>(m.nat));
    w.u8(m.udp_to_server ? 1 : 0);
    put_candidates(w, m.candidates);
    put_addresses(w, m.tried);
    w.u8(m.answered ? 1 : 0);
    if (m.answered) put_address(w, *m.answered);
    w.u8(static_cast<uint8_t>(m.strategy));
    w.u8(static_cast<uint8_t>(m.source));
    w.u32(m.time_to_direct_ms);
    w.u8(static_cast<uint8_t>(m.path));
}

void put_side(ByteWriter& w, const DoctorSide& s) {
    w.u8(static_cast<uint8_t>(s.nat));
    w.u8(s.online ? 1 : 0);
    w.u8(s.udp_heard ? 1 : 0);
    put_candidates(w, s.candidates);
    w.u8(s.report ? 1 : 0);
    if (s.report) {
        put_report(w, *s.report);
        w.u32(s.report_age_ms);
    }
}

struct BodyWriter {
    ByteWriter& w;

    Type operator()(const ServerHello& m) {
        w.bytes(m.server_static_pub);
        w.bytes(m.nonce);
        return Type::kServerHello;
    }
    Type operator()(const Auth& m) {
        w.bytes(m.agent_pub);
        w.bytes(m.proof);
        put_text(w, m.software, kMaxSoftwareLen);
        return Type::kAuth;
    }
    Type operator()(const AuthOk& m) {
        put_text(w, m.name, kMaxAgentNameLen);
        w.bytes(m.udp_token);
        w.u16(m.stun_ports[0]);
        w.u16(m.stun_ports[1]);
        w.u16(m.relay_udp_port);
        return Type::kAuthOk;
    }
    Type operator()(const ControlErrorMessage& m) {
        w.u16(m.code);
        put_text(w, m.message, kMaxControlTextLen);
        return Type::kError;
    }
    Type operator()(const Register& m) {
        put_candidates(w, m.candidates);
        w.u8(static_cast<uint8_t>(m.nat));
        put_allocation(w, m.allocation);
        return Type::kRegister;
    }
    Type operator()(const ConnectRequest& m) {
        put_text(w, m.peer, kMaxAgentNameLen);
        put_text(w, m.service, kMaxServiceNameLen);
        w.u64(m.session_id);
        return Type::kConnectRequest;
    }
    Type operator()(const PeerInfo& m) {
        w.u64(m.session_id);
        put_text(w, m.peer, kMaxAgentNameLen);
        w.bytes(m.peer_pub);
        put_candidates(w, m.candidates);
        w.u8(static_cast<uint8_t>(m.nat));
        put_allocation(w, m.allocation);
        w.bytes(m.relay_token);
        w.u32(m.start_in_ms);
        w.u8(static_cast<uint8_t>(m.role));
        put_text(w, m.service, kMaxServiceNameLen);
        w.u8(m.opener ? 1 : 0);
        return Type::kPeerInfo;
    }
    Type operator()(const ConnectRefused& m) {
        put_text(w, m.peer, kMaxAgentNameLen);
        put_text(w, m.service, kMaxServiceNameLen);
        put_text(w, m.reason, kMaxControlTextLen);
        return Type::kConnectRefused;
    }
    Type operator()(const RelayData& m) {
        w.u64(m.session_id);
        w.bytes(m.payload);
        return Type::kRelayData;
    }
    Type operator()(const Ping& m) {
        w.u64(m.value);
        return Type::kPing;
    }
    Type operator()(const Pong& m) {
        w.u64(m.value);
        return Type::kPong;
    }
    Type operator()(const RelayAttach& m) {
        w.u64(m.session_id);
        put_text(w, m.peer, kMaxAgentNameLen);
        w.bytes(m.relay_token);
        w.u8(static_cast<uint8_t>(m.role));
        return Type::kRelayAttach;
    }
    Type operator()(const RelayDetached& m) {
        w.u64(m.session_id);
        put_text(w, m.reason, kMaxControlTextLen);
        return Type::kRelayDetached;
    }
    Type operator()(const PunchReport& m) {
        put_report(w, m);
        return Type::kPunchReport;
    }
    Type operator()(const DoctorRequest& m) {
        w.u32(m.request_id);
        put_text(w, m.peer, kMaxAgentNameLen);
        return Type::kDoctorRequest;
    }
    Type operator()(const DoctorReply& m) {
        w.u32(m.request_id);
        put_text(w, m.peer, kMaxAgentNameLen);
        w.u8(static_cast<uint8_t>(m.status));
        w.u32(m.rendezvous_age_ms);
        put_side(w, m.self);
        put_side(w, m.peer_side);
        return Type::kDoctorReply;
    }
};

// --- decoding ---------------------------------------------------------------------------------

// Reads a text field; fails the reader when it is too long or holds a control character.
std::string get_text(ByteReader& r, size_t cap) {
    const uint64_t n = r.varint();
    if (!r.ok() || n > cap) {
        r.fail();
        return {};
    }
    ByteView b = r.bytes(static_cast<size_t>(n));
    for (uint8_t c : b) {
        if (c < kFirstPrintable || c == kDelete) {
            r.fail();
            return {};
        }
    }
    return std::string(as_chars(b));
}

template <size_t N>
void get_array(ByteReader& r, std::array<uint8_t, N>& out) {
    ByteView b = r.bytes(N);
    if (r.ok()) std::copy(b.begin(), b.end(), out.begin());
}

SocketAddress get_address(ByteReader& r) {
    SocketAddress a;
    const uint8_t family = r.u8();
    if (family == kFamilyIpv4) {
        std::array<uint8_t, kIpv4Size> ip{};
        get_array(r, ip);
        a = SocketAddress::ipv4(ip, 0);
    } else if (family == kFamilyIpv6) {
        std::array<uint8_t, kIpv6Size> ip{};
        get_array(r, ip);
        a = SocketAddress::ipv6(ip, 0);
    } else {
        r.fail();
    }
    a.port = r.u16();
    return a;
}

std::vector<Candidate> get_candidates(ByteReader& r) {
    const uint64_t n = r.varint();
    if (!r.ok() || n > kMaxCandidates) {
        r.fail();
        return {};
    }
    std::vector<Candidate> cs;
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
        Candidate c;
        const uint8_t kind = r.u8();
        if (kind == 0) r.fail();  // never a valid kind
        c.kind = static_cast<CandidateKind>(kind);
        c.address = get_address(r);
        // A kind from a newer peer: its address is well-formed but means nothing to us.
        if (kind <= kMaxKnownCandidateKind) cs.push_back(c);
    }
    return cs;
}

NatMapping get_nat(ByteReader& r) {
    const uint8_t v = r.u8();
    if (v > static_cast<uint8_t>(NatMapping::kPerDestination)) r.fail();
    return static_cast<NatMapping>(v);
}

// The largest block a 16-bit port range holds.
constexpr uint32_t kMaxBlockSize = 65536;

PortAllocation get_allocation(ByteReader& r) {
    PortAllocation a;
    const uint8_t kind = r.u8();
    if (kind > static_cast<uint8_t>(PortAllocationKind::kRandom)) r.fail();
    a.kind = static_cast<PortAllocationKind>(kind);
    a.delta = r.u16();
    a.spread = r.u16();
    a.block_first = r.u16();
    a.block_size = r.u32();
    a.last = r.u16();
    // A block is a power of two that fits the port range; a sequential step is never 0 and its
    // spread never below it (measure_allocation's own invariants: predict_ports relies on them).
    if (a.block_size > kMaxBlockSize || (a.block_size & (a.block_size - 1)) != 0) r.fail();
    if (a.kind == PortAllocationKind::kBlock && a.block_size == 0) r.fail();
    if (a.kind == PortAllocationKind::kSequential && (a.delta == 0 || a.spread < a.delta)) {
        r.fail();
    }
    return a;
}

bool get_flag(ByteReader& r) {
    const uint8_t v = r.u8();
    if (v > 1) r.fail();
    return v == 1;
}

SessionRole get_role(ByteReader& r) {
    const uint8_t v = r.u8();
    if (v != static_cast<uint8_t>(SessionRole::kInitiator) &&
        v != static_cast<uint8_t>(SessionRole::kResponder)) {
        r.fail();
    }
    return static_cast<SessionRole>(v);
}

std::vector<SocketAddress> get_addresses(ByteReader& r) {
    const uint64_t n = r.varint();
    if (!r.ok() || n > kMaxCandidates) {
        r.fail();
        return {};
    }
    std::vector<SocketAddress> as;
    for (uint64_t i = 0; i < n && r.ok(); ++i) as.push_back(get_address(r));
    return as;
}

// An enum byte within [lo, hi]; fails the reader otherwise.
template <class E>
E get_enum(ByteReader& r, E lo, E hi) {
    const uint8_t v = r.u8();
    if (v < static_cast<uint8_t>(lo) || v > static_cast<uint8_t>(hi)) r.fail();
    return static_cast<E>(v);
}

PunchReport get_report(ByteReader& r) {
    PunchReport m;
    m.peer = get_text(r, kMaxAgentNameLen);
    m.nat = get_nat(r);
    m.udp_to_server = get_flag(r);
    m.candidates = get_candidates(r);
    m.tried = get_addresses(r);
    if (get_flag(r)) m.answered = get_address(r);
    m.strategy = get_enum(r, ReportStrategy::kPlain, ReportStrategy::kPredicted);
    m.source = get_enum(r, ReportSource::kNone, ReportSource::kTcpPeerReflexive);
    m.time_to_direct_ms = r.u32();
    m.path = get_enum(r, ReportPath::kDirect, ReportPath::kDirectTcp);
    return m;
}

DoctorSide get_side(ByteReader& r) {
    DoctorSide s;
    s.nat = get_nat(r);
    s.online = get_flag(r);
    s.udp_heard = get_flag(r);
    s.candidates = get_candidates(r);
    if (get_flag(r) && r.ok()) {
        s.report = get_report(r);
        s.report_age_ms = r.u32();
    }
    return s;
}

std::optional<ControlMessage> read_body(Type type, ByteReader& r) {
    switch (type) {
        case Type::kServerHello: {
            ServerHello m;
            get_array(r, m.server_static_pub);
            get_array(r, m.nonce);
            return m;
        }
        case Type::kAuth: {
            Auth m;
            get_array(r, m.agent_pub);
            get_array(r, m.proof);
            m.software = get_text(r, kMaxSoftwareLen);
            return m;
        }
        case Type::kAuthOk: {
            AuthOk m;
            m.name = get_text(r, kMaxAgentNameLen);
            get_array(r, m.udp_token);
            m.stun_ports[0] = r.u16();
            m.stun_ports[1] = r.u16();
            m.relay_udp_port = r.u16();
            return m;
        }
        case Type::kError: {
            ControlErrorMessage m;
            m.code = r.u16();
            m.message = get_text(r, kMaxControlTextLen);
            return m;
        }
        case Type::kRegister: {
            Register m;
            m.candidates = get_candidates(r);
            m.nat = get_nat(r);
            m.allocation = get_allocation(r);
            return m;
        }
        case Type::kConnectRequest: {
            ConnectRequest m;
            m.peer = get_text(r, kMaxAgentNameLen);
            m.service = get_text(r, kMaxServiceNameLen);
            m.session_id = r.u64();
            return m;
        }
        case Type::kPeerInfo: {
            PeerInfo m;
            m.session_id = r.u64();
            m.peer = get_text(r, kMaxAgentNameLen);
            get_array(r, m.peer_pub);
            m.candidates = get_candidates(r);
            m.nat = get_nat(r);
            m.allocation = get_allocation(r);
            get_array(r, m.relay_token);
            m.start_in_ms = r.u32();
            m.role = get_role(r);
            m.service = get_text(r, kMaxServiceNameLen);
            m.opener = get_flag(r);
            return m;
        }
        case Type::kConnectRefused: {
            ConnectRefused m;
            m.peer = get_text(r, kMaxAgentNameLen);
            m.service = get_text(r, kMaxServiceNameLen);
            m.reason = get_text(r, kMaxControlTextLen);
            return m;
        }
        case Type::kRelayData: {
            RelayData m;
            m.session_id = r.u64();
            ByteView rest = r.rest();
            m.payload.assign(rest.begin(), rest.end());
            return m;
        }
        case Type::kPing:
            return Ping{r.u64()};
        case Type::kPong:
            return Pong{r.u64()};
        case Type::kRelayAttach: {
            RelayAttach m;
            m.session_id = r.u64();
            m.peer = get_text(r, kMaxAgentNameLen);
            get_array(r, m.relay_token);
            m.role = get_role(r);
            return m;
        }
        case Type::kRelayDetached: {
            RelayDetached m;
            m.session_id = r.u64();
            m.reason = get_text(r, kMaxControlTextLen);
            return m;
        }
        case Type::kPunchReport:
            return get_report(r);
        case Type::kDoctorRequest: {
            DoctorRequest m;
            m.request_id = r.u32();
            m.peer = get_text(r, kMaxAgentNameLen);
            return m;
        }
        case Type::kDoctorReply: {
            DoctorReply m;
            m.request_id = r.u32();
            m.peer = get_text(r, kMaxAgentNameLen);
            m.status = get_enum(r, DoctorStatus::kOk, DoctorStatus::kNoRendezvous);
            m.rendezvous_age_ms = r.u32();
            m.self = get_side(r);
            m.peer_side = get_side(r);
            return m;
        }
    }
    return std::nullopt;
}

bool known_type(uint8_t t) {
    return t >= static_cast<uint8_t>(Type::kServerHello) &&
           t <= static_cast<uint8_t>(Type::kDoctorReply);
}

}  // namespace

const char* message_name(const ControlMessage& m) {
    static constexpr const char* kNames[] = {
        "ServerHello", "Auth",           "AuthOk",    "Error", "Register", "ConnectRequest",
        "PeerInfo",    "ConnectRefused", "RelayData", "Ping",  "Pong", "RelayAttach",
        "RelayDetached", "PunchReport", "DoctorRequest", "DoctorReply"};
    static_assert(std::size(kNames) == std::variant_size_v<ControlMessage>);
    return kNames[m.index()];
}

Bytes encode_control(const ControlMessage& m) {
    Bytes out(kControlLengthSize, 0);
    ByteWriter w(out);
    w.u8(kControlVersion);
    w.u8(0);  // type, known once the body is written
    const Type type = std::visit(BodyWriter{w}, m);
    out[kControlLengthSize + 1] = static_cast<uint8_t>(type);
    const size_t length = out.size() - kControlLengthSize;
    assert(length <= kMaxControlFrame);
    write_frame_length(kControlLengthSize, length, out);
    return out;
}

const char* to_string(ControlDecodeError e) {
    switch (e) {
        case ControlDecodeError::kOversized:
            return "oversize frame";
        case ControlDecodeError::kBadVersion:
            return "unsupported protocol version";
        case ControlDecodeError::kUnknownType:
            return "unknown message type";
        case ControlDecodeError::kMalformed:
            return "malformed message";
    }
    return "?";
}

std::variant<ControlMessage, ControlDecodeError> decode_control_body(ByteView frame) {
    ByteReader r(frame);
    const uint8_t version = r.u8();
    const uint8_t type = r.u8();
    if (!r.ok()) return ControlDecodeError::kMalformed;  // shorter than its own header
    if (version != kControlVersion) return ControlDecodeError::kBadVersion;
    if (!known_type(type)) return ControlDecodeError::kUnknownType;
    std::optional<ControlMessage> m = read_body(static_cast<Type>(type), r);
    if (!m || !r.ok() || !r.empty()) return ControlDecodeError::kMalformed;
    return std::move(*m);
}

void ControlDecoder::fail(ControlDecodeError e) {
    error_ = e;
    frames_ = StreamDeframer(kControlLengthSize, kControlHeaderSize, 0);  // free the buffer
}

std::optional<ControlMessage> ControlDecoder::next() {
    if (error_) return std::nullopt;
    auto frame = frames_.next();
    if (!frame) {
        if (frames_.error()) fail(ControlDecodeError::kOversized);
        return std::nullopt;
    }
    auto decoded = decode_control_body(*frame);
    if (auto* e = std::get_if<ControlDecodeError>(&decoded)) {
        fail(*e);
        return std::nullopt;
    }
    return std::move(std::get<ControlMessage>(decoded));
}

}  // namespace burrow
