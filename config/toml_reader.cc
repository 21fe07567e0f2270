#include "config/toml_reader.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace burrow::config_detail {

namespace {

constexpr size_t kMaxQuotedLen = 80;       // keeps an error about a long value on one screen line
constexpr size_t kMaxSuggestDistance = 2;  // "nmae" -> "name"; farther is a different word
constexpr size_t kMinPrefixLen = 4;  // "relay_rate" -> "relay_rate_mbit", but not "a" -> "allow"
constexpr char kFirstPrintable = 0x20;
constexpr char kDelete = 0x7f;

std::string_view type_name(toml::node_type type) {
    switch (type) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a floating-point number";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

bool is_bare_key(std::string_view key) {
    return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

// Levenshtein distance, for "did you mean": keys are short, so the quadratic table is tiny.
size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    std::iota(row.begin(), row.end(), size_t{0});
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            diagonal = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
        }
    }
    return row[b.size()];
}

std::string one_line(std::string_view text) {
    std::string out(text);
    std::replace_if(
        out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
    return out;
}

}  // namespace

Position position_of(const toml::source_region& region) {
    return {region.begin.line, region.begin.column};
}

void Issues::add(Position at, std::string path, std::string what) {
    list_.push_back({at, std::move(path), std::move(what)});
}

ConfigError Issues::first(std::string_view source) const {
    // min_element keeps the first of equals: at one position, the issue found first wins.
    const auto it = std::min_element(list_.begin(), list_.end(),
                                     [](const Issue& a, const Issue& b) { return a.at < b.at; });
    return {std::string(source) + ":" + std::to_string(it->at.line) + ":" +
            std::to_string(it->at.column) + ": " + it->path + ": " + it->what};
}

TableReader::TableReader(const toml::table& table, std::string path, Position at, Issues& issues)
    : table_(&table), path_(std::move(path)), at_(at), issues_(&issues) {}

const toml::node* TableReader::find(std::string_view key) {
    if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
    return table_->get(key);
}

std::string TableReader::child_path(std::string_view key) const {
    const std::string name = is_bare_key(key) ? std::string(key) : quote(key);
    return path_.empty() ? name : path_ + "." + name;
}

void TableReader::report_missing(std::string_view key, std::string what,
                                 std::string_view alternative) {
    missing_.push_back({std::string(key), std::string(alternative), std::move(what)});
}

void TableReader::wrong_type(const toml::node& node, const std::string& path,
                             std::string_view expected) {
    issues_->add(
        position_of(node.source()), path,
        "expected " + std::string(expected) + ", got " + std::string(type_name(node.type())));
}

std::optional<Located<std::string>> TableReader::optional_string(std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return std::nullopt;
    if (!node->is_string()) {
        wrong_type(*node, child_path(key), "a string");
        return std::nullopt;
    }
    return Located<std::string>{node->as_string()->get(), position_of(node->source()),
                                child_path(key)};
}

std::optional<Located<bool>> TableReader::optional_bool(std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return std::nullopt;
    if (!node->is_boolean()) {
        wrong_type(*node, child_path(key), "true or false");
        return std::nullopt;
    }
    return Located<bool>{node->as_boolean()->get(), position_of(node->source()), child_path(key)};
}

std::optional<Located<std::string>> TableReader::required_string(std::string_view key,
                                                                 std::string_view example) {
    if (find(key) == nullptr) {
        report_missing(key, "required key is missing; add: " + std::string(key) + " = " +
                                std::string(example));
        return std::nullopt;
    }
    return optional_string(key);
}

std::optional<Located<int64_t>> TableReader::optional_integer(std::string_view key, int64_t min,
                                                              int64_t max) {
    const toml::node* node = find(key);
    if (node == nullptr) return std::nullopt;
    if (!node->is_integer()) {
        wrong_type(*node, child_path(key), "an integer");
        return std::nullopt;
    }
    const int64_t value = node->as_integer()->get();
    const Position at = position_of(node->source());
    if (value < min || value > max) {
        issues_->add(at, child_path(key),
                     std::to_string(value) + " is out of range (" + std::to_string(min) + "-" +
                         std::to_string(max) + ")");
        return std::nullopt;
    }
    return Located<int64_t>{value, at, child_path(key)};
}

std::optional<Located<std::vector<Located<std::string>>>> TableReader::required_strings(
    std::string_view key, std::string_view example) {
    if (find(key) == nullptr) {
        report_missing(key, "required key is missing; add: " + std::string(key) + " = " +
                                std::string(example));
        return std::nullopt;
    }
    return optional_strings(key);
}

std::optional<Located<std::vector<Located<std::string>>>> TableReader::optional_strings(
    std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return std::nullopt;
    const std::string path = child_path(key);
    const toml::array* array = node->as_array();
    if (array == nullptr) {
        wrong_type(*node, path, "an array of strings");
        return std::nullopt;
    }
    std::vector<Located<std::string>> out;
    bool ok = true;
    for (size_t i = 0; i < array->size(); ++i) {
        const toml::node& element = *array->get(i);
        const std::string element_path = path + "[" + std::to_string(i) + "]";
        if (!element.is_string()) {
            wrong_type(element, element_path, "a string");
            ok = false;
            continue;
        }
        out.push_back({element.as_string()->get(), position_of(element.source()), element_path});
    }
    if (!ok) return std::nullopt;
    return Located<std::vector<Located<std::string>>>{std::move(out), position_of(node->source()),
                                                      path};
}

std::optional<Located<std::vector<Located<std::string>>>> TableReader::required_string_or_strings(
    std::string_view key, std::string_view example) {
    const toml::node* node = find(key);
    if (node == nullptr) {
        report_missing(key, "required key is missing; add: " + std::string(key) + " = " +
                                std::string(example));
        return std::nullopt;
    }
    if (node->is_array()) return optional_strings(key);
    const std::string path = child_path(key);
    if (!node->is_string()) {
        wrong_type(*node, path, "a string or an array of strings");
        return std::nullopt;
    }
    const Position at = position_of(node->source());
    std::vector<Located<std::string>> one{{node->as_string()->get(), at, path}};
    return Located<std::vector<Located<std::string>>>{std::move(one), at, path};
}

std::optional<TableReader> TableReader::required_table(std::string_view key) {
    const toml::node* node = find(key);
    const std::string path = child_path(key);
    if (node == nullptr) {
        report_missing(key, "required table is missing; add: [" + path + "]");
        return std::nullopt;
    }
    if (!node->is_table()) {
        wrong_type(*node, path, "a table ([" + path + "])");
        return std::nullopt;
    }
    return TableReader(*node->as_table(), path, position_of(node->source()), *issues_);
}

std::optional<TableReader> TableReader::optional_table(std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return std::nullopt;
    const std::string path = child_path(key);
    if (!node->is_table()) {
        wrong_type(*node, path, "a table ([" + path + "])");
        return std::nullopt;
    }
    return TableReader(*node->as_table(), path, position_of(node->source()), *issues_);
}

std::vector<TableReader> TableReader::table_array(std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return {};
    const std::string path = child_path(key);
    const toml::array* array = node->as_array();
    if (array == nullptr) {
        wrong_type(*node, path, "an array of tables ([[" + path + "]])");
        return {};
    }
    std::vector<TableReader> out;
    for (size_t i = 0; i < array->size(); ++i) {
        const toml::node& element = *array->get(i);
        const std::string element_path = path + "[" + std::to_string(i) + "]";
        if (!element.is_table()) {
            wrong_type(element, element_path, "a table");
            continue;
        }
        out.emplace_back(*element.as_table(), element_path, position_of(element.source()),
                         *issues_);
    }
    return out;
}

std::optional<std::string> TableReader::closest_key(std::string_view unknown) const {
    const auto closest = std::min_element(
        known_.begin(), known_.end(), [&](const std::string& a, const std::string& b) {
            return edit_distance(unknown, a) < edit_distance(unknown, b);
        });
    if (closest != known_.end() && edit_distance(unknown, *closest) <= kMaxSuggestDistance) {
        return *closest;
    }
    // A shortened or lengthened key: "relay_rate" for "relay_rate_mbit".
    for (const auto& key : known_) {
        const bool prefix = unknown.size() >= kMinPrefixLen && key.size() >= kMinPrefixLen &&
                            (key.starts_with(unknown) || unknown.starts_with(key));
        if (prefix) return key;
    }
    return std::nullopt;
}

void TableReader::finish() {
    std::vector<std::string> explained;  // missing keys that an unknown key is a typo of
    for (const auto& [key, node] : *table_) {
        const std::string_view name = key.str();
        if (std::find(known_.begin(), known_.end(), name) != known_.end()) continue;
        std::string what = "unknown key";
        if (auto guess = closest_key(name)) {
            what += " (did you mean " + quote(*guess) + "?)";
            explained.push_back(*guess);
        } else if (!known_.empty()) {
            std::string list;
            for (const auto& k : known_) list += (list.empty() ? "" : ", ") + k;
            what += " (expected one of: " + list + ")";
        }
        issues_->add(position_of(key.source()), child_path(name), std::move(what));
    }
    for (auto& m : missing_) {
        const auto is_explained = [&](const std::string& key) {
            return !key.empty() &&
                   std::find(explained.begin(), explained.end(), key) != explained.end();
        };
        if (is_explained(m.key) || is_explained(m.alternative)) continue;
        issues_->add(at_, child_path(m.key), std::move(m.what));
    }
    missing_.clear();
}

std::variant<toml::table, ConfigError> parse_toml(std::string_view text,
                                                  std::string_view source_name) {
    try {
        return toml::parse(text, source_name);
    } catch (const toml::parse_error& e) {
        const Position at = position_of(e.source());
        return ConfigError{std::string(source_name) + ":" + std::to_string(at.line) + ":" +
                           std::to_string(at.column) +
                           ": not valid TOML: " + one_line(e.description())};
    }
}

std::string quote(std::string_view text) {
    std::string out = "\"";
    for (size_t i = 0; i < text.size(); ++i) {
        if (i == kMaxQuotedLen) {
            out += "...";
            break;
        }
        const char c = text[i];
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if ((c >= 0 && c < kFirstPrintable) || c == kDelete) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned>(c));
            out += hex;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace burrow::config_detail
