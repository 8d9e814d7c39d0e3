#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "tensorzip/convert.h"
#include "tensorzip/error.h"
#include "tensorzip/io/safetensors.h"
#include "tests/test_util.h"

namespace tz::io {
namespace {

SafetensorsFile parse_bytes(const std::vector<uint8_t>& b) { return SafetensorsFile::parse(b.data(), b.size(), "mem.safetensors"); }

std::vector<uint8_t> with_header(const std::string& json, size_t data_bytes) {
  std::vector<uint8_t> b(8);
  const uint64_t n = json.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), json.begin(), json.end());
  b.resize(b.size() + data_bytes, 0);
  return b;
}

std::string error_of(const std::vector<uint8_t>& b) {
  try {
    parse_bytes(b);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, RoundTripZeroCopy) {
  const std::string path = test::temp_dir() + "/a.safetensors";
  test::write_file(path, test::sample_safetensors());
  const auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const Tensor a = f.tensor("layer.weight");
  EXPECT_EQ(a.dtype(), DType::F32);
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.data<float>()[i], float(i) - 2.5f);
  EXPECT_FALSE(a.owns_data());  // a view into the mapping
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % 64, 0u);  // the writer aligns the data region
  const Tensor b = f.tensor("layer.bias");
  EXPECT_EQ(bf16_to_f32_scalar(b.data<uint16_t>()[3]), 1.5f);
  EXPECT_EQ(f.tensor("codes").data<int8_t>()[0], -1);
  EXPECT_THROW(f.tensor("missing"), Error);
}

TEST(Safetensors, TensorOutlivesFileObject) {
  const std::string path = test::temp_dir() + "/b.safetensors";
  test::write_file(path, test::sample_safetensors());
  Tensor a;
  { a = SafetensorsFile::open(path).tensor("layer.weight"); }
  EXPECT_EQ(a.data<float>()[5], 2.5f);  // the mapping is kept alive by the tensor
}

TEST(Safetensors, EveryTruncationIsACleanError) {
  const auto full = test::sample_safetensors();
  for (size_t len = 0; len < full.size(); ++len) {
    std::vector<uint8_t> b(full.begin(), full.begin() + long(len));
    EXPECT_NE(error_of(b), "") << "prefix of " << len << " bytes accepted";
  }
}

TEST(Safetensors, MalformedHeadersAreRejected) {
  EXPECT_NE(error_of({}).find("empty"), std::string::npos);
  EXPECT_NE(error_of(with_header("{", 0)).find("JSON"), std::string::npos);
  EXPECT_NE(error_of(with_header("[]", 0)).find("not an object"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", 4)).find("unsupported dtype"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4)).find("needs 8"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8)).find("cover"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)).find("gap"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 6)).find("overlap"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("non-negative"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 0)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4)), "");
  EXPECT_NE(error_of(with_header(R"({"__metadata__":{"k":1}})", 0)).find("not a string"), std::string::npos);
  std::vector<uint8_t> huge(16, 0xff);
  EXPECT_NE(error_of(huge).find("100 MB"), std::string::npos);
  // A valid empty file is fine.
  EXPECT_EQ(error_of(with_header("{}", 0)), "");
}

TEST(Safetensors, ErrorsNameTheFile) {
  const std::string path = test::temp_dir() + "/broken.safetensors";
  test::write_file(path, {1, 2, 3});
  try {
    SafetensorsFile::open(path);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsFile::open(test::temp_dir() + "/does-not-exist"), Error);
}

TEST(Safetensors, WriterRejectsBadInputAndLeavesNoFile) {
  SafetensorsWriter w;
  Tensor t = Tensor::zeros(DType::F32, {2});
  w.add("x", t);
  EXPECT_THROW(w.add("x", t), Error);
  EXPECT_THROW(w.add("q", Tensor::zeros(DType::Q4, {2, 8})), Error);
  const std::string dir = test::temp_dir();
  EXPECT_THROW(w.write(dir + "/no/such/dir/out.safetensors"), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

// Issue 23, item 7: two entries with one name make "which tensor is 'a'" reader-dependent.
TEST(Safetensors, DuplicateNamesAreRejected) {
  const std::string e = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  try {
    parse_bytes(with_header("{\"a\":" + e + ",\"a\":" + e + "}", 4));
    FAIL() << "duplicate accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("duplicate key 'a'"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("mem.safetensors"), std::string::npos) << err.what();
  }
}

// Issue 23, item 4: nesting is bounded, whatever walks the tree afterwards.
TEST(Safetensors, DeeplyNestedHeaderIsAnError) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  try {
    parse_bytes(with_header("{\"__metadata__\":" + deep + "}", 0));
    FAIL() << "accepted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("nested deeper"), std::string::npos) << err.what();
  }
}

// Issue 23, item 9: metadata holding bytes that are not UTF-8 (a path) is written, not a type_error.
TEST(Safetensors, NonUtf8MetadataIsWritten) {
  const std::string path = test::temp_dir() + "/m.safetensors";
  SafetensorsWriter w;
  Tensor t = Tensor::zeros(DType::F32, {2});
  w.add("t", t);
  w.set_metadata("source", "/tmp/mod\xff\xfe" "el.bin");
  ASSERT_NO_THROW(w.write(path));
  const auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("source"), "/tmp/mod\xef\xbf\xbd\xef\xbf\xbd" "el.bin");  // U+FFFD each
}

}  // namespace tz::io
