#pragma once
/// Test doubles and helpers for the rules/ unit tests.
///
/// rules_tests links only smtpgate_rules, so the real list types (policies/)
/// are not available. FakeListBuilder builds a small List per kind, enough to
/// exercise the loader's plumbing: string/domain lists are case-insensitive
/// equality sets, cidr lists hold exact addresses (an unparsable entry is
/// reported as "bad CIDR" at the entry's own location), and a dnsbl list
/// "lists" 127.0.0.2 with answer code 127.0.0.2 so qualifiers can be tested.
/// The builder records every call so tests can check what the loader passed.
///
/// MapFacts is a FactSource over a map keyed by FieldRef::display(); a
/// missing key is Unavailable{"not set"}. It counts reads per field.
///
/// TempDir is a fresh directory under the system temp dir, removed (with its
/// contents) when the object dies.

#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/diagnostic.h"
#include "rules/list.h"
#include "rules/rule_set.h"
#include "rules/value.h"

namespace smtpgate::rules::testing {

inline std::string lowerCase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

class FakeList : public List {
 public:
  FakeList(ListKind kind, std::set<std::string> strings, std::vector<IpAddress> ips)
      : kind_(kind), strings_(std::move(strings)), ips_(std::move(ips)) {}

  [[nodiscard]] ListKind kind() const override { return kind_; }
  [[nodiscard]] std::size_t size() const override { return strings_.size() + ips_.size(); }

  [[nodiscard]] Tri contains(const FactValue& value, std::string_view qualifier) const override {
    if (std::holds_alternative<Unavailable>(value)) {
      return Tri::Unknown;
    }
    if (kind_ == ListKind::Dnsbl) {
      const auto* ip = std::get_if<IpAddress>(&value);
      if (ip == nullptr) {
        return Tri::Unknown;
      }
      bool listed = *ip == *IpAddress::parse("127.0.0.2");
      return toTri(listed && (qualifier.empty() || qualifier == "127.0.0.2"));
    }
    if (kind_ == ListKind::Cidr) {
      const auto* ip = std::get_if<IpAddress>(&value);
      if (ip == nullptr) {
        return Tri::Unknown;
      }
      return toTri(std::find(ips_.begin(), ips_.end(), *ip) != ips_.end());
    }
    if (const auto* s = std::get_if<std::string>(&value)) {
      return toTri(strings_.count(lowerCase(*s)) > 0);
    }
    if (const auto* ss = std::get_if<Strings>(&value)) {
      return toTri(std::any_of(ss->begin(), ss->end(),
                               [&](const std::string& s) { return strings_.count(lowerCase(s)); }));
    }
    return Tri::Unknown;
  }

 private:
  ListKind kind_;
  std::set<std::string> strings_;
  std::vector<IpAddress> ips_;
};

class FakeListBuilder : public ListBuilder {
 public:
  struct Call {
    ListKind kind;
    std::string name;
    std::vector<ListEntry> entries;
  };

  ListPtr build(ListKind kind, std::string_view name, const std::vector<ListEntry>& entries,
                Diagnostics& diags) override {
    calls.push_back({kind, std::string(name), entries});
    std::set<std::string> strings;
    std::vector<IpAddress> ips;
    for (const auto& e : entries) {
      if (kind == ListKind::Cidr) {
        auto ip = IpAddress::parse(e.text);
        if (!ip) {
          diags.error(e.where, "bad CIDR '" + e.text + "'", e.sourceLine);
          continue;
        }
        ips.push_back(*ip);
      } else {
        strings.insert(lowerCase(e.text));
      }
    }
    return std::make_shared<FakeList>(kind, std::move(strings), std::move(ips));
  }

  [[nodiscard]] const Call* find(std::string_view name) const {
    for (const auto& c : calls) {
      if (c.name == name) {
        return &c;
      }
    }
    return nullptr;
  }

  std::vector<Call> calls;
};

class MapFacts : public FactSource {
 public:
  MapFacts() = default;
  MapFacts(std::initializer_list<std::pair<const std::string, FactValue>> values)
      : values_(values) {}

  void set(const std::string& field, FactValue value) { values_[field] = std::move(value); }

  const FactValue& fact(const FieldRef& field) override {
    std::string key = field.display();
    ++reads_[key];
    auto it = values_.find(key);
    return it == values_.end() ? notSet_ : it->second;
  }

  [[nodiscard]] int readCount(const std::string& field) const {
    auto it = reads_.find(field);
    return it == reads_.end() ? 0 : it->second;
  }

 private:
  std::map<std::string, FactValue> values_;
  std::map<std::string, int> reads_;
  const FactValue notSet_ = Unavailable{"not set"};
};

inline IpAddress ip(const std::string& text) {
  auto a = IpAddress::parse(text);
  if (!a) {
    throw std::invalid_argument("bad test address " + text);
  }
  return *a;
}

/// Loads rule text that must be free of errors; fails the test otherwise.
inline RuleSetPtr loadOk(std::string_view text, FakeListBuilder& lists,
                         const std::string& name = "test.rules") {
  Diagnostics diags;
  auto set = RuleSet::loadText(text, name, lists, diags);
  INFO(format(diags));
  REQUIRE(set != nullptr);
  REQUIRE_FALSE(diags.hasErrors());
  return set;
}

inline RuleSetPtr loadOk(std::string_view text) {
  FakeListBuilder lists;
  return loadOk(text, lists);
}

/// Loads rule text expected to fail; returns its diagnostics.
inline Diagnostics loadErrors(std::string_view text, const std::string& name = "test.rules") {
  FakeListBuilder lists;
  Diagnostics diags;
  auto set = RuleSet::loadText(text, name, lists, diags);
  INFO(format(diags));
  CHECK(set == nullptr);
  CHECK(diags.hasErrors());
  return diags;
}

/// "line:col" of every error, in the order reported.
inline std::vector<std::string> errorPositions(const Diagnostics& diags) {
  std::vector<std::string> out;
  for (const auto& d : diags.items()) {
    if (d.severity == Severity::Error) {
      out.push_back(std::to_string(d.where.line) + ":" + std::to_string(d.where.column));
    }
  }
  return out;
}

/// A fresh directory, removed with its contents at destruction.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "rules-test-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  /// Writes `text` to `relative` (creating directories); returns the full path.
  std::string write(const std::string& relative, std::string_view text) const {
    auto full = path_ / relative;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream out(full, std::ios::binary);
    out << text;
    return full.string();
  }

 private:
  std::filesystem::path path_;
};

/// The ids of rules, in order.
inline std::vector<std::string> ids(const std::vector<const Rule*>& rules) {
  std::vector<std::string> out;
  for (const auto* r : rules) {
    out.push_back(r->id);
  }
  return out;
}

}  // namespace smtpgate::rules::testing
