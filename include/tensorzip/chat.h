// Chat formatting as llama.cpp's built-in templates do it (llama_chat_apply_template): a model's
// template text (GGUF tokenizer.chat_template, tokenizer_config.json) selects one of the named
// formats by the markers it contains, and the format renders the conversation in C++ — no Jinja.
// Byte-identical to llama.cpp on its own fixtures (tests/model/chat_test.cpp).
#pragma once
#include <string>
#include <vector>

#include "tensorzip/tokenizer.h"

namespace tz {

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

// The built-in format names: chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip,
// mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, phi3, phi4, falcon3, zephyr, monarch,
// gemma, orion, openchat, vicuna, vicuna-orca, deepseek, deepseek2, deepseek3, command-r, llama3,
// chatglm3, chatglm4, glmedge, minicpm, exaone3, rwkv-world, granite, gigachat, megrez.
const std::vector<std::string>& chat_template_names();

// The format a template text selects ("" when none matches); a built-in name is taken as is.
std::string detect_chat_template(const std::string& template_text);

// The conversation in the named format; add_assistant opens the assistant's turn at the end.
// Throws tz::Error on an unknown name.
std::string apply_chat_template(const std::string& name, const std::vector<ChatMessage>& messages, bool add_assistant);

// Text that ends an assistant turn in the format (stop strings beside the vocabulary's EOS),
// e.g. "<|im_end|>" for chatml, "<|eot_id|>" for llama3.
std::vector<std::string> chat_stop_strings(const std::string& name);

// Every format's end-of-turn text that is a token of `tok` (plain generation stops at these, as
// llama.cpp stops at its end-of-generation tokens), each once.
std::vector<std::string> end_of_turn_pieces(const Tokenizer& tok);

}  // namespace tz
