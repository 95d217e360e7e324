// Unit tests of the health check core (gossip/health.hpp): spec validation, the HTTP status
// line scanner, the rise/fall tracker and the scheduler. Time is virtual (a time_point
// advanced by hand), randomness a seed: nothing here depends on the machine.
#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/errc.hpp"
#include "gossip/health.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours{1};

health_check_spec http_spec() {
  health_check_spec s;
  s.kind = health_check_kind::http;
  s.path = "/healthz";
  return s;
}

// ---- validation ----

TEST(health_spec, defaults_are_valid_and_documented) {
  health_check_spec s;
  EXPECT_EQ(s.kind, health_check_kind::tcp);
  EXPECT_EQ(s.interval, 10s);
  EXPECT_EQ(s.timeout, 2s);
  EXPECT_EQ(s.rise, 2u);
  EXPECT_EQ(s.fall, 3u);
  EXPECT_EQ(s.expected_status, 0u);
  EXPECT_FALSE(check_health_spec(s));
  EXPECT_FALSE(check_health_spec(http_spec()));
}

struct refusal_case {
  const char* name;
  health_check_spec spec;
  const char* field; // named in the message
};

std::vector<refusal_case> refusal_cases() {
  std::vector<refusal_case> out;
  auto add = [&](const char* name, const char* field, auto mutate) {
    auto s = http_spec();
    mutate(s);
    out.push_back({name, s, field});
  };
  add("unknown kind", "kind", [](auto& s) { s.kind = static_cast<health_check_kind>(7); });
  add("empty path", "path", [](auto& s) { s.path.clear(); });
  add("relative path", "path", [](auto& s) { s.path = "healthz"; });
  add("path too long", "path", [](auto& s) { s.path = "/" + std::string(256, 'a'); });
  add("path with space", "path", [](auto& s) { s.path = "/a b"; });
  add("path with CRLF", "path", [](auto& s) { s.path = "/a\r\nX-Evil: 1"; });
  add("path with DEL", "path", [](auto& s) { s.path = "/a\x7f"; });
  add("path not ASCII", "path", [](auto& s) { s.path = "/caf\xc3\xa9"; });
  add("status 99", "expected_status", [](auto& s) { s.expected_status = 99; });
  add("status 600", "expected_status", [](auto& s) { s.expected_status = 600; });
  add("interval too short", "interval", [](auto& s) { s.interval = 999ms; });
  add("interval too long", "interval", [](auto& s) { s.interval = 1h + 1ns; });
  add("timeout too short", "timeout", [](auto& s) { s.timeout = 99ms; });
  add("timeout over interval", "timeout", [](auto& s) {
    s.interval = 5s;
    s.timeout = 5001ms;
  });
  add("rise 0", "rise", [](auto& s) { s.rise = 0; });
  add("rise 11", "rise", [](auto& s) { s.rise = 11; });
  add("fall 0", "fall", [](auto& s) { s.fall = 0; });
  add("fall 11", "fall", [](auto& s) { s.fall = 11; });
  return out;
}

TEST(health_spec, each_bad_field_is_refused_with_its_name) {
  for (const auto& c : refusal_cases()) {
    SCOPED_TRACE(c.name);
    auto err = check_health_spec(c.spec);
    ASSERT_TRUE(err);
    EXPECT_EQ(err.category(), errc_category);
    EXPECT_EQ(err.code(), static_cast<std::uint8_t>(errc::invalid_field));
    auto text = render(err);
    EXPECT_NE(text.find(std::string{"health check "} + c.field + ":"), std::string::npos) << text;
  }
}

TEST(health_spec, bounds_themselves_are_accepted) {
  auto s = http_spec();
  s.path = "/" + std::string(255, 'a');
  EXPECT_FALSE(check_health_spec(s));
  s.path = "/a?b=c&d=%20~";
  EXPECT_FALSE(check_health_spec(s));
  for (std::uint16_t status : {0, 100, 204, 599}) {
    s.expected_status = status;
    EXPECT_FALSE(check_health_spec(s)) << status;
  }
  s.interval = 1s;
  s.timeout = 1s; // timeout equal to the interval is allowed
  EXPECT_FALSE(check_health_spec(s));
  s.interval = 1h;
  s.timeout = 100ms;
  EXPECT_FALSE(check_health_spec(s));
  s.rise = 1;
  s.fall = 10;
  EXPECT_FALSE(check_health_spec(s));
  s.rise = 10;
  s.fall = 1;
  EXPECT_FALSE(check_health_spec(s));
}

TEST(health_spec, tcp_checks_ignore_the_http_fields) {
  health_check_spec s;
  s.path = "not a path";
  s.expected_status = 9999;
  EXPECT_FALSE(check_health_spec(s));
}

TEST(health_spec, messages_say_the_bound) {
  auto s = http_spec();
  s.timeout = 50ms;
  EXPECT_EQ(render(check_health_spec(s)),
            "gossip.invalid_field: health check timeout: 50ms is below 100ms");
  s = http_spec();
  s.interval = 3s;
  s.timeout = 4s;
  EXPECT_EQ(render(check_health_spec(s)),
            "gossip.invalid_field: health check timeout: 4s is longer than the interval 3s");
}

// ---- texts ----

TEST(health_text, kinds_round_trip_through_their_names) {
  for (auto k : {health_check_kind::tcp, health_check_kind::http})
    EXPECT_EQ(parse_health_check_kind(to_string(k)), k);
  EXPECT_EQ(to_string(health_check_kind::http), "http");
  EXPECT_FALSE(parse_health_check_kind("HTTP"));
  EXPECT_FALSE(parse_health_check_kind(""));
  EXPECT_FALSE(parse_health_check_kind("udp"));
  EXPECT_EQ(to_string(static_cast<health_check_kind>(9)), "unknown");
}

TEST(health_text, durations_use_the_largest_exact_unit) {
  EXPECT_EQ(health_duration_text(0s), "0s");
  EXPECT_EQ(health_duration_text(2s), "2s");
  EXPECT_EQ(health_duration_text(200ms), "200ms");
  EXPECT_EQ(health_duration_text(1500ms), "1500ms");
  EXPECT_EQ(health_duration_text(1h), "1h");
  EXPECT_EQ(health_duration_text(90s), "90s");
  EXPECT_EQ(health_duration_text(2min), "2min");
  EXPECT_EQ(health_duration_text(1500us), "1500us");
  EXPECT_EQ(health_duration_text(7ns), "7ns");
}

TEST(health_text, results_are_bounded_on_a_character_boundary) {
  EXPECT_EQ(bounded_result_text("HTTP 200"), "HTTP 200");
  EXPECT_EQ(bounded_result_text(std::string(300, 'x')).size(), health_max_result_bytes);
  EXPECT_EQ(bounded_result_text(std::string(200, 'x')).size(), 200u);
  // "é" is 2 bytes at offsets 199 and 200: cutting at 200 would split it.
  auto text = std::string(199, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(bounded_result_text(text), std::string(199, 'a'));
}

TEST(health_text, http_status_against_expectation) {
  EXPECT_TRUE(http_status_passes(200, 0));
  EXPECT_TRUE(http_status_passes(299, 0));
  EXPECT_FALSE(http_status_passes(199, 0));
  EXPECT_FALSE(http_status_passes(300, 0));
  EXPECT_FALSE(http_status_passes(503, 0));
  EXPECT_TRUE(http_status_passes(204, 204));
  EXPECT_FALSE(http_status_passes(200, 204));
  EXPECT_TRUE(http_status_passes(418, 418));
  EXPECT_EQ(http_status_text(200, 0), "HTTP 200");
  EXPECT_EQ(http_status_text(503, 0), "HTTP 503 (expected 2xx)");
  EXPECT_EQ(http_status_text(200, 204), "HTTP 200 (expected 204)");
  EXPECT_EQ(http_status_text(204, 204), "HTTP 204");
}

// ---- status line ----

using outcome = http_status_scan::outcome;

TEST(health_status_line, complete_lines_give_their_code) {
  struct {
    const char* bytes;
    std::uint16_t status;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\n", 200},
      {"HTTP/1.0 503 Service Unavailable\r\n", 503},
      {"HTTP/1.1 204\r\n", 204},
      {"HTTP/1.1 204 \r\n", 204},
      {"HTTP/1.1 404 Not\tFound \xc3\xa9\r\n", 404},
      {"HTTP/1.1 100 Continue\r\nrest is not looked at\x01", 100},
      {"HTTP/1.1 599 x\r\n", 599},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.bytes);
    auto scan = scan_http_status_line(c.bytes);
    EXPECT_EQ(scan.result, outcome::complete);
    EXPECT_EQ(scan.status, c.status);
  }
}

TEST(health_status_line, every_prefix_of_a_valid_line_is_incomplete) {
  const std::string line = "HTTP/1.1 503 Service Unavailable\r\n";
  for (std::size_t n = 0; n < line.size(); ++n) {
    SCOPED_TRACE(n);
    auto scan = scan_http_status_line(std::string_view{line}.substr(0, n));
    EXPECT_EQ(scan.result, outcome::incomplete);
    EXPECT_EQ(scan.status, 0u);
  }
  EXPECT_EQ(scan_http_status_line(line).result, outcome::complete);
}

TEST(health_status_line, anything_else_is_malformed) {
  const char* cases[] = {
      "garbage\r\n",
      "X",
      "http/1.1 200 OK\r\n",
      "HTTP/2 200 OK\r\n",
      "HTTP/1.x 200 OK\r\n",
      "HTTP/1.1  200 OK\r\n",
      "HTTP/1.1 20 OK\r\n",
      "HTTP/1.1 2000 OK\r\n",
      "HTTP/1.1 600 Nope\r\n",
      "HTTP/1.1 099 Nope\r\n",
      "HTTP/1.1 200OK\r\n",
      "HTTP/1.1 200 OK\n",
      "HTTP/1.1 200 OK\rX",
      "HTTP/1.1 200 O\x01K\r\n",
      "HTTP/1.1 200 OK\x7f\r\n",
      "HTTP/1.1 200\n",
      "X-Header: value\r\n",
  };
  for (const char* c : cases) {
    SCOPED_TRACE(c);
    auto scan = scan_http_status_line(c);
    EXPECT_EQ(scan.result, outcome::malformed);
    EXPECT_EQ(scan.status, 0u);
  }
  // A NUL byte inside the line (string_view keeps it).
  using namespace std::string_view_literals;
  EXPECT_EQ(scan_http_status_line("HTTP/1.1 200 O\0K\r\n"sv).result, outcome::malformed);
}

// ---- tracker ----

/// One rise/fall scenario: results as '+' (pass) and '-' (fail), and the status after each
/// as 'P' (passing) and 'F' (failing).
struct rise_fall_case {
  std::uint32_t rise;
  std::uint32_t fall;
  const char* results;
  const char* statuses;
};

TEST(health_tracker, rise_and_fall_sequences) {
  const rise_fall_case cases[] = {
      {1, 1, "+-+-", "PFPF"},
      {2, 3, "++", "FP"},
      {2, 3, "+-+", "FFF"},
      {2, 3, "++--+---", "FPPPPPPF"},
      {2, 3, "------", "FFFFFF"},
      {2, 3, "++---++", "FPPPFFP"},
      {3, 1, "++-+++", "FFFFFP"},
      {3, 1, "+++-", "FFPF"},
      {1, 2, "+-+-+--", "PPPPPPF"},
      {10, 10, "+++++++++++", "FFFFFFFFFPP"},
      {10, 10, "++++++++++---------+-", "FFFFFFFFFPPPPPPPPPPPP"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string{"rise "} + std::to_string(c.rise) + " fall " + std::to_string(c.fall) +
                 " " + c.results);
    ASSERT_EQ(std::string{c.results}.size(), std::string{c.statuses}.size());
    health_tracker t{c.rise, c.fall, t0};
    EXPECT_EQ(t.status(), health_status::failing);
    auto previous = t.status();
    for (std::size_t i = 0; c.results[i] != '\0'; ++i) {
      auto now = t0 + std::chrono::seconds{i + 1};
      bool changed = t.on_result(c.results[i] == '+', c.results[i] == '+' ? "ok" : "bad", now);
      auto expected = c.statuses[i] == 'P' ? health_status::passing : health_status::failing;
      EXPECT_EQ(t.status(), expected) << "after result " << i;
      EXPECT_EQ(changed, expected != previous) << "after result " << i;
      if (changed) {
        EXPECT_EQ(t.last_change(), now);
      }
      previous = t.status();
    }
  }
}

TEST(health_tracker, starts_failing_not_checked_and_keeps_counts) {
  health_tracker t{2, 3, t0};
  EXPECT_EQ(t.status(), health_status::failing);
  EXPECT_EQ(t.last_result(), "not checked yet");
  EXPECT_EQ(t.last_change(), t0);
  EXPECT_FALSE(t.last_checked());
  EXPECT_EQ(t.consecutive_successes(), 0u);
  EXPECT_EQ(t.consecutive_failures(), 0u);

  EXPECT_FALSE(t.on_result(false, "connection refused", t0 + 1s));
  EXPECT_FALSE(t.on_result(false, "connection refused", t0 + 2s));
  EXPECT_EQ(t.consecutive_failures(), 2u);
  EXPECT_EQ(t.last_result(), "connection refused");
  EXPECT_EQ(t.last_checked(), t0 + 2s);
  EXPECT_EQ(t.last_change(), t0) << "failing -> failing is no change";

  EXPECT_FALSE(t.on_result(true, "HTTP 200", t0 + 3s));
  EXPECT_EQ(t.consecutive_successes(), 1u);
  EXPECT_EQ(t.consecutive_failures(), 0u);
  EXPECT_TRUE(t.on_result(true, "HTTP 200", t0 + 4s));
  EXPECT_EQ(t.status(), health_status::passing);
  EXPECT_EQ(t.last_change(), t0 + 4s);
  EXPECT_EQ(t.last_result(), "HTTP 200");

  EXPECT_FALSE(t.on_result(false, std::string(500, 'z'), t0 + 5s));
  EXPECT_EQ(t.last_result().size(), health_max_result_bytes);
}

TEST(health_tracker, thresholds_are_clamped) {
  health_tracker t{0, 99, t0};
  EXPECT_EQ(t.rise(), 1u);
  EXPECT_EQ(t.fall(), health_max_threshold);
}

// Over many seeds: random thresholds and results; the status changes only by the rules,
// checked against the result history rather than a copy of the tracker's logic.
TEST(health_tracker, status_changes_only_by_the_rules) {
  for (std::uint64_t seed = 1; seed <= 64; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng{seed};
    auto rise = static_cast<std::uint32_t>(1 + rng() % health_max_threshold);
    auto fall = static_cast<std::uint32_t>(1 + rng() % health_max_threshold);
    // A bias per seed, so some runs stay mostly up and some mostly down.
    auto pass_percent = rng() % 101;
    health_tracker t{rise, fall, t0};
    std::vector<bool> history;
    auto last_run = [&history](bool value, std::size_t n) {
      if (history.size() < n)
        return false;
      return std::all_of(history.end() - static_cast<std::ptrdiff_t>(n), history.end(),
                         [value](bool r) { return r == value; });
    };
    for (int i = 0; i < 500; ++i) {
      bool ok = rng() % 100 < pass_percent;
      auto before = t.status();
      history.push_back(ok);
      bool changed = t.on_result(ok, ok ? "ok" : "bad", t0 + std::chrono::seconds{i});
      auto after = t.status();
      ASSERT_EQ(changed, before != after);
      if (before == health_status::failing) {
        // failing -> passing exactly when the last `rise` results passed.
        ASSERT_EQ(after == health_status::passing, last_run(true, rise)) << "step " << i;
      } else {
        // passing -> failing exactly when the last `fall` results failed.
        ASSERT_EQ(after == health_status::failing, last_run(false, fall)) << "step " << i;
      }
      ASSERT_TRUE(after == health_status::passing || after == health_status::failing);
      ASSERT_TRUE(t.consecutive_successes() == 0 || t.consecutive_failures() == 0);
    }
  }
}

// ---- scheduler ----

TEST(health_scheduler, refuses_invalid_specs_and_keys) {
  health_scheduler s{1};
  auto bad = http_spec();
  bad.rise = 0;
  auto err = s.add("web/1", bad, t0);
  ASSERT_TRUE(err);
  EXPECT_NE(render(err).find("rise"), std::string::npos);
  err = s.add("", health_check_spec{}, t0);
  ASSERT_TRUE(err);
  EXPECT_EQ(err.code(), static_cast<std::uint8_t>(errc::invalid_field));
  EXPECT_NE(render(err).find("key"), std::string::npos);
  EXPECT_TRUE(s.add(std::string(513, 'k'), health_check_spec{}, t0));
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.stats().refused_adds, 3u);
  EXPECT_FALSE(s.next_deadline());
  EXPECT_TRUE(s.due(t0 + 1h).empty());
}

TEST(health_scheduler, first_runs_are_jittered_within_the_interval_deterministically) {
  auto first_runs = [](std::uint64_t seed) {
    health_scheduler s{seed};
    std::vector<time_point> runs;
    for (int i = 0; i < 100; ++i) {
      auto key = "svc/" + std::to_string(i);
      EXPECT_FALSE(s.add(key, health_check_spec{}, t0));
      runs.push_back(*s.next_run(key));
    }
    return runs;
  };
  auto a = first_runs(42);
  EXPECT_EQ(a, first_runs(42)) << "same seed, same schedule";
  EXPECT_NE(a, first_runs(43)) << "another seed, another schedule";
  // All within [t0, t0 + interval), spread over it: no 1 s bucket of the 10 s interval holds
  // more than a quarter of them, and the first ones do not all come together.
  std::array<int, 10> buckets{};
  for (auto r : a) {
    ASSERT_GE(r, t0);
    ASSERT_LT(r, t0 + 10s);
    ++buckets[static_cast<std::size_t>((r - t0) / 1s)];
  }
  for (int n : buckets)
    EXPECT_LE(n, 25);
  EXPECT_GT(std::set<time_point>(a.begin(), a.end()).size(), 90u);
  health_scheduler s{42};
  for (int i = 0; i < 100; ++i)
    ASSERT_FALSE(s.add("svc/" + std::to_string(i), health_check_spec{}, t0));
  EXPECT_EQ(s.next_deadline(), *std::min_element(a.begin(), a.end()));
  EXPECT_LT(s.due(t0 + 1s).size(), 25u);
}

TEST(health_scheduler, a_probe_in_flight_is_never_due_again) {
  health_scheduler s{7};
  health_check_spec spec;
  ASSERT_FALSE(s.add("web/1", spec, t0));
  auto first = *s.next_run("web/1");
  EXPECT_EQ(s.next_deadline(), first);
  EXPECT_TRUE(s.due(first - 1ns).empty());
  EXPECT_FALSE(s.is_in_flight("web/1"));

  EXPECT_EQ(s.due(first), std::vector<std::string>{"web/1"});
  EXPECT_TRUE(s.is_in_flight("web/1"));
  EXPECT_FALSE(s.next_deadline()) << "the only check is in flight: no timer needed";
  EXPECT_TRUE(s.due(first + 1h).empty()) << "still in flight, however late";

  EXPECT_FALSE(s.on_result("web/1", true, "connected", first + 5ms));
  EXPECT_FALSE(s.is_in_flight("web/1"));
  EXPECT_EQ(s.next_deadline(), first + 10s) << "every interval after the previous start";
  EXPECT_TRUE(s.due(first + 10s - 1ns).empty());
  EXPECT_EQ(s.due(first + 10s + 3ms), std::vector<std::string>{"web/1"});
  EXPECT_TRUE(s.on_result("web/1", true, "connected", first + 10s + 4ms));
  EXPECT_EQ(s.status("web/1"), health_status::passing);
  // The late timer (3 ms) did not shift the phase.
  EXPECT_EQ(s.next_deadline(), first + 20s);
  EXPECT_EQ(s.stats().probes_due, 2u);
  EXPECT_EQ(s.stats().results, 2u);
  EXPECT_EQ(s.stats().status_changes, 1u);
}

TEST(health_scheduler, a_result_later_than_the_interval_makes_the_check_due_at_once) {
  health_scheduler s{7};
  ASSERT_FALSE(s.add("web/1", health_check_spec{}, t0));
  auto first = *s.next_run("web/1");
  ASSERT_EQ(s.due(first).size(), 1u);
  EXPECT_FALSE(s.on_result("web/1", false, "timed out after 2s", first + 12s));
  EXPECT_EQ(s.next_deadline(), first + 10s);
  EXPECT_EQ(s.due(first + 12s).size(), 1u);
}

TEST(health_scheduler, after_a_stall_the_schedule_restarts_from_now) {
  health_scheduler s{7};
  ASSERT_FALSE(s.add("web/1", health_check_spec{}, t0));
  auto first = *s.next_run("web/1");
  auto late = first + 35s; // the owner did not call due() for three intervals
  ASSERT_EQ(s.due(late).size(), 1u);
  ASSERT_FALSE(s.on_result("web/1", true, "connected", late + 1ms));
  EXPECT_EQ(s.next_deadline(), late + 10s) << "one run, not three catching up";
}

TEST(health_scheduler, next_deadline_is_the_earliest_check_not_in_flight) {
  health_scheduler s{3};
  health_check_spec fast;
  fast.interval = 1s;
  fast.timeout = 500ms;
  health_check_spec slow;
  slow.interval = 1h;
  ASSERT_FALSE(s.add("fast/1", fast, t0));
  ASSERT_FALSE(s.add("slow/1", slow, t0));
  auto f = *s.next_run("fast/1");
  auto sl = *s.next_run("slow/1");
  EXPECT_EQ(s.next_deadline(), std::min(f, sl));
  auto due = s.due(f);
  if (f >= sl) {
    EXPECT_EQ(due.size(), 2u);
  } else {
    EXPECT_EQ(due, std::vector<std::string>{"fast/1"});
  }
  if (f < sl) {
    EXPECT_EQ(s.next_deadline(), sl) << "fast/1 is in flight";
    ASSERT_FALSE(s.on_result("fast/1", true, "connected", f + 1ms));
    EXPECT_EQ(s.next_deadline(), std::min(f + 1s, sl));
  }
}

TEST(health_scheduler, results_for_unknown_removed_or_idle_keys_are_ignored) {
  health_scheduler s{9};
  EXPECT_FALSE(s.on_result("nobody/1", true, "connected", t0));
  EXPECT_EQ(s.stats().ignored_results, 1u);

  ASSERT_FALSE(s.add("web/1", health_check_spec{}, t0));
  EXPECT_FALSE(s.on_result("web/1", true, "connected", t0)) << "no probe in flight";
  EXPECT_EQ(s.stats().ignored_results, 2u);
  EXPECT_EQ(s.tracker("web/1")->last_result(), "not checked yet");

  ASSERT_EQ(s.due(t0 + 10s).size(), 1u);
  EXPECT_TRUE(s.remove("web/1"));
  EXPECT_FALSE(s.remove("web/1"));
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.tracker("web/1"), nullptr);
  EXPECT_EQ(s.spec("web/1"), nullptr);
  EXPECT_EQ(s.status("web/1"), health_status::none);
  EXPECT_FALSE(s.next_run("web/1"));
  EXPECT_FALSE(s.on_result("web/1", true, "connected", t0 + 11s));
  EXPECT_EQ(s.stats().ignored_results, 3u);
  EXPECT_EQ(s.stats().results, 0u);
  EXPECT_FALSE(s.next_deadline());
}

TEST(health_scheduler, a_check_added_again_while_its_old_probe_runs_ignores_that_result) {
  health_scheduler s{9};
  ASSERT_FALSE(s.add("web/1", health_check_spec{}, t0));
  ASSERT_EQ(s.due(t0 + 10s).size(), 1u);
  ASSERT_TRUE(s.remove("web/1"));
  ASSERT_FALSE(s.add("web/1", health_check_spec{}, t0 + 10s));
  EXPECT_TRUE(s.is_in_flight("web/1")) << "the old probe still runs";
  EXPECT_TRUE(s.due(t0 + 1h).empty());
  EXPECT_FALSE(s.on_result("web/1", true, "connected", t0 + 10s + 1ms));
  EXPECT_EQ(s.stats().ignored_results, 1u);
  EXPECT_EQ(s.tracker("web/1")->last_result(), "not checked yet");
  EXPECT_FALSE(s.is_in_flight("web/1"));
  EXPECT_EQ(s.due(t0 + 1h).size(), 1u) << "the new check runs once the old probe is done";
}

TEST(health_scheduler, a_skipped_probe_frees_the_check_and_leaves_its_status) {
  health_scheduler s{21};
  health_check_spec spec;
  spec.rise = 1;
  spec.fall = 1;
  ASSERT_FALSE(s.add("web/1", spec, t0));
  auto first = *s.next_run("web/1");
  ASSERT_EQ(s.due(first).size(), 1u);
  ASSERT_TRUE(s.on_result("web/1", true, "connected", first + 1ms));
  ASSERT_EQ(s.due(first + 10s).size(), 1u);
  EXPECT_TRUE(s.on_skipped("web/1"));
  EXPECT_FALSE(s.is_in_flight("web/1"));
  EXPECT_EQ(s.status("web/1"), health_status::passing) << "fall 1, yet no failure counted";
  EXPECT_EQ(s.tracker("web/1")->last_result(), "connected");
  EXPECT_EQ(s.next_deadline(), first + 20s);
  EXPECT_EQ(s.stats().skipped, 1u);
  EXPECT_FALSE(s.on_skipped("web/1")) << "nothing in flight";
  EXPECT_FALSE(s.on_skipped("nobody/1"));
  EXPECT_EQ(s.stats().ignored_results, 2u);
  EXPECT_EQ(s.stats().skipped, 1u);
}

TEST(health_scheduler, replacing_with_the_same_spec_keeps_the_check) {
  health_scheduler s{5};
  health_check_spec spec;
  spec.rise = 1;
  ASSERT_FALSE(s.add("web/1", spec, t0));
  auto first = *s.next_run("web/1");
  ASSERT_EQ(s.due(first).size(), 1u);
  ASSERT_TRUE(s.on_result("web/1", true, "connected", first));
  ASSERT_FALSE(s.add("web/1", spec, first + 1s));
  EXPECT_EQ(s.status("web/1"), health_status::passing);
  EXPECT_EQ(s.next_run("web/1"), first + 10s);
  EXPECT_EQ(s.size(), 1u);
}

TEST(health_scheduler, replacing_with_another_spec_starts_a_new_check) {
  health_scheduler s{5};
  health_check_spec spec;
  spec.rise = 1;
  ASSERT_FALSE(s.add("web/1", spec, t0));
  auto first = *s.next_run("web/1");
  ASSERT_EQ(s.due(first).size(), 1u);
  ASSERT_TRUE(s.on_result("web/1", true, "connected", first));
  ASSERT_EQ(s.due(first + 10s).size(), 1u); // a probe of the old spec is in flight

  auto http = http_spec();
  http.rise = 1;
  ASSERT_FALSE(s.add("web/1", http, first + 11s));
  EXPECT_EQ(s.spec("web/1")->kind, health_check_kind::http);
  EXPECT_EQ(s.status("web/1"), health_status::failing);
  EXPECT_EQ(s.tracker("web/1")->last_result(), "not checked yet");
  EXPECT_EQ(s.tracker("web/1")->last_change(), first + 11s);
  EXPECT_TRUE(s.is_in_flight("web/1"));
  EXPECT_FALSE(s.on_result("web/1", true, "connected", first + 12s)) << "the old spec's";
  EXPECT_EQ(s.status("web/1"), health_status::failing);
  EXPECT_EQ(s.stats().ignored_results, 1u);
  auto next = *s.next_run("web/1");
  EXPECT_GE(next, first + 11s);
  EXPECT_LT(next, first + 21s);
  ASSERT_EQ(s.due(next).size(), 1u);
  EXPECT_TRUE(s.on_result("web/1", true, "HTTP 200", next + 1ms));
  EXPECT_EQ(s.tracker("web/1")->last_result(), "HTTP 200");
}

TEST(health_scheduler, holds_at_most_1024_checks) {
  health_scheduler s{11};
  for (std::size_t i = 0; i < health_max_checks; ++i)
    ASSERT_FALSE(s.add("svc/" + std::to_string(i), health_check_spec{}, t0)) << i;
  EXPECT_EQ(s.size(), 1024u);
  auto err = s.add("svc/extra", health_check_spec{}, t0);
  ASSERT_TRUE(err);
  EXPECT_EQ(err.code(), static_cast<std::uint8_t>(errc::busy));
  EXPECT_NE(render(err).find("1024"), std::string::npos);
  EXPECT_EQ(s.size(), 1024u);
  EXPECT_EQ(s.stats().refused_adds, 1u);
  EXPECT_EQ(s.tracker("svc/extra"), nullptr);

  auto http = http_spec();
  EXPECT_FALSE(s.add("svc/0", http, t0)) << "replacing one held is fine when full";
  ASSERT_TRUE(s.remove("svc/1"));
  EXPECT_FALSE(s.add("svc/extra", health_check_spec{}, t0));
  EXPECT_EQ(s.size(), 1024u);

  // All of them run within the first interval, each once.
  auto due = s.due(t0 + 10s);
  EXPECT_EQ(due.size(), 1024u);
  EXPECT_EQ(std::set<std::string>(due.begin(), due.end()).size(), 1024u);
  EXPECT_TRUE(s.due(t0 + 10s).empty());
}

TEST(health_scheduler, drives_status_changes_through_results) {
  health_scheduler s{13};
  health_check_spec spec;
  spec.rise = 2;
  spec.fall = 2;
  ASSERT_FALSE(s.add("db/a", spec, t0));
  EXPECT_EQ(s.status("db/a"), health_status::failing);
  EXPECT_EQ(s.status("db/zz"), health_status::none);
  const bool results[] = {true, true, false, true, false, false, true};
  const health_status expected[] = {health_status::failing, health_status::passing,
                                    health_status::passing, health_status::passing,
                                    health_status::passing, health_status::failing,
                                    health_status::failing};
  auto now = t0;
  for (std::size_t i = 0; i < std::size(results); ++i) {
    SCOPED_TRACE(i);
    now = *s.next_deadline();
    ASSERT_EQ(s.due(now), std::vector<std::string>{"db/a"});
    auto before = s.status("db/a");
    bool changed =
        s.on_result("db/a", results[i], results[i] ? "connected" : "connection refused", now + 1ms);
    EXPECT_EQ(s.status("db/a"), expected[i]);
    EXPECT_EQ(changed, before != expected[i]);
  }
  const auto* t = s.tracker("db/a");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->consecutive_successes(), 1u);
  EXPECT_EQ(t->consecutive_failures(), 0u);
  EXPECT_EQ(t->last_result(), "connected");
  EXPECT_EQ(s.stats().status_changes, 2u);
}

} // namespace
} // namespace starling::gossip
