// `tensorzip serve` over loopback: a server process with stories260K and three adapters; the
// OpenAI endpoints, their stream format and errors, greedy completions byte-identical to
// `tensorzip run`, 16 concurrent streams with mixed adapters equal to their single-request
// outputs, queue-full 429, client disconnects, SIGTERM.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tensorzip/lowrank_ops.h"
#include "tests/test_util.h"

namespace tz {
namespace {

using nlohmann::json;

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A `tensorzip serve` child process; SIGTERM on destruction.
class ServerProcess {
 public:
  explicit ServerProcess(const std::string& args) : port_(free_port()), log_(test::temp_dir() + "/serve.log") {
    const std::string cmd = std::string(TZ_CLI_PATH) + " serve --port " + std::to_string(port_) + " " + args;
    pid_ = fork();
    if (pid_ == 0) {
      const std::string full = "exec " + cmd + " >" + log_ + " 2>&1";
      execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    httplib::Client c("127.0.0.1", port_);
    for (int i = 0; i < 300; ++i) {  // up to 30 s for the model to load
      if (auto r = c.Get("/health"); r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "the server did not come up: " << log();
  }
  ~ServerProcess() {
    if (pid_ > 0) stop();
  }
  int stop() {  // SIGTERM; the exit status
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int port() const { return port_; }
  std::string log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  int port_;
  std::string log_;
  pid_t pid_ = -1;
};

// A client per call: httplib clients are not shared across threads.
std::unique_ptr<httplib::Client> cli(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_read_timeout(60, 0);
  return c;
}

json post(int port, const std::string& path, const json& body, int* status = nullptr) {
  auto c = cli(port);
  auto r = c->Post(path.c_str(), body.dump(), "application/json");
  if (!r) return json{{"transport_error", int(r.error())}};
  if (status) *status = r->status;
  return json::parse(r->body, nullptr, false);
}

// The text of a streamed completion, every chunk checked against OpenAI's format.
std::string stream_text(int port, const std::string& path, const json& body, bool chat, std::string* finish = nullptr) {
  std::string text;
  bool done = false, first = true;
  auto r = cli(port)->Post(path.c_str(), body.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return "";
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    EXPECT_EQ(line.rfind("data: ", 0), 0u) << line;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    EXPECT_FALSE(done) << "data after [DONE]";
    const json j = json::parse(data);
    EXPECT_EQ(j["object"], chat ? "chat.completion.chunk" : "text_completion");
    EXPECT_TRUE(j["id"].is_string());
    if (j["choices"].empty()) continue;  // the usage chunk
    const json& ch = j["choices"][0];
    if (chat) {
      if (first) EXPECT_EQ(ch["delta"]["role"], "assistant");
      if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
    } else {
      text += ch["text"].get<std::string>();
    }
    if (!ch["finish_reason"].is_null() && finish) *finish = ch["finish_reason"];
    first = false;
  }
  EXPECT_TRUE(done) << "no [DONE]";
  return text;
}

PeftAdapter random_adapter(uint32_t seed) {
  PeftAdapter ad;
  ad.r = 2;
  ad.lora_alpha = 64;
  ad.target_modules = {"o_proj", "v_proj"};
  for (int l = 0; l < 5; ++l) {
    LoraAdapter a;
    a.rank = 2;
    a.alpha = 64;
    a.a = test::random_floats(2 * 64, seed * 10 + uint32_t(l), 0.5f);
    a.b = test::random_floats(64 * 2, seed * 10 + uint32_t(l) + 100, 0.5f);
    ad.modules["model.layers." + std::to_string(l) + ".self_attn.o_proj"] = a;
    a.b = test::random_floats(32 * 2, seed * 10 + uint32_t(l) + 200, 0.5f);
    ad.modules["model.layers." + std::to_string(l) + ".self_attn.v_proj"] = a;
  }
  return ad;
}

std::string model_path() { return test::models_dir() + "/stories260K/stories260K.bin"; }

}  // namespace

TEST(Serve, OpenAiEndpointsMatchRunAndBatchAcrossAdapters) {
  TZ_REQUIRE_MODELS();
  const std::string dir = test::temp_dir();
  for (int i = 0; i < 3; ++i) write_peft_adapter(dir + "/loras/ad" + std::to_string(i), random_adapter(uint32_t(i + 1)));
  ServerProcess server("-m " + model_path() + " --lora-dir " + dir + "/loras --parallel 16 --chat-template chatml -c 256");
  const int c = server.port();

  json models = json::parse(cli(c)->Get("/v1/models")->body);
  ASSERT_EQ(models["data"].size(), 4u);
  EXPECT_EQ(models["data"][0]["id"], "stories260K.bin");
  EXPECT_EQ(models["data"][3]["id"], "ad2");

  // Greedy completions: byte-identical to `tensorzip run` with the same adapter.
  const std::vector<std::string> names = {"stories260K.bin", "ad0", "ad1", "ad2"};
  const std::vector<std::string> prompts = {"Once upon a time", "The cat", "Lily and Ben went to the park. They"};
  std::map<std::pair<std::string, std::string>, std::string> single;
  for (const auto& name : names)
    for (const auto& p : prompts) {
      int status = 0;
      const json r = post(c, "/v1/completions", {{"model", name}, {"prompt", p}, {"max_tokens", 24}, {"temperature", 0}}, &status);
      ASSERT_EQ(status, 200) << r.dump();
      single[{name, p}] = r["choices"][0]["text"];
      EXPECT_EQ(r["usage"]["completion_tokens"], 24);
      EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
    }
  const auto text_of = [&](const std::string& name, const std::string& p) { return single.at(std::make_pair(name, p)); };
  for (const auto& name : {"stories260K.bin", "ad1"}) {
    const std::string lora = std::string(name) == "ad1" ? " --lora " + dir + "/loras/ad1" : "";
    const auto run = test::run_cli("run -m " + model_path() + lora + " -p \"Once upon a time\" -n 24 --temp 0 --json");
    ASSERT_EQ(run.code, 0) << run.err;
    EXPECT_EQ(json::parse(run.out)["text"], text_of(name, "Once upon a time")) << name;
  }
  EXPECT_NE(text_of("ad0", "The cat"), text_of("stories260K.bin", "The cat"));  // the adapters change the text

  // 16 concurrent streams, mixed adapters and prompts: each equals its single-request text.
  const auto batching = [&] {  // (Σ sequences per forward pass, forward passes) so far
    const std::string m = cli(c)->Get("/metrics")->body;
    const auto value = [&](const std::string& key) { return std::stod(m.substr(m.find("\n" + key + " ") + key.size() + 2)); };
    return std::pair{value("tensorzip_batch_sequences_sum"), value("tensorzip_steps_total")};
  };
  const auto before = batching();
  std::vector<std::thread> clients;
  std::vector<std::string> got(16), want(16);
  for (int i = 0; i < 16; ++i) {
    const std::string name = names[size_t(i) % 4], p = prompts[size_t(i) % 3];
    want[size_t(i)] = single[{name, p}];
    clients.emplace_back([&, i, name, p] {
      got[size_t(i)] = stream_text(c, "/v1/completions", {{"model", name}, {"prompt", p}, {"max_tokens", 24}, {"temperature", 0}, {"stream", true}}, false);
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "stream " << i;
  const std::string metrics = cli(c)->Get("/metrics")->body;
  EXPECT_NE(metrics.find("tensorzip_generated_tokens_total"), std::string::npos);
  EXPECT_NE(metrics.find("tensorzip_time_to_first_token_seconds_bucket"), std::string::npos);
  // The streams were batched: their forward passes held several sequences each on average.
  const auto after = batching();
  EXPECT_GT((after.first - before.first) / (after.second - before.second), 2.0);

  // Chat, streamed and not, with a stop string; usage on request.
  std::string finish;
  const json msgs = json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  const std::string chat_stream =
      stream_text(c, "/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 12}, {"temperature", 0}, {"stream", true}}, true, &finish);
  int status = 0;
  const json chat = post(c, "/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 12}, {"temperature", 0}}, &status);
  ASSERT_EQ(status, 200) << chat.dump();
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["choices"][0]["message"]["content"], chat_stream);
  EXPECT_EQ(chat["choices"][0]["finish_reason"], finish);
  const std::string base = single[std::pair<std::string, std::string>("stories260K.bin", "Once upon a time")];
  const std::string stop = base.substr(10, 4);
  const json stopped = post(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}, {"stop", stop}}, &status);
  EXPECT_EQ(stopped["choices"][0]["text"], base.substr(0, base.find(stop)));
  EXPECT_EQ(stopped["choices"][0]["finish_reason"], "stop");
  // Sampling with a seed repeats itself.
  const json s1 = post(c, "/v1/completions", {{"prompt", "The dog"}, {"max_tokens", 16}, {"temperature", 0.9}, {"seed", 7}});
  const json s2 = post(c, "/v1/completions", {{"prompt", "The dog"}, {"max_tokens", 16}, {"temperature", 0.9}, {"seed", 7}});
  EXPECT_EQ(s1["choices"][0]["text"], s2["choices"][0]["text"]);

  // Tokenize / detokenize.
  const json toks = post(c, "/tokenize", {{"content", "Once upon a time"}});
  ASSERT_TRUE(toks["tokens"].is_array());
  EXPECT_EQ(post(c, "/detokenize", {{"tokens", toks["tokens"]}})["content"], "Once upon a time");

  // Errors: HTTP 400 with an OpenAI error body naming the field.
  const auto expect_400 = [&](const std::string& path, const std::string& body, const std::string& param) {
    auto r = cli(c)->Post(path.c_str(), body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " -> " << r->body;
    const json e = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(e.contains("error")) << r->body;
    EXPECT_EQ(e["error"]["type"], "invalid_request_error");
    if (!param.empty()) EXPECT_EQ(e["error"]["param"], param) << r->body;
  };
  expect_400("/v1/completions", "{not json", "");
  expect_400("/v1/completions", "[1,2]", "");
  expect_400("/v1/completions", R"({"prompt":"x","max_tokens":"many"})", "max_tokens");
  expect_400("/v1/completions", R"({"prompt":"x","max_tokens":0})", "max_tokens");
  expect_400("/v1/completions", R"({"prompt":"x","model":"nope"})", "model");
  expect_400("/v1/completions", R"({"prompt":"x","temperature":-1})", "temperature");
  expect_400("/v1/completions", R"({"prompt":"x","n":3})", "n");
  expect_400("/v1/completions", R"({"prompt":"x","bogus":1})", "bogus");
  expect_400("/v1/completions", R"({"max_tokens":3})", "prompt");
  expect_400("/v1/chat/completions", R"({"messages":[{"role":"robot","content":"x"}]})", "messages[0].role");
  std::string long_prompt;
  for (int i = 0; i < 400; ++i) long_prompt += "Once upon a time ";
  expect_400("/v1/completions", json{{"prompt", long_prompt}}.dump(), "prompt");
  expect_400("/detokenize", R"({"tokens":[1,99999]})", "tokens");
  EXPECT_EQ(cli(c)->Get("/nope")->status, 404);

  // Adapters loaded and unloaded at run time (directories inside --lora-dir only).
  ASSERT_EQ(post(c, "/v1/adapters", {{"name", "late"}, {"path", "ad1"}}, &status)["id"], "late");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(post(c, "/v1/completions", {{"model", "late"}, {"prompt", "The cat"}, {"max_tokens", 24}, {"temperature", 0}})["choices"][0]["text"],
            text_of("ad1", "The cat"));
  EXPECT_EQ(json::parse(cli(c)->Get("/v1/models")->body)["data"].size(), 5u);
  post(c, "/v1/adapters", {{"name", "late"}, {"path", "ad2"}}, &status);
  EXPECT_EQ(status, 409);  // the name is taken
  post(c, "/v1/adapters", {{"name", "evil"}, {"path", "../../etc"}}, &status);
  EXPECT_EQ(status, 400);
  post(c, "/v1/adapters", {{"name", "x y"}}, &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(cli(c)->Delete("/v1/adapters/late")->status, 200);
  EXPECT_EQ(cli(c)->Delete("/v1/adapters/late")->status, 404);
  expect_400("/v1/completions", R"({"prompt":"x","model":"late"})", "model");
  EXPECT_EQ(post(c, "/v1/completions", {{"model", "ad2"}, {"prompt", "The cat"}, {"max_tokens", 24}, {"temperature", 0}})["choices"][0]["text"],
            text_of("ad2", "The cat"));  // the others are untouched
  // An adapter a running request uses cannot be unloaded; once the request is gone it can.
  {
    // The premise: this greedy request runs its whole 230 tokens (no EOS), so it is still running
    // when the DELETE arrives.
    ASSERT_EQ(post(c, "/v1/completions", {{"model", "ad0"}, {"prompt", "Once"}, {"max_tokens", 230}, {"temperature", 0}})["choices"][0]["finish_reason"],
              "length");
    std::atomic<bool> started{false}, checked{false};
    std::thread busy([&] {
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      // Greedy, so the request's length is fixed (230 tokens, no EOS): a sampled one could end early,
      // before the DELETE below arrives (seen once under ASan).
      req.body = json{{"model", "ad0"}, {"prompt", "Once"}, {"max_tokens", 230}, {"temperature", 0}, {"stream", true}}.dump();
      req.set_header("Content-Type", "application/json");
      req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
        started = true;
        while (!checked) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return false;  // then hang up
      };
      httplib::Response res;
      httplib::Error err;
      cli(c)->send(req, res, err);
    });
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(cli(c)->Delete("/v1/adapters/ad0")->status, 409);
    checked = true;
    busy.join();
    int code = 0;
    for (int i = 0; i < 200 && code != 200; ++i, std::this_thread::sleep_for(std::chrono::milliseconds(10)))
      code = cli(c)->Delete("/v1/adapters/ad0")->status;
    EXPECT_EQ(code, 200);
  }

  // A client that goes away mid-stream: its sequence is freed.
  {
    auto dropper = cli(c);
    int chunks = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "Once"}, {"max_tokens", 200}, {"stream", true}}.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };  // false: abort the read
    httplib::Response res;
    httplib::Error err;
    dropper->send(req, res, err);
  }
  bool freed = false;
  for (int i = 0; i < 100 && !freed; ++i) {
    const std::string m = cli(c)->Get("/metrics")->body;
    freed = m.find("\ntensorzip_requests_cancelled_total 0") == std::string::npos && m.find("tensorzip_active_sequences 0") != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(freed);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(Serve, FullQueueAnswers429AndTheRestFinish) {
  TZ_REQUIRE_MODELS();
  ServerProcess server("-m " + model_path() + " --parallel 1 --queue 1 -c 512");
  const int c = server.port();
  std::vector<std::thread> clients;
  std::vector<int> status(6, 0);
  for (int i = 0; i < 6; ++i)
    clients.emplace_back([&, i] { post(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 500}}, &status[size_t(i)]); });
  for (auto& t : clients) t.join();
  const int ok = int(std::count(status.begin(), status.end(), 200)), busy = int(std::count(status.begin(), status.end(), 429));
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 6);
  int st = 0;
  post(c, "/v1/adapters", {{"name", "x"}, {"path", "x"}}, &st);
  EXPECT_EQ(st, 403);  // no --lora-dir: nothing to load from
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace tz
