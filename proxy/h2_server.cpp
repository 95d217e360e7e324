#include "proxy/h2_server.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace starling::proxy {

namespace {

constexpr std::size_t read_buffer_bytes = 16 * 1024;
/// An x-starling-instance value longer than this is refused (instance ids are short).
constexpr std::size_t max_instance_bytes = 256;

std::error_code sys(int e) { return {e, std::system_category()}; }

} // namespace

// ---------------------------------------------------------------------------- h2_server

h2_server::h2_server(std::shared_ptr<net::connection> conn, options opts, name_check check,
                     stream_fn on_stream)
    : conn_(std::move(conn)), opts_(opts), check_(check), on_stream_(std::move(on_stream)),
      session_(h2::role::server, opts.limits, *this), rbuf_(read_buffer_bytes),
      idle_timer_(conn_->io()) {}

h2_server::~h2_server() {
  if (conn_)
    conn_->close();
}

void h2_server::start(std::string_view first) {
  arm_idle();
  feed({first.data(), first.size()});
  if (!failed_ && is_open())
    read();
}

void h2_server::close() {
  if (closed_)
    return;
  closed_ = failed_ = true;
  idle_timer_.cancel();
  conn_->close();
  std::vector<std::shared_ptr<h2_server_stream>> live;
  for (auto& [id, s] : streams_)
    if (auto sp = s->weak_from_this().lock())
      live.push_back(std::move(sp));
  for (auto& s : live)
    s->on_reset();
}

h2_server_stream* h2_server::stream_of(std::int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

void h2_server::feed(std::span<const char> bytes) {
  const auto e = session_.receive(bytes);
  if (e == h2::errc::protocol || e == h2::errc::internal || e == h2::errc::closed) {
    // The output holds a GOAWAY: send it, then close.
    failed_ = true;
    flush();
    return;
  }
  schedule_flush();
}

void h2_server::read() {
  auto self = shared_from_this();
  conn_->read_some(rbuf_.data(), rbuf_.size(), [self](const std::error_code& ec, std::size_t n) {
    if (ec) {
      self->close();
      return;
    }
    self->feed({self->rbuf_.data(), n});
    if (!self->failed_ && self->is_open())
      self->read();
  });
}

void h2_server::schedule_flush() {
  if (flush_scheduled_ || writing_ || !is_open())
    return;
  flush_scheduled_ = true;
  auto self = shared_from_this();
  conn_->io().defer([self] { self->flush(); });
}

void h2_server::flush() {
  flush_scheduled_ = false;
  if (writing_ || !is_open())
    return;
  // Streams whose response ended before their request did: reset (NO_ERROR) once the
  // response has left their buffer, so that the peer stops sending (RFC 9113 8.1).
  std::erase_if(finishing_, [this](std::int32_t id) {
    if (session_.buffered(id) != 0)
      return false;
    (void)session_.reset(id, h2::no_error);
    return true;
  });
  out_.clear();
  session_.take_output(out_);
  if (out_.empty()) {
    if (failed_ || session_.is_done())
      close();
    return;
  }
  writing_ = true;
  auto self = shared_from_this();
  conn_->write(out_.data(), out_.size(), [self](const std::error_code& ec, std::size_t) {
    self->writing_ = false;
    if (ec) {
      self->close();
      return;
    }
    if (self->failed_) {
      self->close();
      return;
    }
    // The connection took the bytes: the streams that wait for room may go on.
    auto waiters = std::move(self->room_waiters_);
    self->room_waiters_.clear();
    for (auto& w : waiters)
      if (auto s = w.lock())
        s->on_room();
    if (self->session_.wants_write() || !self->finishing_.empty())
      self->schedule_flush();
    else if (self->session_.is_done())
      self->close();
  });
}

void h2_server::wait_room(const std::shared_ptr<h2_server_stream>& s) {
  room_waiters_.push_back(s);
}

void h2_server::arm_idle() {
  std::weak_ptr<h2_server> weak = shared_from_this();
  idle_timer_.start(opts_.idle_timeout, [weak] {
    auto self = weak.lock();
    if (!self || self->failed_)
      return;
    if (self->session_.active_streams() == 0 && self->opened_ == self->opened_seen_) {
      // Idle for a whole period: the peer's pool closes first (it keeps a connection
      // idle_timeout at most); this bounds a connection whose peer went quiet.
      self->session_.goaway(h2::no_error);
      self->failed_ = true;
      self->flush();
      return;
    }
    self->opened_seen_ = self->opened_;
    self->arm_idle();
  });
}

void h2_server::on_head(std::int32_t id, const h2::head& h) {
  ++opened_;
  static constexpr std::string_view service_field = "x-starling-service";
  static constexpr std::string_view instance_field = "x-starling-instance";
  std::string_view service, instance;
  int services = 0;
  kept_.clear();
  for (const auto& f : h.fields) {
    if (f.name == service_field) {
      service = f.value;
      ++services;
    } else if (f.name == instance_field) {
      instance = f.value;
    } else {
      kept_.push_back(f);
    }
  }
  if (services != 1 || !check_(service) || instance.size() > max_instance_bytes) {
    (void)session_.reset(id, h2::protocol_error);
    return;
  }
  auto s = std::make_shared<h2_server_stream>(shared_from_this(), id, opts_.http);
  h2::head request = h;
  request.fields = kept_;
  forward_options fo;
  fo.proto = {};      // the caller's node set x-forwarded-proto
  fo.add_via = false; // the session adds this hop's via when it forwards the request
  const auto written = h2::to_h1_request(request, fo, s->in_);
  if (written.error != h2::errc::ok) {
    (void)session_.reset(id, h2::protocol_error);
    return;
  }
  s->in_total_ = s->in_.size();
  s->chunked_in_ = written.body == body_kind::chunked;
  s->parser_.expect_response_to(h.method);
  streams_[id] = s.get();
  on_stream_(std::move(s), std::string{service}, std::string{instance});
}

void h2_server::on_data(std::int32_t id, std::span<const char> bytes) {
  if (auto* s = stream_of(id))
    s->on_data(bytes);
  else
    session_.consumed(id, bytes.size()); // a stream nobody reads: credit it back
}

void h2_server::on_trailers(std::int32_t id, std::span<const h2::field> fields) {
  if (auto* s = stream_of(id))
    s->on_trailers(fields);
}

void h2_server::on_end(std::int32_t id) {
  if (auto* s = stream_of(id))
    s->on_end();
}

void h2_server::on_reset(std::int32_t id, std::uint32_t /*code*/) {
  if (auto* s = stream_of(id))
    s->on_reset();
}

void h2_server::on_close(std::int32_t id) {
  std::erase(finishing_, id);
  if (auto* s = stream_of(id)) {
    s->attached_ = false;
    streams_.erase(id);
  }
}

// ---------------------------------------------------------------------------- streams

h2_server_stream::h2_server_stream(std::shared_ptr<h2_server> server, std::int32_t id,
                                   http1_limits limits)
    : server_(std::move(server)), id_(id), parser_(direction::response, limits) {}

h2_server_stream::~h2_server_stream() {
  close();
  auto it = server_->streams_.find(id_);
  if (it != server_->streams_.end() && it->second == this)
    server_->streams_.erase(it);
}

void h2_server_stream::complete(io_handler h, std::error_code ec, std::size_t n) {
  server_->conn_->io().defer([h = std::move(h), ec, n] { h(ec, n); });
}

void h2_server_stream::read_some(void* buf, std::size_t len, io_handler handler) {
  if (!open_ || read_handler_ || len == 0) {
    complete(std::move(handler), sys(open_ ? EINVAL : EBADF), 0);
    return;
  }
  read_buf_ = static_cast<char*>(buf);
  read_len_ = len;
  read_handler_ = std::move(handler);
  fill_read();
}

void h2_server_stream::fill_read() {
  if (!read_handler_)
    return;
  std::error_code ec;
  std::size_t n = 0;
  if (in_pos_ < in_.size()) {
    n = std::min(read_len_, in_.size() - in_pos_);
    std::memcpy(read_buf_, in_.data() + in_pos_, n);
    in_pos_ += n;
    in_taken_ += n;
    if (in_pos_ == in_.size()) {
      in_.clear();
      in_pos_ = 0;
    }
    // Payload that has left for the app reopens the peer's window.
    std::size_t credit = 0;
    while (!credits_.empty() && credits_.front().first <= in_taken_) {
      credit += credits_.front().second;
      credits_.pop_front();
    }
    if (credit > 0 && attached_) {
      server_->session_.consumed(id_, credit);
      server_->schedule_flush();
    }
  } else if (reset_) {
    ec = sys(ECONNRESET);
  } else if (peer_ended_) {
    ec = net::errc::eof;
  } else {
    return; // wait for on_data, on_end or on_reset
  }
  read_buf_ = nullptr;
  complete(std::exchange(read_handler_, nullptr), ec, n);
}

void h2_server_stream::on_data(std::span<const char> bytes) {
  const auto before = in_.size();
  if (chunked_in_)
    append_chunk(in_, bytes);
  else
    in_.append(bytes.data(), bytes.size());
  in_total_ += in_.size() - before;
  credits_.emplace_back(in_total_, bytes.size());
  fill_read();
}

void h2_server_stream::on_trailers(std::span<const h2::field> fields) {
  if (!chunked_in_)
    return; // a body with a length has nowhere to carry trailers in HTTP/1.1
  const auto before = in_.size();
  if (h2::write_last_chunk(fields, in_) != h2::errc::ok)
    in_.append(last_chunk);
  in_total_ += in_.size() - before;
  chunked_in_ = false; // the last chunk is written
}

void h2_server_stream::on_end() {
  if (chunked_in_) {
    in_.append(last_chunk);
    in_total_ += last_chunk.size();
    chunked_in_ = false;
  }
  peer_ended_ = true;
  fill_read();
}

void h2_server_stream::on_reset() {
  reset_ = true;
  attached_ = false;
  fill_read();
  if (write_handler_)
    fail_write(sys(ECONNRESET));
}

void h2_server_stream::write(const void* buf, std::size_t len, io_handler handler, completion how) {
  if (!open_ || reset_ || write_handler_ || response_done_) {
    complete(std::move(handler), sys(reset_ ? ECONNRESET : EBADF), 0);
    return;
  }
  write_buf_ = static_cast<const char*>(buf);
  write_len_ = len;
  write_done_ = 0;
  write_handler_ = std::move(handler);
  pump_write(how == completion::inline_when_done);
}

void h2_server_stream::pump_write(bool may_inline) {
  auto& session = server_->session_;
  const std::size_t cap = session.config().max_buffered_bytes;
  while (write_done_ < write_len_) {
    if (reset_ || !attached_) {
      fail_write(sys(ECONNRESET));
      return;
    }
    // Whole slices at most the stream's buffer: every payload in one fits (de-chunking
    // only shrinks it), so a slice is never half sent.
    const std::size_t slice = std::min(write_len_ - write_done_, cap);
    if (session.room(id_) < slice) {
      server_->wait_room(shared_from_this());
      server_->schedule_flush();
      return;
    }
    std::span<const char> in{write_buf_ + write_done_, slice};
    // Until the parser wants more: its `complete` step comes from a call after the body's
    // last bytes, with nothing left to parse.
    while (true) {
      auto r = parser_.parse(in);
      in = in.subspan(r.consumed);
      write_done_ += r.consumed;
      bool ok = true;
      switch (r.status) {
      case parse_status::head: {
        const auto& h = parser_.head();
        forward_options fo;
        fo.proto = {};
        fo.add_via = false; // the session's forwarding added this hop's via
        const bool final = !h.is_interim();
        const bool no_body = final && h.body == body_kind::none;
        ok = h2::to_h2_response(h, fo, fields_, session.config().max_header_list_bytes) ==
                 h2::errc::ok &&
             session.submit_response(id_, fields_.fields, no_body) == h2::errc::ok;
        if (ok && final) {
          chunked_out_ = h.body == body_kind::chunked;
          dechunker_.reset();
          response_done_ = no_body;
        }
        break;
      }
      case parse_status::body:
        ok = send_body(r.body);
        break;
      case parse_status::complete:
        if (!parser_.head().is_interim() && !response_done_) {
          ok = session.end_stream(id_) == h2::errc::ok;
          response_done_ = true;
        }
        break;
      case parse_status::need_more:
        break;
      case parse_status::upgrade:
      case parse_status::error:
        ok = false;
        break;
      }
      if (!ok) {
        fail_write(sys(EPROTO));
        return;
      }
      if (r.status == parse_status::need_more)
        break;
    }
    if (!in.empty()) { // bytes after the response: not something a stream can carry
      fail_write(sys(EPROTO));
      return;
    }
  }
  server_->schedule_flush();
  auto h = std::exchange(write_handler_, nullptr);
  if (may_inline)
    h({}, write_len_);
  else
    complete(std::move(h), {}, write_len_);
}

bool h2_server_stream::send_body(std::span<const char> bytes) {
  auto& session = server_->session_;
  if (!chunked_out_)
    return bytes.empty() || session.send_data(id_, bytes) == h2::errc::ok;
  while (!bytes.empty()) {
    auto step = dechunker_.next(bytes);
    if (dechunker_.has_failed() || (step.consumed == 0 && !dechunker_.is_done()))
      return false;
    if (!step.payload.empty() && session.send_data(id_, step.payload) != h2::errc::ok)
      return false;
    bytes = bytes.subspan(step.consumed);
    if (step.consumed == 0)
      break; // done: the parser gives nothing after the body's end
  }
  return true;
}

void h2_server_stream::on_room() {
  if (write_handler_)
    pump_write(false);
}

void h2_server_stream::fail_write(std::error_code ec) {
  if (attached_ && !reset_)
    (void)server_->session_.reset(id_, h2::internal_error);
  server_->schedule_flush();
  if (write_handler_)
    complete(std::exchange(write_handler_, nullptr), ec, 0);
}

void h2_server_stream::shutdown_send() {
  if (attached_ && !response_done_) {
    (void)server_->session_.reset(id_, h2::cancel);
    server_->schedule_flush();
  }
}

void h2_server_stream::close() {
  if (!open_)
    return;
  open_ = false;
  if (attached_ && server_->is_open()) {
    if (!response_done_)
      (void)server_->session_.reset(id_, h2::cancel);
    else if (!peer_ended_)
      server_->finishing_.push_back(id_); // RST_STREAM(NO_ERROR) after the response
    server_->schedule_flush();
  }
  if (read_handler_)
    complete(std::exchange(read_handler_, nullptr), sys(ECANCELED), 0);
  if (write_handler_)
    complete(std::exchange(write_handler_, nullptr), sys(ECANCELED), 0);
}

void h2_server_stream::close_connection() {
  auto server = server_; // close() may end the last reference but this one
  server->close();
}

} // namespace starling::proxy
