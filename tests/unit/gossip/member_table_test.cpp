// Unit tests of the membership core's storage engine (gossip/member_table.hpp): slots,
// ghosts, side records, counts and the derived views, without the SWIM logic.
#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/member_card.hpp"
#include "gossip/member_table.hpp"
#include "gossip/suspicion.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;
using slot_t = member_table::slot_t;

const time_point t0 = time_point{} + 24h;

/// A table for "self" at 10.0.0.1:7946, incarnation 3, with `names` added alive.
struct fixture {
  card_pool pool;
  member_table table{pool.intern("self", "10.0.0.1:7946", {}), 3, t0};

  slot_t add(const std::string& name, std::uint64_t inc = 1, time_point at = t0) {
    return table.add(pool.intern(name, name + ":7946", {}), inc, at);
  }

  std::vector<std::string> names_in_order() const {
    std::vector<std::string> out;
    for (auto s : table.in_name_order())
      out.emplace_back(table.name_at(s));
    return out;
  }
};

TEST(member_table, starts_with_this_node_alone_in_slot_zero) {
  fixture f;
  const auto& me = f.table.self();
  EXPECT_EQ(me.card.name(), "self");
  EXPECT_EQ(me.card.address(), "10.0.0.1:7946");
  EXPECT_EQ(me.incarnation, 3u);
  EXPECT_EQ(me.since, t0);
  EXPECT_TRUE(me.present);
  EXPECT_EQ(f.table.find_slot("self"), member_table::self_slot);
  EXPECT_EQ(f.table.count(member_state::alive), 1u);
  EXPECT_EQ(f.table.live_count(), 1u);
  EXPECT_EQ(f.table.find("nobody"), nullptr);
  EXPECT_EQ(f.table.find_slot("nobody"), member_table::no_slot);
}

TEST(member_table, finds_added_members_and_lists_them_in_name_order) {
  fixture f;
  // Added out of order, in two batches: the lazy sort must merge the second batch in.
  for (auto n : {"m3", "m1", "m5"})
    f.add(n);
  EXPECT_EQ(f.names_in_order(), (std::vector<std::string>{"m1", "m3", "m5", "self"}));
  for (auto n : {"m4", "a0", "m2"})
    f.add(n);
  EXPECT_EQ(f.names_in_order(),
            (std::vector<std::string>{"a0", "m1", "m2", "m3", "m4", "m5", "self"}));
  EXPECT_EQ(f.table.count(member_state::alive), 7u);
  const auto* r = f.table.find("m4");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->card.address(), "m4:7946");
  EXPECT_EQ(f.table.slot_of(*r), f.table.find_slot("m4"));
  EXPECT_EQ(&f.table.at(f.table.find_slot("m4")), r);
  EXPECT_EQ(to_member(*r).name, "m4");
  EXPECT_EQ(to_member(*r).state, member_state::alive);
}

TEST(member_table, state_changes_keep_counts_suspects_and_side_records) {
  fixture f;
  f.add("a");
  f.add("b");
  auto& a = *f.table.find("a");
  f.table.set_declared_by(a, "b");
  f.table.set_state(a, member_state::suspect, t0 + 1s);
  f.table.extra_of(a).timer = std::make_unique<suspicion>("b", 2, 1s, 6s, t0 + 1s);
  EXPECT_EQ(a.since, t0 + 1s);
  EXPECT_EQ(f.table.count(member_state::alive), 2u);
  EXPECT_EQ(f.table.count(member_state::suspect), 1u);
  EXPECT_EQ(f.table.live_count(), 3u);
  EXPECT_EQ(f.table.suspects().count("a"), 1u);
  EXPECT_EQ(f.table.declared_by(a), "b");
  EXPECT_TRUE(f.table.has_timer(a));
  EXPECT_TRUE(f.table.departed().empty());

  // Dead: the timer goes, who declared it stays, the member is listed as departed.
  f.table.set_state(a, member_state::dead, t0 + 2s);
  EXPECT_FALSE(f.table.has_timer(a));
  EXPECT_EQ(f.table.declared_by(a), "b");
  EXPECT_TRUE(f.table.suspects().empty());
  EXPECT_EQ(f.table.count(member_state::dead), 1u);
  EXPECT_EQ(f.table.live_count(), 2u);
  EXPECT_EQ(f.table.departed(), std::vector<slot_t>{f.table.find_slot("a")});

  // Alive again with declared_by cleared first: the side record is given back.
  f.table.set_declared_by(a, {});
  f.table.set_state(a, member_state::alive, t0 + 3s);
  EXPECT_EQ(a.extra, 0u);
  EXPECT_EQ(f.table.extra(a), nullptr);
  EXPECT_EQ(f.table.declared_by(a), "");
  EXPECT_EQ(f.table.count(member_state::alive), 3u);
  EXPECT_EQ(f.table.count(member_state::dead), 0u);

  // An alive row with nobody declaring anything never gets a side record.
  auto& b = *f.table.find("b");
  f.table.set_declared_by(b, {});
  EXPECT_EQ(b.extra, 0u);
}

TEST(member_table, this_node_leaving_is_not_listed_as_departed) {
  fixture f;
  f.table.set_state(f.table.self(), member_state::left, t0 + 1s);
  EXPECT_EQ(f.table.count(member_state::left), 1u);
  EXPECT_TRUE(f.table.departed().empty()) << "slot 0 is never reaped";
}

TEST(member_table, reaping_leaves_a_ghost_that_a_returning_name_gets_back) {
  fixture f;
  f.add("a");
  f.add("b");
  const auto slot_a = f.table.find_slot("a");
  auto& a = *f.table.find("a");
  f.table.set_declared_by(a, "b");
  f.table.set_state(a, member_state::dead, t0 + 1s);

  std::vector<std::string> reaped;
  f.table.sweep_departed([&](slot_t s, const member_table::row& r) {
    EXPECT_EQ(s, slot_a);
    EXPECT_TRUE(r.present) << "the decision reads the row before it becomes a ghost";
    reaped.emplace_back(r.card.name());
    return true;
  });
  EXPECT_EQ(reaped, std::vector<std::string>{"a"});
  EXPECT_TRUE(f.table.departed().empty());
  EXPECT_EQ(f.table.find("a"), nullptr) << "a ghost is not a member";
  EXPECT_EQ(f.table.find_slot("a"), slot_a) << "but its slot stays reserved";
  EXPECT_EQ(f.table.at(slot_a).extra, 0u) << "side record freed";
  EXPECT_EQ(f.table.count(member_state::dead), 0u);
  EXPECT_EQ(f.table.count(member_state::alive), 2u);
  EXPECT_EQ(f.names_in_order(), (std::vector<std::string>{"a", "b", "self"}))
      << "ghosts stay in the name order (present false)";

  // Back before the ghosts are freed: same slot, counted alive again.
  EXPECT_EQ(f.add("a", 9, t0 + 5s), slot_a);
  ASSERT_NE(f.table.find("a"), nullptr);
  EXPECT_EQ(f.table.find("a")->incarnation, 9u);
  EXPECT_EQ(f.table.find("a")->since, t0 + 5s);
  EXPECT_EQ(f.table.count(member_state::alive), 3u);
  f.table.free_ghosts(); // "a" came back: nothing to free
  EXPECT_EQ(f.table.find_slot("a"), slot_a);
}

TEST(member_table, freed_ghost_slots_are_reused) {
  fixture f;
  f.add("a");
  const auto slot_a = f.table.find_slot("a");
  f.table.set_state(*f.table.find("a"), member_state::left, t0 + 1s);
  f.table.sweep_departed([](slot_t, const member_table::row&) { return true; });
  f.table.free_ghosts();
  EXPECT_EQ(f.table.find_slot("a"), member_table::no_slot);
  EXPECT_EQ(f.names_in_order(), std::vector<std::string>{"self"});
  const auto slots = f.table.slots();
  EXPECT_EQ(f.add("z"), slot_a) << "a freed slot is taken before the table grows";
  EXPECT_EQ(f.table.slots(), slots);
  EXPECT_EQ(f.names_in_order(), (std::vector<std::string>{"self", "z"}));
}

TEST(member_table, sweep_keeps_the_young_drops_the_returned_and_visits_each_slot_once) {
  fixture f;
  for (auto n : {"a", "b", "c"})
    f.add(n);
  auto kill = [&](const char* n, time_point at) {
    f.table.set_declared_by(*f.table.find(n), "self");
    f.table.set_state(*f.table.find(n), member_state::dead, at);
  };
  kill("a", t0 + 1s);
  kill("b", t0 + 9s);
  kill("c", t0 + 1s);
  // c comes back, then dies again: listed twice.
  f.table.set_declared_by(*f.table.find("c"), {});
  f.table.set_state(*f.table.find("c"), member_state::alive, t0 + 2s);
  kill("c", t0 + 3s);
  // a comes back for good: its entry is stale.
  f.table.set_declared_by(*f.table.find("a"), {});
  f.table.set_state(*f.table.find("a"), member_state::alive, t0 + 4s);
  ASSERT_EQ(f.table.departed().size(), 4u);

  std::vector<std::string> asked;
  f.table.sweep_departed([&](slot_t, const member_table::row& r) {
    asked.emplace_back(r.card.name());
    return r.since < t0 + 5s; // reap what died before t0 + 5s
  });
  EXPECT_EQ(asked, (std::vector<std::string>{"b", "c"})) << "each once, a skipped";
  EXPECT_EQ(f.table.departed(), std::vector<slot_t>{f.table.find_slot("b")});
  EXPECT_NE(f.table.find("b"), nullptr);
  EXPECT_EQ(f.table.find("c"), nullptr);
  EXPECT_EQ(f.table.count(member_state::dead), 1u);
  EXPECT_EQ(f.table.count(member_state::alive), 2u);
}

TEST(member_table, many_members_through_growth_and_churn) {
  fixture f;
  for (int i = 0; i < 2000; ++i)
    f.add("n" + std::to_string(i));
  for (int i = 0; i < 2000; i += 2) {
    auto& r = *f.table.find("n" + std::to_string(i));
    f.table.set_declared_by(r, "self");
    f.table.set_state(r, member_state::dead, t0);
  }
  f.table.sweep_departed([](slot_t, const member_table::row&) { return true; });
  f.table.free_ghosts();
  EXPECT_EQ(f.table.count(member_state::alive), 1001u);
  for (int i = 0; i < 2000; ++i) {
    const auto name = "n" + std::to_string(i);
    EXPECT_EQ(f.table.find(name) != nullptr, i % 2 == 1) << name;
  }
  auto order = f.names_in_order();
  EXPECT_EQ(order.size(), 1001u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  EXPECT_EQ(f.pool.size(), 1001u) << "reaped members' cards were released";
}

TEST(member_table, suspicion_index_follows_timers_confirmations_and_state) {
  fixture f;
  for (auto n : {"a", "b", "c"})
    f.add(n);
  EXPECT_EQ(f.table.earliest_suspicion(), time_point::max());
  auto suspect = [&](const char* n, time_point at, duration timeout) {
    auto& r = *f.table.find(n);
    f.table.set_state(r, member_state::suspect, at);
    // k = 1: one confirmation takes the timeout from max to min.
    f.table.extra_of(r).timer = std::make_unique<suspicion>("self", 1, timeout / 4, timeout, at);
    f.table.note_suspicion(r);
  };
  suspect("a", t0, 8s);
  suspect("b", t0, 4s);
  EXPECT_EQ(f.table.earliest_suspicion(), t0 + 4s);
  // A confirmation moves a's deadline to its minimum, before b's.
  auto& a = *f.table.find("a");
  ASSERT_TRUE(f.table.extra(a)->timer->confirm("c"));
  f.table.note_suspicion(a);
  EXPECT_EQ(f.table.earliest_suspicion(), t0 + 2s);
  // Verifying: a's timer no longer counts. Alive again: neither does b's.
  f.table.extra(a)->verifying = true;
  EXPECT_EQ(f.table.earliest_suspicion(), t0 + 4s);
  f.table.set_state(*f.table.find("b"), member_state::alive, t0 + 1s);
  EXPECT_EQ(f.table.earliest_suspicion(), time_point::max());
  // Due timers are taken out; a grace period noted again is the next deadline.
  f.table.extra(a)->verifying = false;
  f.table.note_suspicion(a);
  suspect("c", t0 + 1s, 8s);
  EXPECT_TRUE(f.table.take_due_suspicions(t0 + 1s).empty());
  auto due = f.table.take_due_suspicions(t0 + 3s);
  EXPECT_EQ(due, std::vector<slot_t>{f.table.find_slot("a")});
  EXPECT_EQ(f.table.earliest_suspicion(), t0 + 9s) << "a was taken out, c is next";
  f.table.extra(a)->not_before = t0 + 5s;
  f.table.note_suspicion(a);
  EXPECT_EQ(f.table.earliest_suspicion(), t0 + 5s);
}

TEST(member_table, a_tail_sweep_gives_the_list_a_full_sweep_gives) {
  // Two tables through the same random deaths, returns and re-deaths; one sweeps only the
  // tail whenever nothing is due and nothing came back, the other always walks it all.
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    fixture full;
    fixture tail;
    std::mt19937_64 rng(seed);
    constexpr int members = 40;
    for (int i = 0; i < members; ++i) {
      full.add("m" + std::to_string(i));
      tail.add("m" + std::to_string(i));
    }
    const auto reap_after = 30s;
    auto now = t0;
    for (int step = 0; step < 400; ++step) {
      now += std::chrono::milliseconds(rng() % 500);
      const auto name = "m" + std::to_string(rng() % members);
      const auto pick = rng() % 3;
      for (auto* f : {&full, &tail}) {
        auto* r = f->table.find(name);
        if (r == nullptr) {
          f->add(name, 1, now);
          continue;
        }
        const auto next = pick == 0   ? member_state::alive
                          : pick == 1 ? member_state::dead
                                      : member_state::left;
        if (next == member_state::alive)
          f->table.set_declared_by(*r, {});
        else
          f->table.set_declared_by(*r, "self");
        f->table.set_state(*r, next, now);
      }
      if (rng() % 4 != 0)
        continue;
      auto reap = [&](std::vector<std::string>& log) {
        return [&, now](slot_t, const member_table::row& r) {
          if (now - r.since < reap_after)
            return false;
          log.emplace_back(r.card.name());
          return true;
        };
      };
      std::vector<std::string> reaped_full;
      std::vector<std::string> reaped_tail;
      const auto earliest = full.table.earliest_departure();
      EXPECT_EQ(earliest, tail.table.earliest_departure());
      const bool none_due = earliest == time_point::max() || earliest + reap_after > now;
      full.table.sweep_departed(reap(reaped_full));
      tail.table.sweep_departed(reap(reaped_tail), none_due);
      EXPECT_EQ(reaped_full, reaped_tail);
      std::vector<std::string> list_full;
      std::vector<std::string> list_tail;
      for (auto s : full.table.departed())
        list_full.emplace_back(full.table.name_at(s));
      for (auto s : tail.table.departed())
        list_tail.emplace_back(tail.table.name_at(s));
      ASSERT_EQ(list_full, list_tail);
      if (rng() % 2 == 0) {
        full.table.free_ghosts();
        tail.table.free_ghosts();
      }
    }
    // Once every death is older than reap_after, a sweep reaps every gone member: none is
    // hidden from the sweeps (a slot reused after a reap included).
    now += reap_after + 1s;
    for (auto* f : {&full, &tail}) {
      f->table.sweep_departed(
          [&](slot_t, const member_table::row& r) { return now - r.since >= reap_after; });
      for (int i = 0; i < members; ++i) {
        const auto* r = f->table.find("m" + std::to_string(i));
        EXPECT_FALSE(r != nullptr && r->present && is_gone(r->state)) << "m" << i << " not reaped";
      }
      EXPECT_TRUE(f->table.departed().empty());
    }
  }
}

} // namespace
} // namespace starling::gossip
