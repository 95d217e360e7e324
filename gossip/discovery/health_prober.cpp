// The health prober's Asio side. One io_context runs on one thread; every probe (probe_op)
// lives on it: its socket, its timer and its `finished_` flag are touched only there, so a
// probe ends exactly once whichever of connect, read, timeout or stop comes first. A gRPC
// check's HTTP/2 exchange is proxy::grpc_health_call (pure); this side moves its bytes. Other
// threads share only `core::mutex` (running flag, the set of probes in flight) and the
// atomic counters.
//
// Lifetime: stop() clears the running flag under the mutex (so no probe is added after it),
// posts a handler that ends every probe in flight with "prober stopped", drops the work
// guard and joins the thread: io_context::run() returns once the aborted completions have
// run, so no handler and no callback is left behind.
#include "gossip/discovery/health_prober.hpp"

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <spdlog/spdlog.h>

#include "gossip/errc.hpp"
#include "proto/wire/address.hpp"
#include "proxy/grpc_health.hpp"

namespace starling::gossip::discovery {

namespace {

using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

class probe_op;

/// What the probes share with the prober: its io_context, counters and bookkeeping.
struct core {
  core(health_prober_counters& counters, std::size_t max_in_flight)
      : counters(counters), max_in_flight(max_in_flight) {}

  health_prober_counters& counters;
  const std::size_t max_in_flight;
  asio::io_context io;
  /// Held while running, so run() waits for work; reset by stop(). Prober threads only
  /// under `lifecycle`.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  /// Id of the running I/O thread (read by stop() without the lifecycle lock).
  std::atomic<std::thread::id> thread_id{};
  /// Serializes start() and stop() (never taken by the I/O thread).
  std::mutex lifecycle;
  /// Guards `running` and `ops`.
  mutable std::mutex mutex;
  /// probe() may add probes. False before start() and from the moment stop() begins.
  bool running = false;
  /// The probes in flight: accepted by probe(), not yet finished. size() <= max_in_flight.
  std::unordered_set<std::shared_ptr<probe_op>> ops;
};

/// Calls `done` with `result`, keeping an exception inside.
void deliver(const probe_callback& done, probe_result result) {
  if (!done)
    return;
  try {
    done(std::move(result));
  } catch (const std::exception& e) {
    spdlog::warn("health prober: result callback threw: {}", e.what());
  } catch (...) {
    spdlog::warn("health prober: result callback threw");
  }
}

/// "connection refused", "connection reset", or "<what> failed: <system text>".
std::string error_text(std::string_view what, const asio::error_code& ec) {
  if (ec == asio::error::connection_refused)
    return "connection refused";
  if (ec == asio::error::connection_reset)
    return "connection reset";
  if (ec == asio::error::broken_pipe)
    return "connection closed by the peer";
  return std::string{what} + " failed: " + ec.message();
}

/// One TCP, HTTP or gRPC check of one instance. Lives on the I/O thread; owned by the handlers
/// waiting for it and, until it finishes, by core::ops.
class probe_op : public std::enable_shared_from_this<probe_op> {
public:
  probe_op(core& c, std::string host, std::uint16_t port, const health_check_spec& spec,
           probe_callback done)
      : core_(c), host_(std::move(host)), port_(port), spec_(spec), done_(std::move(done)),
        socket_(c.io), timer_(c.io), started_(clock_type::now()) {}

  /// Starts connecting and arms the timeout (I/O thread).
  void start() {
    if (finished_)
      return; // stop() came first
    if (auto err = check_health_spec(spec_)) {
      finish(false, "invalid check: " + render(err));
      return;
    }
    std::string_view host = host_;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    asio::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) {
      finish(false, "host is not an IP address: " + std::string{host.substr(0, 64)});
      return;
    }
    timer_.expires_after(spec_.timeout);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& wait_ec) {
      if (wait_ec)
        return; // cancelled: the probe ended first
      self->finish(false, "timed out after " + health_duration_text(self->spec_.timeout), true);
    });
    socket_.async_connect(tcp::endpoint{address, port_},
                          [self = shared_from_this()](const asio::error_code& connect_ec) {
                            self->on_connect(connect_ec);
                          });
  }

  /// Ends the probe once: closes the socket, counts, calls back (I/O thread).
  void finish(bool ok, std::string text, bool timed_out = false, bool inconclusive = false) {
    if (finished_)
      return;
    finished_ = true;
    asio::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
    auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - started_);
    if (ok) {
      ++core_.counters.probes_ok;
    } else {
      ++core_.counters.probes_failed;
      if (timed_out)
        ++core_.counters.probes_timed_out;
      spdlog::debug("health prober: {} check of {} failed: {}", to_string(spec_.kind),
                    wire::join_host_port(host_, port_), text);
    }
    auto done = std::move(done_);
    done_ = nullptr;
    {
      // Out of the set before the callback, so that it may start the next probe at once.
      std::lock_guard guard{core_.mutex};
      core_.ops.erase(shared_from_this());
    }
    deliver(done, probe_result{ok, bounded_result_text(text), took, inconclusive});
  }

private:
  void on_connect(const asio::error_code& ec) {
    if (finished_)
      return;
    if (ec) {
      finish(false, error_text("connect", ec));
      return;
    }
    if (spec_.kind == health_check_kind::tcp) {
      finish(true, "connected");
      return;
    }
    if (spec_.kind == health_check_kind::grpc) {
      grpc_ = std::make_unique<proxy::grpc_health_call>(
          wire::join_host_port(host_, port_), spec_.grpc_service,
          std::chrono::duration_cast<std::chrono::milliseconds>(spec_.timeout));
      response_.resize(read_chunk_bytes);
      grpc_step();
      if (!finished_)
        grpc_read();
      return;
    }
    request_ = "GET " + spec_.path + " HTTP/1.1\r\nHost: " + wire::join_host_port(host_, port_) +
               "\r\nUser-Agent: starling-health/1\r\nConnection: close\r\n\r\n";
    asio::async_write(socket_, asio::buffer(request_),
                      [self = shared_from_this()](const asio::error_code& write_ec, std::size_t) {
                        if (self->finished_)
                          return;
                        if (write_ec) {
                          self->finish(false, error_text("write", write_ec));
                          return;
                        }
                        self->response_.resize(health_prober::max_response_bytes);
                        self->read_some();
                      });
  }

  void read_some() {
    auto room = response_.size() - filled_;
    socket_.async_read_some(asio::buffer(response_.data() + filled_, room),
                            [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                              self->on_read(ec, n);
                            });
  }

  void on_read(const asio::error_code& ec, std::size_t n) {
    if (finished_)
      return;
    filled_ += n;
    auto scan = scan_http_status_line(std::string_view{response_.data(), filled_});
    using outcome = http_status_scan::outcome;
    if (scan.result == outcome::complete) {
      finish(http_status_passes(scan.status, spec_.expected_status),
             http_status_text(scan.status, spec_.expected_status));
      return;
    }
    if (scan.result == outcome::malformed || filled_ >= response_.size()) {
      finish(false, "malformed response");
      return;
    }
    if (ec == asio::error::eof) {
      finish(false, filled_ == 0 ? "connection closed without a response"
                                 : "connection closed before the status line");
      return;
    }
    if (ec) {
      finish(false, error_text("read", ec));
      return;
    }
    read_some();
  }

  /// gRPC: ends the probe on the call's verdict, else writes what the call has to send
  /// (one write at a time; what comes meanwhile goes out after it).
  void grpc_step() {
    if (finished_)
      return;
    if (const auto& v = grpc_->verdict()) {
      finish(v->ok, v->text);
      return;
    }
    if (writing_ || !grpc_->wants_write())
      return;
    request_.clear();
    grpc_->take_output(request_);
    writing_ = true;
    asio::async_write(socket_, asio::buffer(request_),
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                        self->writing_ = false;
                        if (self->finished_)
                          return;
                        if (ec) {
                          self->finish(false, error_text("write", ec));
                          return;
                        }
                        self->grpc_step();
                      });
  }

  /// gRPC: reads what the instance sends into `response_` and feeds it to the call.
  void grpc_read() {
    socket_.async_read_some(
        asio::buffer(response_),
        [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
          if (self->finished_)
            return;
          if (n > 0)
            self->grpc_->receive(std::span<const char>{self->response_.data(), n});
          if (ec == asio::error::eof)
            self->grpc_->on_connection_closed();
          else if (ec && !self->grpc_->verdict())
            self->finish(false, error_text("read", ec));
          self->grpc_step();
          if (!self->finished_)
            self->grpc_read();
        });
  }

  /// Bytes a gRPC check reads at once (its session's windows bound what the instance may
  /// send).
  static constexpr std::size_t read_chunk_bytes = 16 * 1024;

  core& core_;
  std::string host_;
  std::uint16_t port_;
  health_check_spec spec_;
  /// Empty once called.
  probe_callback done_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  clock_type::time_point started_;
  /// The HTTP request, or the gRPC call's output being written; alive until its write
  /// completes.
  std::string request_;
  /// gRPC: the call (null for the other kinds), and whether a write is in flight.
  std::unique_ptr<proxy::grpc_health_call> grpc_;
  bool writing_ = false;
  /// The response read so far: max_response_bytes of room, `filled_` of them used (gRPC:
  /// the read buffer).
  std::string response_;
  std::size_t filled_ = 0;
  /// Set by finish(): later completions do nothing.
  bool finished_ = false;
};

} // namespace

struct health_prober::state : core {
  using core::core;
};

health_prober::health_prober(std::size_t max_in_flight)
    : max_in_flight_(max_in_flight == 0 ? 1 : max_in_flight),
      state_(std::make_unique<state>(counters_, max_in_flight_)) {}

health_prober::~health_prober() { stop(); }

bool health_prober::start() {
  auto& s = *state_;
  std::lock_guard life{s.lifecycle};
  {
    std::lock_guard guard{s.mutex};
    if (s.running)
      return true;
  }
  if (s.thread.joinable())
    s.thread.join();
  s.io.restart();
  s.work.emplace(asio::make_work_guard(s.io));
  try {
    s.thread = std::thread{[&s] {
      s.thread_id.store(std::this_thread::get_id());
      for (;;) {
        try {
          s.io.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("health prober: handler threw: {}", e.what());
        } catch (...) {
          spdlog::error("health prober: handler threw");
        }
      }
    }};
  } catch (const std::system_error& e) {
    spdlog::error("health prober: cannot start its thread: {}", e.what());
    s.work.reset();
    return false;
  }
  std::lock_guard guard{s.mutex};
  s.running = true;
  return true;
}

void health_prober::stop() {
  auto& s = *state_;
  if (s.thread_id.load() == std::this_thread::get_id()) {
    spdlog::error("health prober: stop() called from a probe callback; ignored");
    return;
  }
  std::lock_guard life{s.lifecycle};
  bool was_running = false;
  {
    std::lock_guard guard{s.mutex};
    was_running = std::exchange(s.running, false);
  }
  if (was_running) {
    asio::post(s.io, [&s] {
      std::vector<std::shared_ptr<probe_op>> ops;
      {
        std::lock_guard guard{s.mutex};
        ops.assign(s.ops.begin(), s.ops.end());
      }
      for (auto& op : ops)
        op->finish(false, "prober stopped", false, true);
    });
  }
  s.work.reset();
  if (s.thread.joinable())
    s.thread.join();
  s.thread_id.store(std::thread::id{});
}

void health_prober::probe(std::string host, std::uint16_t port, const health_check_spec& spec,
                          probe_callback done) {
  auto& s = *state_;
  std::unique_lock guard{s.mutex};
  if (!s.running) {
    guard.unlock();
    deliver(done, probe_result{false, "prober stopped", {}, true});
    return;
  }
  if (s.ops.size() >= s.max_in_flight) {
    ++counters_.probes_refused_busy;
    // Posted, not called here: the caller may hold its own locks, and callbacks of a
    // running prober always come from its thread.
    asio::post(s.io, [done = std::move(done)] {
      deliver(done, probe_result{false, "too many checks in flight", {}, true});
    });
    return;
  }
  auto op = std::make_shared<probe_op>(s, std::move(host), port, spec, std::move(done));
  s.ops.insert(op);
  ++counters_.probes_started;
  // Posted under the mutex: stop() cannot slip between the insert and the post, so its
  // shutdown handler (posted after) finds this probe.
  asio::post(s.io, [op] { op->start(); });
}

std::size_t health_prober::in_flight() const {
  std::lock_guard guard{state_->mutex};
  return state_->ops.size();
}

} // namespace starling::gossip::discovery
