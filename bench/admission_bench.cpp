// starling-admission-bench: the client half of bench/admission.sh.
//
//   starling-admission-bench SEED TOKEN[,TOKEN...] COUNT [THREADS]
//
// Admits COUNT new nodes (bench-<pid>-<i>) through the seed at SEED ("host:port") with the
// join token TOKEN (which needs COUNT uses), exactly as `starling agent --join SEED --token
// TOKEN` does on first start: a fresh P-256 key, TLS pinned to the token's root, a CSR, the
// issuer's grant checked (actors::request_admission). Several comma-separated tokens (one
// per issuer) make an admission under a quorum of that many issuers (docs/decisions/0009):
// the seed collects the endorsements, and the grant is checked for them. THREADS clients run at
// once (default 1). Prints one line: count, failures, seconds, admissions/s, p50 and p99 latency in
// ms. Exits 1 if any admission failed (after printing the first error).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "actors/errc.hpp"
#include "actors/node_identity.hpp"
#include "identity/errc.hpp"
#include "identity/token.hpp"

namespace sa = starling::actors;
namespace id = starling::identity;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: starling-admission-bench SEED TOKEN COUNT [THREADS]\n";
    return 2;
  }
  const std::string seed = argv[1];
  std::vector<std::string> tokens;
  for (std::string rest = argv[2]; !rest.empty();) {
    const auto comma = rest.find(',');
    tokens.push_back(rest.substr(0, comma));
    rest = comma == std::string::npos ? std::string{} : rest.substr(comma + 1);
  }
  const std::string token_text = tokens.empty() ? std::string{} : tokens.front();
  const int count = std::atoi(argv[3]);
  const int threads = argc > 4 ? std::max(1, std::atoi(argv[4])) : 1;
  auto token = id::decode(token_text);
  if (!token || count <= 0 || count > 100000) {
    std::cerr << "starling-admission-bench: bad token or count\n";
    return 2;
  }
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::mutex mutex;
  std::vector<double> latencies_ms;
  std::string first_error;
  const auto start = clock_type::now();
  auto worker = [&] {
    for (int i = next++; i < count; i = next++) {
      const auto name = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(i);
      const auto t0 = clock_type::now();
      auto key = id::generate_key();
      caf::expected<sa::admission_outcome> out = key.error();
      if (key)
        out = sa::request_admission(seed, name, tokens, *token, *key, std::chrono::seconds{10},
                                    std::chrono::system_clock::now(), tokens.size());
      const double ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
      std::lock_guard guard{mutex};
      if (!out) {
        ++failures;
        if (first_error.empty())
          first_error = sa::message_of(out.error());
        continue;
      }
      latencies_ms.push_back(ms);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(worker);
  for (auto& t : pool)
    t.join();
  const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    if (latencies_ms.empty())
      return 0.0;
    auto idx = static_cast<std::size_t>(p * static_cast<double>(latencies_ms.size() - 1));
    return latencies_ms[idx];
  };
  std::printf("admitted=%zu failed=%d seconds=%.2f admissions_per_s=%.1f p50_ms=%.2f p99_ms=%.2f\n",
              latencies_ms.size(), failures.load(), secs,
              static_cast<double>(latencies_ms.size()) / secs, pct(0.5), pct(0.99));
  if (failures > 0) {
    std::cerr << "first error: " << first_error << '\n';
    return 1;
  }
  return 0;
}
