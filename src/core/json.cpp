// Bounded JSON parsing and safe dumping (see json.h).
#include "core/json.h"

#include <cmath>
#include <set>
#include <vector>

#include "tensorzip/error.h"

namespace tz::json_io {
namespace {

struct Abort {
  std::string why;
};

std::string describe(const Json& v) {
  std::string s = dump(v);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

}  // namespace

Json parse(std::string_view text, const std::string& label, ParseOptions opts) {
  // Keys seen in each open object, innermost last (only kept when duplicates are refused).
  std::vector<std::set<std::string>> keys;
  const Json::parser_callback_t cb = [&](int depth, Json::parse_event_t ev, Json& parsed) {
    if (depth > kMaxDepth) throw Abort{"JSON nested deeper than " + std::to_string(kMaxDepth) + " levels"};
    if (!opts.reject_duplicate_keys) return true;
    switch (ev) {
      case Json::parse_event_t::object_start: keys.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          throw Abort{"duplicate key '" + parsed.get<std::string>() + "'"};
        break;
      default: break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), cb);
  } catch (const Abort& a) {
    throw Error(label + ": " + a.why);
  } catch (const Json::exception& e) {
    throw Error(label + ": not valid JSON (" + e.what() + ")");
  }
}

int64_t get_int(const Json& obj, const char* key, const std::string& label, int64_t lo, int64_t hi, std::optional<int64_t> def) {
  const auto range = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!obj.is_object() || !obj.contains(key)) {
    if (def) return *def;
    throw Error(label + ": '" + key + "' missing (" + range + ")");
  }
  const Json& v = obj[key];
  bool ok = false;
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    ok = u <= uint64_t(INT64_MAX);
    x = ok ? int64_t(u) : 0;
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
    ok = true;
  }
  if (!ok || x < lo || x > hi) throw Error(label + ": '" + key + "' = " + describe(v) + " is not " + range);
  return x;
}

double get_number(const Json& obj, const char* key, const std::string& label, double lo, double hi, std::optional<double> def) {
  if (!obj.is_object() || !obj.contains(key)) {
    if (def) return *def;
    throw Error(label + ": '" + key + "' missing");
  }
  const Json& v = obj[key];
  const double x = v.is_number() ? v.get<double>() : NAN;
  if (!std::isfinite(x) || x < lo || x > hi)
    throw Error(label + ": '" + key + "' = " + describe(v) + " is not a finite number in [" + dump(Json(lo)) + ", " + dump(Json(hi)) + "]");
  return x;
}

}  // namespace tz::json_io
