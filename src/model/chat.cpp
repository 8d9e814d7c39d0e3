// llama.cpp-compatible built-in chat formats (see tensorzip/chat.h). The rules per format follow
// llama.cpp's llm_chat_apply_template behaviour, checked byte for byte against its renderings.
#include "tensorzip/chat.h"

#include <algorithm>
#include <sstream>

#include "tensorzip/error.h"

namespace tz {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\n\r\f\v");
  return s.substr(b, e - b + 1);
}

std::string capitalized(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 'a' + 'A');
  return s;
}

// "<|role|>\n" + content + end for each message, "<|assistant|>\n" to open the reply.
std::string tagged(const std::vector<ChatMessage>& msgs, bool add, const std::string& after_tag, const std::string& end,
                   const std::string& open) {
  std::ostringstream ss;
  for (const auto& m : msgs) ss << "<|" << m.role << "|>" << after_tag << m.content << end;
  if (add) ss << open;
  return ss.str();
}

}  // namespace

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = {
      "chatml",    "llama2",     "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3", "mistral-v3-tekken",
      "mistral-v7", "phi3",      "phi4",       "falcon3",        "zephyr",           "monarch",    "gemma",      "orion",
      "openchat",  "vicuna",     "vicuna-orca", "deepseek",      "deepseek2",        "deepseek3",  "command-r",  "llama3",
      "chatglm3",  "chatglm4",   "glmedge",    "minicpm",        "exaone3",          "rwkv-world", "granite",    "gigachat",
      "megrez"};
  return names;
}

std::string detect_chat_template(const std::string& t) {
  for (const auto& n : chat_template_names())
    if (t == n) return n;
  const auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
  if (has("<|im_start|>")) return has("<|im_sep|>") ? "phi4" : "chatml";
  if (t.rfind("mistral", 0) == 0 || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return "mistral-v7";
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {  // Mistral's official v1 / v3 / v3-tekken
      if (has(" [INST]")) return "mistral-v1";
      if (has("\"[INST]\"")) return "mistral-v3-tekken";
      return "mistral-v3";
    }
    if (has("content.strip()")) return "llama2-sys-strip";
    if (has("bos_token + '[INST]")) return "llama2-sys-bos";
    if (has("<<SYS>>")) return "llama2-sys";
    return "llama2";
  }
  if (has("<|assistant|>") && has("<|end|>")) return "phi3";
  if (has("<|assistant|>") && has("<|user|>")) return has("</s>") ? "falcon3" : "glmedge";
  if (has("<|user|>") && has("<|endoftext|>")) return "zephyr";
  if (has("bos_token + message['role']")) return "monarch";
  if (has("<start_of_turn>")) return "gemma";
  if (has("'\\n\\nAssistant: ' + eos_token")) return "orion";
  if (has("GPT4 Correct ")) return "openchat";
  if (has("USER: ") && has("ASSISTANT: ")) return has("SYSTEM: ") ? "vicuna-orca" : "vicuna";
  if (has("### Instruction:") && has("<|EOT|>")) return "deepseek";
  if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return "command-r";
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return "llama3";
  if (has("[gMASK]sop")) return "chatglm3";
  if (has("[gMASK]<sop>")) return "chatglm4";
  if (has("<用户>")) return "minicpm";
  if (has("'Assistant: ' + message['content'] + eos_token")) return "deepseek2";
  if (has("<｜Assistant｜>") && has("<｜User｜>") && has("<｜end▁of▁sentence｜>")) return "deepseek3";
  if (has("[|system|]") && has("[|assistant|]") && has("[|endofturn|]")) return "exaone3";
  if (has("rwkv-world")) return "rwkv-world";
  if (has("<|start_of_role|>")) return "granite";
  if (has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]")) return "gigachat";
  if (has("<|role_start|>")) return "megrez";
  return "";
}

std::string apply_chat_template(const std::string& name, const std::vector<ChatMessage>& msgs, bool add) {
  std::ostringstream ss;
  const auto is = [&](const char* n) { return name == n; };
  if (is("chatml")) {
    for (const auto& m : msgs) ss << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
    if (add) ss << "<|im_start|>assistant\n";
  } else if (is("mistral-v7")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << "[SYSTEM_PROMPT] " << m.content << "[/SYSTEM_PROMPT]";
      else if (m.role == "user") ss << "[INST] " << m.content << "[/INST]";
      else ss << " " << m.content << "</s>";
    }
  } else if (is("mistral-v1") || is("mistral-v3") || is("mistral-v3-tekken")) {
    const std::string lead = is("mistral-v1") ? " " : "", trail = is("mistral-v3-tekken") ? "" : " ";
    bool inside = false;
    for (const auto& m : msgs) {
      if (!inside) {
        ss << lead << "[INST]" << trail;
        inside = true;
      }
      if (m.role == "system") ss << m.content << "\n\n";
      else if (m.role == "user") ss << m.content << lead << "[/INST]";
      else {
        ss << trail << (is("mistral-v3") ? trim(m.content) : m.content) << "</s>";
        inside = false;
      }
    }
  } else if (is("llama2") || is("llama2-sys") || is("llama2-sys-bos") || is("llama2-sys-strip")) {
    const bool system = !is("llama2"), bos_inside = is("llama2-sys-bos"), strip = is("llama2-sys-strip");
    bool inside = true;  // the first [INST] follows the tokenizer's BOS
    ss << "[INST] ";
    for (const auto& m : msgs) {
      const std::string c = strip ? trim(m.content) : m.content;
      if (!inside) {
        inside = true;
        ss << (bos_inside ? "<s>[INST] " : "[INST] ");
      }
      if (m.role == "system") ss << (system ? "<<SYS>>\n" + c + "\n<</SYS>>\n\n" : c + "\n");
      else if (m.role == "user") ss << c << " [/INST]";
      else {
        ss << c << "</s>";
        inside = false;
      }
    }
  } else if (is("phi3")) {
    return tagged(msgs, add, "\n", "<|end|>\n", "<|assistant|>\n");
  } else if (is("falcon3")) {
    return tagged(msgs, add, "\n", "\n", "<|assistant|>\n");
  } else if (is("zephyr")) {
    return tagged(msgs, add, "\n", "<|endoftext|>\n", "<|assistant|>\n");
  } else if (is("glmedge")) {
    return tagged(msgs, add, "\n", "", "<|assistant|>");
  } else if (is("chatglm3") || is("chatglm4")) {
    ss << (is("chatglm3") ? "[gMASK]sop" : "[gMASK]<sop>") << tagged(msgs, add, is("chatglm3") ? "\n " : "\n", "", "<|assistant|>");
  } else if (is("phi4")) {
    for (const auto& m : msgs) ss << "<|im_start|>" << m.role << "<|im_sep|>" << m.content << "<|im_end|>";
    if (add) ss << "<|im_start|>assistant<|im_sep|>";
  } else if (is("monarch")) {
    for (size_t i = 0; i < msgs.size(); ++i) ss << (i ? "<s>" : "") << msgs[i].role << "\n" << msgs[i].content << "</s>\n";
    if (add) ss << "<s>assistant\n";
  } else if (is("gemma")) {  // no system role: its text opens the first user turn
    std::string system;
    for (const auto& m : msgs) {
      if (m.role == "system") {
        system = trim(m.content);
        continue;
      }
      const std::string role = m.role == "assistant" ? "model" : m.role;
      ss << "<start_of_turn>" << role << "\n";
      if (!system.empty() && role != "model") {
        ss << system << "\n\n";
        system.clear();
      }
      ss << trim(m.content) << "<end_of_turn>\n";
    }
    if (add) ss << "<start_of_turn>model\n";
  } else if (is("orion")) {  // system text joins the first user turn
    std::string system;
    for (const auto& m : msgs) {
      if (m.role == "system") system = m.content;
      else if (m.role == "user") {
        ss << "Human: " << (system.empty() ? "" : system + "\n\n") << m.content << "\n\nAssistant: </s>";
        system.clear();
      } else ss << m.content << "</s>";
    }
  } else if (is("openchat")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << m.content << "<|end_of_turn|>";
      else ss << "GPT4 Correct " << capitalized(m.role) << ": " << m.content << "<|end_of_turn|>";
    }
    if (add) ss << "GPT4 Correct Assistant:";
  } else if (is("vicuna") || is("vicuna-orca")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << (is("vicuna-orca") ? "SYSTEM: " + m.content + "\n" : m.content + "\n\n");
      else if (m.role == "user") ss << "USER: " << m.content << "\n";
      else ss << "ASSISTANT: " << m.content << "</s>\n";
    }
    if (add) ss << "ASSISTANT:";
  } else if (is("deepseek")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << m.content;
      else if (m.role == "user") ss << "### Instruction:\n" << m.content << "\n";
      else ss << "### Response:\n" << m.content << "\n<|EOT|>\n";
    }
    if (add) ss << "### Response:\n";
  } else if (is("deepseek2")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << m.content << "\n\n";
      else if (m.role == "user") ss << "User: " << m.content << "\n\n";
      else ss << "Assistant: " << m.content << "<｜end▁of▁sentence｜>";
    }
    if (add) ss << "Assistant:";
  } else if (is("deepseek3")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << m.content << "\n\n";
      else if (m.role == "user") ss << "<｜User｜>" << m.content;
      else ss << "<｜Assistant｜>" << m.content << "<｜end▁of▁sentence｜>";
    }
    if (add) ss << "<｜Assistant｜>";
  } else if (is("command-r")) {
    for (const auto& m : msgs) {
      const char* tok = m.role == "system" ? "<|SYSTEM_TOKEN|>" : m.role == "user" ? "<|USER_TOKEN|>" : "<|CHATBOT_TOKEN|>";
      ss << "<|START_OF_TURN_TOKEN|>" << tok << trim(m.content) << "<|END_OF_TURN_TOKEN|>";
    }
    if (add) ss << "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>";
  } else if (is("llama3")) {
    for (const auto& m : msgs) ss << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n" << trim(m.content) << "<|eot_id|>";
    if (add) ss << "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (is("minicpm")) {
    for (const auto& m : msgs) ss << (m.role == "user" ? "<用户>" + trim(m.content) + "<AI>" : trim(m.content));
  } else if (is("exaone3")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << "[|system|]" << trim(m.content) << "[|endofturn|]\n";
      else if (m.role == "user") ss << "[|user|]" << trim(m.content) << "\n";
      else ss << "[|assistant|]" << trim(m.content) << "[|endofturn|]\n";
    }
    if (add) ss << "[|assistant|]";
  } else if (is("rwkv-world")) {
    for (const auto& m : msgs) {
      if (m.role == "system") ss << m.content << "\n\n";
      else if (m.role == "user") ss << "User: " << m.content << "\n\nAssistant:";
      else ss << m.content << "\n\n";
    }
  } else if (is("granite")) {
    for (const auto& m : msgs) ss << "<|start_of_role|>" << m.role << "<|end_of_role|>" << m.content << "<|end_of_text|>\n";
    if (add) ss << "<|start_of_role|>assistant<|end_of_role|>\n";
  } else if (is("gigachat")) {
    const bool system = !msgs.empty() && msgs[0].role == "system";
    ss << "<s>" << (system ? msgs[0].content + "<|message_sep|>" : "");
    for (size_t i = system ? 1 : 0; i < msgs.size(); ++i) {
      if (msgs[i].role == "user")
        ss << "user<|role_sep|>" << msgs[i].content << "<|message_sep|>available functions<|role_sep|>[]<|message_sep|>";
      else if (msgs[i].role == "assistant") ss << "assistant<|role_sep|>" << msgs[i].content << "<|message_sep|>";
    }
    if (add) ss << "assistant<|role_sep|>";
  } else if (is("megrez")) {
    for (const auto& m : msgs) ss << "<|role_start|>" << m.role << "<|role_end|>" << m.content << "<|turn_end|>";
    if (add) ss << "<|role_start|>assistant<|role_end|>";
  } else {
    throw Error("chat template '" + name + "' is unknown (built-in names: chatml, llama2, llama3, gemma, phi3, mistral-v7, …)");
  }
  return ss.str();
}

std::vector<std::string> chat_stop_strings(const std::string& name) {
  if (name == "chatml" || name == "phi4") return {"<|im_end|>"};
  if (name == "llama3") return {"<|eot_id|>", "<|eom_id|>"};
  if (name == "gemma") return {"<end_of_turn>"};
  if (name == "phi3") return {"<|end|>", "<|endoftext|>"};
  if (name == "zephyr") return {"<|endoftext|>"};
  if (name == "command-r") return {"<|END_OF_TURN_TOKEN|>"};
  if (name == "deepseek") return {"<|EOT|>"};
  if (name == "deepseek2" || name == "deepseek3") return {"<｜end▁of▁sentence｜>"};
  if (name == "openchat") return {"<|end_of_turn|>"};
  if (name == "exaone3") return {"[|endofturn|]"};
  if (name == "granite") return {"<|end_of_text|>"};
  if (name == "megrez") return {"<|turn_end|>"};
  if (name == "falcon3" || name == "glmedge" || name == "chatglm3" || name == "chatglm4") return {"<|user|>"};
  return {"</s>"};
}

std::vector<std::string> end_of_turn_pieces(const Tokenizer& tok) {
  std::vector<std::string> out;
  for (const auto& name : chat_template_names())
    for (const auto& s : chat_stop_strings(name))
      if (tok.find(s) >= 0 && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

}  // namespace tz
