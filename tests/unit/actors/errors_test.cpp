// The one error renderer (proto/wire/errors.hpp, decision 0015): every module's codes render
// with their names through it, the modules' own render functions and the CLI's message_of
// give the texts they always gave, an unknown category or code renders as numbers, and the
// wire form of a code is decided on, not its text.
#include <string>

#include <caf/sec.hpp>
#include <gtest/gtest.h>

#include "actors/errc.hpp"
#include "gossip/errc.hpp"
#include "identity/errc.hpp"
#include "proto/wire/errors.hpp"

namespace starling {
namespace {

TEST(error_registry, every_code_of_every_module_renders_with_its_name) {
  for (int c = 1; c <= static_cast<int>(identity::errc::routing_unknown_key); ++c) {
    auto x = static_cast<identity::errc>(c);
    EXPECT_EQ(wire::render_error(identity::make_error(x, "ctx")),
              std::string{"identity."} + identity::to_string(x) + ": ctx");
    EXPECT_NE(std::string{identity::to_string(x)}, "unknown") << c;
  }
  for (int c = 1; c <= static_cast<int>(gossip::errc::join_failed); ++c) {
    auto x = static_cast<gossip::errc>(c);
    EXPECT_EQ(wire::render_error(gossip::make_error(x, "ctx")),
              std::string{"gossip."} + gossip::to_string(x) + ": ctx");
    EXPECT_NE(std::string{gossip::to_string(x)}, "unknown") << c;
  }
  for (int c = 1; c <= static_cast<int>(actors::errc::bad_request); ++c) {
    auto x = static_cast<actors::errc>(c);
    EXPECT_EQ(wire::render_error(actors::make_error(x, "ctx")),
              std::string{"actors."} + actors::to_string(x) + ": ctx");
    EXPECT_NE(std::string{actors::to_string(x)}, "unknown") << c;
  }
  EXPECT_EQ(wire::render_error(identity::make_error(identity::errc::token_expired, "token 1f")),
            "identity.token_expired: token 1f");
  EXPECT_EQ(wire::render_error(gossip::make_error(gossip::errc::timeout)), "gossip.timeout");
  // CAF's own codes have names too.
  EXPECT_EQ(wire::render_error(caf::make_error(caf::sec::request_timeout)),
            "system.request_timeout");
}

TEST(error_registry, the_modules_renderers_keep_their_texts) {
  auto token = identity::make_error(identity::errc::token_exhausted, "token ab");
  EXPECT_EQ(identity::render(token), "identity.token_exhausted: token ab");
  EXPECT_EQ(gossip::render(token), "identity.token_exhausted: token ab");
  EXPECT_EQ(gossip::render(gossip::make_error(gossip::errc::malformed, "x")),
            "gossip.malformed: x");
  // A refusal carries the reason it was given verbatim.
  EXPECT_EQ(gossip::refusal_reason(gossip::make_error(gossip::errc::peer_refused, "why")), "why");
  EXPECT_EQ(gossip::refusal_reason(token), "identity.token_exhausted: token ab");
  // The CLI prints the agent's own refusals as their text, anything else rendered.
  EXPECT_EQ(actors::message_of(actors::make_error(actors::errc::request_failed, "no issuer")),
            "no issuer");
  EXPECT_EQ(actors::message_of(gossip::make_error(gossip::errc::io_failure, "refused")),
            "gossip.io_failure: refused");
  EXPECT_EQ(actors::message_of(token), "identity.token_exhausted: token ab");
  EXPECT_EQ(actors::message_of(caf::error{}), "no error");
  EXPECT_EQ(identity::render(caf::error{}), "no error");
}

TEST(error_registry, an_unknown_category_or_code_renders_as_numbers) {
  caf::error stranger{7, caf::atom("nosuchmod"), caf::make_message(std::string{"what"})};
  EXPECT_EQ(wire::render_error(stranger), "nosuchmod.7: what");
  EXPECT_FALSE(wire::error_code_name(caf::atom("nosuchmod"), 7));
  caf::error no_context{9, caf::atom("nosuchmod")};
  EXPECT_EQ(wire::render_error(no_context), "nosuchmod.9");
  // A code the module does not have (a newer peer's): the number, never a wrong name.
  caf::error future{200, identity::errc_category, caf::make_message(std::string{"new"})};
  EXPECT_EQ(wire::render_error(future), "identity.200: new");
  EXPECT_EQ(identity::to_string(static_cast<identity::errc>(200)), std::string{"unknown"});
  EXPECT_EQ(*wire::error_code_name(identity::errc_category,
                                   static_cast<std::uint8_t>(identity::errc::quorum_not_met)),
            "quorum_not_met");
}

TEST(error_registry, a_code_travels_as_category_and_number) {
  auto err = identity::make_error(identity::errc::quorum_not_met, "1 of 2");
  auto code = wire::code_of(err);
  EXPECT_EQ(code.category, "identity");
  EXPECT_EQ(code.code, static_cast<std::uint32_t>(identity::errc::quorum_not_met));
  EXPECT_TRUE(wire::is_code(code, identity::errc_category,
                            static_cast<std::uint8_t>(identity::errc::quorum_not_met)));
  EXPECT_FALSE(wire::is_code(code, gossip::errc_category,
                             static_cast<std::uint8_t>(identity::errc::quorum_not_met)));
  EXPECT_EQ(wire::code_of(caf::error{}), wire::error_code{});
}

} // namespace
} // namespace starling
