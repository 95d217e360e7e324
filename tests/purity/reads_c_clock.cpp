// Purity probe (tests/purity/CMakeLists.txt): a core file that reads the wall clock through
// the C API. The symbol check after the build must fail it.
#include <ctime>

namespace starling::purity_probe {

long seconds_now() { return static_cast<long>(std::time(nullptr)); }

} // namespace starling::purity_probe
