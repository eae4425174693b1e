#pragma once
/// Verdict — what a Policy decided at one stage, as a typed value.
///
/// The frontends turn a Verdict into output in exactly one place each (a
/// reply line in the proxy, SMFIS_* plus smfi_setreply in the milter, text or
/// JSON in `smtpgate check`). A Reply's class always matches its Action:
/// Tempfail carries a 4xx reply, Reject a 5xx one (the factories enforce it).
/// A score is a fact, not a verdict; `score` is carried along for the log.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/reply_template.h"
#include "rules/stage.h"

namespace smtpgate::policies {

using rules::EnhancedStatus;
using rules::Stage;
using rules::toString;

/// Continue = no opinion (Postfix DUNNO); Accept = a rule accepted, so later
/// rules of its scope are skipped.
enum class Action { Continue, Accept, Tempfail, Reject };
std::string_view toString(Action a);

struct Reply {
  int code = 250;
  EnhancedStatus esc;
  std::string text;

  /// "550 5.7.1 text" without CRLF.
  [[nodiscard]] std::string line() const;
  /// The reply a refusal of this action at this stage gets when its rule
  /// names none (DESIGN.md: 554/421 at connect, 550/451 elsewhere).
  static rules::ReplyTemplate defaultFor(Action action, Stage stage);
};

struct Verdict {
  Action action = Action::Continue;
  Stage stage = Stage::Connect;
  std::optional<Reply> reply;  ///< set for Tempfail and Reject (and monitored would-be refusals)
  std::string ruleId;          ///< the rule or threshold that decided; empty if none
  std::string ruleWhere;       ///< "file:line" of that rule
  bool disconnect = false;     ///< a connect-stage refusal: answer and close
  /// A monitor rule or dry-run mode would have refused: the mail goes on,
  /// the log says "would-reject"/"would-tempfail".
  std::optional<Action> wouldBe;
  double score = 0;  ///< the transaction's score after this stage

  [[nodiscard]] bool refuses() const {
    return action == Action::Tempfail || action == Action::Reject;
  }
  /// The decision log's action word: accept, continue, tempfail, reject,
  /// would-tempfail, would-reject.
  [[nodiscard]] std::string logAction() const;
};

}  // namespace smtpgate::policies
