// Writes the generated seed corpora of the fuzz targets from the encoders' own output
// (scripts/make-fuzz-corpus.sh builds and runs it): `starling-fuzz-seeds <corpus dir>`
// fills <corpus dir>/<target>/ for datagram_fuzz, frame_fuzz, token_fuzz, pki_fuzz and
// admin_request_fuzz. config_fuzz's seeds are hand-written TOML files (not touched here).
// Keys and tokens are random: running it again changes those files, which is fine.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "actors/admin_server.hpp"
#include "gossip/codec.hpp"
#include "identity/pki.hpp"
#include "identity/token.hpp"

namespace {

namespace fs = std::filesystem;
using namespace starling;
using namespace std::string_literals;

fs::path root;

void put(const std::string& target, const std::string& name, std::string_view bytes) {
  const auto dir = root / target;
  fs::create_directories(dir);
  std::ofstream out{dir / name, std::ios::binary | std::ios::trunc};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

std::string bytes_of(const std::vector<std::uint8_t>& v) { return {v.begin(), v.end()}; }

template <class T> T must(caf::expected<T> x, const char* what) {
  if (!x) {
    std::fprintf(stderr, "make_seeds: %s failed\n", what);
    std::exit(1);
  }
  return std::move(*x);
}

gossip::member_update update(gossip::member_state s, std::string name) {
  gossip::member_update u;
  u.state = s;
  u.name = std::move(name);
  u.address = "10.0.0.7:7946";
  u.incarnation = 3;
  u.tags = {{"role", "web"}, {"zone", "a"}};
  u.from = s == gossip::member_state::alive ? "" : "node-2";
  return u;
}

void gossip_seeds() {
  using gossip::packet_kind;
  const packet_kind kinds[] = {packet_kind::ping, packet_kind::ping_req, packet_kind::ack,
                               packet_kind::nack};
  const char* names[] = {"ping", "ping_req", "ack", "nack"};
  for (int i = 0; i < 4; ++i) {
    gossip::packet p;
    p.kind = kinds[i];
    p.seq = 42;
    p.sender = "node-1";
    p.sender_address = "127.0.0.1:7946";
    p.target = "node-2";
    p.target_address = kinds[i] == packet_kind::ping_req ? "127.0.0.1:7950" : "";
    if (i % 2 == 0) {
      p.updates.push_back(update(gossip::member_state::alive, "node-3"));
      p.updates.push_back(update(gossip::member_state::suspect, "node-4"));
    }
    put("datagram_fuzz", names[i], gossip::encode_datagram(p));
  }
  gossip::push_pull pp;
  pp.sender = "node-1";
  pp.sender_address = "127.0.0.1:7946";
  pp.join = true;
  for (auto s : {gossip::member_state::alive, gossip::member_state::suspect,
                 gossip::member_state::dead, gossip::member_state::left})
    pp.members.push_back(update(s, "node-" + std::to_string(static_cast<int>(s) + 1)));
  // frame_fuzz: first byte = feed chunk size - 1.
  put("frame_fuzz", "push_pull", std::string(1, '\xff') + gossip::encode_frame(pp));
  put("frame_fuzz", "push_pull_chunked", std::string(1, '\x06') + gossip::encode_frame(pp));
  put("frame_fuzz", "error", std::string(1, '\xff') + gossip::encode_error_frame("not allowed"));
  put("frame_fuzz", "admission",
      std::string(1, '\x20') + gossip::encode_admission_frame("opaque admission bytes"));
  pp.join = false;
  pp.members.resize(1);
  put("frame_fuzz", "two_frames",
      std::string(1, '\x10') + gossip::encode_frame(pp) + gossip::encode_frame(pp));
}

void token_seeds(const identity::sha256_digest& pin) {
  identity::openssl_random rng;
  auto store = must(identity::token_store::make("issuer-1"), "token_store::make");
  const auto now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto one = must(store.create(now, std::chrono::hours{1}, 1, rng, pin), "token create");
  put("token_fuzz", "one_use", must(identity::encode(one), "token encode"));
  auto many = must(store.create(now, std::chrono::hours{24}, 1000, rng, pin), "token create");
  put("token_fuzz", "many_uses", must(identity::encode(many), "token encode"));
}

void pki_seeds() {
  const auto now = std::chrono::system_clock::now();
  auto root_ca = must(identity::create_root("fuzz", now), "create_root");
  auto issuer =
      must(identity::create_issuer(root_ca.key, root_ca.cert, "issuer-1", now), "create_issuer");
  auto node_key = must(identity::generate_key(), "generate_key");
  auto csr = must(identity::make_csr(node_key, "fuzz", "node-1"), "make_csr");
  auto chain = must(identity::sign_node(csr, issuer.key, issuer.cert, {}, "fuzz", "node-1", now),
                    "sign_node");
  // pki_fuzz: first byte chooses the parser (0 cert PEM, 1 chain PEM, 2 cert DER,
  // 3 CSR PEM, 4 CSR DER, 5 key PEM).
  put("pki_fuzz", "cert_pem", "\x00"s + must(identity::to_pem(chain.front()), "to_pem"));
  put("pki_fuzz", "root_pem", "\x00"s + must(identity::to_pem(root_ca.cert), "to_pem"));
  put("pki_fuzz", "chain_pem", "\x01"s + must(identity::to_pem(chain), "to_pem"));
  put("pki_fuzz", "cert_der", "\x02"s + bytes_of(must(identity::to_der(chain.front()), "to_der")));
  put("pki_fuzz", "issuer_der", "\x02"s + bytes_of(must(identity::to_der(issuer.cert), "to_der")));
  put("pki_fuzz", "csr_pem", "\x03"s + must(identity::to_pem(csr), "to_pem"));
  put("pki_fuzz", "csr_der", "\x04"s + bytes_of(must(identity::to_der(csr), "to_der")));
  put("pki_fuzz", "key_pem", "\x05"s + must(identity::to_pem(node_key), "to_pem"));
  token_seeds(must(identity::spki_sha256(root_ca.cert), "spki_sha256"));
}

void admin_seeds() {
  auto framed = [](const std::string& body) {
    const auto n = static_cast<std::uint32_t>(body.size());
    return std::string{static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)} +
           body;
  };
  auto req = [&](std::vector<std::string> args, std::string credential = {}) {
    return framed(actors::encode_admin_request({std::move(args), std::move(credential)}));
  };
  // admin_request_fuzz: first byte = feed chunk size - 1.
  put("admin_request_fuzz", "members", "\xff"s + req({"members"}));
  put("admin_request_fuzz", "keyring_list", "\x03"s + req({"keyring", "list"}));
  put("admin_request_fuzz", "token_create",
      "\xff"s + req({"token", "create", "--ttl", "1h", "--uses", "3"}, std::string(43, 'c')));
  put("admin_request_fuzz", "two_requests", "\x07"s + req({"ping"}) + req({"stats", "--json"}));
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: starling-fuzz-seeds <corpus dir>\n");
    return 2;
  }
  root = argv[1];
  gossip_seeds();
  pki_seeds();
  admin_seeds();
  std::printf("make_seeds: wrote the generated seeds under %s\n", root.c_str());
  return 0;
}
