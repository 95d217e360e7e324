#include <gtest/gtest.h>

#include "proto/wire/address.hpp"

namespace sw = starling::wire;

TEST(address, parses_names_ipv4_and_bracketed_ipv6) {
  auto a = sw::parse_host_port("node-a.example:7946");
  ASSERT_TRUE(a);
  EXPECT_EQ(*a.address, (sw::host_port{"node-a.example", 7946}));
  EXPECT_EQ(*sw::parse_host_port("127.0.0.1:0").address, (sw::host_port{"127.0.0.1", 0}));
  EXPECT_EQ(*sw::parse_host_port("[::1]:65535").address, (sw::host_port{"::1", 65535}));
  EXPECT_EQ(*sw::parse_host_port("[fe80::1%eth0]:1").address, (sw::host_port{"fe80::1%eth0", 1}));
}

TEST(address, says_what_is_wrong) {
  const std::pair<const char*, std::string_view> cases[] = {
      {"", "missing port"},
      {"host", "missing port"},
      {"[::1", "missing ']'"},
      {"[::1]", "missing port"},
      {"[::1]7946", "missing port"},
      {"::1:7946", "unbracketed IPv6 host"},
      {":7946", "empty host"},
      {"[]:7946", "empty host"},
      {"h:", "invalid port"},
      {"h:123456", "invalid port"},
      {"h:-1", "invalid port"},
      {"h:+1", "invalid port"},
      {"h:1x", "invalid port"},
      {"h:65536", "port out of range"},
      {"h:99999", "port out of range"},
  };
  for (const auto& [text, why] : cases) {
    auto r = sw::parse_host_port(text);
    EXPECT_FALSE(r) << text;
    EXPECT_EQ(r.problem, why) << text;
  }
}

TEST(address, joins_and_round_trips) {
  EXPECT_EQ(sw::join_host_port("10.0.0.1", 80), "10.0.0.1:80");
  EXPECT_EQ(sw::join_host_port("::1", 7946), "[::1]:7946");
  EXPECT_EQ(sw::join_host_port("[::1]", 7946), "[::1]:7946");
  EXPECT_EQ(sw::join_host_port("", 1), ":1");
  for (const char* text : {"a:1", "[::1]:2", "1.2.3.4:65535", "[fe80::1%eth0]:3"}) {
    auto r = sw::parse_host_port(text);
    ASSERT_TRUE(r) << text;
    EXPECT_EQ(r.address->to_string(), text);
  }
}
