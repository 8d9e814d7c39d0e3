// LowRankLinear, LoRA / DoRA / Block-LoRA / FLoRA / CP-LoRA adapters and the multi-adapter bank
// (see tensorzip/lowrank_ops.h).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/lora/lora.h"
#include "lowrank/lapack.h"
#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/gemm.h"
#include "tensorzip/lowrank_ops.h"
#include "tensorzip/runtime.h"

namespace tz {

namespace {

void check_finite(const char* what, const float* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) throw Error(std::string(what) + ": non-finite value at " + std::to_string(i));
}

void check_lora(const char* what, int64_t out, int64_t in, const LoraAdapter& ad) {
  require(ad.rank >= 1, std::string(what) + ": rank must be >= 1");
  require(int64_t(ad.a.size()) == ad.rank * in, std::string(what) + ": A must be [" + std::to_string(ad.rank) + ", " +
                                                    std::to_string(in) + "], has " + std::to_string(ad.a.size()) + " values");
  require(int64_t(ad.b.size()) == out * ad.rank, std::string(what) + ": B must be [" + std::to_string(out) + ", " +
                                                     std::to_string(ad.rank) + "], has " + std::to_string(ad.b.size()) + " values");
  require(std::isfinite(ad.alpha), std::string(what) + ": alpha must be finite");
  // A DoRA magnitude changes the product; these plain-LoRA paths would drop it (DoraAdapter, attach_lora take it).
  require(ad.magnitude.empty(), std::string(what) + ": the adapter is DoRA (a magnitude vector); use dora_apply / LlamaModel::attach_lora");
  check_finite(what, ad.a.data(), ad.a.size());
  check_finite(what, ad.b.data(), ad.b.size());
}

// d[o·ldd + i] = s·(B·A)[o, i] for B [out, rank], A [rank, in]: each element a double-accumulated
// dot product in a fixed order, so it is the same whatever the thread count (merge and unmerge must
// subtract exactly what they added).
void delta_into(int64_t out, int64_t in, int64_t rank, double s, const float* a, const float* b, float* d, int64_t ldd) {
  std::vector<float> at(size_t(in * rank));
  for (int64_t j = 0; j < rank; ++j)
    for (int64_t i = 0; i < in; ++i) at[size_t(i * rank + j)] = a[j * in + i];
  parallel_for(out, [&](int64_t o, int) {
    const float* bo = b + o * rank;
    for (int64_t i = 0; i < in; ++i) {
      double acc = 0;
      const float* ai = at.data() + i * rank;
      for (int64_t j = 0; j < rank; ++j) acc += double(bo[j]) * double(ai[j]);
      d[o * ldd + i] = float(s * acc);
    }
  });
}

std::vector<float> lora_delta(int64_t out, int64_t in, const LoraAdapter& ad) {
  std::vector<float> d(size_t(out * in));
  delta_into(out, in, ad.rank, double(ad.scale()), ad.a.data(), ad.b.data(), d.data(), in);
  return d;
}

// y (n x out) += s · (x·Aᵀ)·Bᵀ
void add_lora(int64_t out, int64_t in, const LoraAdapter& ad, const float* x, int64_t n, float* y) {
  std::vector<float> h(size_t(n * ad.rank)), z(size_t(n * out));
  gemm_f32(n, ad.rank, in, x, in, ad.a.data(), in, h.data(), ad.rank);
  gemm_f32(n, out, ad.rank, h.data(), ad.rank, ad.b.data(), ad.rank, z.data(), out);
  const float s = ad.scale();
  for (size_t i = 0; i < z.size(); ++i) y[i] += s * z[i];
}

}  // namespace

// ------------------------------------------------------------------------------ LowRankLinear
LowRankLinear::LowRankLinear(int64_t out, int64_t in, int64_t rank, std::vector<float> b, std::vector<float> a)
    : out_(out), in_(in), rank_(rank), b_(std::move(b)), a_(std::move(a)) {
  require(out >= 1 && in >= 1 && rank >= 1, "low-rank linear: out, in and rank must be >= 1");
  require(int64_t(b_.size()) == out * rank && int64_t(a_.size()) == rank * in,
          "low-rank linear: B must be [out, rank] and A [rank, in]");
}

LowRankLinear LowRankLinear::from_svd(const Svd<float>& svd) {
  std::vector<float> b(svd.u);
  for (int64_t i = 0; i < svd.m; ++i)
    for (int64_t j = 0; j < svd.rank; ++j) b[size_t(i * svd.rank + j)] *= svd.s[size_t(j)];
  return LowRankLinear(svd.m, svd.n, svd.rank, std::move(b), svd.vt);
}

void LowRankLinear::apply(const float* x, int64_t n, float* y) const {
  thread_local std::vector<float> h;
  h.resize(size_t(n * rank_));
  gemm_f32(n, rank_, in_, x, in_, a_.data(), in_, h.data(), rank_);
  gemm_f32(n, out_, rank_, h.data(), rank_, b_.data(), rank_, y, out_);
}

std::vector<float> LowRankLinear::dense() const {
  std::vector<float> d(size_t(out_ * in_));
  delta_into(out_, in_, rank_, 1.0, a_.data(), b_.data(), d.data(), in_);
  return d;
}

// ------------------------------------------------------------------------------ LoRA family
void lora_apply(const float* w, int64_t out, int64_t in, const LoraAdapter& ad, const float* x, int64_t n, float* y) {
  check_lora("lora", out, in, ad);
  gemm_f32(n, out, in, x, in, w, in, y, out);
  add_lora(out, in, ad, x, n, y);
}

void lora_apply(const LutWeights& w, const LoraAdapter& ad, const float* x, int64_t n, float* y) {
  check_lora("lora", w.rows(), w.cols(), ad);
  mpgemm(w, x, n, w.cols(), y, w.rows());
  add_lora(w.rows(), w.cols(), ad, x, n, y);
}

void lora_merge(float* w, int64_t out, int64_t in, const LoraAdapter& ad) {
  check_lora("lora merge", out, in, ad);
  const auto d = lora_delta(out, in, ad);
  for (size_t i = 0; i < d.size(); ++i) w[i] += d[i];
}

void lora_unmerge(float* w, int64_t out, int64_t in, const LoraAdapter& ad) {
  check_lora("lora unmerge", out, in, ad);
  const auto d = lora_delta(out, in, ad);
  for (size_t i = 0; i < d.size(); ++i) w[i] -= d[i];
}

DoraAdapter DoraAdapter::init(const float* w, int64_t out, int64_t in, LoraAdapter lora) {
  check_lora("dora", out, in, lora);
  DoraAdapter d;
  d.magnitude.resize(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    double s = 0;
    for (int64_t i = 0; i < in; ++i) s += double(w[o * in + i]) * double(w[o * in + i]);
    d.magnitude[size_t(o)] = float(std::sqrt(s));
  }
  d.lora = std::move(lora);
  return d;
}

namespace {
// m / ‖W + ΔW‖ per output row.
std::vector<float> dora_row_scale(const float* w, int64_t out, int64_t in, const DoraAdapter& ad) {
  require(int64_t(ad.magnitude.size()) == out, "dora: magnitude must have one value per output");
  const auto d = lora_delta(out, in, ad.lora);
  std::vector<float> sc(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    double s = 0;
    for (int64_t i = 0; i < in; ++i) {
      const double v = double(w[o * in + i]) + double(d[size_t(o * in + i)]);
      s += v * v;
    }
    sc[size_t(o)] = s > 0 ? float(double(ad.magnitude[size_t(o)]) / std::sqrt(s)) : 0.f;
  }
  return sc;
}
}  // namespace

void dora_apply(const float* w, int64_t out, int64_t in, const DoraAdapter& ad, const float* x, int64_t n, float* y) {
  check_lora("dora", out, in, ad.lora);
  const auto sc = dora_row_scale(w, out, in, ad);
  lora_apply(w, out, in, ad.lora, x, n, y);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) y[t * out + o] *= sc[size_t(o)];
}

std::vector<float> dora_merged(const float* w, int64_t out, int64_t in, const DoraAdapter& ad) {
  check_lora("dora", out, in, ad.lora);
  const auto sc = dora_row_scale(w, out, in, ad);
  auto d = lora_delta(out, in, ad.lora);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) d[size_t(o * in + i)] = sc[size_t(o)] * (w[o * in + i] + d[size_t(o * in + i)]);
  return d;
}

namespace {
void check_block(int64_t out, int64_t in, const BlockLoraAdapter& ad) {
  require(ad.rank >= 1 && ad.blocks >= 1 && in % ad.blocks == 0,
          "block lora: need rank >= 1 and blocks dividing in = " + std::to_string(in));
  const int64_t ib = in / ad.blocks;
  require(int64_t(ad.a.size()) == ad.rank * ib, "block lora: A must be [rank, in / blocks]");
  require(int64_t(ad.b.size()) == ad.blocks, "block lora: need one B per block");
  for (const auto& b : ad.b) require(int64_t(b.size()) == out * ad.rank, "block lora: every B must be [out, rank]");
}
}  // namespace

void block_lora_apply(const float* w, int64_t out, int64_t in, const BlockLoraAdapter& ad, const float* x, int64_t n,
                      float* y) {
  check_block(out, in, ad);
  gemm_f32(n, out, in, x, in, w, in, y, out);
  const int64_t ib = in / ad.blocks;
  std::vector<float> h(size_t(n * ad.rank)), z(size_t(n * out));
  for (int64_t j = 0; j < ad.blocks; ++j) {
    gemm_f32(n, ad.rank, ib, x + j * ib, in, ad.a.data(), ib, h.data(), ad.rank);  // the shared A on block j
    gemm_f32(n, out, ad.rank, h.data(), ad.rank, ad.b[size_t(j)].data(), ad.rank, z.data(), out);
    for (size_t i = 0; i < z.size(); ++i) y[i] += ad.scale() * z[i];
  }
}

std::vector<float> block_lora_delta(int64_t out, int64_t in, const BlockLoraAdapter& ad) {
  check_block(out, in, ad);
  const int64_t ib = in / ad.blocks;
  std::vector<float> d(size_t(out * in));
  for (int64_t j = 0; j < ad.blocks; ++j)  // block j of the columns: s·B_j·A
    delta_into(out, ib, ad.rank, double(ad.scale()), ad.a.data(), ad.b[size_t(j)].data(), d.data() + j * ib, in);
  return d;
}

std::vector<float> flora_delta(const Tucker<float>& t, float scale) {
  auto d = t.reconstruct().data;
  for (float& v : d) v *= scale;
  return d;
}

std::vector<float> cp_lora_delta(const Cp<float>& cp, float scale) {
  auto d = cp.reconstruct().data;
  for (float& v : d) v *= scale;
  return d;
}

// ------------------------------------------------------------------------------ AdapterBank
AdapterBank::AdapterBank(int64_t out, int64_t in, DType storage) : out_(out), in_(in), storage_(storage) {
  require(out >= 1 && in >= 1, "adapter bank: out and in must be >= 1");
  require(storage == DType::F32 || storage == DType::BF16, "adapter bank: storage must be F32 or BF16");
}

int32_t AdapterBank::add(const LoraAdapter& ad) {
  check_lora("adapter bank", out_, in_, ad);
  std::vector<float> bt(size_t(ad.rank * out_));
  for (int64_t o = 0; o < out_; ++o)
    for (int64_t j = 0; j < ad.rank; ++j) bt[size_t(j * out_ + o)] = ad.b[size_t(o * ad.rank + j)];
  Entry e{ad.rank, ad.scale(), 0, 0, {}, ad.b};
  if (storage_ == DType::BF16) {  // the kernel reads bf16; the baseline the same values in f32
    const auto append = [&](const std::vector<float>& v) {
      const int64_t off = int64_t(w16_.size());
      w16_.resize(w16_.size() + v.size());
      f32_to_bf16(v.data(), w16_.data() + off, v.size());
      return off;
    };
    e.a_off = append(ad.a);
    e.bt_off = append(bt);
    e.a.resize(ad.a.size());
    bf16_to_f32(w16_.data() + e.a_off, e.a.data(), e.a.size());
    std::vector<uint16_t> b16(e.b.size());
    f32_to_bf16(e.b.data(), b16.data(), b16.size());
    bf16_to_f32(b16.data(), e.b.data(), b16.size());
  } else {
    e.a_off = int64_t(w32_.size());
    w32_.insert(w32_.end(), ad.a.begin(), ad.a.end());
    e.bt_off = int64_t(w32_.size());
    w32_.insert(w32_.end(), bt.begin(), bt.end());
  }
  adapters_.push_back(std::move(e));
  return int32_t(adapters_.size() - 1);
}

void AdapterBank::remove(int32_t id) {
  require(id >= 0 && id < size() && adapters_[size_t(id)].rank > 0, "adapter bank: no adapter " + std::to_string(id) + " to remove");
  Entry& e = adapters_[size_t(id)];
  // Its A and Bᵀ leave the arena (later entries move down), so a server that loads and unloads
  // adapters for days does not grow; ids stay as they are.
  const int64_t na = e.rank * in_, nb = e.rank * out_;
  for (auto [off, len] : {std::pair{e.bt_off, nb}, std::pair{e.a_off, na}}) {  // the later range first
    if (storage_ == DType::BF16) w16_.erase(w16_.begin() + off, w16_.begin() + off + len);
    else w32_.erase(w32_.begin() + off, w32_.begin() + off + len);
    for (Entry& o : adapters_) {
      if (&o == &e) continue;
      if (o.a_off > off) o.a_off -= len;
      if (o.bt_off > off) o.bt_off -= len;
    }
  }
  e = Entry{0, 0.f, 0, 0, {}, {}};
}

const char* AdapterBank::kernel() const { return detail::lora_bgmv_family().chosen_name(); }

namespace {
// Rows grouped by adapter (counting sort): rows[off[i] .. off[i+1]) use adapter i.
void group_rows(const int32_t* ids, int64_t n, int64_t count, const std::vector<bool>& live, std::vector<int32_t>& rows, std::vector<int64_t>& off) {
  off.assign(size_t(count + 1), 0);
  for (int64_t t = 0; t < n; ++t) {
    require(ids[t] < count && (ids[t] < 0 || live[ids[t]]), "adapter bank: row " + std::to_string(t) + " names adapter " +
                                                                 std::to_string(ids[t]) + (ids[t] < count ? ", which was removed" : " of " + std::to_string(count)));
    if (ids[t] >= 0) ++off[size_t(ids[t]) + 1];
  }
  for (int64_t i = 0; i < count; ++i) off[size_t(i + 1)] += off[size_t(i)];
  rows.resize(size_t(off[size_t(count)]));
  std::vector<int64_t> pos(off.begin(), off.end() - 1);
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] >= 0) rows[size_t(pos[size_t(ids[t])]++)] = int32_t(t);
}
}  // namespace

void AdapterBank::apply(const float* x, int64_t n, const int32_t* ids, float* y) const {
  if (n == 0) return;
  require(x != nullptr && ids != nullptr && y != nullptr, "adapter bank: null buffer");
  const kernels::lora::Kernels* k = &detail::lora_bgmv_family().config();
  std::vector<int32_t> rows;
  std::vector<int64_t> off;
  group_rows(ids, n, size(), live(), rows, off);
  std::vector<kernels::lora::Task> tasks;
  std::vector<int64_t> hoff{0};
  for (int64_t i = 0; i < size(); ++i) {
    const int64_t nr = off[size_t(i + 1)] - off[size_t(i)];
    if (nr == 0) continue;
    const Entry& e = adapters_[size_t(i)];
    const bool bf = storage_ == DType::BF16;
    tasks.push_back({bf ? nullptr : w32_.data() + e.a_off, bf ? nullptr : w32_.data() + e.bt_off,
                     bf ? w16_.data() + e.a_off : nullptr, bf ? w16_.data() + e.bt_off : nullptr, e.rank, e.scale,
                     rows.data() + off[size_t(i)], nr});
    hoff.push_back(hoff.back() + nr * e.rank);
  }
  std::vector<float> h(size_t(hoff.back()));
  parallel_for(int64_t(tasks.size()), [&](int64_t i, int) { k->shrink(tasks[size_t(i)], x, in_, h.data() + hoff[size_t(i)]); });
  constexpr int64_t kChunk = 512;  // output columns per expand task
  const int64_t chunks = (out_ + kChunk - 1) / kChunk;
  parallel_for(int64_t(tasks.size()) * chunks, [&](int64_t i, int) {
    const int64_t ti = i / chunks, c = i % chunks;
    k->expand(tasks[size_t(ti)], h.data() + hoff[size_t(ti)], tasks[size_t(ti)].rank, out_, c * kChunk,
              std::min(out_, (c + 1) * kChunk), y, out_);
  });
}

void AdapterBank::apply_with_base(const LutWeights& base, const float* x, int64_t n, const int32_t* ids, float* y) const {
  require(base.rows() == out_ && base.cols() == in_,
          "adapter bank: base weights are " + std::to_string(base.rows()) + " x " + std::to_string(base.cols()) +
              ", the adapters " + std::to_string(out_) + " x " + std::to_string(in_));
  mpgemm(base, x, n, in_, y, out_);
  apply(x, n, ids, y);
}

void AdapterBank::apply_loop(const float* x, int64_t n, const int32_t* ids, float* y) const {
  if (n == 0) return;
  std::vector<int32_t> rows;
  std::vector<int64_t> off;
  group_rows(ids, n, size(), live(), rows, off);
  for (int64_t i = 0; i < size(); ++i) {
    const int64_t nr = off[size_t(i + 1)] - off[size_t(i)];
    if (nr == 0) continue;
    const Entry& e = adapters_[size_t(i)];
    std::vector<float> xs(size_t(nr * in_)), h(size_t(nr * e.rank)), z(size_t(nr * out_));
    for (int64_t r = 0; r < nr; ++r)
      std::copy(x + int64_t(rows[size_t(off[size_t(i)] + r)]) * in_, x + (int64_t(rows[size_t(off[size_t(i)] + r)]) + 1) * in_,
                xs.begin() + r * in_);
    const float* a = storage_ == DType::BF16 ? e.a.data() : w32_.data() + e.a_off;  // the kernel's values
    gemm_f32(nr, e.rank, in_, xs.data(), in_, a, in_, h.data(), e.rank);
    gemm_f32(nr, out_, e.rank, h.data(), e.rank, e.b.data(), e.rank, z.data(), out_);
    for (int64_t r = 0; r < nr; ++r) {
      float* yr = y + int64_t(rows[size_t(off[size_t(i)] + r)]) * out_;
      for (int64_t o = 0; o < out_; ++o) yr[o] += e.scale * z[size_t(r * out_ + o)];
    }
  }
}

}  // namespace tz
