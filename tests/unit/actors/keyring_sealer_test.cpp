// The agent's gossip keyring: the adapter over the pure sealer, its persistence (mode 0600,
// the persisted keyring winning at start), the admin requests, and sealed UDP + TCP through
// the real transport on 127.0.0.1. Waits poll conditions with a bound; nothing sleeps to hope.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "actors/cli/views.hpp"
#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "gossip/errc.hpp"
#include "identity/errc.hpp"
#include "tests/support/process.hpp"

namespace sa = starling::actors;
namespace sg = starling::gossip;
namespace si = starling::identity;
namespace st = starling::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

si::gossip_key key_of(std::uint8_t seed) {
  si::gossip_key k{};
  for (std::size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<std::uint8_t>(seed * 13 + i);
  return k;
}

std::shared_ptr<sa::keyring_sealer> make_sealer(si::keyring ring, fs::path file = {}) {
  auto s = sa::keyring_sealer::make(std::move(ring), std::move(file));
  EXPECT_TRUE(s) << (s ? "" : si::render(s.error()));
  return s ? *s : nullptr;
}

TEST(keyring_sealer, seals_opens_and_maps_garbage_to_malformed) {
  auto a = make_sealer(si::keyring{key_of(1)});
  auto b = make_sealer(si::keyring{key_of(1)});
  auto other = make_sealer(si::keyring{key_of(2)});
  ASSERT_TRUE(a && b && other);
  auto wire = a->seal("\x01hello");
  ASSERT_TRUE(wire);
  auto plain = b->open(*wire);
  ASSERT_TRUE(plain);
  EXPECT_EQ(*plain, "\x01hello");
  // Replay: an identity error (refused by the transport).
  auto again = b->open(*wire);
  ASSERT_FALSE(again);
  EXPECT_TRUE(si::is(again.error(), si::errc::replayed));
  auto wrong = other->open(*wire);
  ASSERT_FALSE(wrong);
  EXPECT_TRUE(si::is(wrong.error(), si::errc::unknown_key));
  // Garbage: the gossip category (counted as malformed by the transport).
  auto junk = b->open("\x07junk");
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.error().category(), sg::errc_category);
  auto v = b->view();
  EXPECT_EQ(v.counters.opened, 1u);
  EXPECT_EQ(v.counters.replayed, 1u);
  EXPECT_EQ(v.counters.malformed, 1u);
  EXPECT_FALSE(sa::keyring_sealer::make(si::keyring{}, {}));
}

TEST(keyring_sealer, a_datagram_sealed_for_one_member_opens_at_that_member_only) {
  // Issue 13: bound to the receiver's advertised gossip address.
  auto tx = make_sealer(si::keyring{key_of(1)});
  auto at_x = make_sealer(si::keyring{key_of(1)});
  auto at_y = make_sealer(si::keyring{key_of(1)});
  ASSERT_TRUE(tx && at_x && at_y);
  auto wire = tx->seal_to("127.0.0.1:4001", "\x01ping");
  ASSERT_TRUE(wire);
  auto refused = at_y->open_as("127.0.0.1:4002", *wire);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(si::is(refused.error(), si::errc::wrong_receiver)) << si::render(refused.error());
  EXPECT_NE(refused.error().category(), sg::errc_category) << "a refusal, not malformed input";
  auto opened = at_x->open_as("127.0.0.1:4001", *wire);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "\x01ping");
  auto v = at_y->view();
  EXPECT_EQ(v.counters.wrong_receiver, 1u);
  auto doc = nlohmann::json::parse(sa::keyring_json(v));
  EXPECT_EQ(doc.at("counters").at("wrong_receiver"), 1u);
  auto table = starling::cli::keyring_table(doc.dump());
  ASSERT_TRUE(table);
  EXPECT_NE(table->find("wrong_receiver 1"), std::string::npos) << *table;
  // The transport's interface names no receiver: seal and open use the unbound one.
  auto plain = tx->seal("\x01pong");
  ASSERT_TRUE(plain);
  EXPECT_TRUE(at_x->open(*plain));
  EXPECT_FALSE(at_x->open_as("127.0.0.1:4001", *tx->seal("\x01pong")));
}

TEST(keyring_sealer, is_thread_safe_while_rotating) {
  auto tx = make_sealer(si::keyring{key_of(1)});
  auto rx = make_sealer(si::keyring{key_of(1)});
  ASSERT_TRUE(tx && rx);
  ASSERT_TRUE(rx->install(si::to_base64(key_of(2))));
  ASSERT_TRUE(tx->install(si::to_base64(key_of(2))));
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::thread io{[&] {
    while (!stop) {
      auto w = tx->seal("payload");
      if (!w || !rx->open(*w))
        ++failures;
    }
  }};
  for (int i = 0; i < 200; ++i) {
    const auto k = si::to_base64(key_of(static_cast<std::uint8_t>(i % 2 + 1)));
    ASSERT_TRUE(tx->use(k));
  }
  stop = true;
  io.join();
  EXPECT_EQ(failures, 0);
}

TEST(keyring_sealer, persists_every_change_with_mode_0600) {
  st::temp_dir tmp{"starling-keyring"};
  const auto file = sa::keyring_path(tmp.path());
  auto s = make_sealer(si::keyring{key_of(1)}, file);
  ASSERT_TRUE(s);
  ASSERT_FALSE(s->persist());
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  const auto new_key = si::to_base64(key_of(2));
  const auto new_id = si::to_hex(si::id_of(key_of(2)));
  const auto old_id = si::to_hex(si::id_of(key_of(1)));
  auto id = s->install(new_key);
  ASSERT_TRUE(id);
  EXPECT_EQ(*id, new_id);
  ASSERT_TRUE(s->use(new_id));
  ASSERT_TRUE(s->remove(si::to_base64(key_of(1))));
  auto back = sa::read_keyring_file(file);
  ASSERT_TRUE(back && *back);
  EXPECT_EQ(**back, si::keyring{key_of(2)});
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  // Refusals change nothing, on disk or in memory.
  auto r = s->remove(new_id);
  ASSERT_FALSE(r);
  EXPECT_NE(sa::message_of(r.error()).find("keyring_refused"), std::string::npos);
  EXPECT_FALSE(s->use(old_id));
  EXPECT_FALSE(s->install("not a key"));
  EXPECT_EQ(s->view().ids, std::vector<std::string>{new_id});
  EXPECT_EQ(**sa::read_keyring_file(file), si::keyring{key_of(2)});
}

TEST(keyring_sealer, startup_keyring_prefers_the_persisted_one) {
  st::temp_dir tmp{"starling-keyring"};
  sa::agent_config cfg;
  cfg.data_dir = tmp.path() / "data";
  fs::create_directories(cfg.data_dir);
  // Nothing configured: plain gossip.
  auto none = sa::load_startup_keyring(cfg);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->ring.empty());
  EXPECT_EQ(none->source, "none");
  // The config key.
  cfg.gossip_key = si::to_base64(key_of(1));
  auto from_cfg = sa::load_startup_keyring(cfg);
  ASSERT_TRUE(from_cfg);
  EXPECT_EQ(from_cfg->source, "config");
  EXPECT_EQ(from_cfg->ring, si::keyring{key_of(1)});
  // keyring_file plus gossip_key: the key joins the file's keys and becomes primary.
  si::keyring file_ring{key_of(2)};
  ASSERT_FALSE(file_ring.install(key_of(3)));
  cfg.keyring_file = tmp.path() / "initial.keyring";
  ASSERT_FALSE(sa::write_keyring_file(cfg.keyring_file, file_ring));
  auto both = sa::load_startup_keyring(cfg);
  ASSERT_TRUE(both);
  EXPECT_EQ(both->ring.size(), 3u);
  EXPECT_EQ(both->ring.primary_id(), si::id_of(key_of(1)));
  // The persisted keyring wins over both.
  ASSERT_FALSE(sa::write_keyring_file(sa::keyring_path(cfg.data_dir), si::keyring{key_of(9)}));
  auto persisted = sa::load_startup_keyring(cfg);
  ASSERT_TRUE(persisted);
  EXPECT_EQ(persisted->source, "persisted");
  EXPECT_EQ(persisted->ring, si::keyring{key_of(9)});
  // A corrupt persisted keyring is an error naming the file, not a silent fallback.
  st::write_text(sa::keyring_path(cfg.data_dir), "primary garbage\n");
  auto corrupt = sa::load_startup_keyring(cfg);
  ASSERT_FALSE(corrupt);
  EXPECT_NE(sa::message_of(corrupt.error()).find("keyring"), std::string::npos);
}

TEST(keyring_sealer, answers_admin_requests) {
  auto s = make_sealer(si::keyring{key_of(1)});
  ASSERT_TRUE(s);
  const auto id1 = si::to_hex(si::id_of(key_of(1)));
  const auto id2 = si::to_hex(si::id_of(key_of(2)));
  EXPECT_EQ(sa::answer_keyring_request(s.get(), "install", si::to_base64(key_of(2))), id2);
  EXPECT_EQ(sa::answer_keyring_request(s.get(), "use", id2), id2);
  // A refused change is an error (the admin answers it with a failed status, exit code 1),
  // naming the keyring's refusal: removing the primary key would break the ring.
  auto primary = sa::answer_keyring_request(s.get(), "remove", id2);
  ASSERT_FALSE(primary);
  EXPECT_EQ(primary.error().code(), static_cast<std::uint8_t>(sa::errc::request_failed));
  EXPECT_NE(sa::message_of(primary.error()).find("identity.keyring_refused"), std::string::npos)
      << sa::message_of(primary.error());
  auto unknown = sa::answer_keyring_request(s.get(), "remove", std::string(16, 'f'));
  ASSERT_FALSE(unknown);
  EXPECT_NE(sa::message_of(unknown.error()).find("identity.unknown_key"), std::string::npos)
      << sa::message_of(unknown.error());
  // An unknown operation is a usage error (exit code 2 at the command line).
  auto bogus = sa::answer_keyring_request(s.get(), "bogus", "");
  ASSERT_FALSE(bogus);
  EXPECT_EQ(bogus.error().category(), sa::errc_category);
  EXPECT_EQ(bogus.error().code(), static_cast<std::uint8_t>(sa::errc::bad_request));
  auto doc = nlohmann::json::parse(*sa::answer_keyring_request(s.get(), "list", ""));
  EXPECT_EQ(doc.at("enabled"), true);
  EXPECT_EQ(doc.at("primary"), id2);
  ASSERT_EQ(doc.at("keys").size(), 2u);
  EXPECT_EQ(doc.at("keys")[0].at("id"), id2);
  EXPECT_EQ(doc.at("keys")[1].at("primary"), false);
  EXPECT_EQ(doc.at("window"), "30s");
  for (const char* c :
       {"sealed", "opened", "tampered", "replayed", "unknown_key", "unsealed", "malformed"})
    EXPECT_TRUE(doc.at("counters").at(c).is_number_unsigned()) << c;
  auto table = starling::cli::keyring_table(doc.dump());
  ASSERT_TRUE(table);
  EXPECT_NE(table->find(id1), std::string::npos);
  EXPECT_FALSE(starling::cli::keyring_table("{}"));
  // Encryption off: list says so, changes are refused.
  auto off = nlohmann::json::parse(*sa::answer_keyring_request(nullptr, "list", ""));
  EXPECT_EQ(off.at("enabled"), false);
  auto refused = sa::answer_keyring_request(nullptr, "install", si::to_base64(key_of(2)));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), static_cast<std::uint8_t>(sa::errc::request_failed));
  EXPECT_NE(sa::message_of(refused.error()).find("gossip encryption is off"), std::string::npos);
}

// -- through the real transport -----------------------------------------------------------

struct inbox {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<sg::packet> packets;

  sg::transport_callbacks callbacks() {
    sg::transport_callbacks cbs;
    cbs.on_packet = [this](sg::packet p, std::string) {
      std::lock_guard guard{mutex};
      packets.push_back(std::move(p));
      cv.notify_all();
    };
    (void)cbs.requests.add(
        sg::request_types::push_pull,
        sg::push_pull_spec([](sg::push_pull remote, sg::push_pull_responder reply) {
          sg::push_pull answer;
          answer.sender = "responder";
          answer.sender_address = "127.0.0.1:1";
          answer.members = remote.members;
          reply(std::move(answer));
        }));
    return cbs;
  }

  bool wait_for(std::size_t n) {
    std::unique_lock guard{mutex};
    return cv.wait_for(guard, 5s, [&] { return packets.size() >= n; });
  }
};

std::unique_ptr<sg::transport> start(inbox& in, std::shared_ptr<sa::keyring_sealer> sealer) {
  sg::transport_config cfg;
  cfg.bind_host = "127.0.0.1";
  cfg.port = 0;
  cfg.tcp_timeout = 2s;
  cfg.sealer = std::move(sealer);
  auto t = sg::transport::start(std::move(cfg), in.callbacks());
  EXPECT_TRUE(t);
  return t ? std::move(*t) : nullptr;
}

sg::packet ping(std::uint32_t seq) {
  sg::packet p;
  p.kind = sg::packet_kind::ping;
  p.seq = seq;
  p.sender = "a";
  p.sender_address = "127.0.0.1:1";
  return p;
}

std::string addr(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

template <class Pred> bool eventually(Pred pred) { return st::poll_until(5s, pred, 1ms); }

/// a and b share key 1; c holds key 2 only.
class sealed_transport : public ::testing::Test {
protected:
  void SetUp() override {
    sa_ = make_sealer(si::keyring{key_of(1)});
    sb = make_sealer(si::keyring{key_of(1)});
    sc = make_sealer(si::keyring{key_of(2)});
    a = start(ia, sa_);
    b = start(ib, sb);
    c = start(ic, sc);
  }

  inbox ia, ib, ic;
  std::shared_ptr<sa::keyring_sealer> sa_, sb, sc;
  std::unique_ptr<sg::transport> a, b, c;
};

TEST_F(sealed_transport, udp_opens_with_the_key_and_refuses_everything_else) {
  inbox id;
  auto d = start(id, nullptr); // plain
  ASSERT_TRUE(a && b && c && d);
  a->send(addr(b->port()), ping(1));
  ASSERT_TRUE(ib.wait_for(1));
  EXPECT_EQ(ib.packets[0].seq, 1u);
  c->send(addr(b->port()), ping(2)); // another key
  d->send(addr(b->port()), ping(3)); // no key
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_refused == 2; }));
  EXPECT_TRUE(eventually([&] { return sb->view().counters.unknown_key == 1; }));
  EXPECT_EQ(sb->view().counters.unsealed, 1u);
  // Captured sealed datagrams replayed and tampered, plus garbage, from a raw socket.
  auto wire = sa_->seal_to(b->advertise_address(), sg::encode_datagram(ping(4)));
  ASSERT_TRUE(wire);
  asio::io_context io;
  asio::ip::udp::socket raw{io, asio::ip::udp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
  const asio::ip::udp::endpoint to{asio::ip::make_address("127.0.0.1"), b->port()};
  raw.send_to(asio::buffer(*wire), to);
  raw.send_to(asio::buffer(*wire), to); // replay
  auto flipped = *wire;
  flipped[flipped.size() - 1] ^= 1;
  raw.send_to(asio::buffer(flipped), to);
  raw.send_to(asio::buffer(std::string{"\x02\x01short", 7}), to);
  // The datagram sealed for b, replayed to a (which holds the same key): refused there.
  raw.send_to(asio::buffer(*wire),
              asio::ip::udp::endpoint{asio::ip::make_address("127.0.0.1"), a->port()});
  EXPECT_TRUE(eventually([&] { return sa_->view().counters.wrong_receiver == 1; }));
  ASSERT_TRUE(ib.wait_for(2));
  EXPECT_TRUE(eventually([&] {
    auto v = sb->view();
    return v.counters.replayed == 1 && v.counters.tampered == 1 && v.counters.malformed == 1;
  }));
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_refused == 4; }));
  // The sealer counts inside open(); the transport counts after it returns.
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_malformed == 1; }));
  // Still working.
  a->send(addr(b->port()), ping(5));
  ASSERT_TRUE(ib.wait_for(3));
  std::lock_guard guard{ib.mutex};
  EXPECT_EQ(ib.packets.size(), 3u);
}

TEST_F(sealed_transport, push_pull_is_sealed_and_another_key_cannot_join) {
  ASSERT_TRUE(a && b && c);
  sg::push_pull local;
  local.sender = "a";
  local.sender_address = "127.0.0.1:1";
  local.join = true;
  local.members = {sg::member_update{sg::member_state::alive, "a", "127.0.0.1:1", 1, {}, {}}};
  std::mutex m;
  std::condition_variable cv;
  std::optional<caf::expected<sg::push_pull>> ok, refused;
  sg::push_pull_with(*a, addr(b->port()), local, [&](caf::expected<sg::push_pull> r) {
    std::lock_guard guard{m};
    ok.emplace(std::move(r));
    cv.notify_all();
  });
  sg::push_pull_with(*c, addr(b->port()), local, [&](caf::expected<sg::push_pull> r) {
    std::lock_guard guard{m};
    refused.emplace(std::move(r));
    cv.notify_all();
  });
  std::unique_lock guard{m};
  ASSERT_TRUE(cv.wait_for(guard, 5s, [&] { return ok && refused; }));
  ASSERT_TRUE(*ok) << sg::render(ok->error());
  EXPECT_EQ((*ok)->sender, "responder");
  EXPECT_EQ((*ok)->members, local.members);
  ASSERT_FALSE(*refused);
  // Refused by its code (decision 0014): another key is not who may push-pull here.
  EXPECT_EQ(refused->error().code(), static_cast<std::uint8_t>(sg::errc::unauthenticated));
  EXPECT_NE(sg::render(refused->error()).find("not in this node's keyring"), std::string::npos)
      << "[" << sg::render(refused->error()) << "]";
  EXPECT_EQ(b->stats().dropped_refused, 1u);
  EXPECT_EQ(b->stats().push_pulls_in, 1u);
  EXPECT_EQ(sb->view().counters.unknown_key, 1u);
}

TEST(keyring_sealer_drops, drops_after_opening_show_in_the_keyring_view) {
  // Issue 13: a datagram the sealer opened but that did not decode, an oversized one and a
  // refused binding were counted by the transport and shown by no command.
  auto tx = make_sealer(si::keyring{key_of(1)});
  auto rx = make_sealer(si::keyring{key_of(1)});
  ASSERT_TRUE(tx && rx);
  inbox in;
  sg::transport_config cfg;
  cfg.bind_host = "127.0.0.1";
  cfg.port = 0;
  cfg.sealer = rx;
  auto io = sa::make_transport_io(cfg, rx->drop_counters())(in.callbacks());
  ASSERT_TRUE(io) << sg::render(io.error());
  asio::io_context ctx;
  asio::ip::udp::socket raw{ctx, asio::ip::udp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
  const asio::ip::udp::endpoint to{asio::ip::make_address("127.0.0.1"), (*io)->port()};
  auto undecodable =
      tx->seal_to(addr((*io)->port()), std::string{"\xff\xfe not a gossip datagram"});
  ASSERT_TRUE(undecodable);
  raw.send_to(asio::buffer(*undecodable), to);
  raw.send_to(asio::buffer(std::string(cfg.limits.max_datagram + 1, 'x')), to);
  ASSERT_TRUE(eventually([&] {
    auto v = rx->view();
    return v.dropped && v.dropped->malformed == 1 && v.dropped->oversized == 1;
  }));
  auto v = rx->view();
  EXPECT_EQ(v.counters.opened, 1u) << "the sealer opened it; the drop came after";
  EXPECT_EQ(v.counters.malformed, 0u);
  auto doc = nlohmann::json::parse(sa::keyring_json(v));
  EXPECT_EQ(doc.at("dropped").at("malformed"), 1u);
  EXPECT_EQ(doc.at("dropped").at("oversized"), 1u);
  EXPECT_EQ(doc.at("dropped").at("binding_refused"), 0u);
  auto table = starling::cli::keyring_table(doc.dump());
  ASSERT_TRUE(table);
  EXPECT_NE(table->find("dropped by the transport: undecodable 1, oversized 1, binding_refused 0"),
            std::string::npos)
      << *table;
  // A restarted transport (a restarted membership actor) adds to the totals.
  io->reset();
  auto again = sa::make_transport_io(cfg, rx->drop_counters())(in.callbacks());
  ASSERT_TRUE(again);
  const asio::ip::udp::endpoint to2{asio::ip::make_address("127.0.0.1"), (*again)->port()};
  raw.send_to(asio::buffer(std::string(cfg.limits.max_datagram + 1, 'x')), to2);
  EXPECT_TRUE(eventually([&] { return rx->view().dropped->oversized == 2; }));
  EXPECT_EQ(rx->view().dropped->malformed, 1u);
}

} // namespace
