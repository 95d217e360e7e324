// OpenSSL ownership made explicit: one std::unique_ptr alias per OpenSSL type the identity
// module holds, each with a stateless deleter calling the matching *_free. Edge adapter:
// include it only where OpenSSL objects are handled. Every OpenSSL failure is turned into
// an error with make_openssl_error (identity/errc.hpp), which drains the error queue.
#pragma once

#include <memory>
#include <utility>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace starling::identity {

/// A deleter calling `Free` on a non-null pointer.
template <class T, void (*Free)(T*)> struct openssl_deleter {
  void operator()(T* ptr) const noexcept {
    if (ptr != nullptr)
      Free(ptr);
  }
};

/// Frees a STACK_OF(X509) together with the certificates it holds.
struct x509_stack_deleter {
  void operator()(STACK_OF(X509) * stack) const noexcept { sk_X509_pop_free(stack, X509_free); }
};

/// Frees a GENERAL_NAMES stack together with its names.
struct general_names_deleter {
  void operator()(GENERAL_NAMES* names) const noexcept { GENERAL_NAMES_free(names); }
};

/// Frees a STACK_OF(X509_EXTENSION) together with its extensions.
struct x509_extensions_deleter {
  void operator()(STACK_OF(X509_EXTENSION) * exts) const noexcept {
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
};

/// An owned key (private, or public only).
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;
/// An owned key-generation or key-operation context.
using pkey_ctx_ptr =
    std::unique_ptr<EVP_PKEY_CTX, openssl_deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
/// An owned certificate.
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
/// An owned certificate signing request.
using x509_req_ptr = std::unique_ptr<X509_REQ, openssl_deleter<X509_REQ, X509_REQ_free>>;
/// An owned certificate store (the trust anchors of one verification).
using x509_store_ptr = std::unique_ptr<X509_STORE, openssl_deleter<X509_STORE, X509_STORE_free>>;
/// An owned verification context.
using x509_store_ctx_ptr =
    std::unique_ptr<X509_STORE_CTX, openssl_deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
/// An owned stack of certificates; the certificates are freed with it.
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), x509_stack_deleter>;
/// An owned X.509 extension.
using x509_extension_ptr =
    std::unique_ptr<X509_EXTENSION, openssl_deleter<X509_EXTENSION, X509_EXTENSION_free>>;
/// An owned stack of extensions (a CSR's extension request); freed with its extensions.
using x509_extensions_ptr = std::unique_ptr<STACK_OF(X509_EXTENSION), x509_extensions_deleter>;
/// An owned distinguished name.
using x509_name_ptr = std::unique_ptr<X509_NAME, openssl_deleter<X509_NAME, X509_NAME_free>>;
/// An owned memory or file BIO.
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;
/// An owned message-digest context.
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, openssl_deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
/// An owned object identifier (an extension's OID).
using asn1_object_ptr =
    std::unique_ptr<ASN1_OBJECT, openssl_deleter<ASN1_OBJECT, ASN1_OBJECT_free>>;
/// An owned ASN.1 OCTET STRING (an extension's value).
using asn1_octet_string_ptr =
    std::unique_ptr<ASN1_OCTET_STRING, openssl_deleter<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
/// An owned ASN.1 INTEGER (serial numbers).
using asn1_integer_ptr =
    std::unique_ptr<ASN1_INTEGER, openssl_deleter<ASN1_INTEGER, ASN1_INTEGER_free>>;
/// An owned big number.
using bignum_ptr = std::unique_ptr<BIGNUM, openssl_deleter<BIGNUM, BN_free>>;
/// An owned GENERAL_NAMES stack (subjectAltName contents); freed with its names.
using general_names_ptr = std::unique_ptr<GENERAL_NAMES, general_names_deleter>;
/// An owned single GENERAL_NAME.
using general_name_ptr =
    std::unique_ptr<GENERAL_NAME, openssl_deleter<GENERAL_NAME, GENERAL_NAME_free>>;
/// An owned basicConstraints value.
using basic_constraints_ptr =
    std::unique_ptr<BASIC_CONSTRAINTS, openssl_deleter<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free>>;

/// Takes a new reference to `cert` (X509_up_ref); null stays null.
[[nodiscard]] inline x509_ptr share(X509* cert) noexcept {
  if (cert != nullptr && X509_up_ref(cert) != 1)
    return nullptr;
  return x509_ptr{cert};
}

/// Takes a new reference to `key` (EVP_PKEY_up_ref); null stays null.
[[nodiscard]] inline pkey_ptr share(EVP_PKEY* key) noexcept {
  if (key != nullptr && EVP_PKEY_up_ref(key) != 1)
    return nullptr;
  return pkey_ptr{key};
}

/// A copyable handle to a reference-counted OpenSSL object: copies share the object (one
/// more reference), the last handle frees it. The object must not be mutated once shared;
/// OpenSSL allows concurrent read-only use of keys and certificates from several threads.
template <class Ptr> class shared_handle {
public:
  /// An empty handle.
  shared_handle() noexcept = default;
  /// Takes ownership of `ptr`.
  explicit shared_handle(Ptr ptr) noexcept : ptr_(std::move(ptr)) {}
  shared_handle(const shared_handle& other) noexcept : ptr_(share(other.ptr_.get())) {}
  shared_handle& operator=(const shared_handle& other) noexcept {
    if (this != &other)
      ptr_ = share(other.ptr_.get());
    return *this;
  }
  shared_handle(shared_handle&&) noexcept = default;
  shared_handle& operator=(shared_handle&&) noexcept = default;
  ~shared_handle() = default;

  /// The OpenSSL object (owned by this handle), or null when empty.
  [[nodiscard]] auto* native() const noexcept { return ptr_.get(); }
  /// True unless empty.
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

private:
  Ptr ptr_;
};

} // namespace starling::identity
