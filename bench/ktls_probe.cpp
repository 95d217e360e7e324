// starling-ktls-probe: can this machine run TLS 1.3 in the kernel (kTLS) under OpenSSL 3's
// SSL_OP_ENABLE_KTLS? For bench/proxy_vs_haproxy.sh and docs/bench-proxy.md (issue 17: is a
// kTLS data plane worth doing here?).
//
// It reports, one "key: value" line each:
// - whether this OpenSSL was built with kTLS (OPENSSL_NO_KTLS) and its version;
// - the kernel side: /proc/net/tls_stat (present once the tls module is loaded) and a raw
//   setsockopt(TCP_ULP, "tls") on a connected loopback socket (its errno when refused);
// - per TLS 1.3 cipher suite: a loopback handshake between two SSL objects (a throwaway
//   ECDSA P-256 certificate made in memory, SSL_OP_ENABLE_KTLS on both contexts), one
//   message each way, then BIO_get_ktls_send / BIO_get_ktls_recv on each side.
// Exit code 0 whatever it finds (it is a probe); 1 when the TLS exchange itself failed.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using ctx_ptr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
using ssl_ptr = std::unique_ptr<SSL, decltype(&SSL_free)>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using x509_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

std::string openssl_errors() {
  std::string out;
  while (const auto e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += out.empty() ? "" : "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error" : out;
}

/// A connected pair of loopback TCP sockets (client, server), or {-1, -1}.
std::pair<int, int> loopback_pair() {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(l, 1) != 0 || ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(l);
    return {-1, -1};
  }
  const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(c);
    ::close(l);
    return {-1, -1};
  }
  const int s = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(l);
  return {c, s};
}

/// The kernel's answer to attaching the "tls" upper-layer protocol to a TCP socket.
std::string raw_ulp() {
  const auto [c, s] = loopback_pair();
  if (c < 0)
    return "could not make a loopback connection";
  const int r = ::setsockopt(c, SOL_TCP, TCP_ULP, "tls", sizeof "tls");
  const int err = errno;
  ::close(c);
  ::close(s);
  if (r == 0)
    return "accepted (the kernel has TLS ULP support)";
  return std::string("refused: ") + std::strerror(err) +
         (err == ENOENT ? " (no tls module: CONFIG_TLS off or not loaded)" : "");
}

pkey_ptr make_key() { return {EVP_EC_gen("P-256"), EVP_PKEY_free}; }

x509_ptr make_cert(EVP_PKEY* key) {
  x509_ptr cert{X509_new(), X509_free};
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), key);
  auto* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ktls-probe"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_sign(cert.get(), key, EVP_sha256()) == 0)
    return {nullptr, X509_free};
  return cert;
}

/// One loopback TLS 1.3 exchange with `suite`; prints what each side got.
bool probe_suite(const char* suite, EVP_PKEY* key, X509* cert) {
  ctx_ptr sctx{SSL_CTX_new(TLS_server_method()), SSL_CTX_free};
  ctx_ptr cctx{SSL_CTX_new(TLS_client_method()), SSL_CTX_free};
  for (auto* ctx : {sctx.get(), cctx.get()}) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
    if (SSL_CTX_set_ciphersuites(ctx, suite) != 1) {
      std::printf("%s: unknown suite (%s)\n", suite, openssl_errors().c_str());
      return false;
    }
  }
  if (SSL_CTX_use_certificate(sctx.get(), cert) != 1 ||
      SSL_CTX_use_PrivateKey(sctx.get(), key) != 1) {
    std::printf("%s: server credentials refused (%s)\n", suite, openssl_errors().c_str());
    return false;
  }
  const auto [c, s] = loopback_pair();
  if (c < 0) {
    std::printf("%s: no loopback connection: %s\n", suite, std::strerror(errno));
    return false;
  }
  ssl_ptr server{SSL_new(sctx.get()), SSL_free};
  ssl_ptr client{SSL_new(cctx.get()), SSL_free};
  SSL_set_fd(server.get(), s);
  SSL_set_fd(client.get(), c);
  bool server_ok = false;
  std::thread t([&] {
    char buf[16];
    server_ok = SSL_accept(server.get()) == 1 && SSL_read(server.get(), buf, 5) == 5 &&
                SSL_write(server.get(), "world", 5) == 5;
  });
  char buf[16];
  const bool client_ok = SSL_connect(client.get()) == 1 &&
                         SSL_write(client.get(), "hello", 5) == 5 &&
                         SSL_read(client.get(), buf, 5) == 5;
  t.join();
  if (!client_ok || !server_ok) {
    std::printf("%s: exchange failed (%s)\n", suite, openssl_errors().c_str());
    ::close(c);
    ::close(s);
    return false;
  }
  std::printf("%s: %s; client ktls send %d recv %d; server ktls send %d recv %d\n", suite,
              SSL_get_version(client.get()), BIO_get_ktls_send(SSL_get_wbio(client.get())) ? 1 : 0,
              BIO_get_ktls_recv(SSL_get_rbio(client.get())) ? 1 : 0,
              BIO_get_ktls_send(SSL_get_wbio(server.get())) ? 1 : 0,
              BIO_get_ktls_recv(SSL_get_rbio(server.get())) ? 1 : 0);
  SSL_shutdown(client.get());
  ::close(c);
  ::close(s);
  return true;
}

} // namespace

int main() {
  std::printf("openssl: %s\n", OpenSSL_version(OPENSSL_VERSION));
#ifdef OPENSSL_NO_KTLS
  std::printf("openssl built with ktls: no (OPENSSL_NO_KTLS)\n");
#else
  std::printf("openssl built with ktls: yes\n");
#endif
  std::ifstream stat("/proc/net/tls_stat");
  std::printf("/proc/net/tls_stat: %s\n", stat ? "present" : "absent");
  std::printf("setsockopt(TCP_ULP, \"tls\"): %s\n", raw_ulp().c_str());
  auto key = make_key();
  auto cert = key ? make_cert(key.get()) : x509_ptr{nullptr, X509_free};
  if (!cert) {
    std::printf("could not make a test certificate (%s)\n", openssl_errors().c_str());
    return 1;
  }
  bool ok = true;
  for (const char* suite :
       {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
    ok = probe_suite(suite, key.get(), cert.get()) && ok;
  return ok ? 0 : 1;
}
