#include "common/flags.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace dispatchd {

FlagSet::FlagSet(std::string env_prefix) : env_prefix_(std::move(env_prefix)) {}

void FlagSet::Section(std::string title) { section_ = std::move(title); }

void FlagSet::String(std::string name, std::string* target, std::string value_name,
                     std::string help) {
  Add({std::move(name), std::move(value_name), std::move(help), section_,
                    [target](const std::string& v) {
                      *target = v;
                      return absl::OkStatus();
                    }});
}

void FlagSet::Bool(std::string name, bool* target, std::string help) {
  Add({std::move(name), "", std::move(help), section_,
                    [target](const std::string& v) {
                      if (v != "true" && v != "false") {
                        return absl::InvalidArgumentError("expected true or false");
                      }
                      *target = v == "true";
                      return absl::OkStatus();
                    }});
}

void FlagSet::Positive(std::string name, int64_t* target, std::string value_name,
                       std::string help) {
  Custom(std::move(name),
         [target](const std::string& v) {
           int64_t n = 0;
           if (!absl::SimpleAtoi(v, &n) || n <= 0) {
             return absl::InvalidArgumentError("expected a positive integer");
           }
           *target = n;
           return absl::OkStatus();
         },
         std::move(value_name), std::move(help));
}

void FlagSet::Positive(std::string name, int* target, std::string value_name, std::string help) {
  Custom(std::move(name),
         [target](const std::string& v) {
           int n = 0;
           if (!absl::SimpleAtoi(v, &n) || n <= 0) {
             return absl::InvalidArgumentError("expected a positive integer");
           }
           *target = n;
           return absl::OkStatus();
         },
         std::move(value_name), std::move(help));
}

void FlagSet::Duration(std::string name, absl::Duration* target, std::string value_name,
                       std::string help) {
  Custom(std::move(name),
         [target](const std::string& v) {
           absl::Duration d;
           if (!absl::ParseDuration(v, &d) || d <= absl::ZeroDuration()) {
             return absl::InvalidArgumentError(
                 "expected a positive duration such as 500ms, 5s or 1m");
           }
           *target = d;
           return absl::OkStatus();
         },
         std::move(value_name), std::move(help));
}

void FlagSet::Custom(std::string name, std::function<absl::Status(const std::string&)> set,
                     std::string value_name, std::string help) {
  Add(
      {std::move(name), std::move(value_name), std::move(help), section_, std::move(set)});
}

void FlagSet::Add(Flag flag) {
  if (!env_prefix_.empty() && flag.name != "help" && flag.name != "version") {
    flag.env = {EnvironmentVariable(flag.name)};
  }
  flags_.push_back(std::move(flag));
}

void FlagSet::Environment(absl::string_view name, std::vector<std::string> variables) {
  for (Flag& f : flags_) {
    if (f.name == name) f.env = std::move(variables);
  }
}

const FlagSet::Flag* FlagSet::Find(absl::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status FlagSet::Set(const Flag& flag, const std::string& value) const {
  absl::Status status = flag.set(value);
  if (status.ok()) return status;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value '", value, "' for --", flag.name, ": ", status.message()));
}

std::string FlagSet::EnvironmentVariable(absl::string_view name) const {
  std::string variable = absl::StrCat(env_prefix_, name);
  for (char& c : variable) c = c == '-' ? '_' : absl::ascii_toupper(static_cast<unsigned char>(c));
  return variable;
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args,
                                                        const EnvLookup& env) const {
  for (const Flag& flag : flags_) {
    for (const std::string& variable : flag.env) {
      const char* value = env(variable.c_str());
      if (value == nullptr || *value == '\0') continue;
      if (absl::Status s = Set(flag, value); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(variable, ": ", s.message()));
      }
      break;
    }
  }
  std::vector<std::string> words;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "-h") arg = "--help";
    if (!absl::ConsumePrefix(&arg, "--")) {
      if (absl::StartsWith(arg, "-") && arg.size() > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", args[i], "' (see --help)"));
      }
      words.push_back(args[i]);
      continue;
    }
    std::string name(arg);
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    if (name == "h") name = "help";
    const Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (flag->value_name.empty()) {  // boolean
      if (absl::Status s = Set(*flag, has_value ? value : "true"); !s.ok()) return s;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (absl::Status s = Set(*flag, value); !s.ok()) return s;
  }
  return words;
}

std::string FlagSet::Usage() const {
  size_t width = 0;
  for (const Flag& f : flags_) {
    width = std::max(width, f.name.size() + (f.value_name.empty() ? 0 : f.value_name.size() + 1));
  }
  width += 2 + 2;  // "--" and the gap
  std::string out;
  std::string section = "\x01";  // none printed yet
  for (const Flag& f : flags_) {
    if (f.section != section) {
      section = f.section;
      if (!section.empty()) absl::StrAppend(&out, out.empty() ? "" : "\n", section, ":\n");
    }
    std::string left = absl::StrCat("--", f.name, f.value_name.empty() ? "" : " ", f.value_name);
    left.resize(std::max(left.size() + 2, width), ' ');
    bool first = true;
    for (absl::string_view line : absl::StrSplit(f.help, '\n')) {
      absl::StrAppend(&out, "  ", first ? left : std::string(width, ' '), line, "\n");
      first = false;
    }
  }
  return out;
}

}  // namespace dispatchd
