#include "proxy/h2_link.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proxy/http_text.hpp"
#include "proxy/recycling_allocator.hpp"
#include "proxy/thread_cache.hpp"

namespace starling::proxy {

namespace {

constexpr std::size_t read_buffer_bytes = 16 * 1024;
/// An x-starling-instance value longer than this is refused (instance ids are short).
constexpr std::size_t max_instance_bytes = 256;
constexpr std::string_view service_field = "x-starling-service";
constexpr std::string_view instance_field = "x-starling-instance";

std::error_code sys(int e) { return {e, std::system_category()}; }

/// A stream's buffers come from the thread's cache (a stream is made per request) and go
/// back to it unless the body grew them past these (the cache keeps at most 256 x 16 KiB of
/// input, whatever the peers send).
constexpr std::size_t cached_streams = cached_streams_per_thread;
constexpr std::size_t max_cached_input_bytes = 16 * 1024;
constexpr std::size_t max_cached_credits = 64;
using input_cache = thread_cache<std::string, cached_streams>;
using credits_cache =
    thread_cache<std::vector<std::pair<std::uint64_t, std::size_t>>, cached_streams>;
constexpr std::size_t max_cached_spans = 128;
using spans_cache = thread_cache<std::vector<header_span>, cached_streams>;

} // namespace

// ---------------------------------------------------------------------------- h2_link

h2_link::h2_link(std::shared_ptr<net::connection> conn, h2::role role, options opts)
    : conn_(std::move(conn)), server_(role == h2::role::server), opts_(opts),
      session_(role, opts.limits, *this), rbuf_(read_buffer_bytes), idle_timer_(conn_->io()) {}

h2_link::~h2_link() { conn_->close(); }

void h2_link::start(std::string_view first) {
  arm_idle();
  if (!first.empty())
    feed({first.data(), first.size()});
  else
    schedule_flush(); // a client's preface and SETTINGS
  if (!failed_ && is_open())
    read();
}

void h2_link::close() {
  if (closed_)
    return;
  closed_ = failed_ = true;
  idle_timer_.cancel();
  conn_->close();
  std::vector<std::shared_ptr<h2_stream>> live;
  streams_.for_each([&](std::int32_t, h2_stream* s) {
    if (auto sp = s->weak_from_this().lock())
      live.push_back(std::move(sp));
  });
  for (auto& s : live)
    s->on_reset(false);
}

void h2_link::go_away() {
  if (failed_ || closed_ || goaway_sent_)
    return;
  goaway_sent_ = true;
  session_.goaway(h2::no_error);
  // Once the GOAWAY is written and no stream is open, the session is done and the write's
  // completion closes the connection (flush).
  schedule_flush();
}

h2_stream* h2_link::stream_of(std::int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

void h2_link::feed(std::span<const char> bytes) {
  const auto e = session_.receive(bytes);
  after_receive();
  if (e == h2::errc::protocol || e == h2::errc::internal || e == h2::errc::closed) {
    failed_ = true;
    if (writing_ && e != h2::errc::closed) {
      // A broken connection whose earlier output is still on its way (the peer is not
      // reading it, as a flood's sender does not): a GOAWAY would only wait behind it.
      // Reset now. (`closed`, a session that ended well, may have the last answers in
      // that write: the write's completion closes the connection.)
      conn_->reset();
      close();
      return;
    }
    flush(); // the output holds a GOAWAY: send it, then close
    return;
  }
  schedule_flush();
}

void h2_link::read() {
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

void h2_link::schedule_flush() {
  if (flush_scheduled_ || writing_ || !is_open())
    return;
  flush_scheduled_ = true;
  auto self = shared_from_this();
  conn_->io().defer([self] { self->flush(); });
}

void h2_link::flush() {
  flush_scheduled_ = false;
  if (writing_ || !is_open())
    return;
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
  ++writes_;
  auto self = shared_from_this();
  conn_->write(out_.data(), out_.size(), [self](const std::error_code& ec, std::size_t) {
    self->writing_ = false;
    if (ec || self->failed_) {
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
  // Lent bytes now in out_ have left the lenders' buffers: their writes complete (a new
  // loan only schedules a flush, which waits for this write).
  if (!lenders_.empty()) {
    auto lenders = std::move(lenders_);
    lenders_.clear();
    for (auto& w : lenders)
      if (auto st = w.lock(); st && !st->on_framed())
        lenders_.push_back(std::move(w));
  }
}

void h2_link::arm_idle() {
  std::weak_ptr<h2_link> weak = shared_from_this();
  idle_timer_.start(opts_.idle_timeout, [weak] {
    auto self = weak.lock();
    if (!self || self->closed_)
      return;
    if (self->writing_ && self->writes_ == self->stuck_write_) {
      // The write pending at the last tick still is: in a whole period the peer did not
      // take one write's bytes (from a Starling node, at most its 1 MiB connection window):
      // it stopped reading, or reads too slowly to serve anyone. Its streams end at their
      // request timeout, but the connection and its queued output would stay for ever.
      // Reset: the bytes would never be read either.
      self->conn_->reset();
      self->close();
      return;
    }
    self->stuck_write_ = self->writing_ ? self->writes_ : 0;
    if (!self->failed_ && self->session_.active_streams() == 0 &&
        self->opened_ == self->opened_seen_) {
      // Idle for a whole period: say goodbye, then close (once the GOAWAY is written; the
      // timer goes on watching that write).
      self->session_.goaway(h2::no_error);
      self->failed_ = true;
      self->flush();
    }
    self->opened_seen_ = self->opened_;
    if (!self->closed_)
      self->arm_idle();
  });
}

void h2_link::on_data(std::int32_t id, std::span<const char> bytes) {
  if (auto* s = stream_of(id))
    s->on_data(bytes);
  else
    session_.consumed(id, bytes.size()); // a stream nobody reads: credit it back
}

void h2_link::on_trailers(std::int32_t id, std::span<const h2::field> fields) {
  if (auto* s = stream_of(id))
    s->on_trailers(fields);
}

void h2_link::on_end(std::int32_t id) {
  if (auto* s = stream_of(id))
    s->on_end();
}

void h2_link::on_reset(std::int32_t id, std::uint32_t code) {
  if (auto* s = stream_of(id))
    s->on_reset(code == h2::refused_stream);
}

void h2_link::on_close(std::int32_t id) {
  std::erase(finishing_, id);
  if (auto* s = stream_of(id)) {
    s->attached_ = false;
    streams_.erase(id);
  }
}

// ---------------------------------------------------------------------------- h2_server

std::shared_ptr<h2_server> h2_server::make(std::shared_ptr<net::connection> conn, options opts,
                                           name_check check, stream_fn on_stream) {
  return std::shared_ptr<h2_server>{
      new h2_server(std::move(conn), opts, check, std::move(on_stream), {})};
}

std::shared_ptr<h2_server> h2_server::make_for_app(std::shared_ptr<net::connection> conn,
                                                   options opts, std::string service,
                                                   stream_fn on_stream) {
  return std::shared_ptr<h2_server>{
      new h2_server(std::move(conn), opts, nullptr, std::move(on_stream), std::move(service))};
}

h2_server::h2_server(std::shared_ptr<net::connection> conn, options opts, name_check check,
                     stream_fn on_stream, std::string app_service)
    : h2_link(std::move(conn), h2::role::server, opts), check_(check),
      on_stream_(std::move(on_stream)), app_service_(std::move(app_service)) {
  app_ = !app_service_.empty();
}

void h2_server::on_head(std::int32_t id, const h2::head& h) {
  ++opened_;
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
  if (app_) {
    // An app names neither: its listener's service, and the balancer picks the instance.
    service = app_service_;
    instance = {};
  } else if (services != 1 || !check_(service) || instance.size() > max_instance_bytes) {
    (void)session_.reset(id, h2::protocol_error);
    return;
  }
  auto s = make_recycled<h2_stream>(shared_from_this(), id, opts_.http);
  if (h.method == "CONNECT") { // a tunnel: nghttp2 checked it has no :scheme nor :path
    s->tunnel_ = true;
    streams_[id] = s.get();
    if (app_)
      starting_.push_back(std::move(s));
    else
      on_stream_(std::move(s), service, instance);
    return;
  }
  h2::head request = h;
  request.fields = kept_;
  forward_options fo;
  fo.proto = {};      // the caller's node set x-forwarded-proto
  fo.add_via = false; // the session adds this hop's via when it forwards the request
  s->spans_ = spans_cache::take();
  const auto written = h2::to_h1_request(request, fo, s->in_, &s->spans_);
  if (written.error != h2::errc::ok) {
    (void)session_.reset(id, h2::protocol_error);
    return;
  }
  s->in_total_ = s->in_.size();
  s->head_bytes_ = s->in_.size();
  s->chunked_in_ = written.body == body_kind::chunked;
  s->server_head_request_ = h.method == "HEAD";
  streams_[id] = s.get();
  if (app_)
    starting_.push_back(std::move(s));
  else
    on_stream_(std::move(s), service, instance);
}

void h2_server::after_receive() {
  if (starting_.empty())
    return;
  starting_now_.swap(starting_); // both keep their capacity: no allocation per read
  for (auto& s : starting_now_)
    on_stream_(std::move(s), app_service_, {});
  starting_now_.clear();
}

// ---------------------------------------------------------------------------- h2_client

std::shared_ptr<h2_client> h2_client::make(std::shared_ptr<net::connection> conn, options opts,
                                           bool to_app) {
  return std::shared_ptr<h2_client>{new h2_client(std::move(conn), opts, to_app)};
}

h2_client::h2_client(std::shared_ptr<net::connection> conn, options opts, bool to_app)
    : h2_link(std::move(conn), h2::role::client, opts) {
  app_ = to_app;
}

bool h2_client::usable() const {
  return is_open() && !failed_ && session_.can_submit() &&
         session_.active_streams() + unsubmitted_ < opts_.limits.max_concurrent_streams;
}

std::shared_ptr<h2_stream> h2_client::open_stream(std::string_view service,
                                                  std::string_view instance, bool tunnel) {
  if (!usable())
    return nullptr;
  ++unsubmitted_;
  ++opened_;
  auto s = make_recycled<h2_stream>(shared_from_this(), 0, opts_.http, service, instance);
  s->tunnel_ = tunnel;
  return s;
}

void h2_client::on_head(std::int32_t id, const h2::head& h) {
  if (auto* s = stream_of(id))
    s->on_response_head(h);
}

// ---------------------------------------------------------------------------- h2_stream

h2_stream::h2_stream(std::shared_ptr<h2_link> link, std::int32_t id, http1_limits limits,
                     std::string_view service, std::string_view instance)
    : link_(std::move(link)), id_(id), client_(id == 0), in_(input_cache::take()),
      credits_(credits_cache::take()), limits_(limits) {
  in_.clear();
  credits_.clear();
  name_strings::assign(service_, service);
  name_strings::assign(instance_, instance);
}

h2_stream::~h2_stream() {
  close();
  if (in_.capacity() <= max_cached_input_bytes)
    input_cache::give(std::move(in_));
  if (credits_.capacity() <= max_cached_credits)
    credits_cache::give(std::move(credits_));
  if (spans_.capacity() != 0 && spans_.capacity() <= max_cached_spans)
    spans_cache::give(std::move(spans_));
  name_strings::give(service_);
  name_strings::give(instance_);
  if (client_ && id_ == 0)
    --static_cast<h2_client&>(*link_).unsubmitted_;
  auto it = link_->streams_.find(id_);
  if (id_ != 0 && it != link_->streams_.end() && it->second == this)
    link_->streams_.erase(it);
}

net::loop& h2_stream::io() { return link_->conn_->io(); }

bool h2_stream::take_head(http1_parser& p, parse_result& r) {
  if (head_bytes_ == 0 || in_taken_ != 0) // no head, or the session read bytes already
    return false;
  r = p.adopt_head({in_.data(), head_bytes_}, spans_);
  in_pos_ = in_taken_ = std::exchange(head_bytes_, 0);
  if (in_pos_ == in_.size()) {
    in_.clear();
    in_pos_ = 0;
  }
  return true;
}

void h2_stream::complete(io_handler h, std::error_code ec, std::size_t n) {
  link_->conn_->io().defer([h = std::move(h), ec, n] { h(ec, n); });
}

void h2_stream::read_some(void* buf, std::size_t len, io_handler handler) {
  if (!open_ || read_handler_ || len == 0) {
    complete(std::move(handler), sys(open_ ? EINVAL : EBADF), 0);
    return;
  }
  read_buf_ = static_cast<char*>(buf);
  read_len_ = len;
  read_handler_ = std::move(handler);
  fill_read();
}

void h2_stream::fill_read() {
  if (!read_handler_ || delivery_due_)
    return;
  if (in_pos_ == in_.size() && read_filled_ == 0 && !reset_ && !peer_ended_)
    return; // wait for on_data, on_end or on_reset
  // Delivered on the next turn, with whatever has come by then: the frames of one receive
  // (a response's HEADERS, its DATA and END_STREAM, say) reach the session as one read, so
  // that it writes them on in one go.
  delivery_due_ = true;
  std::weak_ptr<h2_stream> weak = weak_from_this();
  link_->conn_->io().defer([weak] {
    if (auto self = weak.lock())
      self->deliver();
  });
}

void h2_stream::deliver() {
  delivery_due_ = false;
  if (!read_handler_)
    return; // closed meanwhile (its handler got ECANCELED)
  std::error_code ec;
  std::size_t n = std::exchange(read_filled_, 0); // on_data's, before anything in in_
  if (in_pos_ < in_.size() && n < read_len_) {
    const std::size_t more = std::min(read_len_ - n, in_.size() - in_pos_);
    std::memcpy(read_buf_ + n, in_.data() + in_pos_, more);
    in_pos_ += more;
    n += more;
    if (in_pos_ == in_.size()) {
      in_.clear();
      in_pos_ = 0;
    }
  }
  if (n > 0) {
    in_taken_ += n;
    // Payload that has left for the session reopens the peer's window.
    std::size_t credit = 0;
    auto done = credits_.begin();
    for (; done != credits_.end() && done->first <= in_taken_; ++done)
      credit += done->second;
    credits_.erase(credits_.begin(), done);
    if (credit > 0 && attached_ && id_ != 0) {
      link_->session_.consumed(id_, credit);
      link_->schedule_flush();
    }
  } else if (reset_) {
    ec = refused_ ? refused_stream_error() : sys(ECONNRESET);
  } else if (peer_ended_) {
    ec = net::errc::eof;
  } else {
    return; // nothing yet: the read stays pending
  }
  read_buf_ = nullptr;
  std::exchange(read_handler_, nullptr)(ec, n); // on the loop's turn after the call, as promised
}

void h2_stream::on_response_head(const h2::head& h) {
  if (tunnel_) {
    if (h.is_interim() || established_ || !tunnel_handler_)
      return;
    established_ = h.status >= 200 && h.status < 300;
    if (!established_) { // refused, or the peer could not reach the service: nothing moved
      (void)link_->session_.reset(id_, h2::cancel);
      link_->schedule_flush();
      reset_ = refused_ = true;
    }
    complete(std::exchange(tunnel_handler_, nullptr),
             established_      ? std::error_code{}
             : h.status == 403 ? sys(EACCES)
                               : refused_stream_error(),
             0);
    return;
  }
  forward_options fo;
  fo.add_via = false; // the session adds this hop's via when it forwards the response
  // An HTTP/1.0 client cannot read chunks: a body without a length runs until the end of
  // the stream, which the session then forwards until it closes the client's connection.
  fo.close = http10_request_ && h.content_length < 0 && !h.end_stream && !h.is_interim();
  const auto before = in_.size();
  const auto written = h2::to_h1_response(h, head_request_, fo, in_);
  if (written.error != h2::errc::ok) {
    (void)link_->session_.reset(id_, h2::protocol_error);
    link_->schedule_flush();
    return;
  }
  in_total_ += in_.size() - before;
  if (!h.is_interim())
    chunked_in_ = written.body == body_kind::chunked;
  fill_read();
}

void h2_stream::on_data(std::span<const char> bytes) {
  if (bytes.empty())
    return; // no entry in credits_: they stay bounded by the window's bytes
  const std::size_t payload = bytes.size();
  // A read waiting with nothing buffered ahead of it takes the payload straight into its
  // buffer (delivered on the next turn with whatever else came): one copy less per byte.
  if (read_handler_ && !chunked_in_ && in_pos_ == in_.size() && read_filled_ < read_len_) {
    const std::size_t n = std::min(payload, read_len_ - read_filled_);
    std::memcpy(read_buf_ + read_filled_, bytes.data(), n);
    read_filled_ += n;
    in_total_ += n;
    bytes = bytes.subspan(n);
  }
  if (!bytes.empty()) {
    const auto before = in_.size();
    if (chunked_in_)
      append_chunk(in_, bytes);
    else
      in_.append(bytes.data(), bytes.size());
    in_total_ += in_.size() - before;
  }
  credits_.emplace_back(in_total_, payload);
  fill_read();
}

void h2_stream::on_trailers(std::span<const h2::field> fields) {
  if (client_)
    for (const auto& f : fields)
      if (f.name == "grpc-status")
        grpc_status_ = text::grpc_status_number(f.value);
  if (!chunked_in_)
    return; // a body with a length has nowhere to carry trailers in HTTP/1.1
  const auto before = in_.size();
  if (h2::write_last_chunk(fields, in_) != h2::errc::ok)
    in_.append(last_chunk);
  in_total_ += in_.size() - before;
  chunked_in_ = false; // the last chunk is written
}

void h2_stream::on_end() {
  if (chunked_in_) {
    in_.append(last_chunk);
    in_total_ += last_chunk.size();
    chunked_in_ = false;
  }
  peer_ended_ = true;
  fill_read();
}

void h2_stream::on_reset(bool refused) {
  reset_ = true;
  refused_ = refused;
  attached_ = false;
  if (tunnel_handler_) // before the peer's answer: no byte reached any app
    complete(std::exchange(tunnel_handler_, nullptr), refused_stream_error(), 0);
  fill_read();
  if (write_handler_)
    fail_write(refused ? refused_stream_error() : sys(ECONNRESET));
}

void h2_stream::write(const void* buf, std::size_t len, io_handler handler, completion how) {
  if (!open_ || reset_ || write_handler_ || sent_all_) {
    complete(std::move(handler),
             reset_ ? (refused_ ? refused_stream_error() : sys(ECONNRESET)) : sys(EBADF), 0);
    return;
  }
  write_buf_ = static_cast<const char*>(buf);
  write_len_ = len;
  write_done_ = 0;
  write_handler_ = std::move(handler);
  pump_write(how == completion::inline_when_done);
}

void h2_stream::pump_write(bool may_inline) {
  auto& session = link_->session_;
  if (tunnel_ && write_done_ < write_len_) {
    // Lent, not copied: framed from the writer's buffer, the write completing then
    // (on_framed). A tunnel's write is pending exactly while its bytes are lent.
    if (reset_ || !attached_) {
      fail_write(refused_ ? refused_stream_error() : sys(ECONNRESET));
      return;
    }
    if (!established_ || sent_all_ ||
        session.lend_data(id_, {write_buf_ + write_done_, write_len_ - write_done_}) !=
            h2::errc::ok) {
      fail_write(sys(EPROTO));
      return;
    }
    write_done_ = write_len_;
    link_->lenders_.push_back(weak_from_this());
    link_->schedule_flush();
    return;
  }
  const std::size_t cap = session.config().max_buffered_bytes;
  while (write_done_ < write_len_) {
    if (reset_ || !attached_) {
      fail_write(refused_ ? refused_stream_error() : sys(ECONNRESET));
      return;
    }
    // Whole slices at most the stream's buffer: every payload in one fits (de-chunking
    // only shrinks it), so a slice is never half sent. A client stream not yet submitted
    // has an empty buffer.
    const std::size_t slice = std::min(write_len_ - write_done_, cap);
    if (id_ != 0 && session.room(id_) < slice) {
      link_->room_waiters_.push_back(weak_from_this());
      link_->schedule_flush();
      return;
    }
    std::span<const char> in{write_buf_ + write_done_, slice};
    if (direct_) {
      if (!send_direct_body(in)) {
        fail_write(refused_ ? refused_stream_error() : sys(EPROTO));
        return;
      }
      write_done_ += slice;
      continue;
    }
    // Until the parser wants more: its `complete` step comes from a call after the body's
    // last bytes, with nothing left to parse.
    while (true) {
      if (!parser_) {
        parser_.emplace(client_ ? direction::request : direction::response, limits_);
        if (server_head_request_)
          parser_->expect_response_to("HEAD");
      }
      auto r = parser_->parse(in);
      in = in.subspan(r.consumed);
      write_done_ += r.consumed;
      bool ok = true;
      switch (r.status) {
      case parse_status::head: {
        forward_options fo;
        fo.proto = {};      // x-forwarded-proto: as the session wrote it
        fo.add_via = false; // the session's forwarding added this hop's via
        ok = send_head(parser_->head(), fo);
        break;
      }
      case parse_status::body:
        ok = send_body(r.body);
        break;
      case parse_status::complete:
        if (!parser_->head().is_interim() && !sent_all_)
          ok = end_message();
        break;
      case parse_status::need_more:
        break;
      case parse_status::upgrade:
      case parse_status::error:
        ok = false;
        break;
      }
      if (!ok) {
        fail_write(refused_ ? refused_stream_error() : sys(EPROTO));
        return;
      }
      if (r.status == parse_status::need_more)
        break;
    }
    if (!in.empty()) { // bytes after our message: not something a stream can carry
      fail_write(sys(EPROTO));
      return;
    }
  }
  link_->schedule_flush();
  auto h = std::exchange(write_handler_, nullptr);
  if (may_inline)
    h({}, write_len_);
  else
    complete(std::move(h), {}, write_len_);
}

std::error_code h2_stream::write_head(const message_head& h, const forward_options& fo) {
  if (!open_ || reset_ || write_handler_ || sent_all_ || final_head_)
    return reset_ ? (refused_ ? refused_stream_error() : sys(ECONNRESET)) : sys(EBADF);
  direct_ = true;
  if (!send_head(h, fo)) {
    fail_write(refused_ ? refused_stream_error() : sys(EPROTO));
    return refused_ ? refused_stream_error() : sys(EPROTO);
  }
  if (!h.is_interim()) {
    final_head_ = true;
    // A body with a length ends with its last byte; an until-close one (not re-chunked:
    // cannot come from a session that writes to a stream) never ends, and shutdown_send
    // then resets the stream, as when this stream parsed it.
    body_left_ = h.body == body_kind::content_length ? h.content_length : UINT64_MAX;
    chunked_out_ = chunked_out_ || fo.chunked;
  }
  link_->schedule_flush();
  return {};
}

bool h2_stream::send_direct_body(std::span<const char> bytes) {
  if (bytes.empty())
    return true;
  if (!final_head_ || sent_all_)
    return false; // a body before the head, or bytes after the message's end
  auto& session = link_->session_;
  if (chunked_out_) {
    if (!send_body(bytes))
      return false;
    if (!dechunker_.is_done())
      return true;
  } else {
    if (bytes.size() > body_left_ || session.send_data(id_, bytes) != h2::errc::ok)
      return false;
    body_left_ -= bytes.size();
    if (body_left_ > 0)
      return true;
  }
  return end_message();
}

bool h2_stream::end_message() {
  auto& session = link_->session_;
  sent_all_ = true;
  std::span<const h2::field> trailers;
  if (!trailers_.empty()) {
    // The parser checked the section's syntax; what HTTP/2 cannot carry fails the stream
    // rather than losing the fields silently.
    auto& fields = link_->fields_;
    if (h2::to_h2_trailers(trailers_, fields, session.config().max_header_list_bytes) !=
        h2::errc::ok)
      return false;
    trailers = fields.fields;
  }
  const bool ok = session.end_stream(id_, trailers) == h2::errc::ok;
  trailers_.clear();
  return ok;
}

bool h2_stream::send_head(const message_head& h, forward_options fo) {
  auto& session = link_->session_;
  auto& fields = link_->fields_;
  const auto max = session.config().max_header_list_bytes;
  if (!client_) {
    const bool final = !h.is_interim();
    const bool no_body = final && h.body == body_kind::none;
    if (h2::to_h2_response(h, fo, fields, max) != h2::errc::ok ||
        session.submit_response(id_, fields.fields, no_body) != h2::errc::ok)
      return false;
    if (final) {
      chunked_out_ = h.body == body_kind::chunked;
      dechunker_.reset();
      sent_all_ = no_body;
    }
    return true;
  }
  // A client: the request opens the stream, naming the service (and instance) B serves;
  // to an app, neither.
  if (id_ != 0)
    return false; // one request per stream
  auto& client = static_cast<h2_client&>(*link_);
  const bool app = client.is_app();
  const header to_peer[] = {{service_field, service_}, {instance_field, instance_}};
  // TE is hop-by-hop, and this hop (the node) takes trailers and passes them on, whatever
  // the hops before said (an HTTP/1.1 hop drops TE): gRPC servers refuse a request without
  // `te: trailers`.
  static constexpr header to_app[] = {{"te", "trailers"}};
  fo.extra = app ? std::span<const header>{to_app}
                 : std::span<const header>{to_peer, instance_.empty() ? 1u : 2u};
  if (h2::to_h2_request(h, fo, fields, max) != h2::errc::ok)
    return false;
  // Between nodes these two names are ours: fields of the app's that bear them would
  // contradict the ones above (B refuses a stream naming two services) or pin an instance
  // the caller's balancer did not pick. They are dropped, as Envoy drops x-envoy-* fields
  // from callers it does not trust; to an app, so is a TE before the one above.
  {
    auto& fl = fields.fields;
    const auto ours = fl.end() - static_cast<std::ptrdiff_t>(fo.extra.size());
    fl.erase(std::remove_if(fl.begin(), ours,
                            [app](const h2::field& f) {
                              return f.name == service_field || f.name == instance_field ||
                                     (app && f.name == "te");
                            }),
             ours);
  }
  // An HTTP/1.0 request may come without Host, but an HTTP/2 request needs an authority
  // (nghttp2 refuses one without a non-empty :authority or host): the service's name, as
  // Envoy gives such requests a default host. The app sees `host: <service>`.
  if (std::none_of(fields.fields.begin(), fields.fields.end(),
                   [](const h2::field& f) { return f.name == ":authority"; }))
    fields.fields.push_back({"host", service_});
  const bool no_body = h.body == body_kind::none;
  head_request_ = h.method == "HEAD";
  http10_request_ = h.version_minor == 0;
  const auto sub = session.submit_request(fields.fields, no_body);
  if (sub.error != h2::errc::ok) {
    // The connection takes no more streams (a GOAWAY, the peer's stream limit): nothing
    // was sent, so the request may go elsewhere or on a new connection.
    refused_ = reset_ = true;
    attached_ = false;
    return false;
  }
  --client.unsubmitted_;
  id_ = sub.stream;
  link_->streams_[id_] = this;
  chunked_out_ = h.body == body_kind::chunked;
  dechunker_.reset();
  sent_all_ = no_body;
  return true;
}

bool h2_stream::send_body(std::span<const char> bytes) {
  auto& session = link_->session_;
  if (!chunked_out_)
    return bytes.empty() || session.send_data(id_, bytes) == h2::errc::ok;
  while (!bytes.empty()) {
    auto step = dechunker_.next(bytes);
    if (dechunker_.has_failed() || (step.consumed == 0 && !dechunker_.is_done()))
      return false;
    if (!step.payload.empty() && session.send_data(id_, step.payload) != h2::errc::ok)
      return false;
    if (!step.trailer.empty()) {
      if (trailers_.size() + step.trailer.size() > session.config().max_header_list_bytes)
        return false;
      trailers_.append(step.trailer.data(), step.trailer.size());
    }
    if (step.consumed == 0)
      return false; // bytes after the body's end (a parser gives none)
    bytes = bytes.subspan(step.consumed);
  }
  return true;
}

void h2_stream::on_room() {
  if (write_handler_ && !tunnel_) // a tunnel's write waits for on_framed, not for room
    pump_write(false);
}

bool h2_stream::on_framed() {
  if (!tunnel_ || !write_handler_)
    return true; // completed or failed meanwhile
  if (attached_ && link_->session_.lent(id_) != 0)
    return false;
  // On a later turn than the write: may complete here.
  auto h = std::exchange(write_handler_, nullptr);
  if (attached_)
    h({}, write_len_);
  else // closed under the loan (a reset fails the write first: not expected)
    h(sys(ECONNRESET), 0);
  return true;
}

void h2_stream::fail_write(std::error_code ec) {
  if (tunnel_ && id_ != 0)
    link_->session_.unlend(id_); // the writer's buffer may go with its handler
  if (attached_ && !reset_ && id_ != 0)
    (void)link_->session_.reset(id_, h2::internal_error);
  link_->schedule_flush();
  if (write_handler_)
    complete(std::exchange(write_handler_, nullptr), ec, 0);
}

void h2_stream::open_tunnel(io_handler handler) {
  if (!tunnel_ || !client_ || id_ != 0 || tunnel_handler_ || !open_ || reset_) {
    complete(std::move(handler), reset_ ? refused_stream_error() : sys(EINVAL), 0);
    return;
  }
  auto& session = link_->session_;
  auto& client = static_cast<h2_client&>(*link_);
  const h2::field fields[] = {{":method", "CONNECT"},
                              {":authority", service_},
                              {service_field, service_},
                              {instance_field, instance_}};
  const auto sub = session.submit_request({fields, instance_.empty() ? 3u : 4u}, false);
  if (sub.error != h2::errc::ok) {
    // The connection takes no more streams: nothing was sent.
    refused_ = reset_ = true;
    attached_ = false;
    complete(std::move(handler), refused_stream_error(), 0);
    return;
  }
  --client.unsubmitted_;
  id_ = sub.stream;
  link_->streams_[id_] = this;
  tunnel_handler_ = std::move(handler);
  link_->schedule_flush();
}

std::error_code h2_stream::accept_tunnel() {
  if (!tunnel_ || client_ || established_ || !open_ || reset_ || !attached_)
    return reset_ ? sys(ECONNRESET) : sys(EINVAL);
  const h2::field fields[] = {{":status", "200"}};
  if (link_->session_.submit_response(id_, fields, false) != h2::errc::ok)
    return sys(EPROTO);
  established_ = true;
  link_->schedule_flush();
  return {};
}

void h2_stream::refuse_tunnel(std::uint16_t status) {
  if (!tunnel_ || client_ || established_ || sent_all_ || !attached_ || reset_ || !open_)
    return;
  const auto text = std::to_string(status);
  const h2::field fields[] = {{":status", text}};
  if (link_->session_.submit_response(id_, fields, true) == h2::errc::ok)
    sent_all_ = true;
  link_->schedule_flush();
}

void h2_stream::shutdown_send() {
  if (tunnel_) { // a FIN: END_STREAM after the bytes written so far
    if (attached_ && established_ && !sent_all_ && id_ != 0) {
      sent_all_ = true;
      if (link_->session_.end_stream(id_) != h2::errc::ok)
        (void)link_->session_.reset(id_, h2::cancel);
      link_->schedule_flush();
    }
    return;
  }
  if (attached_ && !sent_all_ && id_ != 0) {
    (void)link_->session_.reset(id_, h2::cancel);
    link_->schedule_flush();
  }
}

void h2_stream::close() {
  if (!open_)
    return;
  open_ = false;
  if (attached_ && id_ != 0 && link_->is_open()) {
    if (!sent_all_ || (client_ && !peer_ended_))
      (void)link_->session_.reset(id_, h2::cancel);
    else if (!peer_ended_)
      link_->finishing_.push_back(id_); // RST_STREAM(NO_ERROR) after the response
    link_->schedule_flush();
  }
  read_filled_ = 0;
  if (tunnel_ && id_ != 0)
    link_->session_.unlend(id_); // (reset above dropped the loan too, when it ran)
  if (read_handler_)
    complete(std::exchange(read_handler_, nullptr), sys(ECANCELED), 0);
  if (write_handler_)
    complete(std::exchange(write_handler_, nullptr), sys(ECANCELED), 0);
  if (tunnel_handler_)
    complete(std::exchange(tunnel_handler_, nullptr), sys(ECANCELED), 0);
}

void h2_stream::close_connection() {
  auto link = link_; // close() may end the last reference but this one
  link->close();
}

} // namespace starling::proxy
