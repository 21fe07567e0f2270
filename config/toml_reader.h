// Internal to config/ (the public headers never include toml++): typed reads from a parsed
// TOML document, where every problem becomes an Issue at the position of the node at fault,
// with its key path, and every key nobody asked for is reported as unknown.
//
// Paths look like "agent.name", "expose[1].target", "expose[0].allow[2]"; array indexes count
// from 0, as in toml++ paths.
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config_error.h"

namespace burrow::config_detail {

struct Position {
    uint32_t line = 1;
    uint32_t column = 1;
    auto operator<=>(const Position&) const = default;
};

Position position_of(const toml::source_region& region);

// A value together with where it was written, so that checks made after reading (a bad
// name, a duplicate) can still point at it.
template <class T>
struct Located {
    T value;
    Position at;
    std::string path;
};

// The problems found in one file. The loaders report the first one in file order, so a user
// who fixes errors top to bottom never sees one caused by an earlier line.
class Issues {
  public:
    void add(Position at, std::string path, std::string what);
    template <class T>
    void add(const Located<T>& where, std::string what) {
        add(where.at, where.path, std::move(what));
    }
    bool empty() const { return list_.empty(); }
    // "source:line:column: path: what" of the earliest issue. Precondition: !empty().
    ConfigError first(std::string_view source) const;

  private:
    struct Issue {
        Position at;
        std::string path;
        std::string what;
    };
    std::vector<Issue> list_;
};

// Reads the keys of one table. Each getter returns nullopt both for an absent optional key
// and after recording an issue (missing required key, wrong type, out of range); callers
// that need to know which can check Issues::empty().
class TableReader {
  public:
    TableReader(const toml::table& table, std::string path, Position at, Issues& issues);

    const std::string& path() const { return path_; }
    Position at() const { return at_; }
    Issues& issues() { return *issues_; }

    // `example` completes the message for a missing key: `add: name = "nas"`.
    std::optional<Located<std::string>> required_string(std::string_view key,
                                                        std::string_view example);
    std::optional<Located<std::string>> optional_string(std::string_view key);
    std::optional<Located<bool>> optional_bool(std::string_view key);
    // In [min, max], else an issue naming the range.
    std::optional<Located<int64_t>> optional_integer(std::string_view key, int64_t min,
                                                     int64_t max);
    // An array of strings, possibly empty; the array and each element keep their position.
    std::optional<Located<std::vector<Located<std::string>>>> required_strings(
        std::string_view key, std::string_view example);
    // The same, absent allowed (nullopt without an issue).
    std::optional<Located<std::vector<Located<std::string>>>> optional_strings(
        std::string_view key);
    // A string or an array of strings (`listen = "a"` or `listen = ["a", "b"]`): a string
    // comes back as a one-element list whose element has the key's own path.
    std::optional<Located<std::vector<Located<std::string>>>> required_string_or_strings(
        std::string_view key, std::string_view example);
    std::optional<TableReader> required_table(std::string_view key);
    // The same, absent allowed (nullopt without an issue).
    std::optional<TableReader> optional_table(std::string_view key);
    // [[key]]: the tables in order; absent means none.
    std::vector<TableReader> table_array(std::string_view key);

    // Records that a required key is absent; `what` says what to add. Reported by finish(),
    // unless an unknown key there looks like a typo of it (or of `alternative`, a key that
    // would do instead): then that typo is the one issue.
    void report_missing(std::string_view key, std::string what, std::string_view alternative = {});

    // An issue for every key of this table that no getter asked for (typos must not be
    // silently ignored), then for every missing required key. Call after all getters.
    void finish();

  private:
    // The node, or nullptr if absent. Marks key as known either way.
    const toml::node* find(std::string_view key);
    std::string child_path(std::string_view key) const;
    // The known key that `unknown` is most likely a typo of, if any is close enough.
    std::optional<std::string> closest_key(std::string_view unknown) const;
    void wrong_type(const toml::node& node, const std::string& path, std::string_view expected);

    const toml::table* table_;
    std::string path_;
    Position at_;
    Issues* issues_;
    std::vector<std::string> known_;
    struct Missing {
        std::string key;
        std::string alternative;
        std::string what;
    };
    std::vector<Missing> missing_;
};

// The document's root table, or the parse error (with toml++'s line and column).
std::variant<toml::table, ConfigError> parse_toml(std::string_view text,
                                                  std::string_view source_name);

// A value for use in a one-line message: quoted, control characters escaped, long text cut.
std::string quote(std::string_view text);

}  // namespace burrow::config_detail
