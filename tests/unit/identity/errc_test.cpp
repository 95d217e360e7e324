#include <gtest/gtest.h>
#include <openssl/err.h>

#include "identity/errc.hpp"

namespace starling::identity {
namespace {

TEST(identity_errc, renders_category_code_and_context) {
  auto err = make_error(errc::expired, "node n1, notAfter 2026-01-01");
  EXPECT_EQ(render(err), "identity.expired: node n1, notAfter 2026-01-01");
  EXPECT_TRUE(is(err, errc::expired));
  EXPECT_FALSE(is(err, errc::revoked));
  EXPECT_FALSE(is(caf::error{}, errc::expired));
}

TEST(identity_errc, openssl_error_drains_the_queue_into_the_context) {
  ERR_put_error(ERR_LIB_X509, 0, ERR_R_MALLOC_FAILURE, __FILE__, __LINE__);
  auto err = make_openssl_error(errc::crypto_failure, "signing");
  EXPECT_TRUE(is(err, errc::crypto_failure));
  EXPECT_NE(render(err).find("identity.crypto_failure: signing; error:"), std::string::npos)
      << render(err);
  EXPECT_EQ(ERR_get_error(), 0u);
}

} // namespace
} // namespace starling::identity
