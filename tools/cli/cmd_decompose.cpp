// `tensorzip decompose`: factor one tensor of a safetensors / GGUF / llama2.c file (or a generated
// matrix) with SVD, randomized SVD, activation-weighted SVD, Tucker, CP, tensor-train or MPO, and
// report relative error, parameters before/after and time; -o writes the factors (safetensors,
// atomically).
#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "core/json.h"
#include "tensorzip/decompose.h"
#include "tensorzip/error.h"
#include "tensorzip/io/atomic_file.h"
#include "tensorzip/io/gguf.h"
#include "tensorzip/io/llama2c.h"
#include "tensorzip/io/mapped_file.h"
#include "tensorzip/io/safetensors.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/file_format.h"

namespace tz::cli {
namespace {

struct Opts {
  std::string file, tensor, method = "svd", synthetic, out, calib, calib_tensor;
  int64_t rank = 0, max_rank = 0, oversample = 10;
  int power_iters = 4, iters = 0;
  double energy = 0, param_ratio = 0, eps = 0;
  std::vector<int64_t> ranks, out_modes, in_modes, shape;
  bool json = false;
};

// The tensor as f32 with its shape, from any of the three formats.
Tensor load(const std::string& path, const std::string& name) {
  const std::string format = detect_format(*io::MappedFile::open(path));
  if (format == "gguf") {
    const auto f = io::GgufFile::open(path);
    require(f.find_tensor(name) != nullptr, path + ": no tensor named '" + name + "'");
    return f.tensor_f32(name);
  }
  if (format == "safetensors") {
    const auto f = io::SafetensorsFile::open(path);
    require(f.find(name) != nullptr, path + ": no tensor named '" + name + "'");
    const Tensor t = f.tensor(name);
    require(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
            path + ": tensor '" + name + "' is " + dtype_name(t.dtype()) + "; decompose reads f32, f16 or bf16");
    return t.to(DType::F32);
  }
  // llama2.c stacks each layer's weights in one tensor: NAME[layer] takes one layer's matrix.
  const auto f = io::Llama2cCheckpoint::open(path);
  const size_t open = name.find('[');
  if (open == std::string::npos || name.back() != ']') return f.tensor(name).to(DType::F32);
  const std::string base = name.substr(0, open), index = name.substr(open + 1, name.size() - open - 2);
  const Tensor all = f.tensor(base);
  char* end = nullptr;
  const long layer = std::strtol(index.c_str(), &end, 10);
  require(!index.empty() && *end == '\0', path + ": '" + name + "': the layer index '" + index + "' is not a number");
  require(all.ndim() >= 2, path + ": tensor '" + base + "' is not stacked by layer (shape " + shape_to_string(all.shape()) + ")");
  require(layer >= 0 && layer < all.dim(0), path + ": '" + name + "': layer " + index + " is outside [0, " +
                                                std::to_string(all.dim(0)) + ")");
  const Shape one(all.shape().begin() + 1, all.shape().end());
  const int64_t per = all.numel() / all.dim(0);
  return Tensor::view(DType::F32, one, const_cast<float*>(all.data<float>()) + layer * per).to(DType::F32);
}

// A generated m x n matrix with a decaying spectrum (σ_i = 1/(1+i)), or exact rank r if given.
Tensor synthetic(const std::string& spec) {
  int64_t m = 0, n = 0, r = 0;
  char x = 0, c = 0;
  const int got = std::sscanf(spec.c_str(), "%ld%c%ld%c%ld", &m, &x, &n, &c, &r);
  require(got >= 3 && x == 'x' && m >= 1 && n >= 1 && (got < 5 || (c == ':' && r >= 1)),
          "decompose: --synthetic takes MxN or MxN:RANK, got '" + spec + "'");
  const int64_t k = got == 5 ? r : std::min(m, n);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> a(size_t(m * k)), b(size_t(k * n));
  for (auto& v : a) v = g(rng) / std::sqrt(float(m));
  for (auto& v : b) v = g(rng) / std::sqrt(float(n));
  Tensor t = Tensor::zeros(DType::F32, {m, n});
  float* w = t.data<float>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const float s = a[size_t(i * k + j)] / (got == 5 ? 1.f : float(1 + j));
      for (int64_t q = 0; q < n; ++q) w[i * n + q] += s * b[size_t(j * n + q)];
    }
  return t;
}

RankSpec rank_spec(const Opts& o) { return RankSpec{o.rank, o.energy, o.param_ratio}; }

void run_method(const Opts& o, const Tensor& t, const Shape& shape);

void run(const Opts& o) {
  require(o.file.empty() != o.synthetic.empty(), "decompose: give a FILE (with --tensor) or --synthetic MxN");
  if (!o.out.empty()) {  // before any work: a writable output that is not an input
    io::require_output_path(o.out);
    io::require_output_not_input(o.out, {o.file, o.calib}, "decompose");
  }
  require(o.synthetic.size() || !o.tensor.empty(), "decompose: --tensor NAME is required with a file");
  Tensor t = o.synthetic.empty() ? load(o.file, o.tensor) : synthetic(o.synthetic);
  Shape shape = t.shape();
  if (!o.shape.empty()) {  // reshape, e.g. a matrix as a tensor
    int64_t p = 1;
    for (int64_t s : o.shape) p *= s;
    require(p == t.numel(), fmt::format("decompose: --shape multiplies to {}, the tensor has {} values", p, t.numel()));
    shape = o.shape;
  }
  // Defaults for the tensor methods, said on stderr so a user knows what was chosen:
  // Tucker keeps a quarter of each mode; tensor-train stops at 1 % relative error; CP takes the
  // rank of a quarter of the smallest mode (at most 64: ALS cost grows with rank × size).
  Opts d = o;
  if (o.method == "tucker" && d.ranks.empty()) {
    for (int64_t s : shape) d.ranks.push_back(std::max<int64_t>(1, (s + 3) / 4));
    std::string r;
    for (int64_t v : d.ranks) r += (r.empty() ? "" : ",") + std::to_string(v);
    fmt::print(stderr, "tensorzip: decompose: no --ranks given; tucker keeps a quarter of each mode: --ranks {}\n", r);
  }
  if (o.method == "tt" && d.max_rank == 0 && d.eps == 0) {
    d.eps = 0.01;
    fmt::print(stderr, "tensorzip: decompose: no --max-rank or --eps given; tt uses --eps 0.01 (1 % relative error)\n");
  }
  if (o.method == "cp" && d.rank == 0) {
    d.rank = std::clamp<int64_t>((*std::min_element(shape.begin(), shape.end()) + 3) / 4, 1, 64);
    fmt::print(stderr, "tensorzip: decompose: no --rank given; cp uses --rank {} (a quarter of the smallest mode, at most 64)\n", d.rank);
  }
  run_method(d, t, shape);
}

void run_method(const Opts& o, const Tensor& t, const Shape& shape) {
  const float* data = t.data<float>();
  const std::string src = o.synthetic.empty() ? o.file + ":" + o.tensor : "synthetic " + o.synthetic;
  DecompReport rep;
  io::SafetensorsWriter writer;
  std::vector<Tensor> keep;  // tensors referenced by the writer
  const auto save = [&](const std::string& name, Shape s, const std::vector<float>& v) {
    keep.push_back(Tensor::empty(DType::F32, s));
    std::copy(v.begin(), v.end(), keep.back().data<float>());
    writer.add(name, keep.back());
  };
  const bool matrix = o.method == "svd" || o.method == "rsvd" || o.method == "wsvd" || o.method == "mpo";
  if (matrix) require(shape.size() == 2, fmt::format("decompose: {} needs a matrix, {} has {} dimensions", o.method, src, shape.size()));
  const int64_t m = shape[0], n = shape.size() > 1 ? shape[1] : 1;
  if (o.method == "svd" || o.method == "rsvd" || o.method == "wsvd") {
    Svd<float> s;
    if (o.method == "svd") s = svd_truncated(data, m, n, rank_spec(o));
    else if (o.method == "rsvd") s = svd_randomized(data, m, n, rank_spec(o), {o.oversample, o.power_iters, 0x5eed, true});
    else {
      require(!o.calib.empty() && !o.calib_tensor.empty(), "decompose: wsvd needs --calib FILE --calib-tensor NAME (activations [tokens, in])");
      const Tensor x = load(o.calib, o.calib_tensor);
      require(x.shape().size() == 2 && x.shape()[1] == n,
              fmt::format("decompose: activations must be [tokens, {}] (the matrix's columns)", n));
      const auto cw = activation_col_weights(x.data<float>(), x.shape()[0], n);
      s = svd_weighted(data, m, n, static_cast<const float*>(nullptr), cw.data(), rank_spec(o));
    }
    rep = s.report;
    std::vector<float> us(s.u);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < s.rank; ++j) us[size_t(i * s.rank + j)] *= s.s[size_t(j)];
    save("B", {m, s.rank}, us);  // W ≈ B·A
    save("A", {s.rank, n}, s.vt);
  } else {
    DenseTensor<float> a{std::vector<int64_t>(shape.begin(), shape.end()), std::vector<float>(data, data + t.numel())};
    if (o.method == "tucker") {
      const auto r = tucker(a, o.ranks, o.iters > 0 ? o.iters : 20);
      rep = r.report;
      save("core", r.core.shape, r.core.data);
      for (size_t k = 0; k < r.factors.size(); ++k) save("factor." + std::to_string(k), {a.shape[k], o.ranks[k]}, r.factors[k]);
    } else if (o.method == "cp") {
      require(o.rank > 0, "decompose: cp needs --rank");
      const auto r = cp_als(a, o.rank, o.iters > 0 ? o.iters : 500);
      rep = r.report;
      save("lambda", {o.rank}, r.lambda);
      for (size_t k = 0; k < r.factors.size(); ++k) save("factor." + std::to_string(k), {a.shape[k], o.rank}, r.factors[k]);
    } else if (o.method == "tt" || o.method == "mpo") {
      const auto r = o.method == "tt" ? tt_svd(a, o.max_rank, o.eps) : mpo_from_matrix(data, o.out_modes, o.in_modes, o.max_rank, o.eps);
      if (o.method == "mpo") {
        int64_t po = 1, pi = 1;
        for (int64_t v : o.out_modes) po *= v;
        for (int64_t v : o.in_modes) pi *= v;
        require(po == m && pi == n, fmt::format("decompose: --out-modes multiply to {} and --in-modes to {}; the matrix is {} x {}", po, pi, m, n));
      }
      rep = r.report;
      for (size_t k = 0; k < r.cores.size(); ++k)
        save("core." + std::to_string(k), {r.ranks[k], int64_t(r.cores[k].size()) / (r.ranks[k] * r.ranks[k + 1]), r.ranks[k + 1]}, r.cores[k]);
    } else {
      throw Error("decompose: --method takes svd, rsvd, wsvd, tucker, cp, tt, mpo; got '" + o.method + "'");
    }
  }
  if (!o.out.empty()) {
    writer.set_metadata("method", rep.method);
    writer.set_metadata("source", src);
    writer.write(o.out);  // atomic
  }
  const double ratio = double(rep.params_after) / double(rep.params_before);
  if (o.json) {
    nlohmann::ordered_json j{{"source", src},          {"method", rep.method},   {"rank", rep.rank},
                             {"ranks", rep.ranks},     {"rel_error", rep.rel_error}, {"params_before", rep.params_before},
                             {"params_after", rep.params_after}, {"param_ratio", ratio}, {"seconds", rep.seconds},
                             {"iterations", rep.iterations}};
    if (!o.out.empty()) j["output"] = o.out;
    fmt::print("{}\n", json_io::dump(j));
    return;
  }
  std::string ranks;
  for (int64_t r : rep.ranks) ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
  fmt::print("{}: {} rank(s) {}\n  relative error {:.4e}\n  parameters {} -> {} ({:.2f}%)\n  time {:.3f} s{}\n", src,
             rep.method, ranks, rep.rel_error, rep.params_before, rep.params_after, 100 * ratio, rep.seconds,
             rep.iterations ? fmt::format(", {} iterations", rep.iterations) : "");
  if (!o.out.empty()) fmt::print("  factors written to {}\n", o.out);
}

}  // namespace

void add_decompose(CLI::App& app) {
  static Opts o;
  auto* cmd = app.add_subcommand("decompose", "Factor a tensor (SVD, randomized/weighted SVD, Tucker, CP, TT, MPO) and report error, parameters, time");
  cmd->add_option("file", o.file, "safetensors, GGUF or llama2.c file");
  cmd->add_option("--tensor", o.tensor, "Tensor name in the file; NAME[layer] for one layer of a llama2.c stacked tensor (wq[3])");
  cmd->add_option("--synthetic", o.synthetic, "A generated matrix instead of a file: MxN (decaying spectrum) or MxN:RANK");
  cmd->add_option("--method", o.method, "svd, rsvd, wsvd, tucker, cp, tt or mpo");
  cmd->add_option("--rank", o.rank, "Target rank (svd/rsvd/wsvd/cp; cp default: a quarter of the smallest mode, at most 64)")->check(positive());
  cmd->add_option("--energy", o.energy, "Keep this fraction of the spectrum's energy (svd/wsvd)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--param-ratio", o.param_ratio, "Largest rank within this fraction of the parameters")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--oversample", o.oversample, "rsvd oversampling")->check(non_negative());
  cmd->add_option("--power-iters", o.power_iters, "rsvd power iterations")->check(non_negative());
  cmd->add_option("--calib", o.calib, "wsvd: file with input activations");
  cmd->add_option("--calib-tensor", o.calib_tensor, "wsvd: activations tensor [tokens, in]");
  cmd->add_option("--ranks", o.ranks, "tucker: one rank per mode (default: a quarter of each mode)")->delimiter(',');
  cmd->add_option("--shape", o.shape, "View the tensor with this shape first (e.g. 16,16,16,16)")->delimiter(',');
  cmd->add_option("--max-rank", o.max_rank, "tt/mpo: maximum bond rank")->check(non_negative());
  cmd->add_option("--eps", o.eps, "tt/mpo: relative error target (tt default without --max-rank: 0.01)")->check(non_negative());
  cmd->add_option("--out-modes", o.out_modes, "mpo: output mode sizes, multiplying to the rows")->delimiter(',');
  cmd->add_option("--in-modes", o.in_modes, "mpo: input mode sizes, multiplying to the columns")->delimiter(',');
  cmd->add_option("--iters", o.iters, "tucker/cp: maximum iterations")->check(non_negative());
  cmd->add_option("-o,--output", o.out, "Write the factors to this safetensors file (atomically)");
  cmd->add_flag("--json", o.json, "One JSON object");
  add_threads_option(cmd);
  cmd->callback([] { run(o); });
}

}  // namespace tz::cli
