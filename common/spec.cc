#include "common/spec.h"

#include <charconv>
#include <cstdio>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace rung {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

}  // namespace

bool IsParamNameChar(char c, bool first) {
  return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' ||
         (!first && (absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-'));
}

std::string FormatDouble(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  if (ec != std::errc()) return absl::StrCat(d);
  return std::string(buf, end);
}

std::string FormatParam(const v1::ParamValue& v) {
  switch (v.kind_case()) {
    case v1::ParamValue::kFloatValue:
      return FormatDouble(v.float_value());
    case v1::ParamValue::kIntValue:
      return absl::StrCat(v.int_value());
    case v1::ParamValue::kCategoricalValue:
      return v.categorical_value();
    default:
      return "";
  }
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

std::string ParamsToJson(const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  std::map<std::string, const v1::ParamValue*> sorted;
  for (const auto& [k, v] : params) sorted[k] = &v;
  std::string out = "{";
  for (const auto& [k, v] : sorted) {
    if (out.size() > 1) out += ", ";
    absl::StrAppend(&out, JsonQuote(k), ": ");
    if (v->kind_case() == v1::ParamValue::kCategoricalValue) {
      out += JsonQuote(v->categorical_value());
    } else {
      out += FormatParam(*v);
    }
  }
  out += "}";
  return out;
}

absl::StatusOr<std::string> FillPlaceholders(
    absl::string_view arg, const google::protobuf::Map<std::string, v1::ParamValue>& params) {
  std::string out;
  size_t i = 0;
  while (i < arg.size()) {
    if (arg[i] == '{') {
      size_t j = i + 1;
      while (j < arg.size() && IsParamNameChar(arg[j], j == i + 1)) ++j;
      if (j < arg.size() && arg[j] == '}' && j > i + 1) {
        std::string name(arg.substr(i + 1, j - i - 1));
        auto it = params.find(name);
        if (it == params.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("placeholder {", name, "} names no parameter"));
        }
        out += FormatParam(it->second);
        i = j + 1;
        continue;
      }
    }
    out += arg[i++];
  }
  return out;
}

absl::Status CheckSizes(const google::protobuf::Message& m, const std::string& path,
                        size_t max_string, int max_repeated) {
  const google::protobuf::Reflection* r = m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const auto* f : fields) {
    const std::string name = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    if (f->is_repeated()) {
      const int n = r->FieldSize(m, f);
      if (n > max_repeated)
        return Invalid(name, absl::StrCat("has ", n, " entries; at most ", max_repeated));
      for (int i = 0; i < n; ++i) {
        if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
          std::string scratch;
          const std::string& v = r->GetRepeatedStringReference(m, f, i, &scratch);
          if (v.size() > max_string) {
            return Invalid(absl::StrCat(name, "[", i, "]"),
                           absl::StrCat("is ", v.size(), " bytes; at most ", max_string));
          }
        } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
          RETURN_IF_ERROR(CheckSizes(r->GetRepeatedMessage(m, f, i),
                                     absl::StrCat(name, "[", i, "]"), max_string, max_repeated));
        }
      }
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
      std::string scratch;
      const std::string& v = r->GetStringReference(m, f, &scratch);
      if (v.size() > max_string) {
        return Invalid(name, absl::StrCat("is ", v.size(), " bytes; at most ", max_string));
      }
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      RETURN_IF_ERROR(CheckSizes(r->GetMessage(m, f), name, max_string, max_repeated));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPlaceholders(const v1::TrialTemplate& t,
                               const google::protobuf::Map<std::string, v1::ParamValue>& params,
                               const std::set<std::string>& conditional) {
  // A conditional parameter is absent from some trials, so it cannot fill a placeholder.
  google::protobuf::Map<std::string, v1::ParamValue> always = params;
  for (const auto& c : conditional) always.erase(c);
  for (int i = 0; i < t.command_size(); ++i) {
    auto filled = FillPlaceholders(t.command(i), params);
    if (!filled.ok()) {
      return Invalid(absl::StrCat("trial.command[", i, "]"), filled.status().message());
    }
    if (!FillPlaceholders(t.command(i), always).ok()) {
      return Invalid(absl::StrCat("trial.command[", i, "]"),
                     "a placeholder names a conditional parameter, which some trials lack; "
                     "read it from RUNG_PARAMS instead");
    }
  }
  for (const auto& [k, v] : t.env()) {
    auto filled = FillPlaceholders(v, params);
    if (!filled.ok()) return Invalid(absl::StrCat("trial.env.", k), filled.status().message());
  }
  return absl::OkStatus();
}

}  // namespace rung
