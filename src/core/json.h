// JSON as every reader and writer in tensorzip uses it: parsing with a bounded nesting depth (a
// deeply nested file must be an error, not a stack overflow in whatever walks the tree later),
// optionally refusing duplicate keys; dumping with invalid UTF-8 replaced (paths and GGUF strings
// are bytes, JSON is UTF-8); integer and float fields read with their type and range checked,
// since a float where an integer belongs (`"rank": 1e300`) must not reach a narrowing cast.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace tz::json_io {

using Json = nlohmann::json;

inline constexpr int kMaxDepth = 128;  // tokenizer.json and config.json files nest < 10 deep

struct ParseOptions {
  bool reject_duplicate_keys = false;
};

// Throws tz::Error "<label>: not valid JSON (...)", "<label>: JSON nested deeper than 128 levels"
// or "<label>: duplicate key 'k'".
Json parse(std::string_view text, const std::string& label, ParseOptions opts = {});

// Compact (indent < 0) or indented text; bytes that are not UTF-8 become U+FFFD.
template <class J>
std::string dump(const J& j, int indent = -1) {
  return j.dump(indent, ' ', false, J::error_handler_t::replace);
}

// obj[key] as an integer in [lo, hi]; `def` when the key is absent (required when no default).
// Throws tz::Error "<label>: '<key>' = <value> is not an integer in [lo, hi]".
int64_t get_int(const Json& obj, const char* key, const std::string& label, int64_t lo, int64_t hi,
                std::optional<int64_t> def = std::nullopt);

// obj[key] as a finite number in [lo, hi]; `def` when absent.
double get_number(const Json& obj, const char* key, const std::string& label, double lo, double hi,
                  std::optional<double> def = std::nullopt);

}  // namespace tz::json_io
