// The documented defaults are the agent's (issue 15, finding 4): docs/operations.md's key
// tables and examples/agent.toml's [gossip] table ("the values below are the defaults")
// are read here, each documented value goes through the real configuration parser, and
// the result must render like the configuration an empty file gives (plain_values). A
// default changed in the code and not in the docs, or the other way round, fails here.
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "actors/config.hpp"

namespace sa = starling::actors;

namespace {

std::string read_source_file(const std::string& relative) {
  const std::string path = std::string{STARLING_SOURCE_DIR} + "/" + relative;
  std::ifstream in{path};
  EXPECT_TRUE(in) << "cannot read " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos)
    return {};
  const auto last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

/// The cells of a Markdown table row ("| a | b |" gives {"a", "b"}); escaped pipes (`\|`)
/// stay in their cell.
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cell;
  for (std::size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '\\' && i + 1 < row.size() && row[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (row[i] == '|') {
      out.push_back(trim(cell));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return out;
}

/// key -> "default" cell of the first table after the line `heading` in `markdown`.
std::map<std::string, std::string> defaults_table(const std::string& markdown,
                                                  const std::string& heading) {
  std::istringstream in{markdown};
  std::string line;
  while (std::getline(in, line) && line != heading) {
  }
  EXPECT_EQ(line, heading) << "heading not found in docs/operations.md";
  while (std::getline(in, line) && line.rfind("|", 0) != 0) {
  }
  const auto header = cells(line);
  std::size_t column = header.size();
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "default")
      column = i;
  }
  EXPECT_LT(column, header.size()) << "no default column under " << heading;
  std::map<std::string, std::string> out;
  std::getline(in, line); // |---|---|
  while (std::getline(in, line) && line.rfind("|", 0) == 0) {
    const auto row = cells(line);
    if (row.size() <= column || row[0].size() < 2 || row[0].front() != '`')
      continue;
    out[row[0].substr(1, row[0].size() - 2)] = row[column];
  }
  return out;
}

/// plain_values as (table.key -> literal).
std::map<std::string, std::string> rendered(const sa::agent_config& cfg) {
  std::map<std::string, std::string> out;
  for (const auto& v : sa::plain_values(cfg))
    out[v.table.empty() ? v.key : v.table + "." + v.key] = v.literal;
  return out;
}

sa::agent_config parsed(const std::string& toml, const std::string& source) {
  sa::agent_flags flags;
  flags.name = "node-a";
  auto cfg = sa::make_agent_config(toml, source, flags);
  EXPECT_TRUE(cfg) << source << ": " << (cfg ? "" : caf::to_string(cfg.error())) << "\n" << toml;
  return cfg ? *cfg : sa::agent_config{};
}

const std::map<std::string, std::string>& defaults() {
  static const auto values = rendered(parsed("", "an empty file"));
  return values;
}

TEST(documented_defaults, plain_values_cover_every_gossip_key_the_parser_reads) {
  // Each rendered value reads back as itself, so plain_values and the parser agree.
  std::string toml = "[gossip]\n";
  for (const auto& v : sa::plain_values(parsed("", "an empty file"))) {
    if (v.table == "gossip" && v.key != "address")
      toml += v.key + " = " + v.literal + "\n";
  }
  EXPECT_EQ(rendered(parsed(toml, "the rendered defaults")), defaults());
}

TEST(documented_defaults, operations_md_shows_the_agents_defaults) {
  const auto md = read_source_file("docs/operations.md");
  // One docs table per config table: "### Top-level keys", "### `[gossip]` table", ...
  std::map<std::string, std::map<std::string, std::string>> tables;
  std::map<std::string, std::set<std::string>> keys;
  const auto table_of = [&](const std::string& name) -> const std::map<std::string, std::string>& {
    auto it = tables.find(name);
    if (it == tables.end())
      it = tables
               .emplace(name, defaults_table(md, name.empty() ? "### Top-level keys"
                                                              : "### `[" + name + "]` table"))
               .first;
    return it->second;
  };
  for (const auto& v : sa::plain_values(parsed("", "an empty file"))) {
    const auto& table = table_of(v.table);
    ASSERT_FALSE(table.empty()) << "no docs table for [" << v.table << "]";
    const std::string name = v.table.empty() ? v.key : v.table + "." + v.key;
    keys[v.table].insert(v.key);
    const auto row = table.find(v.key);
    ASSERT_NE(row, table.end()) << name << " is not in docs/operations.md's table";
    const auto& cell = row->second;
    ASSERT_TRUE(cell.size() >= 2 && cell.front() == '`' && cell.back() == '`')
        << name << ": the documented default " << cell << " is not a `literal`";
    const auto literal = cell.substr(1, cell.size() - 2);
    const std::string toml =
        (v.table.empty() ? "" : "[" + v.table + "]\n") + v.key + " = " + literal + "\n";
    EXPECT_EQ(rendered(parsed(toml, "docs/operations.md " + name)).at(name), defaults().at(name))
        << "docs/operations.md documents " << name << " = " << literal;
  }
  // And the tables of sections document no key the agent does not have.
  for (const auto& [table, rows] : tables) {
    if (table.empty())
      continue;
    for (const auto& [key, cell] : rows)
      EXPECT_TRUE(keys[table].count(key)) << table << "." << key << " is documented, not a setting";
  }
}

TEST(documented_defaults, the_sample_configs_gossip_table_holds_the_defaults) {
  const auto toml = read_source_file("examples/agent.toml");
  ASSERT_NE(toml.find("The values below are the defaults"), std::string::npos)
      << "examples/agent.toml no longer claims its [gossip] values are the defaults";
  const auto sample = rendered(parsed(toml, "examples/agent.toml"));
  // Every [gossip] key is set there (not left to the default), with the default value.
  std::set<std::string> set_keys;
  std::istringstream in{toml};
  std::string line;
  bool in_gossip = false;
  while (std::getline(in, line)) {
    if (line.rfind("[", 0) == 0)
      in_gossip = line == "[gossip]";
    else if (in_gossip && line.find(" = ") != std::string::npos && line.front() != '#')
      set_keys.insert(trim(line.substr(0, line.find(" = "))));
  }
  for (const auto& v : sa::plain_values(parsed("", "an empty file"))) {
    if (v.table != "gossip")
      continue;
    const auto name = v.table + "." + v.key;
    EXPECT_TRUE(set_keys.count(v.key)) << name << " is missing from examples/agent.toml";
    EXPECT_EQ(sample.at(name), defaults().at(name)) << "examples/agent.toml sets " << name;
  }
}

} // namespace
