// RTN (+ clip search), AWQ, GPTQ, ternary / 1-bit, outliers and low-rank compensation. See quantize.h.
#include "tensorzip/quantize.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowrank/lapack.h"
#include "tensorzip/convert.h"
#include "tensorzip/decompose.h"
#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tz {
namespace {

// ---------------------------------------------------------------- the grid of one group

struct Grid { float scale = 0, zero = 0; };

float round_scale(float s, DType dt) { return dt == DType::F16 ? f16_to_f32_scalar(f32_to_f16_scalar(s)) : s; }

// Fits a group's grid to n values v[i·stride], the range shrunk by `clip` (as quantize_rtn_ref
// does at clip = 1).
Grid fit(const float* v, int64_t n, int64_t stride, const QuantFormat& f, float clip) {
  float amax = 0, amean = 0, lo = v[0], hi = v[0];
  for (int64_t i = 0; i < n; ++i) {
    const float x = v[i * stride];
    amax = std::max(amax, std::fabs(x));
    amean += std::fabs(x);
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  amean /= float(n);
  const int qmax = (1 << f.bits) - 1;
  Grid g;
  if (f.ternary) {
    g.scale = round_scale(amean * clip, f.scale_dtype);
  } else if (f.symmetric) {
    g.scale = round_scale(f.bits == 1 ? 2.f * amean * clip : amax * clip / (0.5f * float(qmax)), f.scale_dtype);
  } else {
    g.scale = round_scale((hi - lo) * clip / float(qmax), f.scale_dtype);
    g.zero = g.scale > 0 ? std::clamp(std::nearbyint(-lo * clip / g.scale), 0.f, float(qmax)) : 0.f;
  }
  return g;
}

uint8_t encode(float x, const Grid& g, const QuantFormat& f) {
  const int qmax = (1 << f.bits) - 1;
  if (f.ternary) return uint8_t(std::clamp(g.scale > 0 ? std::nearbyint(x / g.scale) : 0.f, -1.f, 1.f) + 1.f);
  if (f.symmetric) {
    const float half = 0.5f * float(qmax);
    return uint8_t(std::clamp(g.scale > 0 ? std::nearbyint(x / g.scale + half) : half, 0.f, float(qmax)));
  }
  return uint8_t(std::clamp(g.scale > 0 ? std::nearbyint(x / g.scale) + g.zero : g.zero, 0.f, float(qmax)));
}

float decode(uint8_t c, const Grid& g, const QuantFormat& f) {
  if (f.ternary) return g.scale * float(int(c) - 1);
  if (f.symmetric) return g.scale * (float(c) - 0.5f * float((1 << f.bits) - 1));
  return g.scale * (float(c) - g.zero);
}

// Codes [rows, cols] unpacked + grids [rows, groups] -> a QuantMatrix.
QuantMatrix assemble(const QuantFormat& f, int64_t rows, int64_t cols, const std::vector<uint8_t>& codes, const std::vector<Grid>& grids) {
  QuantMatrix q;
  q.fmt = f;
  q.rows = rows;
  q.cols = cols;
  const int64_t ng = q.groups_per_row();
  q.codes.assign(size_t(rows) * q.packed_row_bytes(), 0);
  q.scales.resize(size_t(rows * ng));
  if (!f.symmetric && !f.ternary) q.zeros.resize(size_t(rows * ng));
  for (int64_t r = 0; r < rows; ++r) {
    pack_codes_ref(codes.data() + r * cols, cols, f.bits, q.codes.data() + size_t(r) * q.packed_row_bytes());
    for (int64_t g = 0; g < ng; ++g) {
      q.scales[size_t(r * ng + g)] = grids[size_t(r * ng + g)].scale;
      if (!q.zeros.empty()) q.zeros[size_t(r * ng + g)] = grids[size_t(r * ng + g)].zero;
    }
  }
  return q;
}

// Round to nearest; with weights h_j (E[x_j²]) the clip ratio of each group is searched to minimise
// Σ h_j (w_j − ŵ_j)².
QuantMatrix rtn(const float* w, int64_t rows, int64_t cols, const QuantFormat& f, bool clip_search, const float* h) {
  const int64_t g = f.group_size(cols), ng = (cols + g - 1) / g;
  std::vector<uint8_t> codes(size_t(rows * cols));
  std::vector<Grid> grids(size_t(rows * ng));
  parallel_for(rows, [&](int64_t r, int) {
    const float* row = w + r * cols;
    for (int64_t gi = 0; gi < ng; ++gi) {
      const int64_t b = gi * g, e = std::min(cols, b + g);
      Grid best = fit(row + b, e - b, 1, f, 1.f);
      if (clip_search) {
        double best_err = INFINITY;
        for (int c = 0; c <= 10; ++c) {
          const float clip = 1.f - 0.05f * float(c);
          const Grid gr = fit(row + b, e - b, 1, f, clip);
          double err = 0;
          for (int64_t i = b; i < e; ++i) {
            const double d = row[i] - decode(encode(row[i], gr, f), gr, f);
            err += (h ? h[i] : 1.0) * d * d;
          }
          if (err < best_err) {
            best_err = err;
            best = gr;
          }
        }
      }
      grids[size_t(r * ng + gi)] = best;
      for (int64_t i = b; i < e; ++i) codes[size_t(r * cols + i)] = encode(row[i], best, f);
    }
  });
  return assemble(f, rows, cols, codes, grids);
}

// ---------------------------------------------------------------- GPTQ

// `in_scale` (AWQ's s, or empty): w already holds W·diag(s) and the layer sees x ⊘ s, whose second
// moment is diag(1/s)·H·diag(1/s).
QuantMatrix gptq(const float* w, int64_t rows, int64_t cols, const ActStats& st, const QuantizeOptions& o,
                 const std::vector<char>& skip, const std::vector<float>& in_scale = {}) {
  const QuantFormat& f = o.fmt;
  std::vector<float> H = st.second_moment();
  if (!in_scale.empty())
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) H[size_t(i * cols + j)] /= in_scale[size_t(i)] * in_scale[size_t(j)];
  // Working copy, column-major (WT[c] is column c): every step touches whole columns.
  std::vector<float> WT(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) WT[size_t(c * rows + r)] = w[r * cols + c];
  for (int64_t c = 0; c < cols; ++c)
    if (H[size_t(c * cols + c)] <= 0 || skip[size_t(c)]) {  // dead or dense-kept channel: no error to spread
      for (int64_t j = 0; j < cols; ++j) H[size_t(c * cols + j)] = H[size_t(j * cols + c)] = 0;
      H[size_t(c * cols + c)] = 1;
      if (!skip[size_t(c)]) std::fill(WT.begin() + c * rows, WT.begin() + (c + 1) * rows, 0.f);
    }
  std::vector<float> hdiag(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) hdiag[size_t(c)] = skip[size_t(c)] ? 0.f : H[size_t(c * cols + c)];
  double mean_diag = 0;
  for (int64_t c = 0; c < cols; ++c) mean_diag += H[size_t(c * cols + c)];
  const float damp = float(o.gptq_damp * mean_diag / double(cols));
  for (int64_t c = 0; c < cols; ++c) H[size_t(c * cols + c)] += damp;
  // Column order: by decreasing H_cc with act-order.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H[size_t(a * cols + a)] > H[size_t(b * cols + b)]; });
  // U = upper Cholesky factor of (P H Pᵀ)⁻¹.
  std::vector<float> U(size_t(cols * cols));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) U[size_t(i * cols + j)] = H[size_t(perm[size_t(i)] * cols + perm[size_t(j)])];
  H.clear();
  H.shrink_to_fit();
  lowrank::sync_blas_threads();
  lapack_int info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', lapack_int(cols), U.data(), lapack_int(cols));
  if (info == 0) info = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', lapack_int(cols), U.data(), lapack_int(cols));
  for (int64_t i = 0; i < cols && info == 0; ++i)
    for (int64_t j = i + 1; j < cols; ++j) U[size_t(i * cols + j)] = U[size_t(j * cols + i)];
  if (info == 0) info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', lapack_int(cols), U.data(), lapack_int(cols));
  require(info == 0, "gptq: the damped Hessian is not positive definite (LAPACK info " + std::to_string(info) +
                         "); raise the dampening or give more calibration tokens");
  const int64_t g = f.group_size(cols), ng = (cols + g - 1) / g;
  std::vector<Grid> grids(size_t(rows * ng));
  std::vector<char> fitted(size_t(ng), 0);
  const auto fit_group = [&](int64_t gi) {  // from the current (error-updated) columns of the group
    const int64_t b = gi * g, e = std::min(cols, b + g);
    parallel_for(rows, [&](int64_t r, int) {
      const float* v = &WT[size_t(b * rows + r)];
      Grid best = fit(v, e - b, rows, f, 1.f);
      if (o.clip_search) {  // the clip with the least H-diagonal-weighted error on these columns
        double best_err = INFINITY;
        for (int ci = 0; ci <= 10; ++ci) {
          const Grid gr = fit(v, e - b, rows, f, 1.f - 0.05f * float(ci));
          double err = 0;
          for (int64_t j = 0; j < e - b; ++j) {
            const double d = v[j * rows] - decode(encode(v[j * rows], gr, f), gr, f);
            err += double(hdiag[size_t(b + j)]) * d * d;
          }
          if (err < best_err) {
            best_err = err;
            best = gr;
          }
        }
      }
      grids[size_t(r * ng + gi)] = best;
    });
    fitted[size_t(gi)] = 1;
  };
  if (o.act_order)
    for (int64_t gi = 0; gi < ng; ++gi) fit_group(gi);  // static groups: contiguous for the kernels
  std::vector<uint8_t> codes(size_t(rows * cols));
  const int64_t B = std::max(1, o.gptq_block);
  std::vector<float> err(size_t(B * rows));  // ErrT [B, rows]
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(cols, i1 + B);
    for (int64_t i = i1; i < i2; ++i) {
      const int64_t c = perm[size_t(i)], gi = c / g;
      if (!fitted[size_t(gi)]) fit_group(gi);
      float* col = &WT[size_t(c * rows)];
      float* e = &err[size_t((i - i1) * rows)];
      const float d = U[size_t(i * cols + i)];
      for (int64_t r = 0; r < rows; ++r) {
        const Grid& gr = grids[size_t(r * ng + gi)];
        const uint8_t code = encode(skip[size_t(c)] ? 0.f : col[r], gr, f);
        codes[size_t(r * cols + c)] = code;
        e[r] = skip[size_t(c)] ? 0.f : (col[r] - decode(code, gr, f)) / d;
      }
      for (int64_t j = i + 1; j < i2; ++j) {
        const float u = U[size_t(i * cols + j)];
        if (u == 0.f) continue;
        float* cj = &WT[size_t(perm[size_t(j)] * rows)];
        for (int64_t r = 0; r < rows; ++r) cj[r] -= e[r] * u;
      }
    }
    // Lazy update of the columns after the block: W[:, perm[i2:]] -= Err · U[i1:i2, i2:].
    if (i2 < cols) {
      const int64_t rest = cols - i2;
      std::vector<float> upd(size_t(rest * rows));  // [rest, rows] = U[i1:i2, i2:]ᵀ · ErrT
      lowrank::gemm(true, false, rest, rows, i2 - i1, 1.f, &U[size_t(i1 * cols + i2)], cols, err.data(), rows, 0.f, upd.data(), rows);
      parallel_for(rest, [&](int64_t j, int) {
        float* cj = &WT[size_t(perm[size_t(i2 + j)] * rows)];
        const float* uj = &upd[size_t(j * rows)];
        for (int64_t r = 0; r < rows; ++r) cj[r] -= uj[r];
      });
    }
  }
  return assemble(f, rows, cols, codes, grids);
}

// ---------------------------------------------------------------- helpers

// ‖X·Eᵀ‖² on the sample rows, E = W − Ŵ.
double output_sq_error(const float* e, int64_t rows, int64_t cols, const ActStats& st) {
  const int64_t ns = st.sample_rows();
  if (ns == 0) return 0;
  std::vector<float> y(size_t(ns * rows));
  lowrank::gemm(false, true, ns, rows, cols, 1.f, st.sample().data(), cols, e, cols, 0.f, y.data(), rows);
  double s = 0;
  for (float v : y) s += double(v) * v;
  return s;
}

// Best rank-r L·R (L = U·S, R = Vᵀ) of a [rows, cols].
void svd_fit(const std::vector<float>& a, int64_t rows, int64_t cols, int64_t r, std::vector<float>& L, std::vector<float>& R) {
  const auto s = svd_truncated(a.data(), rows, cols, RankSpec::of_rank(r));
  const int64_t k = s.rank;
  L.assign(size_t(rows * r), 0.f);
  R.assign(size_t(r * cols), 0.f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < k; ++j) L[size_t(i * r + j)] = s.u[size_t(i * k + j)] * s.s[size_t(j)];
  for (int64_t j = 0; j < k; ++j) std::copy_n(&s.vt[size_t(j * cols)], cols, &R[size_t(j * cols)]);
}

// EoRA: the rank-r L·R minimising ‖X(E − LR)ᵀ‖ = ‖(E − LR)·C^{1/2}‖, C = E[xxᵀ] = Q Λ Qᵀ.
void eora_fit(const std::vector<float>& e, int64_t rows, int64_t cols, int64_t r, const ActStats& st, std::vector<float>& L,
              std::vector<float>& R) {
  std::vector<float> C = st.second_moment(), lam(static_cast<size_t>(cols));
  lowrank::syevd(cols, C.data(), lam.data(), "eora (activation covariance)");
  const float floor = std::max(1e-8f, *std::max_element(lam.begin(), lam.end()) * 1e-6f);
  std::vector<float> sq(static_cast<size_t>(cols)), Qs(size_t(cols * cols));  // Qs = Q Λ^{1/2}
  for (int64_t j = 0; j < cols; ++j) sq[size_t(j)] = std::sqrt(std::max(lam[size_t(j)], floor));
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) Qs[size_t(i * cols + j)] = C[size_t(i * cols + j)] * sq[size_t(j)];
  std::vector<float> ep(size_t(rows * cols));
  lowrank::gemm(false, false, rows, cols, cols, 1.f, e.data(), cols, Qs.data(), cols, 0.f, ep.data(), cols);
  std::vector<float> Rp;
  svd_fit(ep, rows, cols, r, L, Rp);
  // R = R' Λ^{-1/2} Qᵀ.
  for (int64_t k = 0; k < r; ++k)
    for (int64_t j = 0; j < cols; ++j) Rp[size_t(k * cols + j)] /= sq[size_t(j)];
  R.assign(size_t(r * cols), 0.f);
  lowrank::gemm(false, true, r, cols, cols, 1.f, Rp.data(), cols, C.data(), cols, 0.f, R.data(), cols);
}

}  // namespace

// The k channels with the largest E|x|, ascending.
static std::vector<int32_t> outlier_channels(const ActStats& st, int k) {
  const auto m = st.mean_abs();
  std::vector<int32_t> idx(m.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) { return m[size_t(a)] > m[size_t(b)]; });
  idx.resize(size_t(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<float> awq_search(const std::vector<std::pair<const float*, int64_t>>& ws, int64_t cols, const ActStats& st,
                              const QuantizeOptions& o) {
  require(st.in() == cols && st.tokens() > 0, "awq: calibration activations do not match the layer");
  const auto m = st.mean_abs();
  std::vector<char> skip(static_cast<size_t>(cols), 0);
  if (o.outliers > 0)
    for (int32_t c : outlier_channels(st, o.outliers)) skip[size_t(c)] = 1;
  std::vector<float> best_s(static_cast<size_t>(cols), 1.f);
  double best = INFINITY;
  QuantizeOptions fixed = o;
  fixed.method = QuantMethod::Awq;
  fixed.lowrank = 0;
  for (int a = 0; a <= o.awq_grid; ++a) {
    // s_j = E|x_j|^α, normalised to geometric mean 1 over the live channels; α = 0 is plain RTN.
    const float alpha = float(a) / float(std::max(1, o.awq_grid));
    std::vector<float> s(static_cast<size_t>(cols), 1.f);
    double logsum = 0;
    int64_t live = 0;
    for (int64_t c = 0; c < cols; ++c)
      if (!skip[size_t(c)]) {
        s[size_t(c)] = std::pow(std::max(m[size_t(c)], 1e-8f), alpha);
        logsum += std::log(s[size_t(c)]);
        ++live;
      }
    const float norm = float(std::exp(logsum / double(std::max<int64_t>(live, 1))));
    for (int64_t c = 0; c < cols; ++c) s[size_t(c)] = skip[size_t(c)] ? 1.f : s[size_t(c)] / norm;
    fixed.awq_scale = &s;
    double err = 0;  // Σ over the layers sharing this input of the squared relative output error
    for (const auto& [w, rows] : ws) {
      const CompressedLinear c = compress_linear(w, rows, cols, &st, fixed);
      std::vector<float> w_hat(size_t(rows * cols));
      c.dequantize(w_hat.data());
      const double e = quant_error(w, w_hat.data(), rows, cols, &st).output_rel;
      err += e * e;
    }
    if (err < best) {
      best = err;
      best_s = s;
    }
  }
  return best_s;
}

// ---------------------------------------------------------------- ActStats

ActStats::ActStats(int64_t in, bool hessian, int64_t keep_rows) : in_(in), keep_rows_(keep_rows) {
  require(in > 0, "ActStats: width must be positive");
  if (hessian) xtx_.assign(size_t(in * in), 0.0);
  abs_sum_.assign(size_t(in), 0.0);
  sq_sum_.assign(size_t(in), 0.0);
}

void ActStats::add(const float* x, int64_t n) {
  if (n <= 0) return;
  for (int64_t i = 0; i < n * in_; ++i)
    if (!std::isfinite(x[i])) throw Error("calibration: non-finite activation in row " + std::to_string(tokens_ + i / in_));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < in_; ++j) {
      abs_sum_[size_t(j)] += std::fabs(x[t * in_ + j]);
      sq_sum_[size_t(j)] += double(x[t * in_ + j]) * x[t * in_ + j];
    }
  if (!xtx_.empty()) {
    std::vector<double> xd(x, x + n * in_);
    lowrank::sync_blas_threads();
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(in_), blasint(n), 1.0, xd.data(), blasint(in_), 1.0, xtx_.data(), blasint(in_));
  }
  const int64_t keep = std::min(n, keep_rows_ - sample_rows());
  if (keep > 0) sample_.insert(sample_.end(), x, x + keep * in_);
  tokens_ += n;
}

std::vector<float> ActStats::second_moment() const {
  require(!xtx_.empty(), "ActStats: no second moment was accumulated");
  require(tokens_ > 0, "calibration: no activations");
  std::vector<float> h(size_t(in_ * in_));
  for (int64_t i = 0; i < in_; ++i)
    for (int64_t j = i; j < in_; ++j)
      h[size_t(i * in_ + j)] = h[size_t(j * in_ + i)] = float(xtx_[size_t(i * in_ + j)] / double(tokens_));
  return h;
}

std::vector<float> ActStats::mean_abs() const {
  std::vector<float> m(static_cast<size_t>(in_));
  for (int64_t j = 0; j < in_; ++j) m[size_t(j)] = float(abs_sum_[size_t(j)] / double(std::max<int64_t>(tokens_, 1)));
  return m;
}

std::vector<float> ActStats::mean_square() const {
  std::vector<float> m(static_cast<size_t>(in_));
  for (int64_t j = 0; j < in_; ++j) m[size_t(j)] = float(sq_sum_[size_t(j)] / double(std::max<int64_t>(tokens_, 1)));
  return m;
}

// ---------------------------------------------------------------- names

QuantMethod parse_quant_method(const std::string& s) {
  if (s == "rtn") return QuantMethod::Rtn;
  if (s == "awq") return QuantMethod::Awq;
  if (s == "gptq") return QuantMethod::Gptq;
  if (s == "ternary") return QuantMethod::Ternary;
  throw Error("quantization method '" + s + "' not known (rtn, awq, gptq, ternary)");
}

LowRankMethod parse_lowrank_method(const std::string& s) {
  if (s == "eora") return LowRankMethod::Eora;
  if (s == "lqlora") return LowRankMethod::LqLora;
  if (s == "svd") return LowRankMethod::Svd;
  throw Error("low-rank compensation '" + s + "' not known (eora, lqlora, svd)");
}

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::Rtn: return "rtn";
    case QuantMethod::Awq: return "awq";
    case QuantMethod::Gptq: return "gptq";
    case QuantMethod::Ternary: return "ternary";
  }
  return "?";
}

// ---------------------------------------------------------------- CompressedLinear

void CompressedLinear::dequantize(float* w) const {
  if (ggml) return ggml->dequantize(w);
  dequantize_ref(q, w);
  const int64_t R = rows(), C = cols(), k = int64_t(outlier_cols.size());
  if (!input_perm.empty()) {  // Q's column j is input input_perm[j]
    std::vector<float> row(static_cast<size_t>(C));
    for (int64_t r = 0; r < R; ++r) {
      std::copy_n(w + r * C, C, row.data());
      for (int64_t j = 0; j < C; ++j) w[r * C + input_perm[size_t(j)]] = row[size_t(j)];
    }
  }
  if (!input_scale.empty())
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) w[r * C + c] /= input_scale[size_t(c)];
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < k; ++j) w[r * C + outlier_cols[size_t(j)]] = outlier_w[size_t(r * k + j)];
  if (rank > 0) lowrank::gemm(false, false, R, C, rank, 1.f, lora_l.data(), rank, lora_r.data(), C, 1.f, w, C);
}

size_t CompressedLinear::bytes() const {
  if (ggml) return ggml->bytes();
  const bool zeros = !q.fmt.symmetric && !q.fmt.ternary;
  const size_t groups = size_t(q.rows * q.groups_per_row());
  return q.codes.size() + groups * (q.fmt.scale_dtype == DType::F16 ? 2 : 4) + (zeros ? groups : 0) + input_scale.size() * 4 + input_perm.size() * 4 +
         outlier_cols.size() * 4 + outlier_w.size() * 2 + (lora_l.size() + lora_r.size()) * 4;
}

QuantError quant_error(const float* w, const float* w_hat, int64_t rows, int64_t cols, const ActStats* stats) {
  QuantError qe;
  double num = 0, den = 0;
  std::vector<float> e(size_t(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    e[size_t(i)] = w[i] - w_hat[i];
    num += double(e[size_t(i)]) * e[size_t(i)];
    den += double(w[i]) * w[i];
  }
  qe.weight_rel = den > 0 ? std::sqrt(num / den) : 0;
  if (stats && stats->sample_rows() > 0) {
    const double on = output_sq_error(e.data(), rows, cols, *stats), od = output_sq_error(w, rows, cols, *stats);
    qe.output_rel = od > 0 ? std::sqrt(on / od) : 0;
  }
  return qe;
}

CompressedLinear compress_linear(const float* w, int64_t rows, int64_t cols, const ActStats* st, const QuantizeOptions& o) {
  require(rows > 0 && cols > 0, "compress: empty weight matrix");
  require(st == nullptr || st->in() == cols,
          "compress: calibration activations have " + std::to_string(st ? st->in() : 0) + " channels, the weight " + std::to_string(cols) + " columns");
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i])) throw Error("compress: non-finite weight at row " + std::to_string(i / cols) + ", column " + std::to_string(i % cols));
  const bool need_stats = o.method == QuantMethod::Awq || o.method == QuantMethod::Gptq || o.outliers > 0 ||
                          (o.lowrank > 0 && o.lowrank_method == LowRankMethod::Eora);
  require(!need_stats || (st != nullptr && st->tokens() > 0),
          std::string("compress: ") + quant_method_name(o.method) + (o.outliers > 0 ? " with outliers" : "") +
              (o.lowrank > 0 && o.lowrank_method == LowRankMethod::Eora ? " with EoRA" : "") + " needs calibration activations");
  require(o.method != QuantMethod::Gptq || st->has_hessian(), "compress: GPTQ needs the second moment of the activations");
  require(o.lowrank >= 0 && o.lowrank < std::min(rows, cols), "compress: low-rank rank must be below min(rows, cols) = " +
                                                                   std::to_string(std::min(rows, cols)));
  require(o.outliers >= 0 && o.outliers < cols, "compress: outliers must be fewer than the input channels");
  QuantFormat f = o.fmt;
  if (o.method == QuantMethod::Ternary) {
    f.bits = 2;
    f.ternary = true;
    f.symmetric = true;
  }
  f.validate(rows, cols);
  CompressedLinear out;
  out.method = quant_method_name(o.method);
  // Outlier channels: the k largest mean |x|, kept dense in f16; the quantized part sees zeros there.
  std::vector<char> skip(static_cast<size_t>(cols), 0);
  std::vector<float> wq(w, w + rows * cols);
  if (o.outliers > 0) {
    out.outlier_cols = outlier_channels(*st, o.outliers);
    out.outlier_w.resize(size_t(rows) * out.outlier_cols.size());
    for (int64_t r = 0; r < rows; ++r)
      for (size_t j = 0; j < out.outlier_cols.size(); ++j) {
        const int64_t c = out.outlier_cols[j];
        out.outlier_w[size_t(r) * out.outlier_cols.size() + j] = f16_to_f32_scalar(f32_to_f16_scalar(w[r * cols + c]));
        wq[size_t(r * cols + c)] = 0.f;
      }
    for (int32_t c : out.outlier_cols) skip[size_t(c)] = 1;
  }
  std::vector<float> h;  // E[x²] per channel, 0 on outlier channels (their x reaches Q as 0)
  if (st) {
    h = st->mean_square();
    for (int64_t c = 0; c < cols; ++c)
      if (skip[size_t(c)]) h[size_t(c)] = 0;
  }
  const auto quantize = [&](const std::vector<float>& target) -> QuantMatrix {
    switch (o.method) {
      case QuantMethod::Gptq: {
        QuantizeOptions p = o;
        p.fmt = f;
        return gptq(target.data(), rows, cols, *st, p, skip);
      }
      default: return rtn(target.data(), rows, cols, f, o.clip_search, h.empty() ? nullptr : h.data());
    }
  };
  std::vector<float> eff(size_t(rows * cols));  // the effective Ŵ of the current choice
  const auto effective = [&](const CompressedLinear& c) -> const std::vector<float>& {
    c.dequantize(eff.data());
    return eff;
  };
  if (o.method == QuantMethod::Gptq && (o.gptq_awq || o.awq_scale)) {
    // AWQ's scales first (searched with RTN, or given), then GPTQ on W·diag(s).
    std::vector<float> sc = o.awq_scale ? *o.awq_scale : awq_search({{w, rows}}, cols, *st, o);
    std::vector<float> ws(wq);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] *= sc[size_t(c)];
    QuantizeOptions p = o;
    p.fmt = f;
    out.q = gptq(ws.data(), rows, cols, *st, p, skip, sc);
    out.input_scale = std::move(sc);
    out.method = "awq+gptq";
  } else if (o.method == QuantMethod::Awq) {
    std::vector<float> sc = o.awq_scale ? *o.awq_scale : awq_search({{w, rows}}, cols, *st, o);
    require(int64_t(sc.size()) == cols, "compress: AWQ scale has " + std::to_string(sc.size()) + " entries, the layer " + std::to_string(cols) + " inputs");
    std::vector<float> ws(wq), hs(h);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] *= sc[size_t(c)];
    for (int64_t c = 0; c < cols; ++c) hs[size_t(c)] /= sc[size_t(c)] * sc[size_t(c)];
    out.q = rtn(ws.data(), rows, cols, f, o.clip_search, hs.data());
    out.input_scale = std::move(sc);
    if (std::all_of(out.input_scale.begin(), out.input_scale.end(), [](float v) { return v == 1.f; })) out.input_scale.clear();
  } else {
    out.q = quantize(wq);
  }
  if (o.lowrank > 0) {
    out.rank = o.lowrank;
    const auto residual = [&]() {
      CompressedLinear base = out;
      base.rank = 0;
      base.lora_l.clear();
      base.lora_r.clear();
      const auto& e_hat = effective(base);
      std::vector<float> e(size_t(rows * cols));
      for (int64_t i = 0; i < rows * cols; ++i) e[size_t(i)] = w[i] - e_hat[size_t(i)];
      return e;
    };
    if (o.lowrank_method == LowRankMethod::Eora) {
      eora_fit(residual(), rows, cols, o.lowrank, *st, out.lora_l, out.lora_r);
    } else if (o.lowrank_method == LowRankMethod::Svd) {
      svd_fit(residual(), rows, cols, o.lowrank, out.lora_l, out.lora_r);
    } else {
      // LQ-LoRA: alternate Q = quant(W − LR) and LR = svd_r(W − Q).
      for (int it = 0; it < std::max(1, o.lqlora_iters); ++it) {
        svd_fit(residual(), rows, cols, o.lowrank, out.lora_l, out.lora_r);
        if (it + 1 == std::max(1, o.lqlora_iters)) break;
        std::vector<float> target(wq);
        lowrank::gemm(false, false, rows, cols, o.lowrank, -1.f, out.lora_l.data(), o.lowrank, out.lora_r.data(), cols, 1.f,
                      target.data(), cols);
        for (int32_t c : out.outlier_cols)
          for (int64_t r = 0; r < rows; ++r) target[size_t(r * cols + c)] = 0.f;
        if (!out.input_scale.empty())
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) target[size_t(r * cols + c)] *= out.input_scale[size_t(c)];
        out.q = quantize(target);
      }
    }
  }
  return out;
}

}  // namespace tz
