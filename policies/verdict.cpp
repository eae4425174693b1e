#include "policies/verdict.h"

namespace smtpgate::policies {

std::string_view toString(Action a) {
  switch (a) {
    case Action::Continue:
      return "continue";
    case Action::Accept:
      return "accept";
    case Action::Tempfail:
      return "tempfail";
    case Action::Reject:
      return "reject";
  }
  return "continue";
}

std::string Reply::line() const {
  return std::to_string(code) + ' ' + esc.toString() + (text.empty() ? "" : " " + text);
}

rules::ReplyTemplate Reply::defaultFor(Action action, Stage stage) {
  bool connect = stage == Stage::Connect;
  if (action == Action::Tempfail) {
    return connect
               ? rules::ReplyTemplate::make(421, {4, 7, 0}, "Try again later (session $session)")
               : rules::ReplyTemplate::make(451, {4, 7, 1}, "Try again later (session $session)");
  }
  return connect
             ? rules::ReplyTemplate::make(554, {5, 7, 1}, "Service unavailable (session $session)")
             : rules::ReplyTemplate::make(550, {5, 7, 1}, "Rejected by policy (session $session)");
}

std::string Verdict::logAction() const {
  if (wouldBe) {
    return "would-" + std::string(toString(*wouldBe));
  }
  return std::string(toString(action));
}

}  // namespace smtpgate::policies
