// Purity probe (tests/purity/CMakeLists.txt): a core file that includes CAF's io module. Built
// with the core rules it must fail to compile.
#include <caf/io/middleman.hpp>

namespace starling::purity_probe {

void* touch(caf::io::middleman* mm) { return mm; }

} // namespace starling::purity_probe
