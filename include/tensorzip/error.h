// tensorzip::Error: the one exception type the library throws. Messages are one line, name the
// file or argument at fault and the problem, so a CLI can print them as they are.
#pragma once
#include <stdexcept>
#include <string>

namespace tz {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws tz::Error(msg) when cond is false. For argument and file validation, not for bugs.
inline void require(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace tz
