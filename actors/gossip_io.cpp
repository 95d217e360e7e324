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
    transport_->push_pull_with(address, std::move(local), std::move(done));
  }

  void admission_with(const std::string& address, std::string request, std::string expected_peer,
                      std::function<void(caf::expected<std::string>)> done) override {
    transport_->admission_with(address, std::move(request), std::move(expected_peer),
                               std::move(done));
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

void transport_drop_counters::attach(const gossip::transport* t) {
  std::lock_guard guard{mutex_};
  if (current_ != nullptr)
    add_to(past_, drops_of(current_->stats()));
  current_ = t;
}

void transport_drop_counters::detach(const gossip::transport* t) {
  std::lock_guard guard{mutex_};
  if (current_ != t || t == nullptr)
    return;
  add_to(past_, drops_of(t->stats()));
  current_ = nullptr;
}

transport_drops transport_drop_counters::snapshot() const {
  std::lock_guard guard{mutex_};
  auto out = past_;
  if (current_ != nullptr)
    add_to(out, drops_of(current_->stats()));
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
