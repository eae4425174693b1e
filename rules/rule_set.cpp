#include "rules/rule_set.h"

#include <glob.h>
#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "rules/compiled.h"
#include "rules/condition.h"
#include "rules/parser.h"

namespace smtpgate::rules {

std::string_view toString(RuleAction a) {
  switch (a) {
    case RuleAction::Accept:
      return "accept";
    case RuleAction::Tempfail:
      return "tempfail";
    case RuleAction::Reject:
      return "reject";
    case RuleAction::Score:
      return "score";
  }
  return "?";
}

std::string Rule::whereShort() const {
  return where.file + ':' + std::to_string(where.line);
}

namespace {

/// Memory RE2 may use per set: 10,000 body patterns compile well within it.
constexpr int64_t kRegexSetMaxMem = int64_t{256} << 20;
/// Deepest include nesting, a guard against runaway globs more than cycles.
constexpr std::size_t kMaxIncludeDepth = 16;

/// For every set, and the plain RE2 of a one-pattern group alike.
RE2::Options regexOptions() {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(kRegexSetMaxMem);
  return options;
}

std::size_t stageIndex(Stage s) {
  return static_cast<std::size_t>(s);
}

std::string fnv1a(const std::string& data, std::uint64_t& h) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf, 12);
}

bool readFile(const std::string& path, std::string& out, std::string& error) {
  // An ifstream opens a directory and reads it as empty: say so instead.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    error = std::strerror(EISDIR);
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

bool hasGlobChars(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

std::vector<std::string> expandGlob(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (std::size_t i = 0; i < g.gl_pathc; ++i) {
      out.emplace_back(g.gl_pathv[i]);
    }
  }
  ::globfree(&g);
  return out;
}

std::string resolveRelative(const std::string& path, const std::string& fromFile) {
  if (path.empty() || path.front() == '/') {
    return path;
  }
  auto dir = std::filesystem::path(fromFile).parent_path();
  return dir.empty() ? path : (dir / path).string();
}

std::string trim(std::string_view s) {
  std::size_t b = 0;
  std::size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) {
    ++b;
  }
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

bool validQualifier(std::string_view q) {
  // An IPv4 answer code (127.0.0.2) or a last-octet range (127.0.0.2-11).
  auto dash = q.find('-');
  std::string addr(q.substr(0, dash));
  auto ip = IpAddress::parse(addr);
  if (!ip || !ip->isV4()) {
    return false;
  }
  if (dash == std::string_view::npos) {
    return true;
  }
  std::string_view hi = q.substr(dash + 1);
  return !hi.empty() && hi.size() <= 3 &&
         std::all_of(hi.begin(), hi.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         std::stoi(std::string(hi)) <= 255;
}

struct DeclaredList {
  ListKind kind = ListKind::String;
  ListPtr list;                        // non-regex kinds
  std::vector<RegexPattern> patterns;  // regex kind
  SourceLocation where;
};

}  // namespace

class RuleSetBuilder {
 public:
  RuleSetBuilder(ListBuilder& lists, Diagnostics& diags) : lists_(lists), diags_(diags) {}

  void loadFile(const std::string& path, const SourceLocation* includedFrom,
                const std::string& includeLine);
  void loadText(std::string_view text, const std::string& name);
  std::shared_ptr<const RuleSet> finish();

 private:
  void parseLines(std::string_view text, const std::string& name);
  void include(const IncludeStatement& inc, const std::string& fromFile, const std::string& line);
  void addList(ListStatement list, const std::string& fromFile);
  /// nullopt (and an error) if the file cannot be read.
  std::optional<std::vector<ListEntry>> readListFile(const ListStatement& list,
                                                     const std::string& fromFile);
  void addRule(Rule rule);
  void resolve(Condition& c);
  void resolveList(Condition& c);
  void compile(RuleSet& set);
  void collectFields(const Condition& c, Stage stage, RuleSet::Compiled& compiled);
  void assignRegexGroups(Condition& c, Stage stage, RuleSet::Compiled& compiled);
  [[nodiscard]] std::string sourceLine(const SourceLocation& where) const;
  void sourceLineError(const SourceLocation& where, std::string message);
  void sourceLineWarning(const SourceLocation& where, std::string message);

  ListBuilder& lists_;
  Diagnostics& diags_;
  std::vector<std::string> stack_;  // canonical paths being loaded (include chain)
  std::vector<std::string> loaded_;
  std::map<std::string, DeclaredList> declared_;
  std::map<std::string, SourceLocation> ruleIds_;
  std::vector<Rule> rules_;
  std::vector<Threshold> thresholds_;
  std::vector<std::string> files_;
  std::vector<std::string> sources_;  // files_ and the list files: what hash_ covers
  std::uint64_t hashState_ = 0xcbf29ce484222325ULL;
  std::string hash_ = "000000000000";
  std::map<std::string, std::vector<std::string>> lineCache_;
};

std::string RuleSetBuilder::sourceLine(const SourceLocation& where) const {
  auto it = lineCache_.find(where.file);
  if (it != lineCache_.end() && where.line > 0 &&
      static_cast<std::size_t>(where.line) <= it->second.size()) {
    return it->second[where.line - 1];
  }
  return {};
}

void RuleSetBuilder::sourceLineError(const SourceLocation& where, std::string message) {
  diags_.error(where, std::move(message), sourceLine(where));
}

void RuleSetBuilder::sourceLineWarning(const SourceLocation& where, std::string message) {
  diags_.warning(where, std::move(message), sourceLine(where));
}

void RuleSetBuilder::loadFile(const std::string& path, const SourceLocation* includedFrom,
                              const std::string& includeLine) {
  std::error_code ec;
  std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
  if (ec) {
    canonical = path;
  }
  auto inStack = std::find(stack_.begin(), stack_.end(), canonical);
  if (inStack != stack_.end()) {
    std::string chain;
    for (auto it = inStack; it != stack_.end(); ++it) {
      chain += *it + " -> ";
    }
    diags_.error(includedFrom ? *includedFrom : SourceLocation{path, 0, 0},
                 "include cycle: " + chain + canonical, includeLine);
    return;
  }
  if (std::find(loaded_.begin(), loaded_.end(), canonical) != loaded_.end()) {
    return;  // already loaded through another include: like #pragma once
  }
  if (stack_.size() >= kMaxIncludeDepth) {
    diags_.error(includedFrom ? *includedFrom : SourceLocation{path, 0, 0},
                 "includes nested more than " + std::to_string(kMaxIncludeDepth) + " deep",
                 includeLine);
    return;
  }
  std::string text;
  std::string error;
  if (!readFile(path, text, error)) {
    diags_.error(includedFrom ? *includedFrom : SourceLocation{path, 0, 0},
                 "cannot read rule file '" + path + "': " + error, includeLine);
    return;
  }
  loaded_.push_back(canonical);
  stack_.push_back(canonical);
  parseLines(text, path);
  stack_.pop_back();
}

void RuleSetBuilder::loadText(std::string_view text, const std::string& name) {
  std::error_code ec;
  std::string canonical = std::filesystem::weakly_canonical(name, ec).string();
  loaded_.push_back(ec ? name : canonical);
  stack_.push_back(loaded_.back());
  parseLines(text, name);
  stack_.pop_back();
}

void RuleSetBuilder::parseLines(std::string_view text, const std::string& name) {
  files_.push_back(name);
  sources_.push_back(name);
  hash_ = fnv1a(name + '\n' + std::string(text) + '\n', hashState_);
  auto& lines = lineCache_[name];
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    lines.emplace_back(line);
    if (nl == std::string_view::npos) {
      break;
    }
    pos = nl + 1;
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string line = lines[i];  // copy: includes may grow lineCache_
    Statement st = LineParser(line, name, static_cast<int>(i + 1), diags_).parse();
    if (auto* inc = std::get_if<IncludeStatement>(&st)) {
      include(*inc, name, line);
    } else if (auto* list = std::get_if<ListStatement>(&st)) {
      addList(std::move(*list), name);
    } else if (auto* rule = std::get_if<Rule>(&st)) {
      addRule(std::move(*rule));
    } else if (auto* t = std::get_if<Threshold>(&st)) {
      thresholds_.push_back(std::move(*t));
    }
  }
}

void RuleSetBuilder::include(const IncludeStatement& inc, const std::string& fromFile,
                             const std::string& line) {
  std::string path = resolveRelative(inc.path, fromFile);
  if (!hasGlobChars(path)) {
    loadFile(path, &inc.where, line);
    return;
  }
  auto matches = expandGlob(path);
  if (matches.empty()) {
    diags_.warning(inc.where, "include pattern '" + inc.path + "' matches no file", line);
  }
  for (const auto& m : matches) {
    loadFile(m, &inc.where, line);
  }
}

std::optional<std::vector<ListEntry>> RuleSetBuilder::readListFile(const ListStatement& list,
                                                                   const std::string& fromFile) {
  std::string path = resolveRelative(list.source, fromFile);
  std::string text;
  std::string error;
  if (!readFile(path, text, error)) {
    sourceLineError(list.sourceWhere, "cannot read list file '" + path + "': " + error);
    return std::nullopt;
  }
  sources_.push_back(path);
  hash_ = fnv1a(path + '\n' + text + '\n', hashState_);
  std::vector<ListEntry> entries;
  std::istringstream in(text);
  std::string raw;
  int lineNo = 0;
  while (std::getline(in, raw)) {
    ++lineNo;
    if (!raw.empty() && raw.back() == '\r') {
      raw.pop_back();  // CRLF line ends, as in rule files
    }
    std::string line = raw;
    // Regex lists: only whole-line comments, since '#' is common in patterns.
    std::size_t hash = list.kind == ListKind::Regex ? std::string::npos : line.find('#');
    if (hash != std::string::npos) {
      line.resize(hash);
    }
    std::string entry = trim(line);
    if (entry.empty() || entry.front() == '#') {
      continue;
    }
    int col = static_cast<int>(line.find(entry.front())) + 1;
    entries.push_back({entry, {path, lineNo, col}, raw});
  }
  return entries;
}

void RuleSetBuilder::addList(ListStatement list, const std::string& fromFile) {
  auto existing = declared_.find(list.name);
  if (existing != declared_.end()) {
    sourceLineError(list.where, "duplicate list '" + list.name + "' (first defined at " +
                                    existing->second.where.file + ":" +
                                    std::to_string(existing->second.where.line) + ")");
    return;
  }
  auto read =
      list.isInline || list.kind == ListKind::Dnsbl ? list.entries : readListFile(list, fromFile);
  std::vector<ListEntry> entries = read.value_or(std::vector<ListEntry>{});
  if (read && entries.empty()) {
    // The list builder warns when every entry was bad; a list with no
    // entries at all is reported here, where the declaration is known.
    sourceLineWarning(list.where, "list " + list.name + " is empty");
  }
  DeclaredList decl;
  decl.kind = list.kind;
  decl.where = list.where;
  if (list.kind == ListKind::Regex) {
    for (const auto& e : entries) {
      std::string pattern = e.text;
      std::string flags;
      if (pattern.size() >= 2 && pattern.front() == '/' && pattern.rfind('/') > 0) {
        std::size_t close = pattern.rfind('/');
        flags = pattern.substr(close + 1);
        pattern = pattern.substr(1, close - 1);
      }
      std::string message;
      auto withFlags = regexWithFlags(pattern, flags, message);
      std::string re2Error = withFlags ? checkRegex(*withFlags) : message;
      if (!re2Error.empty()) {
        diags_.error(e.where, "bad regex in list '" + list.name + "': " + re2Error, e.sourceLine);
        continue;
      }
      decl.patterns.push_back({*withFlags, e.where});
    }
  } else {
    decl.list = lists_.build(list.kind, list.name, entries, diags_);
  }
  declared_.emplace(list.name, std::move(decl));
}

void RuleSetBuilder::addRule(Rule rule) {
  auto [it, inserted] = ruleIds_.emplace(rule.id, rule.where);
  if (!inserted) {
    diags_.error(rule.where,
                 "duplicate rule id '" + rule.id + "' (first defined at " + it->second.file + ":" +
                     std::to_string(it->second.line) + ")",
                 rule.sourceLine);
    return;
  }
  rules_.push_back(std::move(rule));
}

void RuleSetBuilder::resolve(Condition& c) {
  if (c.left) {
    resolve(*c.left);
  }
  if (c.right) {
    resolve(*c.right);
  }
  if (!c.listName.empty()) {
    resolveList(c);
  }
}

void RuleSetBuilder::resolveList(Condition& c) {
  auto it = declared_.find(c.listName);
  if (it == declared_.end()) {
    sourceLineError(c.listWhere, "unknown list '@" + c.listName + "'");
    return;
  }
  const DeclaredList& decl = it->second;
  FieldType type = c.field.info ? c.field.info->type : FieldType::Text;
  if (c.kind == ConditionKind::Regex) {
    if (decl.kind != ListKind::Regex) {
      sourceLineError(c.listWhere, "'~' needs a regex list; '@" + c.listName + "' is a " +
                                       std::string(toString(decl.kind)) + " list (use 'in')");
      return;
    }
    if (!c.qualifier.empty()) {
      sourceLineError(c.listWhere, "only dnsbl lists take an answer code (@name:127.0.0.2)");
      return;
    }
    c.patterns = decl.patterns;
    return;
  }
  if (decl.kind == ListKind::Regex) {
    sourceLineError(c.listWhere, "'@" + c.listName + "' is a regex list: match it with '~'");
    return;
  }
  bool ipList = decl.kind == ListKind::Cidr || decl.kind == ListKind::Dnsbl;
  if (c.field.info && ipList != (type == FieldType::Ip)) {
    sourceLineError(c.listWhere, "'@" + c.listName + "' is a " + std::string(toString(decl.kind)) +
                                     " list and cannot hold " + c.field.display() +
                                     (ipList ? " (it holds IP addresses)" : " (it holds names)"));
    return;
  }
  if (!c.qualifier.empty() && (decl.kind != ListKind::Dnsbl || !validQualifier(c.qualifier))) {
    sourceLineError(c.listWhere, decl.kind != ListKind::Dnsbl
                                     ? "only dnsbl lists take an answer code (@name:127.0.0.2)"
                                     : "bad DNSBL answer code '" + c.qualifier +
                                           "' (expected 127.0.0.2 or 127.0.0.2-11)");
    return;
  }
  c.list = decl.list;
}

void RuleSetBuilder::collectFields(const Condition& c, Stage stage, RuleSet::Compiled& compiled) {
  if (c.left) {
    collectFields(*c.left, stage, compiled);
  }
  if (c.right) {
    collectFields(*c.right, stage, compiled);
  }
  if (c.field.info == nullptr) {
    return;
  }
  compiled.readsField[static_cast<std::size_t>(c.field.info->id)] = true;
  auto& fields = compiled.fieldsByStage[stageIndex(stage)];
  if (std::find(fields.begin(), fields.end(), c.field) == fields.end()) {
    fields.push_back(c.field);
  }
}

void RuleSetBuilder::assignRegexGroups(Condition& c, Stage stage, RuleSet::Compiled& compiled) {
  if (c.left) {
    assignRegexGroups(*c.left, stage, compiled);
  }
  if (c.right) {
    assignRegexGroups(*c.right, stage, compiled);
  }
  if (c.kind != ConditionKind::Regex) {
    return;
  }
  auto& groups = compiled.groups;
  auto it = std::find_if(groups.begin(), groups.end(), [&](const RegexGroup& g) {
    return g.stage == stage && g.field == c.field;
  });
  if (it == groups.end()) {
    RegexGroup group;
    group.stage = stage;
    group.field = c.field;
    group.set = std::make_unique<RE2::Set>(regexOptions(), RE2::UNANCHORED);
    groups.push_back(std::move(group));
    it = std::prev(groups.end());
  }
  c.regexGroup = static_cast<std::size_t>(it - groups.begin());
  c.regexAtom = it->atoms++;
  for (const auto& p : c.patterns) {
    std::string error;
    if (it->set->Add(p.pattern, &error) < 0) {
      sourceLineError(p.where, "bad regex: " + error);
      continue;
    }
    if (it->atomOf.empty()) {
      it->firstPattern = p.pattern;
    }
    it->atomOf.push_back(c.regexAtom);
  }
}

void RuleSetBuilder::compile(RuleSet& set) {
  auto compiled = std::make_unique<RuleSet::Compiled>();
  compiled->readsField.assign(allFields().size(), false);
  for (std::size_t i = 0; i < set.rules_.size(); ++i) {
    Rule& rule = set.rules_[i];
    compiled->rulesByStage[stageIndex(rule.stage)].push_back(i);
    collectFields(*rule.condition, rule.stage, *compiled);
    assignRegexGroups(*rule.condition, rule.stage, *compiled);
  }
  for (auto& g : compiled->groups) {
    if (g.atomOf.size() == 1) {
      // A lone pattern matches as a plain RE2 (compiled.h): its set would
      // never run, so it is not compiled and not kept.
      auto single = std::make_unique<RE2>(std::exchange(g.firstPattern, {}), regexOptions());
      if (single->ok()) {
        g.single = std::move(single);
        g.set.reset();
        continue;
      }
    }
    if (!g.set->Compile()) {
      diags_.error({}, "cannot compile the regexes on " + g.field.display() + " at stage " +
                           std::string(toString(g.stage)) + " (out of memory?)");
    }
  }
  set.compiled_ = std::move(compiled);
}

std::shared_ptr<const RuleSet> RuleSetBuilder::finish() {
  for (auto& rule : rules_) {
    resolve(*rule.condition);
  }
  auto set = std::make_shared<RuleSet>();
  set->rules_ = std::move(rules_);
  set->thresholds_ = std::move(thresholds_);
  set->files_ = std::move(files_);
  set->sources_ = std::move(sources_);
  set->hash_ = hash_;
  compile(*set);
  if (diags_.hasErrors()) {
    return nullptr;
  }
  return set;
}

RuleSet::RuleSet() = default;
RuleSet::~RuleSet() = default;

std::shared_ptr<const RuleSet> RuleSet::load(const std::vector<std::string>& files,
                                             ListBuilder& lists, Diagnostics& diags) {
  RuleSetBuilder builder(lists, diags);
  for (const auto& f : files) {
    builder.loadFile(f, nullptr, {});
  }
  return builder.finish();
}

std::shared_ptr<const RuleSet> RuleSet::loadText(std::string_view text, const std::string& name,
                                                 ListBuilder& lists, Diagnostics& diags) {
  RuleSetBuilder builder(lists, diags);
  builder.loadText(text, name);
  return builder.finish();
}

bool RuleSet::reads(FieldId id) const {
  return compiled_->readsField[static_cast<std::size_t>(id)];
}

const std::vector<FieldRef>& RuleSet::fieldsReadAt(Stage stage) const {
  return compiled_->fieldsByStage[stageIndex(stage)];
}

std::size_t RuleSet::ruleCount(Stage stage) const {
  return compiled_->rulesByStage[stageIndex(stage)].size();
}

const Threshold* RuleSet::thresholdFor(double score) const {
  const Threshold* best = nullptr;
  for (const auto& t : thresholds_) {
    if (score < t.at) {
      continue;
    }
    if (best == nullptr || t.at > best->at ||
        (t.at == best->at && t.action == RuleAction::Reject)) {
      best = &t;
    }
  }
  return best;
}

}  // namespace smtpgate::rules
