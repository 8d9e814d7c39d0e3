#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <vector>

#include "tensorzip/error.h"
#include "tensorzip/runtime.h"

namespace tz {

TEST(ThreadPool, EveryTaskRunsOnce) {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t n : {1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> max_thread{0};
      parallel_for(n, [&](int64_t t, int th) {
        hits[size_t(t)]++;
        int cur = max_thread.load();
        while (th > cur && !max_thread.compare_exchange_weak(cur, th)) {}
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
      EXPECT_LT(max_thread.load(), threads);
    }
  }
  set_num_threads(hardware_threads());
}

TEST(ThreadPool, ExceptionsPropagate) {
  set_num_threads(2);
  EXPECT_THROW(parallel_for(100, [](int64_t t, int) { if (t == 37) throw std::runtime_error("boom"); }), std::runtime_error);
  // The pool still works afterwards.
  std::atomic<int> count{0};
  parallel_for(10, [&](int64_t, int) { count++; });
  EXPECT_EQ(count.load(), 10);
}

TEST(ThreadPool, NestedCallsRunInline) {
  set_num_threads(2);
  std::atomic<int> inner{0};
  parallel_for(4, [&](int64_t, int) { parallel_for(3, [&](int64_t, int) { inner++; }); });
  EXPECT_EQ(inner.load(), 12);
}

TEST(ThreadPool, SplitRangeCoversExactly) {
  for (int64_t n : {0, 1, 5, 100, 4095})
    for (int64_t parts : {1, 2, 3, 8})
      for (int64_t align : {1, 16}) {
        int64_t pos = 0;
        for (int64_t i = 0; i < parts; ++i) {
          const Range r = split_range(n, parts, i, align);
          EXPECT_EQ(r.begin, pos);
          EXPECT_TRUE(r.begin % align == 0 || r.begin == n);
          pos = r.end;
        }
        EXPECT_EQ(pos, n);
      }
  EXPECT_THROW(set_num_threads(0), Error);
}

}  // namespace tz
