#include "actors/gossip_io.hpp"

#include "gossip/errc.hpp"

namespace starling::actors {

namespace {

/// gossip_io over the Asio transport. Destroying it stops the transport thread.
class transport_io final : public gossip_io {
public:
  explicit transport_io(std::unique_ptr<gossip::transport> t) : transport_(std::move(t)) {
  }

  ~transport_io() override {
    transport_->stop();
  }

  std::string advertise_address() const override {
    return transport_->advertise_address();
  }

  std::uint16_t port() const override {
    return transport_->port();
  }

  void send(const std::string& address, const gossip::packet& msg) override {
    transport_->send(address, msg);
  }

  void push_pull_with(const std::string& address, gossip::push_pull local,
                      std::function<void(caf::expected<gossip::push_pull>)> done) override {
    transport_->push_pull_with(address, std::move(local), std::move(done));
  }

  void admission_with(const std::string& address, std::string request,
                      std::string expected_peer,
                      std::function<void(caf::expected<std::string>)> done) override {
    transport_->admission_with(address, std::move(request), std::move(expected_peer),
                               std::move(done));
  }

private:
  /// Never null.
  std::unique_ptr<gossip::transport> transport_;
};

} // namespace

void gossip_io::admission_with(const std::string&, std::string, std::string,
                               std::function<void(caf::expected<std::string>)> done) {
  done(gossip::make_error(gossip::errc::invalid_field, "this network does not forward admissions"));
}

gossip_io_factory make_transport_io(gossip::transport_config cfg) {
  return [cfg = std::move(cfg)](gossip::transport_callbacks cbs)
           -> caf::expected<std::unique_ptr<gossip_io>> {
    auto t = gossip::transport::start(cfg, std::move(cbs));
    if (!t)
      return t.error();
    return std::unique_ptr<gossip_io>{std::make_unique<transport_io>(std::move(*t))};
  };
}

} // namespace starling::actors
