// The tensorzip binary as a user runs it: exit codes, messages, JSON shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tensorzip/io/gguf.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/llama.h"
#include "tensorzip/lowrank_ops.h"
#include "tests/test_util.h"

namespace tz {

using nlohmann::json;

TEST(Cli, HelpAndVersion) {
  auto r = test::run_cli("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("inspect"), std::string::npos);
  EXPECT_NE(r.out.find("bench"), std::string::npos);
  EXPECT_EQ(test::run_cli("bench gemm --help").code, 0);
  EXPECT_EQ(test::run_cli("--version").code, 0);
  EXPECT_NE(test::run_cli("no-such-command").code, 0);
}

TEST(Cli, InfoJsonAndIsaCap) {
  auto r = test::run_cli("info --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_TRUE(j.contains("cpu"));
  EXPECT_TRUE(j["kernels"].is_array());
  auto s = test::run_cli("info --json", "TENSORZIP_ISA=scalar");
  ASSERT_EQ(s.code, 0) << s.err;
  const json js = json::parse(s.out);
  EXPECT_EQ(js["active_isa"], "scalar");
  for (const auto& op : js["kernels"]) EXPECT_NE(op["chosen"].get<std::string>().find("__ref"), std::string::npos) << op;
  auto bad = test::run_cli("info", "TENSORZIP_ISA=avx9000");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("TENSORZIP_ISA"), std::string::npos);
}

TEST(Cli, InspectRealModels) {
  TZ_REQUIRE_MODELS();
  const std::string d = test::models_dir();
  auto r = test::run_cli("inspect --json " + d + "/stories260K/stories260K.bin");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["format"], "llama2.c v0");
  EXPECT_EQ(j["tensors"].size(), 13u);
  EXPECT_EQ(j["tensors"][2]["name"], "wq");
  EXPECT_EQ(j["tensors"][2]["shape"], json::parse("[5,64,64]"));
  r = test::run_cli("inspect --json " + d + "/gguf-vocab/ggml-vocab-llama-spm.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["metadata"].size(), 22u);
  EXPECT_EQ(j["metadata"][0]["key"], "general.architecture");
  EXPECT_EQ(j["metadata"][0]["type"], "string");
  r = test::run_cli("inspect " + d + "/gguf-vocab/ggml-vocab-gpt-2.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("tokenizer.ggml.merges"), std::string::npos);
  EXPECT_NE(r.out.find("array[string; 50000]"), std::string::npos);
}

TEST(Cli, InspectCorruptFilesFailsWithOneLine) {
  const std::string dir = test::temp_dir();
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {
      {"empty.bin", {}},
      {"trunc.gguf", [] { auto b = test::sample_gguf(); b.resize(b.size() / 2); return b; }()},
      {"trunc.safetensors", [] { auto b = test::sample_safetensors(); b.resize(b.size() - 3); return b; }()},
      {"trunc.bin", [] { auto b = test::sample_llama2c(0, true); b.resize(100); return b; }()},
  };
  if (!test::models_dir().empty()) {
    auto b = test::read_file(test::models_dir() + "/stories260K/stories260K.bin");
    b.resize(b.size() - 1);
    files.push_back({"stories-trunc.bin", b});
    auto g = test::read_file(test::models_dir() + "/gguf-vocab/ggml-vocab-llama-spm.gguf");
    g.resize(g.size() / 3);
    files.push_back({"spm-trunc.gguf", g});
  }
  for (const auto& [name, bytes] : files) {
    const std::string path = dir + "/" + name;
    test::write_file(path, bytes);
    const auto r = test::run_cli("inspect " + path);
    EXPECT_EQ(r.code, 1) << name;
    EXPECT_NE(r.err.find(path), std::string::npos) << name << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "") << name;
  }
  EXPECT_EQ(test::run_cli("inspect " + dir + "/missing.gguf").code, 1);
}

TEST(Cli, BenchGemmJsonKeys) {
  auto r = test::run_cli("bench gemm --m 67 --k 129 --n 1,5 --dtype f32,bf16 --threads 1,2 --repeats 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int rows = 0;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    for (const char* k : {"op", "impl", "baseline", "shape", "threads", "ms_min", "ms_median", "gflops", "gbps",
                          "ratio_to_baseline", "max_rel_err", "cache", "roofline_frac"})
      EXPECT_TRUE(j.contains(k)) << k << " missing in " << line;
    EXPECT_LE(j["ms_min"].get<double>(), j["ms_median"].get<double>());
    EXPECT_LT(j["max_rel_err"].get<double>(), 1e-5) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 2 * 2 * 3);  // (ref + 2 thread counts) x n x dtype
  EXPECT_NE(test::run_cli("bench gemm --dtype f64").code, 0);
}

TEST(Cli, BenchMpGemmFamiliesAndBaselines) {
  auto r = test::run_cli("bench mpgemm --m 96 --k 256 --n 1,40 --bits 2,t --threads 1 --repeats 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::map<std::string, int> families;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    const std::string impl = j["impl"], base = j["baseline"];
    const std::string fam = impl.substr(0, impl.find('_'));
    families[fam]++;
    if (fam == "lut") EXPECT_EQ(base, "dequant") << line;
    if (fam == "dequant" || fam == "int8") EXPECT_EQ(base, "f32") << line;
    if (fam == "lut" || fam == "int8") EXPECT_LT(j["max_rel_err"].get<double>(), 5e-2) << line;
    if (fam == "dequant") EXPECT_LT(j["max_rel_err"].get<double>(), 1e-5) << line;
  }
  EXPECT_EQ(families["f32"], 4);
  EXPECT_EQ(families["dequant"], 4);
  EXPECT_EQ(families["lut"], 4);
  EXPECT_NE(test::run_cli("bench mpgemm --bits 9").code, 0);
}

TEST(Cli, BenchGgmlTypesAgainstF32) {
  auto r = test::run_cli("bench ggml --m 40 --k 512 --n 1,5 --types q4_0,q4_K,q6_K --threads 1 --repeats 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::map<std::string, int> per_type;
  int f32 = 0;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    if (j["impl"] == "f32_openblas") {
      ++f32;
      continue;
    }
    per_type[j["dtype"]]++;
    EXPECT_EQ(j["baseline"], "f32") << line;
    EXPECT_LT(j["max_rel_err"].get<double>(), 3e-2) << line;  // int8 activations against f32 on the same weights
    EXPECT_GT(j["bits_per_weight"].get<double>(), 4.0) << line;
  }
  EXPECT_EQ(f32, 6);
  EXPECT_EQ(per_type, (std::map<std::string, int>{{"q4_0", 2}, {"q4_K", 2}, {"q6_K", 2}}));
  const auto bad = test::run_cli("bench ggml --types q7_X");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("q7_X"), std::string::npos) << bad.err;
  EXPECT_NE(test::run_cli("bench ggml --k 300").code, 0);
}

TEST(Cli, BenchFftConvAgainstFftw) {
  auto r = test::run_cli("bench fftconv --b 1 --h 3 --n 256,1K --threads 1 --dtype f32,bf16 --repeats 2 --json");
  if (r.code != 0 && r.err.find("fftconv") != std::string::npos && r.err.find("not") != std::string::npos)
    GTEST_SKIP() << "CLI built without FFTW";
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int ours = 0, fftw = 0;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    EXPECT_TRUE(j.contains("dtype") && j.contains("max_rel_err") && j.contains("ratio_to_baseline")) << line;
    // bf16 rows may run an AMX kernel (the direct one at n = 1K): bf16 operands, the issue's 1e-2.
    EXPECT_LT(j["max_rel_err"].get<double>(), j["dtype"] == "bf16" ? 1e-2 : 1e-5) << line;
    if (j["impl"].get<std::string>().rfind("fftw", 0) == 0) {
      ++fftw;
    } else {
      ++ours;
      EXPECT_EQ(j["baseline"], "fftw");
    }
  }
  EXPECT_EQ(fftw, 2);
  EXPECT_EQ(ours, 4);
  EXPECT_NE(test::run_cli("bench fftconv --n 3K").code, 0);
}

TEST(Cli, BenchColdCarriesRoofline) {
  auto r = test::run_cli("bench gemm --m 64 --k 64 --n 1 --dtype f32 --cold --no-ref --repeats 3 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(j["cache"], "cold");
  EXPECT_TRUE(j["roofline_frac"].is_number()) << r.out;
  EXPECT_GT(j["copies"].get<int>(), 1);
}

TEST(Cli, DecomposeReportsAndWritesFactors) {
  namespace fs = std::filesystem;
  // A generated exact-rank matrix: the SVD at that rank is exact.
  auto r = test::run_cli("decompose --synthetic 120x80:6 --method svd --rank 6 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  for (const char* k : {"method", "rank", "rel_error", "params_before", "params_after", "param_ratio", "seconds"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_LT(j["rel_error"].get<double>(), 1e-5);
  EXPECT_EQ(j["params_before"].get<int64_t>(), 120 * 80);
  EXPECT_EQ(j["params_after"].get<int64_t>(), 6 * (120 + 80 + 1));
  const std::string out = (fs::temp_directory_path() / ("tz_dec_" + std::to_string(::getpid()) + ".safetensors")).string();
  for (const char* m : {"rsvd --rank 8", "tucker --shape 12,10,8,10 --ranks 4,4,4,4", "cp --shape 12,10,80 --rank 3 --iters 30",
                        "tt --shape 12,10,8,10 --max-rank 5", "mpo --out-modes 12,10 --in-modes 8,10 --max-rank 6"}) {
    auto d = test::run_cli(std::string("decompose --synthetic 120x80 --method ") + m + " --json -o " + out);
    ASSERT_EQ(d.code, 0) << m << ": " << d.err;
    const json jd = json::parse(d.out);
    EXPECT_LT(jd["params_after"].get<int64_t>(), jd["params_before"].get<int64_t>()) << m;
    EXPECT_GE(jd["rel_error"].get<double>(), 0.0) << m;
    EXPECT_TRUE(fs::exists(out)) << m;
    auto i = test::run_cli("inspect " + out + " --json");  // the factors file is a valid safetensors file
    EXPECT_EQ(i.code, 0) << i.err;
    fs::remove(out);
  }
  // Bad input: a clear one-line error, non-zero exit, no output file.
  for (const char* bad : {"--synthetic 12x8 --method svd --rank 9", "--synthetic 12x8 --method tucker --ranks 2",
                          "--synthetic 12x8 --method nope --rank 2", "--synthetic 12x8 --method mpo --out-modes 5 --in-modes 8 --max-rank 2",
                          "--synthetic 0x8 --method svd --rank 1", "/no/such/file --tensor w --method svd --rank 1"}) {
    auto b = test::run_cli(std::string("decompose ") + bad + " -o " + out);
    EXPECT_NE(b.code, 0) << bad;
    EXPECT_NE(b.err.find("error"), std::string::npos) << bad << ": " << b.err;
    EXPECT_FALSE(fs::exists(out)) << bad;
  }
}

TEST(Cli, BenchLowRankJson) {
  auto r = test::run_cli("bench lowrank --m 256 --k 192 --svd-rank 8 --op-rank 16 --n 1,4 --adapters 4 --adapter-rank 4 --rows 8 --repeats 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::map<std::string, int> ops;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    ++ops[j["op"].get<std::string>()];
    if (!j["baseline"].get<std::string>().empty()) EXPECT_GT(j["ratio_to_baseline"].get<double>(), 0) << line;
  }
  EXPECT_EQ(ops["svd"], 3);  // full, randomized, randomized with the bf16 range finder
  EXPECT_EQ(ops["lowrank_op"], 4);
  EXPECT_EQ(ops["multi_lora"], 3);  // loop, fused f32, fused with bf16 weights
  // `bench decomp` and `bench adapters` are its two halves.
  const auto count_ops = [](const std::string& out) {
    std::map<std::string, int> c;
    std::istringstream in(out);
    std::string l;
    while (std::getline(in, l)) ++c[json::parse(l)["op"].get<std::string>()];
    return c;
  };
  auto d = test::run_cli("bench decomp --m 256 --k 192 --svd-rank 8 --op-rank 16 --n 1 --repeats 2 --json");
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(count_ops(d.out), (std::map<std::string, int>{{"svd", 3}, {"lowrank_op", 2}}));
  auto a = test::run_cli("bench adapters --m 256 --k 192 --adapters 4 --adapter-rank 4 --rows 8 --repeats 2 --json");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(count_ops(a.out), (std::map<std::string, int>{{"multi_lora", 3}}));
  EXPECT_NE(test::run_cli("bench adapters --svd-rank 8").code, 0);  // not an option of this half
}

TEST(Cli, RunGreedyMatchesLlama2c) {
  TZ_REQUIRE_MODELS();
  const std::string m = test::models_dir() + "/stories260K/";
  auto r = test::run_cli("run -m " + m + "stories260K.bin --temp 0 -n 200");
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(m + "expected_greedy_200.txt");
  const std::string want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(r.out, want + "\n");
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
  // A prompt is echoed, then continued; sampling with a seed is reproducible.
  r = test::run_cli("run -m " + m + "stories260K.bin -z " + m + "tok512.bin -p \"Tom had a dog\" -n 40 --temp 0.8 --seed 7 --weights q8g32");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Tom had a dog", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), std::string("Tom had a dog").size() + 20);
  EXPECT_EQ(test::run_cli("run -m " + m + "stories260K.bin -p \"Tom had a dog\" -n 40 --temp 0.8 --seed 7 --weights q8g32").out, r.out);
  // Errors: a prompt longer than the context, an unknown format, a missing model.
  r = test::run_cli("run -m " + m + "stories260K.bin -p \"Tom had a dog and a cat\" -c 3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("context (-c) holds 3"), std::string::npos) << r.err;
  r = test::run_cli("run -m " + m + "stories260K.bin --weights q4x");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("q4x"), std::string::npos) << r.err;
  r = test::run_cli("run -m /nonexistent/model.bin");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("/nonexistent/model.bin"), std::string::npos) << r.err;
}

// The flags people type from llama-cli / llama-perplexity / llama-bench habits.
TEST(Cli, LlamaCliFlagHabits) {
  TZ_REQUIRE_MODELS();
  const std::string m = test::models_dir() + "/stories260K/stories260K.bin", dir = test::temp_dir();
  // -n counts generated tokens (the prompt not included); --json is one object on stdout with the text.
  auto r = test::run_cli("run -m " + m + " -p 'Tom had a dog' -n 24 --temp 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["generated_tokens"].get<int>(), 24);
  EXPECT_GT(j["prompt_tokens"].get<int>(), 1);
  EXPECT_EQ(j["stop"], "limit");
  EXPECT_EQ(j["prompt"], "Tom had a dog");
  const std::string text = j["text"].get<std::string>();
  const auto plain = test::run_cli("run -m " + m + " -p 'Tom had a dog' -n 24 --temp 0");
  EXPECT_EQ(plain.out, "Tom had a dog" + text + "\n");  // the same text, streamed after the echoed prompt
  // --stop: the text up to the first occurrence of the string, which is not printed.
  const std::string stop = text.substr(text.size() / 2, 4);
  r = test::run_cli("run -m " + m + " -p 'Tom had a dog' -n 24 --temp 0 --json --stop '" + stop + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["text"], text.substr(0, text.find(stop))) << stop;
  EXPECT_EQ(json::parse(r.out)["stop"], "stop");
  // -t is threads after any subcommand (a later -t wins over --threads before it); -t 0 is an
  // error, not a temperature; -ngl is accepted with a note.
  EXPECT_EQ(json::parse(test::run_cli("info -t 1 --json").out)["threads"], 1);
  EXPECT_EQ(json::parse(test::run_cli("--threads 1 info -t 2 --json").out)["threads"], 2);
  r = test::run_cli("run -m " + m + " -n 4 -t 0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--threads"), std::string::npos) << r.err;
  r = test::run_cli("run -m " + m + " -n 4 --temp 0 -t 1 -ngl 99");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("no GPU offload"), std::string::npos) << r.err;
  // eval as llama-perplexity: -f, -c, the running perplexity and its +/- estimate.
  const std::string txt = test::models_dir() + "/eval-text/tinystories_valid_head.txt";
  r = test::run_cli("eval -m " + m + " -f " + txt + " -c 128 --split '\\n\\n' --max-docs 20");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.rfind("[1]", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("[20]"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find(" +/- "), std::string::npos) << r.out;
  r = test::run_cli("eval -m " + m + " -f " + txt + " -c 128 --split '\\n\\n' --max-docs 20 --json");
  const json e = json::parse(r.out);
  EXPECT_GT(e["perplexity_error"].get<double>(), 0.0);
  EXPECT_LT(e["perplexity_error"].get<double>(), 0.2 * e["perplexity"].get<double>());
  // Flags eval would ignore or cap are errors naming the flag.
  for (const auto& [args, what] : std::vector<std::pair<std::string, std::string>>{
           {"-c 1000", "-c/--ctx 1000"}, {"--max-docs 3", "--max-docs needs --split"},
           {"--capture-rows 5", "--capture-rows needs --capture"}, {"-c 64 --stride 100", "--stride 100"},
           {"-c 64 --decode-tokens 64", "--decode-tokens 64"}}) {
    r = test::run_cli("eval -m " + m + " -f " + txt + " " + args);
    EXPECT_EQ(r.code, 1) << args;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  }
  // compress takes -m; the model given twice is an error.
  r = test::run_cli("compress -m " + m + " -o " + dir + "/m.tz --bits 8 --group 32");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("compress " + m + " -m " + m + " -o " + dir + "/m2.tz");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not both"), std::string::npos) << r.err;
  // decompose: one layer of a llama2.c stacked tensor.
  r = test::run_cli("decompose " + m + " --tensor 'wq[3]' --method svd --rank 4 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["params_before"].get<int64_t>(), 64 * 64) << r.out;
  r = test::run_cli("decompose " + m + " --tensor 'wq[5]' --rank 4");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("layer 5 is outside [0, 5)"), std::string::npos) << r.err;
}

// convert: a model re-typed as GGUF without calibration, per-tensor fallbacks reported; eval
// --chunks scores as llama-perplexity does (ctx-token chunks from BOS, the second half of each).
TEST(Cli, ConvertRetypesForLlamaCppAndEvalChunks) {
  TZ_REQUIRE_MODELS();
  const std::string m = test::models_dir() + "/stories260K/stories260K.bin", dir = test::temp_dir();
  auto r = test::run_cli("convert -m " + m + " -o " + dir + "/c.gguf --type q4_k_m --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_GT(j["bits_per_weight"].get<double>(), 4.0);
  EXPECT_EQ(j["fallbacks"], 36);  // rows of 64 and 172 hold no 256-value super-block
  const json info = json::parse(test::run_cli("inspect " + dir + "/c.gguf --json").out);
  std::map<std::string, std::string> types;
  for (const auto& t : info["tensors"]) types[t["name"]] = t["dtype"];
  for (const auto& t : j["tensors"]) EXPECT_EQ(types[t["name"]], t["written"]) << t["name"];
  EXPECT_EQ(types["blk.0.attn_q.weight"], "q5_0");    // q4_K's fallback
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "f16");   // 172 values fit nothing smaller
  EXPECT_EQ(types["token_embd.weight"], "q5_0");      // (tied: no output.weight)
  const std::string txt = test::models_dir() + "/eval-text/tinystories_valid_head.txt";
  r = test::run_cli("eval -m " + dir + "/c.gguf -f " + txt + " -c 128 --chunks 40 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json e = json::parse(r.out);
  EXPECT_EQ(e["windows"], 40);
  EXPECT_EQ(e["tokens_scored"].get<int64_t>(), 40 * (128 - 64 - 1));
  EXPECT_GT(e["perplexity"].get<double>(), 1.0);
  EXPECT_NE(test::run_cli("eval -m " + m + " -f " + txt + " --chunks 4 --split x").code, 0);
  // Errors before any work: an unknown type, a non-GGUF output, the model twice.
  r = test::run_cli("convert -m " + m + " -o " + dir + "/d.gguf --type q9_k");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("'q9_k'"), std::string::npos) << r.err;
  r = test::run_cli("convert -m " + m + " -o " + dir + "/d.tz --type q4_0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(".gguf"), std::string::npos) << r.err;
  EXPECT_EQ(test::run_cli("convert " + m + " -m " + m + " -o " + dir + "/d.gguf --type q4_0").code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir + "/d.gguf"));
}

// A GPTQ act-order checkpoint (a Hugging Face directory): it runs, evaluates, and converts to a
// .tz file that keeps its codes (the same perplexity to the last digit) or to a GGUF re-typed.
TEST(Cli, GptqCheckpointRunsConvertsAndEvaluates) {
  TZ_REQUIRE_MODELS();
  const std::string dir = test::temp_dir(), txt = test::models_dir() + "/eval-text/tinystories_valid_head.txt";
  test::write_hf_dir(load_llama2c(test::models_dir() + "/stories260K/stories260K.bin"), dir + "/dense");
  const auto rw = test::write_hf_quantized_dir(
      dir + "/dense", dir + "/gptq", dir + "/ref", R"({"quant_method":"gptq","bits":4,"group_size":32,"desc_act":true,"sym":false})", true, 3);
  ASSERT_EQ(rw.quantized, 20);
  std::filesystem::copy_file(test::models_dir() + "/stories260K/tok512.bin", dir + "/gptq/tokenizer.bin");
  auto r = test::run_cli("run -m " + dir + "/gptq -p \"Once upon a time\" -n 8 --temp 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(json::parse(r.out)["text"].get<std::string>().empty());
  r = test::run_cli("convert -m " + dir + "/gptq -o " + dir + "/m.tz --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["quantized_layers"]["gptq 4-bit g32 asym act-order"], 20);
  const auto ppl = [&](const std::string& m) {
    const auto e = test::run_cli("eval -m " + m + " -f " + txt + " -c 128 --chunks 6 --json");
    EXPECT_EQ(e.code, 0) << e.err;
    return e.code == 0 ? json::parse(e.out)["perplexity"].get<double>() : 0.0;
  };
  const double p = ppl(dir + "/gptq");
  EXPECT_EQ(ppl(dir + "/m.tz"), p);  // the same codes, the same kernels
  r = test::run_cli("convert -m " + dir + "/gptq -o " + dir + "/m.gguf --type q8_0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NEAR(ppl(dir + "/m.gguf"), p, 0.02 * p);  // re-quantized to 8 bits: close, not equal
  r = test::run_cli("convert -m " + dir + "/gptq -o " + dir + "/n.gguf");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("needs --type"), std::string::npos) << r.err;
}

// inspect: a model directory (its config and every safetensors file); --full in text output too.
TEST(Cli, InspectDirectoriesAndFullText) {
  const std::string dir = test::temp_dir() + "/hf";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << R"({"model_type":"llama","hidden_size":64,"note":")" << std::string(200, 'x') << R"("})";
  test::write_file(dir + "/model-00001-of-00002.safetensors", test::sample_safetensors());
  test::write_file(dir + "/model-00002-of-00002.safetensors", test::sample_safetensors());
  auto r = test::run_cli("inspect " + dir + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["tensors"].size(), 6u);
  EXPECT_EQ(j["tensors"][3]["file"], "model-00002-of-00002.safetensors");
  EXPECT_EQ(j["metadata"].size(), 3u);
  r = test::run_cli("inspect " + dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find(std::string(200, 'x')), std::string::npos);  // long values cut …
  EXPECT_NE(test::run_cli("inspect " + dir + " --full").out.find(std::string(200, 'x')), std::string::npos);  // … unless --full
  const std::string vocab = test::fixtures_dir() + "/tokenizer/ggml-vocab-gpt-2.gguf";
  if (std::filesystem::exists(vocab)) {
    EXPECT_NE(test::run_cli("inspect " + vocab).out.find(" items)]"), std::string::npos);
    EXPECT_EQ(test::run_cli("inspect " + vocab + " --full").out.find(" items)]"), std::string::npos);
  }
  std::filesystem::create_directories(dir + "/empty");
  r = test::run_cli("inspect " + dir + "/empty");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("without config.json"), std::string::npos) << r.err;
}

TEST(Cli, RunWithLoraAndLowRankWeights) {
  TZ_REQUIRE_MODELS();
  const std::string m = test::models_dir() + "/stories260K/stories260K.bin";
  const std::string dir = test::temp_dir();
  PeftAdapter ad;
  ad.r = 2;
  ad.lora_alpha = 64;
  for (int l = 0; l < 5; ++l) {
    LoraAdapter a;
    a.rank = 2;
    a.alpha = 64;
    a.a = test::random_floats(2 * 64, uint32_t(l), 0.5f);
    a.b = test::random_floats(64 * 2, uint32_t(l + 9), 0.5f);
    ad.modules["model.layers." + std::to_string(l) + ".self_attn.o_proj"] = a;
  }
  write_peft_adapter(dir + "/lora", ad);
  const auto plain = test::run_cli("run -m " + m + " --temp 0 -n 60");
  const auto adapted = test::run_cli("run -m " + m + " --temp 0 -n 60 --lora " + dir + "/lora");
  ASSERT_EQ(adapted.code, 0) << adapted.err;
  EXPECT_NE(adapted.out, plain.out);  // a strong adapter changes the greedy text
  auto r = test::run_cli("run -m " + m + " --lora " + dir + "/missing");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
  r = test::run_cli("run -m " + m + " --temp 0 -n 40 --weights lr48,output=f32 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  // Several adapters at once, DIR:SCALE (llama.cpp's --lora-scaled), and `merge` writing the
  // merged model: the same perplexity as the adapters applied unmerged.
  const std::string txt = test::models_dir() + "/eval-text/tinystories_valid_head.txt", evalx = " -f " + txt + " --split '\\n\\n' --max-docs 30 --json";
  const auto ppl = [&](const std::string& args) {
    const auto e = test::run_cli("eval " + args + evalx);
    EXPECT_EQ(e.code, 0) << args << ": " << e.err;
    return e.code == 0 ? json::parse(e.out)["perplexity"].get<double>() : 0.0;
  };
  const double twice = ppl("-m " + m + " --lora " + dir + "/lora --lora " + dir + "/lora");
  EXPECT_NEAR(ppl("-m " + m + " --lora " + dir + "/lora:2"), twice, 1e-4 * twice);
  EXPECT_GT(std::abs(ppl("-m " + m + " --lora " + dir + "/lora:0.5") - twice), 1e-3);
  r = test::run_cli("merge -m " + m + " --lora " + dir + "/lora:2 -o " + dir + "/merged.tz --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["modules_merged"], 5);
  EXPECT_NEAR(ppl("-m " + dir + "/merged.tz"), twice, 1e-4 * twice);
  r = test::run_cli("merge -m " + m + " --lora " + dir + "/lora --lora " + dir + "/lora -o " + dir + "/merged.gguf --gguf-type f32");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NEAR(ppl("-m " + dir + "/merged.gguf"), twice, 1e-4 * twice);
  r = test::run_cli("run -m " + m + " --lora " + dir + "/lora:abc -n 2");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("'abc' after the last ':' is not a scale"), std::string::npos) << r.err;
  r = test::run_cli("merge -m " + m + " --lora " + dir + "/lora -o " + dir + "/x.gguf --gguf-type q9_k");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("q9_k"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
}

TEST(Cli, EvalPerplexityAndCapture) {
  TZ_REQUIRE_MODELS();
  const std::string m = test::models_dir() + "/stories260K/stories260K.bin";
  const std::string text = test::models_dir() + "/eval-text/tinystories_valid_head.txt";
  const std::string dir = test::temp_dir();
  // The protocol of shared/models/README.md: 300 documents, BOS + text, 29,256 tokens, NLL 1.435.
  auto r = test::run_cli("eval -m " + m + " --text " + text + " --split '\\n\\n' --max-docs 300 --json --capture " + dir +
                         "/cap.safetensors --capture-rows 100");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["tokens_scored"].get<int>(), 29256);
  EXPECT_NEAR(j["mean_nll"].get<double>(), 1.435, 2e-3);
  EXPECT_NEAR(j["perplexity"].get<double>(), 4.20, 0.01);
  EXPECT_GT(j["prefill_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["peak_rss_mib"].get<double>(), 0);
  const auto cap = io::SafetensorsFile::open(dir + "/cap.safetensors");
  EXPECT_EQ(cap.tensors().size(), size_t(5 * 7 + 1));
  EXPECT_EQ(cap.find("layers.2.feed_forward.w2")->shape, (Shape{100, 172}));
  // Sliding window over a 20 KB excerpt, a short context.
  std::ifstream in(text, std::ios::binary);
  std::string head(20000, '\0');
  in.read(head.data(), std::streamsize(head.size()));
  std::ofstream(dir + "/head.txt", std::ios::binary) << head;
  r = test::run_cli("eval -m " + m + " --text " + dir + "/head.txt --ctx 128 --stride 64 --decode-tokens 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("perplexity"), std::string::npos) << r.out;
  r = test::run_cli("eval -m " + m + " --text /nonexistent.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("/nonexistent.txt"), std::string::npos) << r.err;
}

TEST(Cli, BenchModelSynthetic) {
  auto r = test::run_cli("bench model --synthetic 128,256,4,2 --formats f32,q4,q2 --prefill 16 --decode 2 --repeats 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::map<std::string, int> ops;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    ++ops[j["op"].get<std::string>()];
    EXPECT_GT(j["tokens_per_s"].get<double>(), 0) << line;
    if (j["impl"] != "f32") EXPECT_EQ(j["baseline"], "f32") << line;
  }
  EXPECT_EQ(ops["model_prefill"], 3);
  EXPECT_EQ(ops["model_decode"], 3);
}

TEST(Cli, CompressRunsAndReports) {
  TZ_REQUIRE_MODELS();
  const std::string m = test::models_dir() + "/stories260K/stories260K.bin";
  const std::string text = test::models_dir() + "/eval-text/tinystories_valid_head.txt";
  const std::string dir = test::temp_dir();
  auto r = test::run_cli("compress " + m + " -o " + dir + "/g.tz --method gptq --bits 4 --group 32 --asym --calib " + text +
                         " --calib-docs 32 --calib-skip 300 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["layers"].size(), 35u);
  for (const auto& l : j["layers"]) {
    EXPECT_EQ(l["method"], "gptq");
    EXPECT_GT(l["output_rel_err"].get<double>(), 0);
    EXPECT_LT(l["weight_rel_err"].get<double>(), 0.2);
  }
  EXPECT_NEAR(j["bits_per_weight"].get<double>(), 4.77, 0.05);
  // The file runs on its own (config and tokenizer inside).
  r = test::run_cli("run -m " + dir + "/g.tz -p \"Once upon a time\" -n 30 --temp 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;
  r = test::run_cli("inspect " + dir + "/g.tz");
  EXPECT_EQ(r.code, 0) << r.err;
  // Table output, mixed precision, GGUF export that the GGUF loader reads back.
  r = test::run_cli("compress " + m + " -o " + dir + "/mp.tz --method rtn --group 32 --target-bpw 3.5 --candidate-bits 2,4,8 --calib " + text +
                    " --calib-docs 16");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("bits/weight"), std::string::npos) << r.out;
  // End-to-end tuning: reported, the KL from the original model goes down, the size stays.
  r = test::run_cli("compress " + m + " -o " + dir + "/t.tz --method gptq --bits 4 --group 32 --asym --calib " + text +
                    " --calib-docs 32 --calib-skip 300 --tune-epochs 4 --tune-codes --tune-codes-lr 0.05 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json jt = json::parse(r.out);
  ASSERT_TRUE(jt.contains("tune")) << r.out;
  EXPECT_EQ(jt["tune"]["steps"].get<int>(), 4 * 8);
  EXPECT_LT(jt["tune"]["kl_after"].get<double>(), jt["tune"]["kl_before"].get<double>());
  EXPECT_GT(jt["tune"]["codes_changed"].get<int64_t>(), 0);
  EXPECT_EQ(jt["output_bytes"], j["output_bytes"]);
  // Tuning without calibration text is refused.
  r = test::run_cli("compress " + m + " -o " + dir + "/bad.tz --method rtn --tune-epochs 1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("calibration"), std::string::npos) << r.err;
  // Failures: GPTQ without calibration, a bad method; no output file either way.
  r = test::run_cli("compress " + m + " -o " + dir + "/bad.tz --method gptq");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("calibration"), std::string::npos) << r.err;
  r = test::run_cli("compress " + m + " -o " + dir + "/bad.tz --method fancy");
  EXPECT_NE(r.code, 0);
  EXPECT_FALSE(test::file_exists(dir + "/bad.tz"));
}

TEST(Cli, CompressExportsGgufForLlamaCpp) {
  // A small GGUF llama model (dims multiples of 32) -> GPTQ -> q4_0 GGUF that the GGUF loader reads.
  const std::string dir = test::temp_dir();
  LlamaConfig c{64, 128, 2, 4, 4, 6, 64};
  const Tokenizer tok = Tokenizer::parse_hf_json(
      R"({"model":{"type":"BPE","vocab":{"<unk>":0,"<s>":1,"</s>":2,"a":3,"b":4,"ab":5},"merges":["a b"]}})", "t.json");
  LlamaSource src = synthetic_llama(c, 9);
  src.tensors.erase("output");
  write_gguf_llama(src, tok, dir + "/in.gguf", io::kGgmlF32);
  std::ofstream(dir + "/calib.txt") << "ab ab a b\n\nb a ab\n\na a a b b";
  auto r = test::run_cli("compress " + dir + "/in.gguf -o " + dir + "/out.gguf --method gptq --bits 4 --group 32 --calib " + dir +
                         "/calib.txt --gguf-type q4_0");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto g = io::GgufFile::open(dir + "/out.gguf");
  EXPECT_EQ(g.find_tensor("blk.0.attn_q.weight")->ggml_type, io::kGgmlQ4_0);
  const LlamaSource back = load_llama(dir + "/out.gguf");
  EXPECT_EQ(back.quantized.size(), size_t(2 * 7 + 1));  // and the q4_0 embedding (also the tied classifier), kept in blocks
  r = test::run_cli("run -m " + dir + "/out.gguf -p \"ab\" -n 8 --temp 0");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cli, CompressAnyCheckpointWithCapturedActivations) {
  // A two-tensor "model" of unknown architecture and activations captured for it.
  const std::string dir = test::temp_dir();
  const auto w1 = test::random_floats(48 * 64, 1), w2 = test::random_floats(64 * 48, 2), b = test::random_floats(48, 3);
  const auto a1 = test::random_floats(200 * 64, 4), a2 = test::random_floats(200 * 48, 5);
  io::SafetensorsWriter w, a;
  const Tensor t1 = Tensor::view(DType::F32, {48, 64}, const_cast<float*>(w1.data()));
  const Tensor t2 = Tensor::view(DType::F32, {64, 48}, const_cast<float*>(w2.data()));
  const Tensor tb = Tensor::view(DType::F32, {48}, const_cast<float*>(b.data()));
  const Tensor c1 = Tensor::view(DType::F32, {200, 64}, const_cast<float*>(a1.data()));
  const Tensor c2 = Tensor::view(DType::F32, {200, 48}, const_cast<float*>(a2.data()));
  w.add("enc.fc1.weight", t1);
  w.add("enc.fc2.weight", t2);
  w.add("enc.fc1.bias", tb);
  w.write(dir + "/model.safetensors");
  a.add("enc.fc1", c1);
  a.add("enc.fc2", c2);
  a.write(dir + "/acts.safetensors");
  auto r = test::run_cli("compress " + dir + "/model.safetensors -o " + dir + "/out.tz --method gptq --bits 3 --group 32 --calib " + dir +
                         "/acts.safetensors --include 'enc.*.weight' --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["layers"].size(), 2u);
  const auto f = io::SafetensorsFile::open(dir + "/out.tz");
  EXPECT_NE(f.find("enc.fc1.weight.qweight"), nullptr);
  EXPECT_NE(f.find("enc.fc1.bias"), nullptr);  // untouched tensors are kept
  // Activations of the wrong width are refused.
  io::SafetensorsWriter wrong;
  wrong.add("enc.fc1", c2);
  wrong.write(dir + "/wrong.safetensors");
  r = test::run_cli("compress " + dir + "/model.safetensors -o " + dir + "/out2.tz --method gptq --calib " + dir +
                    "/wrong.safetensors --include 'enc.fc1.weight'");
  EXPECT_NE(r.err.find("input channels"), std::string::npos) << r.err;
  EXPECT_NE(r.code, 0);
  EXPECT_FALSE(test::file_exists(dir + "/out2.tz"));
}

// `chat`: turns from standard input, /reset, replies streamed; `run --chat` one-shot.
TEST(Cli, ChatTurnsAndReset) {
  const std::string model = test::fixtures_dir() + "/arch/qwen2.gguf";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "../shared/fixtures/arch not found";
  auto r = test::run_cli("chat -m " + model + " --chat-template chatml -n 6 --temp 0 --system 'Be brief.'",
                         "printf 'Hello\\nAgain\\n/reset\\nHello\\n' |");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("format chatml"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(conversation reset)"), std::string::npos) << r.err;
  // Greedy: the first reply equals `run --chat` on the same turn, and the first turn after /reset
  // repeats it (the replies of this random model hold newlines: compare prefix and suffix).
  const auto one = test::run_cli("run -m " + model + " --chat -p Hello -n 6 --temp 0 --chat-template chatml --system 'Be brief.'");
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_GT(one.out.size(), 1u);
  EXPECT_EQ(r.out.rfind(one.out, 0), 0u) << r.out << " vs " << one.out;
  EXPECT_EQ(r.out.substr(r.out.size() - one.out.size()), one.out);
  EXPECT_GT(r.out.size(), 2 * one.out.size());
  // A model without a template and no --chat-template: a clear error.
  r = test::run_cli("run -m " + test::fixtures_dir() + "/arch/llama.gguf --chat -p Hello");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no chat template"), std::string::npos) << r.err;
}

// GGUF export in llama.cpp's K-quant and IQ4 types and its mixtures, read back and run.
TEST(Cli, CompressWritesEveryGgufType) {
  const std::string model = test::fixtures_dir() + "/arch/llama.gguf";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "../shared/fixtures/arch not found";
  const std::string dir = test::temp_dir();
  const auto f32 = test::run_cli("run -m " + model + " -p Once -n 8 --temp 0");
  ASSERT_EQ(f32.code, 0) << f32.err;
  for (const std::string t : {"q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs", "tq1_0", "tq2_0", "bf16"}) {
    SCOPED_TRACE(t);
    const std::string out = dir + "/m." + t + ".gguf";
    auto r = test::run_cli("compress " + model + " -o " + out + " --exclude 'layers.*' --gguf-type " + t);
    ASSERT_EQ(r.code, 0) << r.err;
    r = test::run_cli("inspect " + out + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    std::map<std::string, std::string> types;
    for (const auto& e : j["tensors"]) types[e["name"].get<std::string>()] = e["dtype"].get<std::string>();
    const bool mixed = t.size() > 4 && t.substr(t.size() - 2) == "_m";
    std::string want = mixed ? "q6_K" : t;
    if (!mixed && t.back() == 'k') want.back() = 'K';  // ggml spells the K-quants q4_K
    EXPECT_EQ(types["blk.1.ffn_down.weight"], want);
    r = test::run_cli("run -m " + out + " -p Once -n 8 --temp 0");
    EXPECT_EQ(r.code, 0) << r.err;
  }
  const auto bad = test::run_cli("compress " + model + " -o " + dir + "/x.gguf --gguf-type iq2_xxs");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("'iq2_xxs'"), std::string::npos) << bad.err;
}

}  // namespace tz
