#include "identity/renewal.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <utility>

#include "identity/errc.hpp"
#include "proto/wire/time_text.hpp"

namespace starling::identity {

namespace {

/// The life of `leaf`: from its issue time (notBefore + clock_skew_allowance, or notBefore
/// if that is past notAfter) to its notAfter.
std::optional<std::pair<time_point, time_point>> life_of(const certificate& leaf) {
  auto from = not_before(leaf);
  auto to = not_after(leaf);
  if (!from || !to || *to <= *from)
    return std::nullopt;
  auto issued = *from + clock_skew_allowance;
  return std::pair{issued < *to ? issued : *from, *to};
}

/// "2031-05-06T07:08:09.000Z".
std::string at(time_point t) { return wire::iso8601_utc(t); }

/// The notAfter of the node's certificate (the epoch if unreadable).
time_point expiry_of(const node_credentials& creds) {
  if (creds.certs.empty())
    return {};
  auto to = not_after(creds.certs.front());
  return to ? *to : time_point{};
}

} // namespace

bool renewal_due(const certificate& leaf, time_point now) {
  auto life = life_of(leaf);
  if (!life)
    return true;
  return now >= life->first + (life->second - life->first) * 2 / 3;
}

std::chrono::nanoseconds renewal_check_period(const certificate& leaf,
                                              std::chrono::nanoseconds every) {
  using std::chrono::nanoseconds;
  auto out = every;
  if (auto life = life_of(leaf))
    out = std::min(out, std::chrono::duration_cast<nanoseconds>(life->second - life->first) / 10);
  return std::max(out, nanoseconds{std::chrono::seconds{1}});
}

renewal::renewal(std::string name, std::uint64_t seed) : name_(std::move(name)), pick_(seed) {}

renewal_effects renewal::on_check(const node_credentials& current, time_point now, bool is_issuer,
                                  bool stopped) {
  renewal_effects fx;
  if (in_flight_ || stopped || current.certs.empty() || !renewal_due(current.certs.front(), now))
    return fx;
  in_flight_ = true;
  if (is_issuer)
    fx.self_issue = true;
  else
    fx.list_issuers = true;
  return fx;
}

renewal_effects renewal::on_issuers(std::vector<std::string> issuers,
                                    const node_credentials& current, time_point now) {
  if (!in_flight_ || !asked_.empty())
    return {};
  std::erase(issuers, name_);
  std::sort(issuers.begin(), issuers.end());
  issuers.erase(std::unique(issuers.begin(), issuers.end()), issuers.end());
  if (issuers.empty())
    return fail("no issuer is alive", current, now);
  std::shuffle(issuers.begin(), issuers.end(), pick_);
  rest_ = std::move(issuers);
  return ask_next({}, current, now);
}

renewal_effects renewal::on_no_issuers(const std::string& reason, const node_credentials& current,
                                       time_point now) {
  if (!in_flight_ || !asked_.empty())
    return {};
  return fail("no member list: " + reason, current, now);
}

renewal_effects renewal::on_answer(const std::string& issuer, std::string_view answer,
                                   const node_credentials& current, time_point now,
                                   const revocation_set& revoked, std::size_t quorum) {
  if (!in_flight_ || issuer.empty() || issuer != asked_)
    return {};
  auto checked = [&]() -> caf::expected<node_credentials> {
    auto grant = decode_renewal_grant(answer);
    if (!grant)
      return grant.error();
    return accept_renewal(*grant, current, name_, now, revoked, quorum);
  }();
  if (!checked)
    return ask_next(issuer + ": " + render(checked.error()), current, now);
  asked_.clear();
  rest_.clear();
  return accept(std::move(*checked), issuer, current, now);
}

renewal_effects renewal::on_failure(const std::string& issuer, const std::string& reason,
                                    const node_credentials& current, time_point now) {
  if (!in_flight_ || issuer.empty() || issuer != asked_)
    return {};
  return ask_next(issuer + ": " + reason, current, now);
}

renewal_effects renewal::on_self_issued(caf::expected<node_credentials> creds,
                                        const std::string& issuer_node,
                                        const node_credentials& current, time_point now) {
  if (!in_flight_ || !asked_.empty())
    return {};
  if (!creds)
    return fail("cannot self-issue: " + render(creds.error()), current, now);
  return accept(std::move(*creds), issuer_node + " (self-issued)", current, now);
}

renewal_effects renewal::on_installed(const std::string& by, const caf::error& err,
                                      const node_credentials& current, time_point now) {
  if (!in_flight_)
    return {};
  if (err)
    return fail("cannot install the certificate from " + by + ": " + render(err), current, now);
  in_flight_ = false;
  renewal_effects fx;
  fx.log.push_back({log_level::info, "renewed node certificate from " + by + ", valid until " +
                                         at(expiry_of(current))});
  fx.renewed_by = by;
  return fx;
}

renewal_effects renewal::ask_next(const std::string& reason, const node_credentials& current,
                                  time_point now) {
  if (rest_.empty()) {
    asked_.clear();
    return fail(reason, current, now);
  }
  renewal_effects fx;
  auto issuer = std::move(rest_.front());
  rest_.erase(rest_.begin());
  if (!reason.empty())
    fx.log.push_back({log_level::debug, "renewal by " + reason + "; asking " + issuer});
  auto csr = current.certs.empty()
                 ? caf::expected<certificate_request>{make_error(errc::bad_request, "no chain")}
                 : make_csr(current.key, current.bundle.mesh(), name_);
  auto bytes = csr ? encode(renewal_request{name_, std::move(*csr), current.certs})
                   : caf::expected<std::string>{csr.error()};
  if (!bytes) {
    asked_.clear();
    rest_.clear();
    auto failed = fail("cannot make the request: " + render(bytes.error()), current, now);
    failed.log.insert(failed.log.begin(), fx.log.begin(), fx.log.end());
    return failed;
  }
  asked_ = issuer;
  fx.ask = renewal_ask{std::move(issuer), std::move(*bytes)};
  return fx;
}

renewal_effects renewal::accept(node_credentials creds, std::string by,
                                const node_credentials& current, time_point now) {
  auto until = creds.certs.empty() ? caf::expected<time_point>{make_error(errc::bad_request)}
                                   : not_after(creds.certs.front());
  if (!until || (*until <= expiry_of(current) && renewal_due(creds.certs.front(), now)))
    return fail("the certificate from " + by + " would expire at " +
                    (until ? at(*until) : std::string{"?"}) +
                    ", no later than this one: its issuer certificate expires first",
                current, now);
  renewal_effects fx;
  fx.install = renewal_install{std::move(creds), std::move(by)};
  return fx;
}

renewal_effects renewal::fail(const std::string& reason, const node_credentials& current,
                              time_point now) {
  in_flight_ = false;
  asked_.clear();
  rest_.clear();
  renewal_effects fx;
  const auto until = expiry_of(current);
  if (now >= until) {
    fx.log.push_back({log_level::error,
                      "node certificate expired at " + at(until) +
                          ": peers refuse this node; it cannot renew any more: restart it with a "
                          "new join token (--token) (" +
                          reason + ")"});
    return fx;
  }
  fx.log.push_back(
      {log_level::warn,
       "cannot renew the node certificate: " + reason + "; retrying; it expires at " + at(until) +
           " (" +
           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(until - now).count()) +
           "s left)"});
  return fx;
}

} // namespace starling::identity
