#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "tensorzip/error.h"
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

namespace {
size_t entries(const std::string& dir) { return size_t(std::distance(std::filesystem::directory_iterator(dir), {})); }
mode_t mode_of(const std::string& p) {
  struct stat st {};
  stat(p.c_str(), &st);
  return st.st_mode & 07777;
}
}  // namespace

// Issue 23, item 2: a device node, a FIFO or a directory is never replaced by a regular file.
TEST(AtomicFile, RefusesTargetsThatAreNotRegularFiles) {
  const std::string dir = test::temp_dir();
  ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0644), 0);
  std::filesystem::create_directory(dir + "/sub");
  for (const std::string name : {"fifo", "sub"}) {
    try {
      AtomicFile f(dir + "/" + name);
      FAIL() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("only regular files"), std::string::npos) << e.what();
    }
    EXPECT_THROW(require_output_path(dir + "/" + name), Error);
  }
  struct stat st {};
  ASSERT_EQ(stat((dir + "/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));  // still a FIFO
  if (mknod((dir + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0) {  // as root: a copy of /dev/null
    EXPECT_THROW(AtomicFile(dir + "/null"), Error);
    ASSERT_EQ(stat((dir + "/null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
  }
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(AtomicFile, KeepsTheModeOfAReplacedFileAndFollowsSymlinks) {
  const std::string dir = test::temp_dir(), path = dir + "/private.bin";
  test::write_file(path, {1});
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  {
    AtomicFile f(path);
    f.write("xy", 2);
    f.commit();
  }
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(test::read_file(path).size(), 2u);
  // Through a symlink: the target is replaced, the link stays a link.
  ASSERT_EQ(symlink("private.bin", (dir + "/link.bin").c_str()), 0);
  {
    AtomicFile f(dir + "/link.bin");
    f.write("xyz", 3);
    f.commit();
  }
  struct stat st {};
  ASSERT_EQ(lstat((dir + "/link.bin").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(test::read_file(path).size(), 3u);
  EXPECT_EQ(mode_of(path), 0600u);
  // A dangling link is refused.
  ASSERT_EQ(symlink("missing/x.bin", (dir + "/dangling.bin").c_str()), 0);
  EXPECT_THROW(AtomicFile(dir + "/dangling.bin"), Error);
  // A new file gets 0666 & ~umask.
  const mode_t old = umask(027);
  {
    AtomicFile f(dir + "/new.bin");
    f.write("a", 1);
    f.commit();
  }
  umask(old);
  EXPECT_EQ(mode_of(dir + "/new.bin"), 0640u);
}

// Issue 23, item 6: SIGTERM / SIGINT during a write remove the temporary (the handler the CLI
// installs), and a temporary left by a killed process is swept by the next write of that file.
TEST(AtomicFile, FatalSignalRemovesTheTemporary) {
  const std::string dir = test::temp_dir(), path = dir + "/big.bin";
  for (int sig : {SIGTERM, SIGINT}) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      install_signal_cleanup();
      AtomicFile f(path);
      f.write_zeros(1 << 20);
      raise(sig);
      _exit(0);  // not reached
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), sig);  // the signal still ends the process
    EXPECT_EQ(entries(dir), 0u) << "temporary left after signal " << sig;
  }
}

TEST(AtomicFile, StaleTemporaryOfADeadProcessIsSwept) {
  const std::string dir = test::temp_dir(), path = dir + "/out.bin";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    AtomicFile f(path);
    f.write_zeros(4096);
    kill(getpid(), SIGKILL);  // as kill -9: no cleanup runs
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_EQ(entries(dir), 1u);  // the orphaned temporary
  // A live process's temporary beside it is not touched.
  AtomicFile mine(path + "x");
  {
    AtomicFile f(path);
    f.write("ok", 2);
    f.commit();
  }
  EXPECT_EQ(test::read_file(path).size(), 2u);
  EXPECT_EQ(entries(dir), 2u);  // out.bin and this process's open temporary of out.binx
}

TEST(AtomicFile, OutputThatIsAnInputIsRefused) {
  const std::string dir = test::temp_dir(), in = dir + "/model.bin";
  test::write_file(in, {1, 2, 3});
  EXPECT_THROW(require_output_not_input(in, {in}, "compress"), Error);
  ASSERT_EQ(link(in.c_str(), (dir + "/hard.bin").c_str()), 0);  // another name, same file
  EXPECT_THROW(require_output_not_input(dir + "/hard.bin", {in}, "compress"), Error);
  EXPECT_THROW(require_output_not_input(dir + "/./model.bin", {"", in}, "compress"), Error);
  EXPECT_NO_THROW(require_output_not_input(dir + "/new.tz", {in}, "compress"));
  test::write_file(dir + "/other.tz", {1});
  EXPECT_NO_THROW(require_output_not_input(dir + "/other.tz", {in}, "compress"));
  // A model directory: its safetensors / json files are inputs.
  test::write_file(dir + "/model.safetensors", {1});
  EXPECT_THROW(require_output_not_input(dir + "/model.safetensors", {dir}, "compress"), Error);
  EXPECT_NO_THROW(require_output_not_input(dir + "/other.tz", {dir}, "compress"));
}

}  // namespace tz::io
