// Purity probe (tests/purity/CMakeLists.txt): a core file that includes Asio. Built with the
// core rules (and, worse, Asio's definitions), it must fail to compile: the force-included
// guard poisons Asio's identifiers.
#include <asio.hpp>

namespace starling::purity_probe {

void run() {
  asio::io_context io;
  io.run();
}

} // namespace starling::purity_probe
