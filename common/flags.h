// FlagSet: the one parser of dispatchd's and dispatchctl's command lines.
// A program declares each flag once (name, where its value goes, help), and
// the set parses `--name=value`, `--name value`, boolean `--name` and
// `--name=true|false`, takes every flag also from the environment variable
// <prefix><NAME> (upper case, '_' for '-'; empty counts as unset; the
// command line wins), and prints the help from the same table.
//
//   FlagSet flags("DISPATCHD_");
//   flags.String("events-dir", &o.events_dir, "DIR", "directory watched for event files");
//   ASSIGN_OR_RETURN(std::vector<std::string> words, flags.Parse(args, env));
//
// Errors (InvalidArgument) say what is wrong the same way for both programs:
// "unknown flag --x (see --help)", "flag --x needs a value", "invalid value
// 'v' for --x: why", and, for a value from the environment, the variable's
// name first.
//
// Thread-compatible. The targets must outlive Parse().
#ifndef DISPATCHD_COMMON_FLAGS_H_
#define DISPATCHD_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd {

using EnvLookup = std::function<const char*(const char*)>;

class FlagSet {
 public:
  // `env_prefix` (e.g. "DISPATCHD_"); empty: flags are not read from the
  // environment.
  explicit FlagSet(std::string env_prefix);

  // A heading printed before the flags declared after it in Usage().
  void Section(std::string title);
  void String(std::string name, std::string* target, std::string value_name, std::string help);
  void Bool(std::string name, bool* target, std::string help);
  // A positive integer.
  void Positive(std::string name, int64_t* target, std::string value_name, std::string help);
  void Positive(std::string name, int* target, std::string value_name, std::string help);
  // A positive duration such as 500ms, 5s or 1m.
  void Duration(std::string name, absl::Duration* target, std::string value_name,
                std::string help);
  // Anything else: `set` checks and stores the value; its error message
  // becomes "invalid value 'v' for --name: <message>".
  void Custom(std::string name, std::function<absl::Status(const std::string&)> set,
              std::string value_name, std::string help);

  // Replaces the environment variables of flag `name` (declared before):
  // the first of `variables` that is set and non-empty is its value; an
  // empty list reads none.
  void Environment(absl::string_view name, std::vector<std::string> variables);

  // Applies the environment, then `args`; returns the words that are not
  // flags, in order. "-h", "--help" and "--h" set *help when a help flag was
  // declared with Bool("help", ...); anything else starting with '-' that is
  // not declared is an error.
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args,
                                                 const EnvLookup& env) const;

  // The flags as help text: "  --name VALUE   help", aligned, by section.
  std::string Usage() const;

  // "events-dir" -> "<prefix>EVENTS_DIR".
  std::string EnvironmentVariable(absl::string_view name) const;

 private:
  struct Flag {
    std::string name;
    std::string value_name;  // empty: a boolean flag
    std::string help;
    std::string section;
    std::function<absl::Status(const std::string&)> set;
    std::vector<std::string> env;  // variables, in order of precedence
  };
  const Flag* Find(absl::string_view name) const;
  void Add(Flag flag);
  absl::Status Set(const Flag& flag, const std::string& value) const;

  const std::string env_prefix_;
  std::string section_;
  std::vector<Flag> flags_;
};

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_FLAGS_H_
