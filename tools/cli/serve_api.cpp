#include "tools/cli/serve_api.h"

#include <cmath>
#include <set>

#include "core/json.h"

namespace tz::cli {
namespace {

using Json = nlohmann::json;

Json parse_body(std::string_view body) {
  try {
    Json j = json_io::parse(body, "request body");
    if (!j.is_object()) throw RequestError("", "the request body is not a JSON object");
    return j;
  } catch (const RequestError&) {
    throw;
  } catch (const Error& e) {
    throw RequestError("", e.what());
  }
}

// Fields OpenAI clients send that change nothing here when they hold their defaults.
bool default_valued(const std::string& key, const Json& v) {
  if (v.is_null()) return true;
  if (key == "n") return v == 1;
  if (key == "frequency_penalty" || key == "presence_penalty") return v.is_number() && v.get<double>() == 0.0;
  if (key == "logprobs") return v == false || v.is_null();
  if (key == "echo") return v == false;
  if (key == "best_of") return v == 1;
  if (key == "suffix") return v.is_string() && v.get<std::string>().empty();
  if (key == "parallel_tool_calls" || key == "logit_bias" || key == "tools" || key == "tool_choice" || key == "functions")
    return v.empty() || v == "none";
  if (key == "response_format") return v.is_object() && v.value("type", "") == "text";
  return false;
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, bool chat) {
  const Json j = parse_body(body);
  CompletionRequest r;
  r.chat = chat;
  static const std::set<std::string> known = {"model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                                              "seed", "stop", "stream", "stream_options", "user", "metadata", "store"};
  static const std::set<std::string> defaults_only = {"n", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "echo",
                                                      "best_of", "suffix", "logit_bias", "tools", "tool_choice", "functions",
                                                      "parallel_tool_calls", "response_format"};
  for (const auto& [key, v] : j.items()) {
    if (known.count(key)) continue;
    if (defaults_only.count(key)) {
      if (!default_valued(key, v)) throw RequestError(key, "'" + key + "' = " + v.dump() + " is not supported by tensorzip serve");
      continue;
    }
    throw RequestError(key, "unknown field '" + key + "'");
  }
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string()) throw RequestError("model", "'model' must be a string");
    r.model = j["model"].get<std::string>();
  }
  if (chat) {
    if (!j.contains("messages")) throw RequestError("messages", "'messages' is required");
    const Json& m = j["messages"];
    if (!m.is_array() || m.empty()) throw RequestError("messages", "'messages' must be a non-empty array");
    for (size_t i = 0; i < m.size(); ++i) {
      const std::string where = "messages[" + std::to_string(i) + "]";
      if (!m[i].is_object()) throw RequestError(where, "'" + where + "' must be an object");
      if (!m[i].contains("role") || !m[i]["role"].is_string()) throw RequestError(where + ".role", "'" + where + ".role' must be a string");
      const std::string role = m[i]["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant" && role != "developer")
        throw RequestError(where + ".role", "'" + where + ".role' = '" + role + "' (system, developer, user or assistant)");
      std::string content;
      const Json c = m[i].value("content", Json());
      if (c.is_string()) {
        content = c.get<std::string>();
      } else if (c.is_array()) {  // content parts: text only
        for (const auto& part : c) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
            throw RequestError(where + ".content", "'" + where + ".content' parts must be {\"type\": \"text\", \"text\": …} (no images or audio)");
          content += part["text"].get<std::string>();
        }
      } else {
        throw RequestError(where + ".content", "'" + where + ".content' must be a string or a list of text parts");
      }
      r.messages.push_back({role == "developer" ? "system" : role, content});
    }
    if (j.contains("prompt")) throw RequestError("prompt", "'prompt' belongs to /v1/completions; chat takes 'messages'");
  } else {
    if (!j.contains("prompt")) throw RequestError("prompt", "'prompt' is required");
    const Json& p = j["prompt"];
    if (p.is_string()) r.prompt = p.get<std::string>();
    else if (p.is_array() && p.size() == 1 && p[0].is_string()) r.prompt = p[0].get<std::string>();
    else throw RequestError("prompt", "'prompt' must be a string (one prompt per request)");
    if (j.contains("messages")) throw RequestError("messages", "'messages' belongs to /v1/chat/completions");
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (j.contains(key) && !j[key].is_null()) {
      const Json& v = j[key];
      if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t(1) << 30))
        throw RequestError(key, std::string("'") + key + "' must be a positive integer, got " + v.dump());
      r.max_tokens = int(v.get<int64_t>());
    }
  const auto number = [&](const char* key, double lo, double hi, float def) {
    if (!j.contains(key) || j[key].is_null()) return def;
    const Json& v = j[key];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi)
      throw RequestError(key, std::string("'") + key + "' must be a number in [" + json_io::dump(Json(lo)) + ", " + json_io::dump(Json(hi)) +
                                  "], got " + v.dump());
    return float(v.get<double>());
  };
  r.temperature = number("temperature", 0.0, 2.0, 1.f);
  r.top_p = number("top_p", 0.0, 1.0, 1.f);
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) throw RequestError("seed", "'seed' must be an integer, got " + j["seed"].dump());
    r.seed = j["seed"].is_number_unsigned() ? j["seed"].get<uint64_t>() : uint64_t(j["seed"].get<int64_t>());
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const Json& s = j["stop"];
    if (s.is_string()) r.stop.push_back(s.get<std::string>());
    else if (s.is_array() && s.size() <= 4) {
      for (const auto& x : s) {
        if (!x.is_string()) throw RequestError("stop", "'stop' must be a string or a list of up to 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw RequestError("stop", "'stop' must be a string or a list of up to 4 strings");
    }
    for (const auto& x : r.stop)
      if (x.empty()) throw RequestError("stop", "'stop' strings must not be empty");
  }
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) throw RequestError("stream", "'stream' must be true or false");
    r.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const Json& o = j["stream_options"];
    if (!o.is_object()) throw RequestError("stream_options", "'stream_options' must be an object");
    for (const auto& [k, v] : o.items()) {
      if (k != "include_usage" || !v.is_boolean()) throw RequestError("stream_options", "'stream_options' takes include_usage: true/false only");
      r.include_usage = v.get<bool>();
    }
  }
  return r;
}

TokenizeRequest parse_tokenize_request(std::string_view body) {
  const Json j = parse_body(body);
  TokenizeRequest r;
  if (!j.contains("content") || !j["content"].is_string()) throw RequestError("content", "'content' must be a string");
  r.content = j["content"].get<std::string>();
  if (j.contains("add_special")) {
    if (!j["add_special"].is_boolean()) throw RequestError("add_special", "'add_special' must be true or false");
    r.add_special = j["add_special"].get<bool>();
  }
  for (const auto& [key, v] : j.items())
    if (key != "content" && key != "add_special" && key != "with_pieces") throw RequestError(key, "unknown field '" + key + "'");
  return r;
}

std::vector<int> parse_detokenize_request(std::string_view body) {
  const Json j = parse_body(body);
  if (!j.contains("tokens") || !j["tokens"].is_array()) throw RequestError("tokens", "'tokens' must be a list of token ids");
  std::vector<int> ids;
  for (const auto& t : j["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > (int64_t(1) << 30))
      throw RequestError("tokens", "'tokens' must hold non-negative integer ids, got " + t.dump());
    ids.push_back(int(t.get<int64_t>()));
  }
  for (const auto& [key, v] : j.items())
    if (key != "tokens") throw RequestError(key, "unknown field '" + key + "'");
  return ids;
}

nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param) {
  return {{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? Json() : Json(param)}, {"code", Json()}}}};
}

}  // namespace tz::cli
