// `starling demo` end to end: the README's main command must form a mesh, detect a
// killed node, see it rejoin, show traffic flowing live, and tear everything down with exit
// code 0.
#include <regex>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/process.hpp"

namespace starling::testing {
namespace {

TEST(demo, forms_a_mesh_detects_a_failure_and_sees_the_rejoin) {
  auto res = run_cli({"demo", "--duration", "5"}, 120s);
  ASSERT_EQ(res.exit_code, 0) << res.out << res.err;
  EXPECT_NE(res.out.find("mesh formed: node-c sees all three alive"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("node-a declared node-c dead"), std::string::npos) << res.out;
  EXPECT_NE(res.out.find("node-c is back"), std::string::npos) << res.out;
  // The rejoined node-c carries a higher incarnation in the table shown after it is back
  // (1, or more if it had to refute a suspicion while the machine was busy; on a busy machine
  // the table may also catch it suspect for a moment).
  std::smatch m;
  const auto after = res.out.substr(std::min(res.out.find("node-c is back"), res.out.size()));
  ASSERT_TRUE(std::regex_search(after, m, std::regex{R"(\nnode-c +\S+ +(?:alive|suspect) +(\d+))"}))
      << res.out;
  EXPECT_GE(std::stoul(m[1].str()), 1u) << res.out;
  // The live view: node-a's `top` frames while the app keeps calling web, the second one
  // with a rate (the first has no earlier frame to compare with).
  const auto live = res.out.substr(std::min(res.out.find("==> live view"), res.out.size()));
  const std::regex service_row{R"(\nweb +outbound +\d+ +(-|\d+\.\d) )"};
  std::vector<double> rates;
  for (std::sregex_iterator it{live.begin(), live.end(), service_row}, done; it != done; ++it)
    rates.push_back((*it)[1] == "-" ? -1.0 : std::stod((*it)[1].str()));
  ASSERT_GE(rates.size(), 2u) << res.out;
  EXPECT_GT(rates.back(), 0.0) << "no traffic flowed in the live view:\n" << res.out;
  EXPECT_NE(res.out.find("stopping: every node leaves the mesh gracefully"), std::string::npos);
}

} // namespace
} // namespace starling::testing
