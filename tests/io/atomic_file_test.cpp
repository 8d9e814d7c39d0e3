#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>

#include "tensorzip/io/atomic_file.h"
#include "tests/test_util.h"

namespace tz::io {

TEST(AtomicFile, CommitPublishesWholeFile) {
  const std::string dir = test::temp_dir(), path = dir + "/out.bin";
  {
    AtomicFile f(path);
    f.write("abc", 3);
    f.write_zeros(5);
    EXPECT_FALSE(test::file_exists(path));  // nothing visible before commit
    f.commit();
  }
  EXPECT_EQ(test::read_file(path).size(), 8u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
}

TEST(AtomicFile, FailureLeavesNothingBehind) {
  const std::string dir = test::temp_dir(), path = dir + "/out.bin";
  test::write_file(path, {1, 2, 3});
  try {
    AtomicFile f(path);
    f.write("partial", 7);
    throw std::runtime_error("simulated failure mid-write");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(test::read_file(path), (std::vector<uint8_t>{1, 2, 3}));  // old file untouched
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);  // no temp left
}

}  // namespace tz::io
