// The OpenAI-compatible request and response bodies `tensorzip serve` speaks: requests parsed
// and checked field by field (a wrong type or value is a RequestError naming the field, which the
// server answers with HTTP 400 and an OpenAI-style error body), responses and stream chunks built.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tensorzip/chat.h"
#include "tensorzip/error.h"

namespace tz::cli {

// A bad request: `param` is the field at fault ("" for the body as a whole).
class RequestError : public Error {
 public:
  RequestError(std::string param, const std::string& message) : Error(message), param_(std::move(param)) {}
  const std::string& param() const { return param_; }

 private:
  std::string param_;
};

struct CompletionRequest {
  bool chat = false;                  // /v1/chat/completions
  std::string model;                  // "" = the base model
  std::string prompt;                 // completions
  std::vector<ChatMessage> messages;  // chat
  int max_tokens = -1;                // -1: OpenAI's default (16 for completions, to the context for chat)
  float temperature = 1.f, top_p = 1.f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
};

// Throws RequestError (malformed JSON, wrong types, out-of-range values, unsupported options such as
// n > 1, logprobs, penalties, tools) naming the field.
CompletionRequest parse_completion_request(std::string_view body, bool chat);

// POST /tokenize {"content": "...", "add_special": bool} and /detokenize {"tokens": [ids]}.
struct TokenizeRequest {
  std::string content;
  bool add_special = false;
};
TokenizeRequest parse_tokenize_request(std::string_view body);
std::vector<int> parse_detokenize_request(std::string_view body);

// {"error": {"message", "type", "param", "code"}} as OpenAI's API sends it.
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param = "");

}  // namespace tz::cli
