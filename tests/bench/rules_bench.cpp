/// rules_bench — how the rule evaluator's throughput on `body` changes as the
/// number of body regexes grows (STYLE.md G14: tests/bench/).
///
/// For each rule count (10, 100, 1,000, 10,000 by default) it generates that
/// many distinct spam-style regex rules (`rule rNNNNN on data when body ~
/// /re/flags then score 1`, patterns from a fixed seed, each set a prefix of
/// the next), loads them with RuleSet::loadText (timed: parse, RE2 syntax
/// check, RE2::Set compile) and evaluates the data stage over ~100 KB bodies
/// of English-ish text (fixed seed, a few spam phrases planted) through a
/// FactSource that supplies only the body. All regexes on `body` at `data`
/// are one RE2::Set, so an evaluation is one pass over the body plus one
/// lookup per rule.
///
/// Method: the first evaluation after the load is timed alone (RE2's DFA is
/// still empty: the cost of the first message after a reload); one
/// evaluation per body then warms the DFA and checks the result (no rule may
/// come out Unknown, which would mean RE2 ran out of DFA memory, and the
/// score must equal the number of rules that fired). Then R rounds; in
/// each, every set runs for at least a minimum time (whole evaluations,
/// bodies in rotation), the sets' order rotating from round to round so no
/// set always runs first. The median of the per-round MB/s (MB = 10^6
/// bytes) is reported with the ratio to the smallest set, as a markdown
/// table.
///
/// Exit status: 0 on success; 1 if a set fails to load or an evaluation is
/// Unknown; 64 for a usage error. Timings are reported, never asserted:
/// ctest runs `--quick` only to prove the program works.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/fields.h"
#include "rules/list.h"
#include "rules/rule_set.h"
#include "rules/stage.h"
#include "rules/value.h"

namespace {

using smtpgate::rules::Diagnostics;
using smtpgate::rules::FactSource;
using smtpgate::rules::FactValue;
using smtpgate::rules::FieldId;
using smtpgate::rules::FieldRef;
using smtpgate::rules::ListBuilder;
using smtpgate::rules::ListEntry;
using smtpgate::rules::ListKind;
using smtpgate::rules::ListPtr;
using smtpgate::rules::RuleSet;
using smtpgate::rules::RuleSetPtr;
using smtpgate::rules::RuleTrace;
using smtpgate::rules::Stage;
using smtpgate::rules::Tri;
using smtpgate::rules::Unavailable;
using Clock = std::chrono::steady_clock;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 64;
constexpr std::uint64_t kPatternSeed = 0x5eed0001;
constexpr std::uint64_t kBodySeed = 0x5eed0002;

struct Options {
  std::vector<std::size_t> counts{10, 100, 1000, 10000};
  int rounds = 15;
  double minRoundSeconds = 0.25;
  std::size_t bodyBytes = 100 * 1024;
  std::size_t bodies = 8;
  bool quick = false;          ///< --quick: proves the program runs; figures mean nothing
  std::size_t printRules = 0;  ///< --print-rules N: print the first N generated rules, exit
};

/// Deterministic on every platform (std::*_distribution is not): splitmix64.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <typename T>
  const T& pick(std::span<const T> items) {
    return items[below(items.size())];
  }
  /// Skewed towards the front of a list (common words first), roughly Zipf-like.
  template <typename T>
  const T& pickSkewed(std::span<const T> items) {
    std::size_t a = below(items.size());
    std::size_t b = below(items.size());
    return items[std::min(a, b)];
  }

 private:
  std::uint64_t state_;
};

using Words = std::span<const std::string_view>;

constexpr std::string_view kSpamWords[] = {
    "viagra",    "cialis",       "levitra",   "casino",      "lottery",     "jackpot",
    "bitcoin",   "crypto",       "refinance", "mortgage",    "pharmacy",    "replica",
    "rolex",     "enlargement",  "inherit",   "beneficiary", "winner",      "prize",
    "bonus",     "loan",         "debt",      "dating",      "webcam",      "guaranteed",
    "miracle",   "supplement",   "keto",      "forex",       "profit",      "clearance",
    "warranty",  "refund",       "invoice",   "verify",      "password",    "suspended",
    "urgent",    "confidential", "transfer",  "moneygram",   "giftcard",    "weightloss",
    "xanax",     "valium",       "tramadol",  "oxycodone",   "phentermine", "sildenafil",
    "tadalafil", "hoodia",       "acai",      "slots",       "roulette",    "poker",
    "betting",   "payday",       "investor",  "dividend",    "stocks",      "wallet"};
constexpr std::string_view kAdjectives[] = {
    "cheap",     "free",    "discount",  "best",    "lowest",    "guaranteed", "instant",
    "fast",      "secret",  "exclusive", "limited", "hot",       "amazing",    "genuine",
    "generic",   "online",  "certified", "bulk",    "private",   "special",    "unlimited",
    "wholesale", "natural", "herbal",    "express", "risk-free", "no-cost",    "premium"};
constexpr std::string_view kNouns[] = {
    "meds",     "pills",     "pharmacy", "watches",  "loans",     "credit", "offers",
    "deals",    "prices",    "shipping", "access",   "cash",      "money",  "income",
    "traffic",  "followers", "tablets",  "capsules", "drugs",     "rx",     "refills",
    "diplomas", "degrees",   "leads",    "emails",   "backlinks", "likes",  "coupons"};
constexpr std::string_view kVerbs[] = {"click", "act",   "order", "buy",       "call",
                                       "apply", "reply", "claim", "respond",   "register",
                                       "join",  "visit", "shop",  "subscribe", "download"};
constexpr std::string_view kUrgency[] = {
    "now",     "today",         "immediately",       "here", "below", "tonight", "asap", "fast",
    "quickly", "right\\s+away", "before\\s+midnight"};
constexpr std::string_view kTlds[] = {"ru",     "cn",  "top",  "xyz",  "click",  "loan",
                                      "win",    "bid", "work", "date", "racing", "review",
                                      "stream", "gq",  "tk",   "ml"};
constexpr std::string_view kGreetings[] = {"dear",  "attn",      "attention",
                                           "hello", "greetings", "good\\s+day"};
constexpr std::string_view kAddressees[] = {"friend",          "beneficiary", "sir",
                                            "madam",           "customer",    "winner",
                                            "partner",         "user",        "account\\s+holder",
                                            "valued\\s+member"};
constexpr std::string_view kCurrencies[] = {"dollars", "usd", "euros", "eur", "pounds", "gbp"};
constexpr std::string_view kSuffixes[] = {"\\d+",    "\\b",      "!+",       "\\s+online",
                                          "\\s+now", "\\s+here", "[!.]{2,}", "\\s*\\d{2,3}mg"};

/// Letter substitutions spammers use, as RE2 character classes.
std::string_view classFor(char c) {
  switch (c) {
    case 'a':
      return "[a@4]";
    case 'e':
      return "[e3]";
    case 'i':
      return "[i1l!]";
    case 'o':
      return "[o0]";
    case 's':
      return "[s5$]";
    case 't':
      return "[t7]";
    case 'l':
      return "[l1|]";
    default:
      return {};
  }
}

/// Joins pieces into one string. (Also sidesteps GCC 12's false -Wrestrict
/// on `"literal" + std::string&&`.)
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

/// "(a|b)", or just "a" when both are the same word.
std::string alternation(std::string_view a, std::string_view b) {
  return a == b ? std::string(a) : concat("(", a, "|", b, ")");
}

/// Generates regex literals as written in a rule file: "/v[i1]agra/i".
class PatternGenerator {
 public:
  explicit PatternGenerator(std::uint64_t seed) : rng_(seed) {}

  /// `n` distinct literals; each call's result is a prefix of a longer call's.
  std::vector<std::string> generate(std::size_t n) {
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;
    while (out.size() < n) {
      std::string pattern = nextPattern();
      std::string literal = concat("/", pattern, "/", rng_.chance(60) ? "i" : "");
      if (seen.insert(literal).second) {
        out.push_back(std::move(literal));
      }
    }
    return out;
  }

 private:
  std::string nextPattern() {
    switch (rng_.below(6)) {
      case 0:
      case 1:
        return obfuscatedWord();
      case 2:
        return offerPhrase();
      case 3:
        return callToAction();
      case 4:
        return spamUrl();
      default:
        return rng_.chance(50) ? moneyAmount() : greeting();
    }
  }

  /// v[i1l!]agra, c\W?i\W?a\W?l\W?i\W?s, \bca[s5$]ino\b
  std::string obfuscatedWord() {
    std::string_view word = rng_.pick(Words(kSpamWords));
    bool spaced = rng_.chance(15);
    std::string out = rng_.chance(30) ? "\\b" : "";
    for (std::size_t i = 0; i < word.size(); ++i) {
      std::string_view cls = classFor(word[i]);
      if (!cls.empty() && rng_.chance(45)) {
        out.append(cls);
      } else {
        out.push_back(word[i]);
      }
      if (spaced && i + 1 < word.size()) {
        out.append("\\W?");
      }
    }
    return out;
  }

  /// cheap\s+(meds|pills)\d+
  std::string offerPhrase() {
    std::string out = concat(rng_.pick(Words(kAdjectives)), "\\s+(");
    std::size_t alternatives = 1 + rng_.below(3);
    std::vector<std::string_view> nouns;
    while (nouns.size() < alternatives) {
      std::string_view noun = rng_.pick(Words(kNouns));
      if (std::find(nouns.begin(), nouns.end(), noun) == nouns.end()) {
        out.append(nouns.empty() ? "" : "|").append(noun);
        nouns.push_back(noun);
      }
    }
    out.append(")");
    if (rng_.chance(60)) {
      out.append(rng_.pick(Words(kSuffixes)));
    }
    return out;
  }

  /// (click|order)\W+(now|today)
  std::string callToAction() {
    std::string_view first = rng_.pick(Words(kVerbs));
    std::string_view second = rng_.pick(Words(kVerbs));
    std::string_view urgency = rng_.pick(Words(kUrgency));
    return concat(alternation(first, second), "\\W+", urgency, rng_.chance(30) ? "[!.]" : "");
  }

  /// https?:\/\/[a-z0-9-]+\.(ru|top)\/\S*deals
  std::string spamUrl() {
    std::string_view a = rng_.pick(Words(kTlds));
    std::string_view b = rng_.pick(Words(kTlds));
    std::string_view noun = rng_.pick(Words(kNouns));
    return concat("https?:\\/\\/[a-z0-9-]+\\.", alternation(a, b), "\\/\\S*", noun);
  }

  /// \$\d{1,3}(,\d{3})+\s*usd ; \d+(\.\d+)?\s+million\s+euros
  std::string moneyAmount() {
    std::string_view currency = rng_.pick(Words(kCurrencies));
    if (rng_.chance(50)) {
      return concat("\\$\\d{1,3}(,\\d{3})+\\s*", currency);
    }
    return concat("\\d+(\\.\\d+)?\\s+(million|thousand|billion)\\s+", currency,
                  rng_.chance(50) ? "\\b" : "");
  }

  /// (dear|attn)[\s,]+(friend|beneficiary)
  std::string greeting() {
    std::string_view a = rng_.pick(Words(kGreetings));
    std::string_view b = rng_.pick(Words(kGreetings));
    std::string_view who = rng_.pick(Words(kAddressees));
    return concat(alternation(a, b), "[\\s,]+", who, rng_.chance(50) ? "[,:]" : "");
  }

  Rng rng_;
};

std::string ruleText(const std::vector<std::string>& literals, std::size_t n) {
  std::string text = "# generated by rules_bench\n";
  char id[32];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(id, sizeof id, "r%05zu", i + 1);
    text.append(concat("rule ", id, " on data when body ~ ", literals[i], " then score 1\n"));
  }
  return text;
}

constexpr std::string_view kCommonWords[] = {
    "the",      "of",       "and",     "to",       "a",        "in",       "is",
    "that",     "for",      "it",      "as",       "was",      "with",     "be",
    "by",       "on",       "not",     "he",       "this",     "are",      "or",
    "his",      "from",     "at",      "which",    "but",      "have",     "an",
    "had",      "they",     "you",     "were",     "their",    "one",      "all",
    "we",       "can",      "her",     "has",      "there",    "been",     "if",
    "more",     "when",     "will",    "would",    "who",      "so",       "no",
    "meeting",  "project",  "report",  "schedule", "please",   "thanks",   "team",
    "update",   "review",   "budget",  "customer", "quarter",  "attached", "document",
    "question", "office",   "week",    "monday",   "friday",   "morning",  "afternoon",
    "proposal", "contract", "invoice", "deadline", "feedback", "release",  "server",
    "database", "network",  "account", "payment",  "shipping", "order",    "delivery",
    "family",   "weekend",  "dinner",  "holiday",  "travel",   "flight",   "hotel",
    "garden",   "weather",  "school",  "children", "library",  "museum",   "concert",
    "café",     "naïve",    "résumé",  "décor",    "jalapeño", "über",     "smörgåsbord"};

/// Phrases planted in bodies so that some generated rules match.
constexpr std::string_view kSpamPhrases[] = {
    "Buy V1agra online",   "cheap pills42 here",
    "CLICK NOW!",          "Dear friend,",
    "$1,500,000 USD",      "http://deals-4u.top/x/cheap-meds",
    "c-i-a-l-i-s",         "claim your prize today.",
    "4.5 million euros",   "lowest prices!!",
    "casino bonus",        "order today",
    "Greetings, customer", "https://win-big.date/offer/cash",
    "Visit below"};

/// English-ish text: Zipf-skewed common words in sentences and paragraphs,
/// lines of at most ~76 bytes, with a few spam phrases planted.
class BodyGenerator {
 public:
  explicit BodyGenerator(std::uint64_t seed) : rng_(seed) {}

  std::string generate(std::size_t bytes, std::size_t plants) {
    std::string body;
    body.reserve(bytes + 128);
    std::size_t lineStart = 0;
    std::size_t nextPlant = bytes / (plants + 1);
    while (body.size() < bytes) {
      std::string sentence = this->sentence();
      if (plants > 0 && body.size() >= nextPlant) {
        sentence.append(" ").append(rng_.pick(Words(kSpamPhrases)));
        nextPlant += bytes / (plants + 1);
      }
      appendWrapped(body, sentence, lineStart);
      if (rng_.chance(15)) {
        body += "\n\n";
        lineStart = body.size();
      }
    }
    body.resize(bytes);
    return body;
  }

 private:
  std::string sentence() {
    std::size_t words = 6 + rng_.below(14);
    std::string out;
    for (std::size_t i = 0; i < words; ++i) {
      std::string word(rng_.pickSkewed(Words(kCommonWords)));
      if (i == 0 && word[0] >= 'a' && word[0] <= 'z') {
        word[0] = static_cast<char>(word[0] - 'a' + 'A');
      }
      bool comma = i + 1 < words && rng_.chance(8);
      out.append(i ? " " : "").append(word).append(comma ? "," : "");
    }
    out.append(rng_.chance(10) ? "?" : ".");
    return out;
  }

  static void appendWrapped(std::string& body, const std::string& sentence,
                            std::size_t& lineStart) {
    constexpr std::size_t kLineLength = 76;
    std::size_t pos = 0;
    while (pos < sentence.size()) {
      std::size_t space = sentence.find(' ', pos);
      std::size_t end = space == std::string::npos ? sentence.size() : space;
      std::string_view word(sentence.data() + pos, end - pos);
      bool lineEmpty = body.size() == lineStart;
      if (!lineEmpty && body.size() - lineStart + 1 + word.size() > kLineLength) {
        body += '\n';
        lineStart = body.size();
        lineEmpty = true;
      }
      body.append(lineEmpty ? "" : " ").append(word);
      pos = end + 1;
    }
  }

  Rng rng_;
};

/// The benchmark declares no lists.
class NoLists : public ListBuilder {
 public:
  ListPtr build(ListKind, std::string_view, const std::vector<ListEntry>&, Diagnostics&) override {
    return nullptr;
  }
};

/// Supplies `body` (a value built once per body, so no copy is timed); every
/// other field is unavailable (no rule reads one).
class BodyFacts : public FactSource {
 public:
  void setBody(const FactValue& body) { body_ = &body; }
  const FactValue& fact(const FieldRef& field) override {
    return field.info != nullptr && field.info->id == FieldId::Body ? *body_ : unavailable_;
  }

 private:
  const FactValue* body_ = &unavailable_;
  FactValue unavailable_ = Unavailable{"not supplied by the benchmark"};
};

/// The bodies as fact values, with their sizes in bytes.
struct Bodies {
  std::vector<FactValue> values;
  std::vector<std::size_t> sizes;
};

struct BenchSet {
  std::size_t rules = 0;
  RuleSetPtr set;
  double loadMs = 0;
  double firstEvalMs = 0;     ///< first evaluation of the first body: cold DFA cache
  double matchedPerBody = 0;  ///< rules that fired, averaged over the bodies
  std::vector<double> mbps;   ///< one per round
};

double millisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

bool loadSet(BenchSet& bench, const std::vector<std::string>& literals) {
  std::string text = ruleText(literals, bench.rules);
  NoLists lists;
  Diagnostics diags;
  auto start = Clock::now();
  bench.set = RuleSet::loadText(text, "bench.rules", lists, diags);
  bench.loadMs = millisSince(start);
  if (bench.set == nullptr) {
    std::fprintf(stderr, "rules_bench: %zu rules failed to load:\n%s", bench.rules,
                 smtpgate::rules::format(diags).c_str());
    return false;
  }
  return true;
}

/// Untimed pass over every body: warms the DFA and checks every result is
/// definite and agrees with the score (one point per rule that fired).
bool warmAndCheck(BenchSet& bench, const Bodies& bodies, BodyFacts& facts) {
  std::size_t matched = 0;
  for (std::size_t i = 0; i < bodies.values.size(); ++i) {
    facts.setBody(bodies.values[i]);
    std::vector<RuleTrace> trace;
    auto start = Clock::now();
    auto outcome = bench.set->evaluate(Stage::Data, facts, &trace);
    if (i == 0) {
      bench.firstEvalMs = millisSince(start);
    }
    std::size_t fired = 0;
    for (const auto& t : trace) {
      if (t.result == Tri::Unknown) {
        std::fprintf(stderr, "rules_bench: rule %s is Unknown (RE2 DFA out of memory?)\n",
                     t.rule->id.c_str());
        return false;
      }
      fired += t.result == Tri::True ? 1 : 0;
    }
    if (outcome.scoreAdded != static_cast<double>(fired)) {
      std::fprintf(stderr, "rules_bench: score %g does not match %zu fired rules\n",
                   outcome.scoreAdded, fired);
      return false;
    }
    matched += fired;
  }
  bench.matchedPerBody = static_cast<double>(matched) / static_cast<double>(bodies.values.size());
  return true;
}

volatile double gScoreSink = 0;

/// Evaluates whole bodies, in rotation, for at least `minSeconds`; returns MB/s.
double timeRound(const RuleSet& set, const Bodies& bodies, BodyFacts& facts, double minSeconds,
                 std::size_t& cursor) {
  std::size_t bytes = 0;
  double score = 0;
  auto start = Clock::now();
  double elapsed = 0;
  do {
    std::size_t i = cursor++ % bodies.values.size();
    facts.setBody(bodies.values[i]);
    score += set.evaluate(Stage::Data, facts).scoreAdded;
    bytes += bodies.sizes[i];
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < minSeconds);
  gScoreSink = score;  // keeps the evaluations observable, so none is optimised away
  return static_cast<double>(bytes) / 1e6 / elapsed;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void printTable(const std::vector<BenchSet>& sets, const Options& options) {
  std::printf(
      "| rules | load+compile (ms) | first eval, cold (ms) | median MB/s | min-max MB/s "
      "| ratio to %zu rules | rules fired per body |\n",
      sets.front().rules);
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  double base = median(sets.front().mbps);
  for (const auto& s : sets) {
    double m = median(s.mbps);
    auto [lo, hi] = std::minmax_element(s.mbps.begin(), s.mbps.end());
    std::printf("| %zu | %.1f | %.2f | %.1f | %.1f-%.1f | %.2f | %.1f |\n", s.rules, s.loadMs,
                s.firstEvalMs, m, *lo, *hi, m / base, s.matchedPerBody);
  }
  std::printf(
      "\n%d rounds, >= %.2f s per set per round, %zu bodies of %zu bytes; "
      "MB = 10^6 bytes.\n",
      options.rounds, options.minRoundSeconds, options.bodies, options.bodyBytes);
  if (options.quick) {
    std::printf("--quick: a smoke run, not a measurement; run without it for figures.\n");
    return;
  }
  for (const auto& s : sets) {
    if (s.rules == 1000 && sets.front().rules == 10) {
      double ratio = median(s.mbps) / base;
      std::printf("Target (1,000 rules >= 0.5 x the MB/s of 10 rules): %s (ratio %.2f)\n",
                  ratio >= 0.5 ? "holds" : "does NOT hold", ratio);
    }
  }
}

std::optional<std::vector<std::size_t>> parseCounts(std::string_view text) {
  std::vector<std::size_t> counts;
  while (!text.empty()) {
    std::size_t comma = text.find(',');
    std::string item(text.substr(0, comma));
    char* end = nullptr;
    unsigned long n = std::strtoul(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n == 0 || n > 100000) {
      return std::nullopt;
    }
    counts.push_back(n);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  if (counts.empty()) {
    return std::nullopt;
  }
  return counts;
}

void usage() {
  std::fprintf(stderr,
               "usage: rules_bench [--quick] [--rounds N] [--seconds S] [--counts 10,100,...]\n"
               "  --quick    tiny run for CI: 1 round, 1 evaluation per set, 2 small bodies\n"
               "  --rounds   rounds of measurement (default 15); the median is reported\n"
               "  --seconds  minimum time per set per round (default 0.25)\n"
               "  --counts   rule counts to compare (default 10,100,1000,10000)\n"
               "  --print-rules N  print the first N generated rules and exit\n");
}

std::optional<Options> parseArgs(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--quick") {
      options.quick = true;
      options.rounds = 1;
      options.minRoundSeconds = 0;
      options.bodies = 2;
      options.bodyBytes = 16 * 1024;
    } else if (arg == "--rounds" && value != nullptr && std::atoi(value) > 0) {
      options.rounds = std::atoi(value);
      ++i;
    } else if (arg == "--seconds" && value != nullptr && std::atof(value) >= 0) {
      options.minRoundSeconds = std::atof(value);
      ++i;
    } else if (arg == "--print-rules" && value != nullptr && std::atoi(value) > 0) {
      options.printRules = static_cast<std::size_t>(std::atoi(value));
      ++i;
    } else if (arg == "--counts" && value != nullptr && parseCounts(value)) {
      options.counts = *parseCounts(value);
      ++i;
    } else {
      return std::nullopt;
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parseArgs(argc, argv);
  if (!options) {
    usage();
    return kExitUsage;
  }
  if (options->printRules > 0) {
    auto literals = PatternGenerator(kPatternSeed).generate(options->printRules);
    std::fputs(ruleText(literals, literals.size()).c_str(), stdout);
    return 0;
  }
  std::size_t largest = *std::max_element(options->counts.begin(), options->counts.end());
  std::vector<std::string> literals = PatternGenerator(kPatternSeed).generate(largest);
  BodyGenerator bodyGenerator(kBodySeed);
  Bodies bodies;
  for (std::size_t i = 0; i < options->bodies; ++i) {
    bodies.values.emplace_back(bodyGenerator.generate(options->bodyBytes, 6));
    bodies.sizes.push_back(options->bodyBytes);
  }

  BodyFacts facts;
  std::vector<BenchSet> sets;
  for (std::size_t count : options->counts) {
    BenchSet bench;
    bench.rules = count;
    if (!loadSet(bench, literals) || !warmAndCheck(bench, bodies, facts)) {
      return kExitFailure;
    }
    sets.push_back(std::move(bench));
  }
  std::size_t cursor = 0;
  for (int round = 0; round < options->rounds; ++round) {
    for (std::size_t k = 0; k < sets.size(); ++k) {
      BenchSet& bench = sets[(k + static_cast<std::size_t>(round)) % sets.size()];
      bench.mbps.push_back(timeRound(*bench.set, bodies, facts, options->minRoundSeconds, cursor));
    }
  }
  printTable(sets, *options);
  return 0;
}
