// Errors of the identity module: certificates, chains, tokens, the gossip keyring.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace starling::identity {

/// Why an identity operation or an input was refused. Every refusal of untrusted input has
/// its own code, so that it can be counted in a metric of its own.
enum class errc : std::uint8_t {
  // -- certificates and chains ---------------------------------------------------------
  no_certificate = 1, ///< the peer presented no certificate
  untrusted_chain,    ///< the chain does not lead to a root of the trust bundle
  foreign_mesh,       ///< a valid-looking identity of another mesh
  expired,            ///< a certificate of the chain is past its notAfter
  not_yet_valid,      ///< a certificate of the chain is before its notBefore
  revoked,            ///< the public key (SPKI SHA-256) of a chain member is revoked
  name_mismatch,      ///< the certificate names another node than the member it claims
  bad_certificate,    ///< unparsable, wrong key usage, missing or malformed SPIFFE URI
  name_constraint,    ///< an issuer signed outside the mesh it is constrained to
  bad_request,        ///< a CSR that does not verify or asks for a name it may not have
  // -- join tokens ------------------------------------------------------------------------
  token_malformed,  ///< not a token of this format
  token_unknown,    ///< no issuer record for the token id
  token_forged,     ///< the secret does not match the record
  token_expired,    ///< past the token's expiry
  token_exhausted,  ///< every use of the token is spent
  token_wrong_mesh, ///< the token pins another mesh root
  // -- gossip keyring -------------------------------------------------------------------
  unknown_key,     ///< sealed under a key id not in the keyring
  tampered,        ///< authentication of a sealed datagram failed
  replayed,        ///< a sealed datagram seen before, or outside the time window
  keyring_refused, ///< a keyring operation that would break it (remove the primary key...)
  // -- local ------------------------------------------------------------------------------
  crypto_failure,   ///< OpenSSL failed; the context carries its error queue
  io_failure,       ///< reading or writing a file failed
  already_exists,   ///< refusing to overwrite a key or certificate file
  invalid_argument, ///< a bad name, duration or option given by the operator
  // -- gossip keyring, continued ----------------------------------------------------------
  sealed_malformed, ///< not a sealed datagram of a known version (garbage, truncated)
  // -- signed statements (revocations) and issuer authentication ---------------------------
  bad_signature,  ///< a signed statement whose signature does not verify
  not_an_issuer,  ///< a certificate that is not a CA of the mesh speaks for an issuer
  revokes_ca_key, ///< a revocation of a root's or an issuer's key (issuers revoke node keys)
  // -- admission quorum ---------------------------------------------------------------------
  quorum_not_met,  ///< a node certificate endorsed by fewer issuers than admission_quorum
  name_taken,      ///< admission for a name an issuer, a live member or another valid key holds
  stale_statement, ///< a signed issuer action too old or for another member (replayed)
  // -- gossip keyring, continued ----------------------------------------------------------
  wrong_receiver, ///< a sealed datagram bound to another receiver (replayed to another member)
  // -- routing table signatures (identity/routing_keys.hpp) ---------------------------------
  routing_unknown_key, ///< a routing record signed by a key this node has not learned yet
};

/// The CAF error category of this module.
constexpr caf::atom_value errc_category = caf::atom("identity");

/// Human-readable name of `x` ("untrusted_chain", ...).
const char* to_string(errc x) noexcept;

/// Makes a caf::error of category "identity" carrying `context` (what, and which input).
caf::error make_error(errc x, std::string context = {});

/// A malformed request from a peer: make_error(errc::bad_request, reason).
caf::error bad_request(std::string reason);

/// Like make_error(x, context), appending OpenSSL's error queue (drained) to the context.
caf::error make_openssl_error(errc x, std::string context);

/// True if `err` is of this module's category with code `x`.
bool is(const caf::error& err, errc x) noexcept;

/// Renders an identity error for logs: "identity.expired: <context>". Works for any error.
std::string render(const caf::error& err);

} // namespace starling::identity
