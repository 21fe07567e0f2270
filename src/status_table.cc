#include "src/status_table.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string_view>
#include <vector>

namespace burrow {

namespace {

using json = nlohmann::json;

constexpr const char* kMissing = "-";
constexpr const char* kMalformed = "malformed status from agent\n";
constexpr const char* kColumnGap = "  ";
constexpr double kBytesPerUnit = 1024;
constexpr double kPercent = 100;
constexpr int64_t kSecondsPerMinute = 60;
constexpr int64_t kSecondsPerHour = 60 * kSecondsPerMinute;
constexpr int64_t kSecondsPerDay = 24 * kSecondsPerHour;

template <typename... Args>
std::string printf_string(const char* format, Args... args) {
    std::array<char, 64> buffer;
    std::snprintf(buffer.data(), buffer.size(), format, args...);
    return buffer.data();
}

// Control characters (a newline, an ANSI escape) become '?': the text comes from the network.
std::string sanitize(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) c = '?';
    }
    return out;
}

const json* field(const json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
}

std::string text(const json& object, const char* key) {
    const json* v = field(object, key);
    if (v == nullptr || !v->is_string()) return kMissing;
    const std::string s = sanitize(v->get_ref<const std::string&>());
    return s.empty() ? kMissing : s;
}

std::optional<double> number(const json& object, const char* key) {
    const json* v = field(object, key);
    if (v == nullptr || !v->is_number()) return std::nullopt;
    const double d = v->get<double>();
    return std::isfinite(d) ? std::optional<double>(d) : std::nullopt;
}

// A counter: a non-negative integer (or a float holding one, as some encoders write them).
std::optional<uint64_t> count(const json& value) {
    if (value.is_number_unsigned()) return value.get<uint64_t>();
    if (value.is_number_integer()) {
        const int64_t i = value.get<int64_t>();
        return i >= 0 ? std::optional<uint64_t>(static_cast<uint64_t>(i)) : std::nullopt;
    }
    if (value.is_number_float()) {
        const double d = value.get<double>();
        // 2^64 as a double: the first value that no longer fits.
        constexpr double kUint64Limit = 18446744073709551616.0;
        if (std::isfinite(d) && d >= 0 && d < kUint64Limit) return static_cast<uint64_t>(d);
    }
    return std::nullopt;
}

std::string count_text(const json& object, const char* key) {
    const json* v = field(object, key);
    const std::optional<uint64_t> c = v ? count(*v) : std::nullopt;
    return c ? std::to_string(*c) : kMissing;
}

std::string bytes_text(const json& object, const char* key) {
    const json* v = field(object, key);
    const std::optional<uint64_t> c = v ? count(*v) : std::nullopt;
    return c ? format_bytes(*c) : kMissing;
}

std::string yes_no(const json& object, const char* key) {
    const json* v = field(object, key);
    if (v == nullptr || !v->is_boolean()) return kMissing;
    return v->get<bool>() ? "yes" : "no";
}

std::string rtt_text(const json& peer) {
    const std::optional<double> ms = number(peer, "rtt_ms");
    if (!ms || *ms < 0) return kMissing;
    // Three significant digits or so: 0.42 ms, 12.5 ms, 230 ms.
    if (*ms < 10) return printf_string("%.2f ms", *ms);
    if (*ms < 100) return printf_string("%.1f ms", *ms);
    return printf_string("%.0f ms", *ms);
}

// "direct 198.51.100.7:41641", "direct-tcp 198.51.100.7:7000", "relay-udp": from the path
// object {"kind", "family", "address"}; a plain string (an agent from before the object) is
// printed as it is.
std::string path_text(const json& peer) {
    const json* path = field(peer, "path");
    if (path != nullptr && path->is_string()) return text(peer, "path");
    const std::string kind = text(path != nullptr ? *path : json(), "kind");
    if (kind != "direct" && kind != "direct-tcp") return kind;
    const std::string address = text(*path, "address");
    return address == kMissing ? kind : kind + " " + address;
}

std::string loss_text(const json& peer) {
    const std::optional<double> loss = number(peer, "loss");  // a fraction, 0..1
    if (!loss || *loss < 0 || *loss > 1) return kMissing;
    const double percent = *loss * kPercent;
    return percent < 1 ? printf_string("%.2f%%", percent) : printf_string("%.1f%%", percent);
}

// A list of strings joined with ",", or "-" if it is not one.
std::string list_text(const json& object, const char* key) {
    const json* v = field(object, key);
    if (v == nullptr || !v->is_array() || v->empty()) return kMissing;
    std::string out;
    for (const json& item : *v) {
        if (!out.empty()) out += ",";
        out += item.is_string() ? sanitize(item.get_ref<const std::string&>()) : kMissing;
    }
    return out;
}

class Table {
  public:
    explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

    std::string render() const {
        std::vector<size_t> widths(rows_.front().size(), 0);
        for (const auto& row : rows_) {
            for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
        }
        std::string out;
        for (const auto& row : rows_) {
            std::string line;
            for (size_t i = 0; i < row.size(); ++i) {
                line += row[i];
                if (i + 1 < row.size()) {
                    line += std::string(widths[i] - row[i].size(), ' ') + kColumnGap;
                }
            }
            out += line + "\n";
        }
        return out;
    }

  private:
    std::vector<std::vector<std::string>> rows_;
};

// The elements of key if it is an array; nothing otherwise.
const json& array_or_empty(const json& status, const char* key) {
    static const json kEmpty = json::array();
    const json* v = field(status, key);
    return v != nullptr && v->is_array() ? *v : kEmpty;
}

std::string agent_line(const json& status) {
    static const json kNone;
    const json* agent = field(status, "agent");
    const json& a = agent ? *agent : kNone;
    const std::optional<double> uptime = number(a, "uptime_s");
    return "agent   " + text(a, "name") + "  version " + text(a, "version") + "  up " +
           (uptime ? format_uptime(*uptime) : kMissing) + "  key " + text(a, "public_key") + "\n";
}

std::string server_line(const json& status) {
    static const json kNone;
    const json* server = field(status, "server");
    const json& s = server ? *server : kNone;
    return "server  " + text(s, "address") + "  state " + text(s, "state") + "  registered " +
           yes_no(s, "registered") + "  udp " + text(s, "udp") + "  nat " + text(s, "nat") +
           "  reflexive " + text(s, "reflexive") + "  reconnects " + count_text(s, "reconnects") +
           "\n";
}

std::string udp_line(const json& status) {
    static const json kNone;
    const json* udp = field(status, "udp");
    const json& u = udp ? *udp : kNone;
    return "udp     send " + text(u, "send_mode") + "  receive " + text(u, "receive_mode") +
           "  buffers " + bytes_text(u, "receive_buffer_bytes") + " in, " +
           bytes_text(u, "send_buffer_bytes") + " out\n";
}

// [agent] port_mapping: off, or what the gateway gave (or why nothing).
std::string port_mapping_line(const json& status) {
    const json* pm = field(status, "port_mapping");
    if (pm == nullptr) return "";
    std::string line = "mapping " + text(*pm, "state");
    if (field(*pm, "external") != nullptr) {
        line += "  " + text(*pm, "external") + " by " + text(*pm, "protocol") + " at " +
                text(*pm, "gateway");
    } else if (field(*pm, "last_failure") != nullptr) {
        line += "  (" + text(*pm, "last_failure") + ")";
    }
    return line + "\n";
}

// Only when [agent] stun_servers lists any: each server's state, what it saw, and its RTT.
std::string stun_section(const json& status) {
    const json& servers = array_or_empty(status, "stun_servers");
    if (servers.empty()) return "";
    Table table({"STUN SERVER", "STATE", "MAPPED", "RTT"});
    for (const json& st : servers) {
        std::string state = text(st, "state");
        if (const json* e = field(st, "error"); e != nullptr && e->is_string()) {
            state += " (" + text(st, "error") + ")";
        }
        table.add({text(st, "server"), state, text(st, "mapped"),
                   field(st, "rtt_ms") ? rtt_text(st) : kMissing});
    }
    return "\n" + table.render();
}

std::string peers_section(const json& status) {
    const json& peers = array_or_empty(status, "peers");
    if (peers.empty()) return "no peers\n";
    // One session per peer: SERVICES lists every service it carries, either way.
    Table table(
        {"PEER", "PATH", "RTT", "LOSS", "SENT", "RECEIVED", "STREAMS", "SERVICES", "STATE"});
    for (const json& p : peers) {
        std::string state = text(p, "state");
        if (const std::string role = text(p, "role"); role != kMissing) state += " (" + role + ")";
        std::string services;
        for (const json& s : array_or_empty(p, "services")) {
            if (!s.is_string()) continue;
            services += (services.empty() ? "" : ",") + s.get<std::string>();
        }
        table.add({text(p, "peer"), path_text(p), rtt_text(p), loss_text(p),
                   bytes_text(p, "bytes_sent"), bytes_text(p, "bytes_received"),
                   count_text(p, "streams"), services.empty() ? kMissing : services, state});
    }
    return table.render();
}

// "12 (stream_limit 10, queue_full 2)": the total, then each non-zero reason.
std::string refused_text(const json& forward) {
    std::string reasons;
    if (const json* r = field(forward, "refusals"); r != nullptr && r->is_object()) {
        for (const auto& [name, value] : r->items()) {
            const std::optional<uint64_t> c = count(value);
            if (!c || *c == 0) continue;
            reasons += (reasons.empty() ? "" : ", ") + sanitize(name) + " " + std::to_string(*c);
        }
    }
    const std::string total = count_text(forward, "refused");
    return reasons.empty() ? total : total + " (" + reasons + ")";
}

std::string forwards_section(const json& status) {
    const json& forwards = array_or_empty(status, "forwards");
    if (forwards.empty()) return "no forwards\n";
    Table table({"LISTEN", "PEER", "SERVICE", "CONNECTIONS", "ACTIVE", "WAITING", "REFUSED"});
    for (const json& f : forwards) {
        // A UDP forward may share its port number with a TCP one: say which is which.
        const bool udp = text(f, "protocol") == "udp";
        table.add({text(f, "listen") + (udp ? " udp" : ""), text(f, "peer"), text(f, "service"),
                   count_text(f, "connections"), count_text(f, "active"), count_text(f, "waiting"),
                   refused_text(f)});
    }
    return table.render();
}

std::string exposes_section(const json& status) {
    const json& exposes = array_or_empty(status, "exposes");
    if (exposes.empty()) return "no exposed services\n";
    Table table({"SERVICE", "TARGET", "ALLOW", "STREAMS", "ACTIVE", "REFUSED"});
    for (const json& e : exposes) {
        const bool udp = text(e, "protocol") == "udp";
        table.add({text(e, "service") + (udp ? " (udp)" : ""), text(e, "target"),
                   list_text(e, "allow"),
                   count_text(e, "streams"), count_text(e, "active"), count_text(e, "refused")});
    }
    return table.render();
}

// UDP forwards and services: flows, datagrams and bytes each way, the session's largest
// datagram, drops by reason. Only when there are any.
std::string udp_flows_section(const json& status) {
    Table table({"UDP", "FLOWS", "DATAGRAMS IN/OUT", "BYTES IN/OUT", "MAX DATAGRAM", "DROPS"});
    size_t rows = 0;
    const auto add = [&](const std::string& name, const json& entry) {
        const json* u = field(entry, "udp");
        if (u == nullptr || !u->is_object()) return;
        std::string drops;
        if (const json* d = field(*u, "drops"); d != nullptr && d->is_object()) {
            for (const auto& [reason, value] : d->items()) {
                const std::optional<uint64_t> c = count(value);
                if (!c || *c == 0) continue;
                drops += (drops.empty() ? "" : ", ") + sanitize(reason) + " " + std::to_string(*c);
            }
        }
        const json* m = field(*u, "max_datagram");
        const uint64_t largest = m ? count(*m).value_or(0) : 0;
        table.add({name, count_text(*u, "active_flows") + "/" + count_text(*u, "max_flows"),
                   count_text(*u, "datagrams_in") + "/" + count_text(*u, "datagrams_out"),
                   bytes_text(*u, "bytes_in") + "/" + bytes_text(*u, "bytes_out"),
                   largest > 0 ? std::to_string(largest) + " B" : kMissing,
                   drops.empty() ? "none" : drops});
        ++rows;
    };
    for (const json& f : array_or_empty(status, "forwards")) {
        add("forward " + text(f, "listen") + " -> " + text(f, "peer") + "/" + text(f, "service"),
            f);
    }
    for (const json& e : array_or_empty(status, "exposes")) {
        add("expose " + text(e, "service") + " -> " + text(e, "target"), e);
    }
    return rows == 0 ? "" : "\n" + table.render();
}

// "name 3" for each non-zero counter in drops, each name after prefix.
void add_drops(const json* drops, const std::string& prefix, std::vector<std::string>& out) {
    if (drops == nullptr || !drops->is_object()) return;
    for (const auto& [name, value] : drops->items()) {
        const std::optional<uint64_t> c = count(value);
        if (c && *c > 0) out.push_back(prefix + sanitize(name) + " " + std::to_string(*c));
    }
}

std::string drops_line(const json& status) {
    std::vector<std::string> nonzero;
    add_drops(field(status, "drops"), "", nonzero);
    for (const json& p : array_or_empty(status, "peers")) {
        add_drops(field(p, "drops"), text(p, "peer") + " ", nonzero);
    }
    if (nonzero.empty()) return "drops: none\n";
    std::string line = "drops: ";
    for (size_t i = 0; i < nonzero.size(); ++i) line += (i ? ", " : "") + nonzero[i];
    return line + "\n";
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
    static constexpr std::array<const char*, 4> kUnits = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < kBytesPerUnit) return std::to_string(bytes) + " B";
    double value = static_cast<double>(bytes) / kBytesPerUnit;
    size_t unit = 0;
    while (value >= kBytesPerUnit && unit + 1 < kUnits.size()) {
        value /= kBytesPerUnit;
        ++unit;
    }
    return printf_string("%.1f %s", value, kUnits[unit]);
}

std::string format_uptime(double seconds) {
    // 2^63 as a double: the first value that no longer fits in int64_t.
    constexpr double kInt64Limit = 9223372036854775808.0;
    if (!std::isfinite(seconds) || seconds < 0 || seconds >= kInt64Limit) return kMissing;
    const auto s = static_cast<int64_t>(seconds);
    if (s < kSecondsPerMinute) return std::to_string(s) + "s";
    if (s < kSecondsPerHour) {
        return printf_string("%lldm %02llds", static_cast<long long>(s / kSecondsPerMinute),
                             static_cast<long long>(s % kSecondsPerMinute));
    }
    if (s < kSecondsPerDay) {
        return printf_string("%lldh %02lldm", static_cast<long long>(s / kSecondsPerHour),
                             static_cast<long long>(s % kSecondsPerHour / kSecondsPerMinute));
    }
    return printf_string("%lldd %02lldh", static_cast<long long>(s / kSecondsPerDay),
                         static_cast<long long>(s % kSecondsPerDay / kSecondsPerHour));
}

std::string render_status(const json& status) {
    if (!status.is_object()) return kMalformed;
    try {
        return agent_line(status) + server_line(status) + port_mapping_line(status) +
               udp_line(status) +
               stun_section(status) + "\n" +
               peers_section(status) + "\n" +
               forwards_section(status) + "\n" + exposes_section(status) +
               udp_flows_section(status) + "\n" + drops_line(status);
    } catch (const std::exception&) {
        // Every access above checks its type first; this is the last guard of "never throws".
        return kMalformed;
    }
}

}  // namespace burrow
