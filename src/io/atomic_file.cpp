// Temp-file-then-rename writes (see atomic_file.h).
#include "tensorzip/io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "tensorzip/error.h"

namespace tz::io {
namespace {

// ---- temporaries to remove on a fatal signal. The handler may only call async-signal-safe
// functions, so the registry is a fixed array of path buffers with an atomic state per slot.
constexpr int kSlots = 64;
struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 live
  char path[PATH_MAX];
};
Slot g_slots[kSlots];

int register_temp(const std::string& p) {
  if (p.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expect = 0;
    if (g_slots[i].state.compare_exchange_strong(expect, 1)) {
      std::memcpy(g_slots[i].path, p.c_str(), p.size() + 1);
      g_slots[i].state.store(2);
      return i;
    }
  }
  return -1;  // more than 64 open at once: that one is not cleaned on a signal (still on errors)
}

void unregister_temp(int slot) {
  if (slot >= 0) g_slots[slot].state.store(0);
}

extern "C" void on_fatal_signal(int sig) {
  for (auto& s : g_slots)
    if (s.state.load() == 2) ::unlink(s.path);
  signal(sig, SIG_DFL);
  raise(sig);
}

std::string kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

mode_t new_file_mode() {  // 0666 & ~umask, the umask read without changing it
  mode_t mask = 022;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[128];
    unsigned m = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "Umask: %o", &m) == 1) {
        mask = mode_t(m);
        break;
      }
    std::fclose(f);
  }
  return 0666 & ~mask;
}

// Removes TARGET.tmp-PID-XXXXXX files beside `target` whose process no longer exists.
void sweep_stale_temps(const std::string& target) {
  const std::filesystem::path t(target);
  const std::string dir = t.parent_path().empty() ? "." : t.parent_path().string();
  const std::string prefix = t.filename().string() + ".tmp-";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || end == nullptr || *end != '-' || std::strlen(end + 1) != 6) continue;
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    ::unlink((dir + "/" + name).c_str());
  }
  closedir(d);
}

// The file a write to `path` replaces (a symlink resolved) and the mode it gets; throws on targets
// that are not regular files.
std::string resolve_output(const std::string& path, mode_t* mode) {
  require(!path.empty(), "output path is empty");
  std::string target = path;
  *mode = new_file_mode();
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return target;
  if (S_ISLNK(st.st_mode)) {
    char buf[PATH_MAX];
    if (realpath(path.c_str(), buf) == nullptr)
      throw Error(path + ": is a symbolic link whose target cannot be resolved (" + std::strerror(errno) + "); nothing written");
    target = buf;
    if (stat(target.c_str(), &st) != 0) throw Error(path + ": cannot stat its link target " + target);
  }
  if (!S_ISREG(st.st_mode))
    throw Error(path + ": exists and is " + kind_of(st.st_mode) + "; tensorzip writes only regular files (nothing written)");
  *mode = st.st_mode & 07777;  // a replaced file keeps its permissions
  return target;
}

}  // namespace

void install_signal_cleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction sa {};
      sa.sa_handler = on_fatal_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, nullptr);
    }
  });
}

void require_output_path(const std::string& path) {
  mode_t mode;
  resolve_output(path, &mode);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  mode_t mode;
  target_ = resolve_output(path_, &mode);
  sweep_stale_temps(target_);
  // The name is registered with the signal handler *before* the file exists (O_CREAT|O_EXCL on a
  // name we choose), so there is no instant at which a temporary is on disk unknown to the handler;
  // mkstemp would leave one between its return and the registration.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    std::string suffix(6, 'A');
    for (char& c : suffix) c = kAlnum[rng() % 62];
    tmp_path_ = target_ + ".tmp-" + std::to_string(getpid()) + "-" + suffix;
    slot_ = register_temp(tmp_path_);
    fd = ::open(tmp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      const int err = errno;
      unregister_temp(slot_);
      slot_ = -1;
      if (err != EEXIST) throw Error(path_ + ": cannot create a temporary file beside it: " + std::strerror(err));
    }
  }
  if (fd < 0) throw Error(path_ + ": cannot create a temporary file beside it: 100 names taken");
  fchmod(fd, mode);
  f_ = fdopen(fd, "wb");
  if (f_ == nullptr) {
    ::close(fd);
    ::unlink(tmp_path_.c_str());
    unregister_temp(slot_);
    throw Error(path_ + ": fdopen failed");
  }
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) ::unlink(tmp_path_.c_str());
  unregister_temp(slot_);
}

void AtomicFile::write(const void* data, size_t n) {
  if (n != 0 && std::fwrite(data, 1, n, f_) != n)
    throw Error(path_ + ": write failed: " + std::strerror(errno));
  written_ += n;
}

void AtomicFile::write_zeros(size_t n) {
  static const char zeros[256] = {};
  while (n > 0) {
    const size_t c = n < sizeof(zeros) ? n : sizeof(zeros);
    write(zeros, c);
    n -= c;
  }
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    throw Error(path_ + ": flush failed: " + std::strerror(errno));
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw Error(path_ + ": close failed: " + std::strerror(errno));
  if (std::rename(tmp_path_.c_str(), target_.c_str()) != 0)
    throw Error(path_ + ": rename from temporary failed: " + std::strerror(errno));
  committed_ = true;
  unregister_temp(slot_);
  slot_ = -1;
}

void require_output_not_input(const std::string& output, const std::vector<std::string>& inputs, const std::string& what) {
  struct stat out {};
  if (output.empty() || stat(output.c_str(), &out) != 0) return;  // a new file cannot be an input
  for (const auto& in : inputs) {
    struct stat st {};
    if (in.empty() || stat(in.c_str(), &st) != 0) continue;
    if (st.st_dev == out.st_dev && st.st_ino == out.st_ino)
      throw Error(what + ": the output " + output + " is the input " + in + "; writing it would destroy the input (choose another output path)");
    if (S_ISDIR(st.st_mode)) {
      std::error_code ec;
      const auto parent = std::filesystem::canonical(std::filesystem::path(output), ec).parent_path();
      const auto dir = std::filesystem::canonical(std::filesystem::path(in), ec);
      const std::string ext = std::filesystem::path(output).extension().string();
      if (!ec && parent == dir && (ext == ".safetensors" || ext == ".json" || ext == ".bin"))
        throw Error(what + ": the output " + output + " would replace a file of the model directory " + in +
                    " that is read as input (choose another output path)");
    }
  }
}

}  // namespace tz::io
