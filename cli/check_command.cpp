#include "cli/check_command.h"

#include <fmt/core.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/exit_codes.h"
#include "cli/loaded_config.h"
#include "policies/decision_log.h"
#include "policies/dns_resolver.h"
#include "policies/policy.h"
#include "policies/rule_loader.h"

namespace smtpgate::cli {

namespace {

struct CheckOptions {
  std::string config;
  std::string ip;
  std::optional<std::string> helo;
  std::optional<std::string> from;
  std::vector<std::string> rcpts;
  std::string message;
  std::string logPath;
  int port = 0;
  int localPort = 25;
  bool json = false;
  std::vector<std::string> dns;  ///< --dns: overrides [dns] servers
  bool noDns = false;
};

struct CheckRun {
  std::vector<policies::StageReport> reports;
  policies::Verdict final;
  std::size_t acceptedRcpts = 0;
};

bool readMessage(const std::string& path, std::string& out) {
  if (path == "-") {
    out.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

/// Runs the stages the input reaches; stops at the first refusal that ends
/// the session or transaction (a refused recipient only drops that one).
CheckRun runStages(policies::Policy& policy, const CheckOptions& o, const rules::IpAddress& ip,
                   const std::string* message) {
  CheckRun run;
  policy.reportTo(&run.reports);
  run.final = policy.onConnect(
      {ip, static_cast<std::uint16_t>(o.port), static_cast<std::uint16_t>(o.localPort), false});
  if (run.final.refuses() || !o.helo) {
    return run;
  }
  run.final = policy.onHelo(*o.helo);
  if (run.final.refuses() || !o.from) {
    return run;
  }
  run.final = policy.onMail(*o.from, message ? static_cast<double>(message->size()) : 0);
  if (run.final.refuses()) {
    return run;
  }
  policies::Verdict lastRefusal;
  for (const auto& rcpt : o.rcpts) {
    policies::Verdict v = policy.onRcpt(rcpt);
    if (v.refuses()) {
      lastRefusal = v;
    } else {
      ++run.acceptedRcpts;
      run.final = v;
    }
  }
  if (!o.rcpts.empty() && run.acceptedRcpts == 0) {
    run.final = lastRefusal;  // every recipient refused: the transaction fails
    return run;
  }
  if (message != nullptr) {
    run.final = policy.onEndOfData(*message);
  }
  return run;
}

int exitCodeFor(const policies::Verdict& v) {
  switch (v.action) {
    case policies::Action::Reject:
      return kExitReject;
    case policies::Action::Tempfail:
      return kExitTempfail;
    default:
      return kExitAccept;
  }
}

std::string verdictLine(const policies::Verdict& v) {
  std::string out(v.wouldBe ? v.logAction() : std::string(policies::toString(v.action)));
  if (v.reply) {
    out += ": " + v.reply->line();
  }
  if (!v.ruleId.empty()) {
    out += fmt::format("  [rule {} at {}]", v.ruleId, v.ruleWhere);
  }
  return out;
}

void printStage(const policies::StageReport& r) {
  std::string title(rules::toString(r.stage));
  fmt::print("{:<8} {}\n", title, r.subject.empty() ? "" : "(" + r.subject + ")");
  if (!r.skipped.empty()) {
    fmt::print("         rules skipped: {}\n", r.skipped);
  }
  for (const auto& [field, value] : r.facts) {
    fmt::print("         {} = {}\n", field,
               value.size() > 120 ? value.substr(0, 117) + "..." : value);
  }
  for (const auto& t : r.rules) {
    std::string extra = t.rule->action == rules::RuleAction::Score && t.result == rules::Tri::True
                            ? fmt::format(" (score {:+g})", t.rule->score)
                            : "";
    fmt::print("         rule {:<20} {:<8} {}{}\n", t.rule->id, rules::toString(t.result),
               t.rule->whereShort(), extra);
  }
  if (!r.threshold.empty()) {
    fmt::print("         threshold {} reached (score {:g})\n", r.threshold, r.verdict.score);
  }
  if (!r.dnsFailure.empty()) {
    fmt::print("         DNS failure: {} ([failure] dns = \"tempfail\")\n", r.dnsFailure);
  }
  fmt::print("         -> {}\n", verdictLine(r.verdict));
}

void printSpf(const policies::SpfResult& spf) {
  fmt::print("\nspf: {} ({} {}){}\n", policies::toString(spf.status), spf.identity, spf.domain,
             spf.explanation.empty() ? "" : ": " + spf.explanation);
  if (!spf.comment.empty()) {
    fmt::print("     {}\n", spf.comment);
  }
  if (!spf.dnsError.empty()) {
    fmt::print("     DNS: {}\n", spf.dnsError);
  }
  if (!spf.receivedSpf.empty()) {
    fmt::print("     {}\n", spf.receivedSpf);
  }
}

void printDkim(const policies::DkimResult& dkim) {
  fmt::print("\ndkim: {}{}\n", policies::toString(dkim.status),
             dkim.error.empty() ? "" : " (" + dkim.error + ")");
  for (const auto& s : dkim.signatures) {
    fmt::print("     {} d={} s={} a={} c={}{}{}{}\n", policies::toString(s.status), s.domain,
               s.selector, s.algorithm, s.canonicalization,
               s.keyBits != 0 ? " " + std::to_string(s.keyBits) + "-bit key" : "",
               s.partialBody ? " (l= covers part of the body)" : "",
               s.reason.empty() ? "" : ": " + s.reason);
  }
  if (dkim.signaturesSkipped > 0) {
    fmt::print("     {} more signature(s) not checked ([dkim] max_signatures)\n",
               dkim.signaturesSkipped);
  }
  if (!dkim.dnsError.empty()) {
    fmt::print("     DNS: {}\n", dkim.dnsError);
  }
}

void printDmarc(const policies::DmarcResult& dmarc) {
  fmt::print("\ndmarc: {} (policy {}) from {}{}\n", policies::toString(dmarc.status),
             policies::toString(dmarc.policy), dmarc.fromDomain.empty() ? "?" : dmarc.fromDomain,
             dmarc.reason.empty() ? "" : ": " + dmarc.reason);
  if (!dmarc.record.empty()) {
    fmt::print("     _dmarc.{}: {}\n", dmarc.recordDomain, dmarc.record);
  }
  if (!dmarc.dkimAlignedDomain.empty()) {
    fmt::print("     aligned DKIM: d={}\n", dmarc.dkimAlignedDomain);
  }
  if (dmarc.spfAligned) {
    fmt::print("     aligned SPF\n");
  }
  if (!dmarc.dnsError.empty()) {
    fmt::print("     DNS: {}\n", dmarc.dnsError);
  }
}

nlohmann::json dkimJson(const policies::DkimResult& dkim) {
  nlohmann::json sigs = nlohmann::json::array();
  for (const auto& s : dkim.signatures) {
    sigs.push_back({{"result", policies::toString(s.status)},
                    {"domain", s.domain},
                    {"selector", s.selector},
                    {"algorithm", s.algorithm},
                    {"canonicalization", s.canonicalization},
                    {"key_bits", s.keyBits},
                    {"body_length", s.bodyLength},
                    {"partial_body", s.partialBody},
                    {"reason", s.reason}});
  }
  return {{"result", policies::toString(dkim.status)},
          {"signatures", sigs},
          {"skipped", dkim.signaturesSkipped},
          {"error", dkim.error},
          {"dns_error", dkim.dnsError}};
}

nlohmann::json dmarcJson(const policies::DmarcResult& dmarc) {
  return {{"result", policies::toString(dmarc.status)},
          {"policy", policies::toString(dmarc.policy)},
          {"from_domain", dmarc.fromDomain},
          {"record_domain", dmarc.recordDomain},
          {"record", dmarc.record},
          {"dkim_aligned", dmarc.dkimAlignedDomain},
          {"spf_aligned", dmarc.spfAligned},
          {"reason", dmarc.reason},
          {"dns_error", dmarc.dnsError}};
}

nlohmann::json spfJson(const policies::SpfResult& spf) {
  return {{"result", policies::toString(spf.status)},
          {"identity", spf.identity},
          {"domain", spf.domain},
          {"explanation", spf.explanation},
          {"comment", spf.comment},
          {"dns_error", spf.dnsError},
          {"received_spf", spf.receivedSpf}};
}

nlohmann::json verdictJson(const policies::Verdict& v) {
  nlohmann::json j{
      {"stage", rules::toString(v.stage)}, {"action", v.logAction()}, {"score", v.score}};
  if (v.reply) {
    j["reply"] = v.reply->line();
  }
  if (!v.ruleId.empty()) {
    j["rule"] = v.ruleId;
    j["rule_where"] = v.ruleWhere;
  }
  return j;
}

nlohmann::json stageJson(const policies::StageReport& r) {
  nlohmann::json j{{"stage", rules::toString(r.stage)}, {"verdict", verdictJson(r.verdict)}};
  if (!r.subject.empty()) {
    j["subject"] = r.subject;
  }
  if (!r.skipped.empty()) {
    j["skipped"] = r.skipped;
  }
  j["facts"] = nlohmann::json::object();
  for (const auto& [field, value] : r.facts) {
    j["facts"][field] = value;
  }
  j["rules"] = nlohmann::json::array();
  for (const auto& t : r.rules) {
    j["rules"].push_back({{"id", t.rule->id},
                          {"where", t.rule->whereShort()},
                          {"result", rules::toString(t.result)},
                          {"action", rules::toString(t.rule->action)}});
  }
  return j;
}

void printReport(const CheckRun& run, const policies::Policy& policy, const CheckOptions& o,
                 int exitCode) {
  if (o.json) {
    nlohmann::json j{{"session", policy.session().id},
                     {"ruleset", policy.ruleSet().hash()},
                     {"stages", nlohmann::json::array()},
                     {"verdict", verdictJson(run.final)},
                     {"exit", exitCode}};
    for (const auto& r : run.reports) {
      j["stages"].push_back(stageJson(r));
    }
    if (const auto* spf = policy.spfResult()) {
      j["spf"] = spfJson(*spf);
    }
    if (const auto* dkim = policy.dkimResult()) {
      j["dkim"] = dkimJson(*dkim);
    }
    if (const auto* dmarc = policy.dmarcResult()) {
      j["dmarc"] = dmarcJson(*dmarc);
    }
    if (!o.message.empty()) {
      j["authentication_results"] = policy.authenticationResults();
    }
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  fmt::print("smtpgate check: session {}, ruleset {} ({} rules)\n\n", policy.session().id,
             policy.ruleSet().hash(), policy.ruleSet().rules().size());
  for (const auto& r : run.reports) {
    printStage(r);
  }
  if (const auto* spf = policy.spfResult()) {
    printSpf(*spf);
  }
  if (const auto* dkim = policy.dkimResult()) {
    printDkim(*dkim);
  }
  if (const auto* dmarc = policy.dmarcResult()) {
    printDmarc(*dmarc);
  }
  if (!o.message.empty()) {
    fmt::print("\n{}: {}\n", policies::kAuthenticationResults, policy.authenticationResults());
  }
  fmt::print("\nverdict: {} at {}\n", verdictLine(run.final), rules::toString(run.final.stage));
}

int validate(const CheckOptions& o) {
  if (!o.rcpts.empty() && !o.from) {
    fmt::print(stderr, "smtpgate check: --rcpt needs --from (use --from \"\" for a bounce)\n");
    return kExitUsage;
  }
  if (o.from && !o.helo) {
    fmt::print(stderr, "smtpgate check: --from needs --helo\n");
    return kExitUsage;
  }
  if (!o.message.empty() && o.rcpts.empty()) {
    fmt::print(stderr, "smtpgate check: a message needs --helo, --from and at least one --rcpt\n");
    return kExitUsage;
  }
  return kExitAccept;
}

int runCheck(const CheckOptions& o) {
  if (int bad = validate(o); bad != kExitAccept) {
    return bad;
  }
  auto ip = rules::IpAddress::parse(o.ip);
  if (!ip) {
    fmt::print(stderr, "smtpgate check: --ip '{}' is not an IPv4 or IPv6 address\n", o.ip);
    return kExitUsage;
  }
  std::string message;
  if (!o.message.empty() && !readMessage(o.message, message)) {
    fmt::print(stderr, "smtpgate check: cannot read message '{}'\n", o.message);
    return kExitNoInput;
  }
  rules::Diagnostics diags;
  auto loaded = loadConfigAndRules(o.config, diags, {!o.noDns, o.dns});
  printDiagnostics(diags);
  if (!loaded || !loaded->rules) {
    fmt::print(stderr, "smtpgate check: fix the errors above first (smtpgate lint)\n");
    return kExitConfig;
  }
  policies::PolicyOptions options = policyOptionsFor(*loaded, "check");
  policies::Policy policy(loaded->rules, policies::newSessionId(), options);
  CheckRun run = runStages(policy, o, *ip, o.message.empty() ? nullptr : &message);
  int exitCode = exitCodeFor(run.final);
  printReport(run, policy, o, exitCode);
  if (!o.logPath.empty()) {
    std::string error;
    auto log = policies::DecisionLog::open(o.logPath, error);
    if (!log || !log->write(policy.record(run.final))) {
      fmt::print(stderr, "smtpgate check: cannot write decision log '{}': {}\n", o.logPath,
                 log ? log->lastError() : error);
    }
  }
  return exitCode;
}

}  // namespace

void addCheckCommand(CLI::App& app, int& exitCode) {
  auto o = std::make_shared<CheckOptions>();
  CLI::App* cmd = app.add_subcommand("check", "Evaluate one transaction offline, stage by stage");
  cmd->add_option("-c,--config", o->config, "Config file");
  cmd->add_option("--ip", o->ip, "Client IP address")->required();
  cmd->add_option("--port", o->port, "Client port")->check(CLI::Range(0, 65535));
  cmd->add_option("--local-port", o->localPort, "Port the client connected to")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--helo", o->helo, "HELO/EHLO name");
  cmd->add_option("--from", o->from, "Envelope sender (\"\" for the null sender)");
  // One value per --rcpt, so a message file after it is not taken for a recipient.
  cmd->add_option("--rcpt", o->rcpts, "Envelope recipient (repeatable)")->allow_extra_args(false);
  cmd->add_option("message", o->message, "Message file (RFC 5322; - for stdin)");
  cmd->add_flag("--json", o->json, "Print one JSON object instead of text");
  cmd->add_option("--log", o->logPath, "Also append the decision to this decision log");
  cmd->add_option("--dns", o->dns, "DNS server HOST:PORT (repeatable; overrides [dns] servers)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-dns", o->noDns, "Look nothing up: DNS facts are unavailable");
  cmd->callback([o, &exitCode] { exitCode = runCheck(*o); });
}

}  // namespace smtpgate::cli
