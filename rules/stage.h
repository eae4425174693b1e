#pragma once
/// Stage — the SMTP stages at which rules run, in protocol order.
///
/// One vocabulary for rule files (`on mail`), the decision log's "stage" key,
/// metric labels and `smtpgate check` output. The enum lives in rules/ (not in
/// policies/, as STYLE.md G2 suggests) because the rule language itself names
/// stages and rules/ may depend on nothing of ours; policies/ re-exports it.

#include <array>
#include <optional>
#include <string_view>

namespace smtpgate::rules {

enum class Stage { Connect, Helo, Mail, Rcpt, Data };

inline constexpr std::array<Stage, 5> kAllStages = {Stage::Connect, Stage::Helo, Stage::Mail,
                                                    Stage::Rcpt, Stage::Data};
inline constexpr std::array<std::string_view, 5> kStageNames = {"connect", "helo", "mail", "rcpt",
                                                                "data"};

constexpr std::string_view toString(Stage stage) {
  return kStageNames[static_cast<std::size_t>(stage)];
}

constexpr std::optional<Stage> parseStage(std::string_view name) {
  for (Stage s : kAllStages) {
    if (toString(s) == name) {
      return s;
    }
  }
  return std::nullopt;
}

}  // namespace smtpgate::rules
