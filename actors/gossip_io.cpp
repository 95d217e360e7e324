#include "actors/gossip_io.hpp"

#include "gossip/errc.hpp"

namespace starling::actors {

namespace {

/// gossip_io over the Asio transport. Destroying it stops the transport thread.
class transport_io final : public gossip_io {
public:
  transport_io(std::unique_ptr<gossip::transport> t, std::shared_ptr<transport_drop_counters> drops)
      : transport_(std::move(t)), drops_(std::move(drops)) {
    if (drops_)
      drops_->attach(transport_.get());
  }

  ~transport_io() override {
    transport_->stop();
    if (drops_)
      drops_->detach(transport_.get());
  }

  std::string advertise_address() const override { return transport_->advertise_address(); }

  std::uint16_t port() const override { return transport_->port(); }

  void send(const std::string& address, const gossip::packet& msg) override {
    transport_->send(address, msg);
  }

  void push_pull_with(const std::string& address, gossip::push_pull local,
                      std::function<void(caf::expected<gossip::push_pull>)> done) override {
    gossip::push_pull_with(*transport_, address, std::move(local), std::move(done));
  }

  void admission_with(const std::string& address, std::string request, std::string expected_peer,
                      std::function<void(caf::expected<std::string>)> done) override {
    gossip::admission_with(*transport_, address, std::move(request), std::move(expected_peer),
                           std::move(done));
  }

  void request(const std::string& address, gossip::request_type type, std::string body,
               std::string expected_peer,
               std::function<void(caf::expected<std::string>)> done) override {
    transport_->request(address, type, std::move(body), std::move(expected_peer),
                        [done = std::move(done)](caf::expected<gossip::request_answer> res) {
                          if (!res)
                            done(std::move(res.error()));
                          else
                            done(std::move(res->body));
                        });
  }

private:
  /// Never null.
  std::unique_ptr<gossip::transport> transport_;
  /// Where the transport's drops are summed; may be null.
  std::shared_ptr<transport_drop_counters> drops_;
};

transport_drops drops_of(const gossip::transport_stats& s) {
  return {s.dropped_malformed.load(std::memory_order_relaxed),
          s.dropped_oversized.load(std::memory_order_relaxed),
          s.binding_refused.load(std::memory_order_relaxed)};
}

/// Every counter of `s`, in declaration order.
counter_list counters_of(const gossip::transport_stats& s) {
  auto v = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  return {{"datagrams_in", v(s.datagrams_in)},
          {"datagrams_out", v(s.datagrams_out)},
          {"bytes_in", v(s.bytes_in)},
          {"bytes_out", v(s.bytes_out)},
          {"dropped_malformed", v(s.dropped_malformed)},
          {"dropped_refused", v(s.dropped_refused)},
          {"dropped_oversized", v(s.dropped_oversized)},
          {"send_errors", v(s.send_errors)},
          {"push_pulls_in", v(s.push_pulls_in)},
          {"push_pulls_out", v(s.push_pulls_out)},
          {"push_pull_errors", v(s.push_pull_errors)},
          {"tls_refused", v(s.tls_refused)},
          {"binding_refused", v(s.binding_refused)},
          {"admissions_in", v(s.admissions_in)},
          {"admissions_out", v(s.admissions_out)},
          {"anonymous_refused", v(s.anonymous_refused)},
          {"budget_refused", v(s.budget_refused)},
          {"source_refused", v(s.source_refused)},
          {"connections_refused", v(s.connections_refused)},
          {"inbound_buffered", v(s.inbound_buffered)},
          {"requests_in", v(s.requests_in)},
          {"requests_out", v(s.requests_out)},
          {"requests_failed", v(s.requests_failed)},
          {"unknown_type_refused", v(s.unknown_type_refused)},
          {"type_limit_refused", v(s.type_limit_refused)},
          {"handler_refused", v(s.handler_refused)}};
}

/// Adds `more` to `sum` entry by entry (both from counters_of; an empty sum takes `more`).
void add_all(counter_list& sum, const counter_list& more) {
  if (sum.empty()) {
    sum = more;
    return;
  }
  for (std::size_t i = 0; i < sum.size() && i < more.size(); ++i)
    sum[i].second += more[i].second;
}

void add_to(transport_drops& sum, const transport_drops& more) {
  sum.malformed += more.malformed;
  sum.oversized += more.oversized;
  sum.binding_refused += more.binding_refused;
}

} // namespace

void gossip_io::admission_with(const std::string&, std::string, std::string,
                               std::function<void(caf::expected<std::string>)> done) {
  done(gossip::make_error(gossip::errc::invalid_field, "this network does not forward admissions"));
}

void gossip_io::request(const std::string&, gossip::request_type, std::string, std::string,
                        std::function<void(caf::expected<std::string>)> done) {
  done(gossip::make_error(gossip::errc::invalid_field, "this network carries no such request"));
}

void transport_drop_counters::attach(const gossip::transport* t) {
  std::lock_guard guard{mutex_};
  if (current_ != nullptr) {
    add_to(past_, drops_of(current_->stats()));
    add_all(past_all_, counters_of(current_->stats()));
  }
  current_ = t;
}

void transport_drop_counters::detach(const gossip::transport* t) {
  std::lock_guard guard{mutex_};
  if (current_ != t || t == nullptr)
    return;
  add_to(past_, drops_of(t->stats()));
  add_all(past_all_, counters_of(t->stats()));
  current_ = nullptr;
}

transport_drops transport_drop_counters::snapshot() const {
  std::lock_guard guard{mutex_};
  auto out = past_;
  if (current_ != nullptr)
    add_to(out, drops_of(current_->stats()));
  return out;
}

counter_list transport_drop_counters::totals() const {
  std::lock_guard guard{mutex_};
  auto out = counters_of(gossip::transport_stats{});
  add_all(out, past_all_);
  for (auto& [name, value] : out) // the gauge of stopped transports is meaningless
    if (name == "inbound_buffered")
      value = 0;
  if (current_ != nullptr)
    add_all(out, counters_of(current_->stats()));
  return out;
}

gossip_io_factory make_transport_io(gossip::transport_config cfg,
                                    std::shared_ptr<transport_drop_counters> drops) {
  return [cfg = std::move(cfg), drops = std::move(drops)](
             gossip::transport_callbacks cbs) -> caf::expected<std::unique_ptr<gossip_io>> {
    auto t = gossip::transport::start(cfg, std::move(cbs));
    if (!t)
      return t.error();
    return std::unique_ptr<gossip_io>{std::make_unique<transport_io>(std::move(*t), drops)};
  };
}

} // namespace starling::actors
