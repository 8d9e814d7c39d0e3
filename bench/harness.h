// Benchmark harness shared by every `tensorzip bench <op>`: timing with warm-up and repeats (min
// and median), error against a reference, result rows printed as a table or JSON lines.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace tz::bench {

struct Timing { double ms_min = 0, ms_median = 0; int reps = 0; };
// Runs fn(rep) `warmup` times untimed, then up to `repeats` times, stopping early once
// `budget_s` seconds are spent (at least `min_reps` timed runs).
Timing time_it(const std::function<void(int rep)>& fn, int warmup, int repeats, double budget_s, int min_reps = 3);

// max_i |y_i - ref_i| / max_i |ref_i|: error relative to the output's scale, robust to outputs
// that happen to be near zero.
double max_rel_err(const float* y, const float* ref, size_t n);

struct Row {
  std::string op, impl, baseline, dtype, shape, cache = "hot";
  int threads = 1;
  Timing t;
  double flops = 0, bytes = 0;       // per run
  double baseline_ms = 0;            // baseline's median, same run; 0 = this row is the baseline
  double max_rel_err = 0;
  std::optional<double> roofline_gbps;  // DRAM read bandwidth measured in this run, for this thread count
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class Reporter {
 public:
  explicit Reporter(bool json) : json_(json) {}
  void add(const Row& r);  // prints immediately (one JSON object per line, or a table row)
  bool json() const { return json_; }

 private:
  bool json_;
  bool header_done_ = false;
};

// What every row of one weight-streaming GEMM case (bench mpgemm, bench ggml) shares.
struct GemmCase {
  std::string op, dtype, shape;
  int threads = 1;
  bool cold = false;
  double flops = 0, act_bytes = 0;  // per run; act_bytes: activations in + outputs out
  int warmup = 1, repeats = 10;
  double budget_s = 1.0;
  std::optional<double> roofline_gbps;   // memory-bound cold cases: the bandwidth measured in the run
  const std::vector<float>* y = nullptr;    // fn's output and its reference (max_rel_err)
  const std::vector<float>* ref = nullptr;
};
// Y[n, m] = X[n, k] · Wᵀ with f32 activations and outputs: shape, flops and act_bytes filled in.
GemmCase gemm_case(const std::string& op, const std::string& dtype, int64_t m, int64_t k, int64_t n, bool cold, int warmup,
                   int repeats, double budget_s, const std::vector<float>& y, const std::vector<float>& ref);
// Runs fn(0) once for the error against the reference, then times fn(i) cycling through `copies`
// weight copies (cold: after warming up over every copy once — page state, clocks). extra holds
// copies and weight_bytes; the row's t.ms_median is the baseline of the next ones.
Row time_gemm_case(const GemmCase& c, const std::string& impl, const std::string& baseline, double baseline_ms,
                   double weight_bytes, int copies, const std::function<void(int)>& fn);

// n Gaussian values (mean 0, standard deviation sd) from a fixed seed: benchmark operands.
std::vector<float> gaussian(size_t n, uint32_t seed, float sd = 1.f);

// A distinct copy of some operand per slot, totalling at least `min_bytes`, so cycling through
// them streams from DRAM ("cold"); with cold == false there is one copy ("hot").
int copies_for(size_t bytes_per_copy, bool cold, size_t min_bytes = size_t(1) << 30);

}  // namespace tz::bench
