// starling-tls-bench: the TLS half of bench/tls_vs_openssl.sh.
//
//   starling-tls-bench pki DIR        writes a fresh test mesh as PEM files into DIR (root,
//                                     two issuers, a server and a client node) for both
//                                     servers and for openssl s_time. The client's
//                                     certificate carries the endorsements of both issuers
//                                     (admission quorum, docs/decisions/0009).
//   starling-tls-bench serve DIR PORT [QUORUM]
//                                     serves mutual TLS 1.3 on 127.0.0.1:PORT with Starling's
//                                     tls_context (identity/tls.hpp): full handshake with
//                                     both chains verified (and, with QUORUM 2, the client's
//                                     endorsements counted), then close; one thread, like
//                                     `openssl s_server`. Prints counts on SIGTERM.
//
// The same client (openssl s_time -new) drives both servers, so the ratio compares the
// server side: Starling's context and verify callback against OpenSSL's own.
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "identity/admission.hpp"
#include "identity/endorsement.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "identity/pki.hpp"
#include "identity/tls.hpp"
#include "identity/trust.hpp"

namespace id = starling::identity;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> stop{false};

template <class T> T must(caf::expected<T> v, const char* what) {
  if (!v) {
    std::cerr << "starling-tls-bench: " << what << ": " << id::render(v.error()) << '\n';
    std::exit(1);
  }
  return std::move(*v);
}

void must_ok(const caf::error& err, const char* what) {
  if (err) {
    std::cerr << "starling-tls-bench: " << what << ": " << id::render(err) << '\n';
    std::exit(1);
  }
}

void write(const fs::path& file, const std::string& pem, bool secret) {
  must_ok(secret ? id::write_private_file(file, pem) : id::write_public_file(file, pem),
          file.c_str());
}

int make_pki(const fs::path& dir) {
  const auto now = std::chrono::system_clock::now();
  auto root = must(id::create_root("bench.mesh", now), "root");
  auto issuer = must(id::create_issuer(root.key, root.cert, "issuer-1", now), "issuer");
  write(dir / "root.crt", must(id::to_pem(root.cert), "pem"), false);
  write(dir / "issuer.crt", must(id::to_pem(issuer.cert), "pem"), false);
  // The server's certificate comes from the issuer (the usual chain). The client's is
  // signed by the root itself: openssl s_time can present one certificate only, no chain.
  // It carries the endorsements of two issuers, which a server with quorum 2 checks (and
  // the others ignore: the extension is not critical).
  auto bundle = must(id::trust_bundle::make({root.cert}), "bundle");
  auto pin = must(id::spki_sha256(root.cert), "pin");
  auto issuer2 = must(id::create_issuer(root.key, root.cert, "issuer-2", now), "issuer 2");
  std::vector<id::issuer_material> endorsers{
      {issuer.key, issuer.cert, bundle, "bench.mesh", "issuer-1", pin},
      {issuer2.key, issuer2.cert, bundle, "bench.mesh", "issuer-2", pin}};
  for (const char* name : {"server", "client"}) {
    const bool client = std::string{name} == "client";
    const auto& by = client ? root : issuer;
    auto key = must(id::generate_key(), "key");
    auto csr = must(id::make_csr(key, "bench.mesh", name), "csr");
    std::vector<id::raw_extension> extra;
    if (client) {
      auto spki = must(id::spki_sha256(key), "spki");
      std::vector<id::endorsement> set;
      for (const auto& e : endorsers)
        set.push_back(must(id::make_endorsement(e, spki, name, now), "endorsement"));
      extra.push_back({std::string{id::endorsements_oid},
                       must(id::encode_endorsement_extension(set), "extension")});
    }
    auto chain = must(
        id::sign_node(csr, by.key, by.cert, {}, "bench.mesh", name, now, id::node_validity, extra),
        "sign");
    write(dir / (std::string{name} + ".key"), must(id::to_pem(key), "pem"), true);
    write(dir / (std::string{name} + ".crt"), must(id::to_pem(chain.front()), "pem"), false);
    write(dir / (std::string{name} + "-chain.crt"), must(id::to_pem(chain), "pem"), false);
  }
  return 0;
}

int serve(const fs::path& dir, int port, std::size_t quorum) {
  auto read = [&](const char* f) { return must(id::read_file(dir / f), f); };
  id::tls_options o;
  o.key = must(id::private_key_from_pem(read("server.key")), "server key");
  o.certs = must(id::certificates_from_pem(read("server-chain.crt")), "server chain");
  auto bundle = must(id::trust_bundle::from_pem(read("root.crt")), "bundle");
  o.trust = std::make_shared<id::trust_state>(std::move(bundle), id::revocation_set{}, quorum);
  auto ctx = must(id::tls_context::make(std::move(o)), "tls context");

  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || ::listen(lfd, 512) != 0) {
    std::perror("starling-tls-bench: bind");
    return 1;
  }
  struct sigaction act {};
  act.sa_handler = [](int) { stop = true; };
  ::sigaction(SIGTERM, &act, nullptr); // no SA_RESTART: accept() returns EINTR
  ::sigaction(SIGINT, &act, nullptr);
  std::cout << "ready" << std::endl;
  unsigned long ok = 0, refused = 0;
  while (!stop) {
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0)
      continue;
    auto ssl = ctx->new_session(id::tls_role::server);
    if (ssl && SSL_set_fd(ssl->get(), fd) == 1 && SSL_accept(ssl->get()) == 1 &&
        id::tls_context::peer_of(ssl->get())->identity) {
      ++ok;
      SSL_shutdown(ssl->get());
    } else {
      ++refused;
    }
    ERR_clear_error();
    ::close(fd);
  }
  std::cout << "handshakes " << ok << " refused " << refused << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "pki" && argc == 3)
    return make_pki(argv[2]);
  if (mode == "serve" && (argc == 4 || argc == 5))
    return serve(argv[2], std::stoi(argv[3]), argc == 5 ? std::stoul(argv[4]) : 1);
  std::cerr << "usage: starling-tls-bench pki DIR | serve DIR PORT [QUORUM]\n";
  return 2;
}
