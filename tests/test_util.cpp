#include <cmath>
#include "tests/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tensorzip/convert.h"

namespace tz::test {

double rel_l2(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double d = double(y[i]) - double(ref[i]);
    num += std::isfinite(d) ? d * d : INFINITY;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double max_rel_err(const std::vector<float>& y, const std::vector<float>& ref) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    scale = std::max(scale, std::fabs(double(ref[i])));
    err = std::max(err, std::isfinite(y[i]) ? std::fabs(double(y[i]) - double(ref[i])) : INFINITY);
  }
  return scale > 0 ? err / scale : err;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16_scalar(v[i]);
  return out;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx})
    if (int(i) <= int(cpu_info().max_isa)) out.push_back(i);
  return out;
}

namespace {
struct TempRoot {
  std::filesystem::path root;
  TempRoot() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tensorzip-test-XXXXXX").string();
    root = mkdtemp(tmpl.data());
  }
  ~TempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};
}  // namespace

std::string temp_dir() {
  static TempRoot root;
  static int counter = 0;
  auto p = root.root / std::to_string(counter++);
  std::filesystem::create_directories(p);
  return p.string();
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

bool file_exists(const std::string& path) { return std::filesystem::exists(path); }

CliResult run_cli(const std::string& args, const std::string& env) {
  const std::string dir = temp_dir();
  const std::string out = dir + "/out", err = dir + "/err";
  const std::string cmd = env + " " + TZ_CLI_PATH + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  const auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

std::string fixtures_dir() { return TZ_SHARED_FIXTURES; }

std::string models_dir() {
  const std::string d = TZ_SHARED_MODELS;
  return std::filesystem::exists(d + "/stories260K/stories260K.bin") ? d : "";
}

}  // namespace tz::test

#include "tensorzip/io/ggml_blocks.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/safetensors.h"
#include "tensorzip/tensor.h"

namespace tz::test {

std::vector<uint8_t> sample_safetensors() {
  Tensor a = Tensor::empty(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) a.data<float>()[i] = float(i) - 2.5f;
  Tensor b = Tensor::empty(DType::BF16, {4});
  for (int i = 0; i < 4; ++i) b.data<uint16_t>()[i] = f32_to_bf16_scalar(float(i) * 0.5f);
  Tensor c = Tensor::empty(DType::I8, {3});
  for (int i = 0; i < 3; ++i) c.data<int8_t>()[i] = int8_t(i - 1);
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("tensorzip.test", "yes");
  w.add("layer.weight", a);
  w.add("layer.bias", b);
  w.add("codes", c);
  const std::string path = temp_dir() + "/sample.safetensors";
  w.write(path);
  return read_file(path);
}

std::vector<uint8_t> sample_gguf() {
  io::GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.add("test.i8", {io::GgufType::I8, io::GgufType::U8, {int64_t(-3)}});
  w.add("test.u16", {io::GgufType::U16, io::GgufType::U8, {uint64_t(65535)}});
  w.add("test.i64", {io::GgufType::I64, io::GgufType::U8, {int64_t(-1234567890123)}});
  w.add("test.f64", {io::GgufType::F64, io::GgufType::U8, {2.5}});
  w.add("test.bool", {io::GgufType::BOOL, io::GgufType::U8, {true}});
  w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "hello"});
  w.add("tokenizer.ggml.scores", {io::GgufType::ARRAY, io::GgufType::F32, {0.0, -1.0, -2.0, -3.5}});
  const auto vals = random_floats(64, 17);
  std::vector<uint8_t> f32(64 * 4), f16(64 * 2), bf(64 * 2), q8(2 * io::kQ8_0BlockBytes), q4(2 * io::kQ4_0BlockBytes);
  std::memcpy(f32.data(), vals.data(), f32.size());
  for (size_t i = 0; i < 64; ++i) {
    const uint16_t h = f32_to_f16_scalar(vals[i]), b = f32_to_bf16_scalar(vals[i]);
    std::memcpy(&f16[i * 2], &h, 2);
    std::memcpy(&bf[i * 2], &b, 2);
  }
  io::quantize_q8_0(vals.data(), q8.data(), 64);
  io::quantize_q4_0(vals.data(), q4.data(), 64);
  w.add_tensor("t.f32", io::kGgmlF32, {2, 32}, f32);
  w.add_tensor("t.f16", io::kGgmlF16, {64}, f16);
  w.add_tensor("t.bf16", io::kGgmlBF16, {4, 16}, bf);
  w.add_tensor("t.q8_0", io::kGgmlQ8_0, {2, 32}, q8);
  w.add_tensor("t.q4_0", io::kGgmlQ4_0, {1, 64}, q4);
  return w.serialize();
}

std::vector<uint8_t> sample_llama2c(int version, bool shared) {
  const int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 16, seq = 4;
  const int64_t kv = dim / heads * kv_heads;
  int64_t n = vocab * dim + layers * (2 * dim + dim * dim * 2 + 2 * kv * dim + 3 * hidden * dim) + dim;
  if (version == 0) n += 2 * seq * (dim / heads / 2);
  if (!shared) n += vocab * dim;
  std::vector<uint8_t> out;
  auto put = [&](const void* p, size_t b) { out.insert(out.end(), (const uint8_t*)p, (const uint8_t*)p + b); };
  if (version == 1) {
    const uint32_t magic = 0x616b3432;
    const int32_t v = 1;
    put(&magic, 4);
    put(&v, 4);
  }
  const int32_t vocab_field = version == 0 && !shared ? -vocab : vocab;
  for (int32_t h : {dim, hidden, layers, heads, kv_heads, vocab_field, seq}) put(&h, 4);
  if (version == 1) {
    const uint8_t s = shared ? 1 : 0;
    put(&s, 1);
    out.resize(256, 0);
  }
  for (int64_t i = 0; i < n; ++i) {
    const float f = float(i) * 0.001f;
    put(&f, 4);
  }
  return out;
}

std::vector<uint8_t> sample_tokenizer_bin() {
  std::vector<uint8_t> tok;
  const auto put32 = [&](const void* p) {
    tok.resize(tok.size() + 4);
    std::memcpy(tok.data() + tok.size() - 4, p, 4);
  };
  const int32_t max_len = 8;
  put32(&max_len);
  float score = 0.f;
  for (const std::string piece : {"<unk>", "<s>", "</s>", "<0x41>", " ", "O", "n", "c", "e", "On", "ce", " On", "Once", "a", "b", " a"}) {
    const int32_t len = int32_t(piece.size());
    put32(&score);
    put32(&len);
    for (char ch : piece) tok.push_back(static_cast<uint8_t>(ch));
    score -= 1.f;
  }
  return tok;
}

}  // namespace tz::test
