#include "policies/recorded_facts.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>
#include <variant>

namespace smtpgate::policies {

namespace {

using rules::FactValue;
using rules::FieldId;
using rules::FieldType;

constexpr std::string_view kDnsblPrefix = "dnsbl:";

std::string formatNumber(double n) {
  // Ports and sizes are whole numbers: print them whole, not as 1.23457e+07.
  if (std::isfinite(n) && n == std::trunc(n) && std::fabs(n) < 1e15) {
    return std::to_string(static_cast<long long>(n));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", n);
  return buf;
}

std::optional<FactValue> parseValue(FieldType type, std::string_view text) {
  switch (type) {
    case FieldType::Bool:
      if (text == "true" || text == "false") {
        return FactValue{text == "true"};
      }
      return std::nullopt;
    case FieldType::Number: {
      double n = 0;
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(n)) {
        return std::nullopt;
      }
      return FactValue{n};
    }
    case FieldType::Text:
    case FieldType::AuthResult:
      return FactValue{std::string(text)};
    default:
      return std::nullopt;
  }
}

std::vector<std::string> splitCommas(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return out;
}

}  // namespace

bool isRecordedField(FieldId id) {
  switch (id) {
    case FieldId::ClientPort:
    case FieldId::LocalPort:
    case FieldId::Pregreet:
    case FieldId::ClientPtr:
    case FieldId::ClientFcrdns:
    case FieldId::Tls:
    case FieldId::TlsVersion:
    case FieldId::TlsCipher:
    case FieldId::MailSize:
    case FieldId::Spf:
    case FieldId::SpfExplanation:
      return true;
    default:
      return false;
  }
}

const FactValue* RecordedFacts::find(FieldId id) const {
  const auto it = values.find(id);
  return it == values.end() ? nullptr : &it->second;
}

void RecordedFacts::addItems(const std::vector<std::string>& items) {
  for (const std::string& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) {
      continue;
    }
    const std::string_view name = std::string_view(item).substr(0, eq);
    const std::string_view value = std::string_view(item).substr(eq + 1);
    if (name.starts_with(kDnsblPrefix)) {
      dnsbl[std::string(name.substr(kDnsblPrefix.size()))] = splitCommas(value);
      continue;
    }
    const auto field = rules::lookupField(name);
    if (!field || !isRecordedField(field->info->id) || field->info->id == FieldId::Spf) {
      continue;  // spf comes from its own key
    }
    if (auto parsed = parseValue(field->info->type, value)) {
      values[field->info->id] = std::move(*parsed);
    }
  }
}

void RecordedFacts::addSpf(std::string_view spf) {
  if (spf.empty()) {
    return;
  }
  values[FieldId::Spf] = FactValue{std::string(spf)};
  values.try_emplace(FieldId::SpfExplanation, FactValue{std::string()});
}

std::string factItem(std::string_view name, const FactValue& value) {
  std::string out(name);
  out += '=';
  if (const auto* b = std::get_if<bool>(&value)) {
    out += *b ? "true" : "false";
  } else if (const auto* n = std::get_if<double>(&value)) {
    out += formatNumber(*n);
  } else if (const auto* s = std::get_if<std::string>(&value)) {
    out += *s;
  }
  return out;
}

std::string dnsblItem(std::string_view queryName, const std::vector<std::string>& answers) {
  std::string out(kDnsblPrefix);
  out += queryName;
  out += '=';
  for (std::size_t i = 0; i < answers.size(); ++i) {
    out += i == 0 ? "" : ",";
    out += answers[i];
  }
  return out;
}

}  // namespace smtpgate::policies
