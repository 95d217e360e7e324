// Purity probe (tests/purity/CMakeLists.txt): a core file that uses the socket API. Built with
// the core rules it must fail to compile.
#include <sys/socket.h>

namespace starling::purity_probe {

int open_udp() { return ::socket(AF_INET, SOCK_DGRAM, 0); }

} // namespace starling::purity_probe
