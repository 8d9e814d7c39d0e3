// Writes a file atomically: bytes go to a temporary file beside the target, which is renamed over
// it on commit(). If commit() is never reached (an error, an exception) the temporary is removed,
// so a failed write never leaves a partial output file.
//
// What the target may be: a regular file (replaced; its permission bits are kept), a path that
// does not exist yet (created with 0666 & ~umask, as any new file), or a symbolic link to either
// (the link is followed: its target is replaced and the link stays). Anything else — a device
// such as /dev/null, a FIFO, a socket, a directory, a dangling link — is refused with a tz::Error
// before a byte is written.
//
// Interrupted writes: temporaries are named TARGET.tmp-PID-XXXXXX. install_signal_cleanup()
// makes SIGINT, SIGTERM and SIGHUP remove every temporary this process has open before the signal
// takes its default action; a temporary left by a process that is gone (kill -9, a crash) is
// removed by the next AtomicFile of the same target.
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace tz::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  size_t bytes_written() const { return written_; }
  void commit();  // flush, fsync, rename; throws tz::Error naming the file on failure
  const std::string& temp_path() const { return tmp_path_; }

 private:
  std::string path_, target_, tmp_path_;  // target_: path_ with a symlink resolved
  std::FILE* f_ = nullptr;
  size_t written_ = 0;
  bool committed_ = false;
  int slot_ = -1;  // in the signal-cleanup registry
};

// Installs the SIGINT / SIGTERM / SIGHUP handler described above (idempotent). For programs (the
// CLI); a library user with its own handlers can leave it out.
void install_signal_cleanup();

// Throws the error AtomicFile(path) would (a target that is not a regular file), without creating
// anything: commands check their outputs before hours of work, not after.
void require_output_path(const std::string& path);

// Refuses (tz::Error naming both) an output path that is the same file as one of the inputs
// (compared by device and inode, so links and other spellings count), or that would replace a file
// a model directory input is read from (*.safetensors, *.json, *.bin inside it). Empty paths and
// inputs that do not exist are skipped. `what` names the command in the message.
void require_output_not_input(const std::string& output, const std::vector<std::string>& inputs, const std::string& what);

}  // namespace tz::io
