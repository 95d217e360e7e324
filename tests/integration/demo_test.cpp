// `starling demo` end to end: the README's main command must form a mesh, detect a
// killed node, see it rejoin, and tear everything down with exit code 0.
#include <regex>

#include <gtest/gtest.h>

#include "tests/support/process.hpp"

namespace starling::testing {
namespace {

TEST(demo, forms_a_mesh_detects_a_failure_and_sees_the_rejoin) {
  auto res = run_cli({"demo", "--duration", "1"}, 120s);
  ASSERT_EQ(res.exit_code, 0) << res.out << res.err;
  EXPECT_NE(res.out.find("mesh formed: node-c sees all three alive"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("node-a declared node-c dead"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("node-c is back"), std::string::npos) << res.out;
  // The rejoined node-c carries a higher incarnation in the table shown after it is back
  // (1, or more if it had to refute a suspicion while the machine was busy).
  std::smatch m;
  const auto after = res.out.substr(std::min(res.out.find("node-c is back"), res.out.size()));
  ASSERT_TRUE(std::regex_search(after, m, std::regex{R"(\nnode-c +\S+ +alive +(\d+))"})) << res.out;
  EXPECT_GE(std::stoul(m[1].str()), 1u) << res.out;
  EXPECT_NE(res.out.find("stopping: every node leaves the mesh gracefully"), std::string::npos);
}

} // namespace
} // namespace starling::testing
