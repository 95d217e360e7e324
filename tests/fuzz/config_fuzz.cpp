// libFuzzer target: the agent's TOML configuration (make_agent_config, no flags, no
// environment). Config is untrusted input in STYLE.md's sense: a bad file must fail with a
// message, never crash or hang. Paths named in the text are looked up in the working
// directory (run the fuzzer in an empty one); files are read bounded and only if regular.
// A config that loads must satisfy the cross-key checks make_agent_config promises.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "actors/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace starling::actors;
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  auto cfg = make_agent_config(text, "fuzz.toml", agent_flags{}, agent_env{});
  if (!cfg)
    return 0;
  if (cfg->name.empty() || cfg->swim.probe_timeout > cfg->swim.probe_interval ||
      cfg->admission_quorum < 1 || (!cfg->tokens.empty() && cfg->join.empty()) ||
      (!is_loopback_host(cfg->admin.host) && !cfg->admin_allow_remote))
    __builtin_trap();
  (void)cfg->admin.to_string();
  (void)format_duration(cfg->swim.probe_interval);
  return 0;
}
