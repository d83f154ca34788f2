// dispatchctl: parses flags, calls the controller's public API once, prints
// the answer. Exit status 0 on success, 1 when the controller cannot be
// reached or refuses the call, 2 for bad usage.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/time/clock.h"
#include "cmd/dispatchctl/dispatchctl.h"
#include "common/tls.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<dispatchd::ctl::DispatchctlOptions> options =
      dispatchd::ctl::ParseDispatchctlOptions(args,
                                              [](const char* name) { return std::getenv(name); });
  if (!options.ok()) {
    std::cerr << "dispatchctl: " << options.status().message() << "\n";
    return 2;
  }
  if (options->help) {
    std::cout << dispatchd::ctl::DispatchctlUsage();
    return 0;
  }
  if (options->command == dispatchd::ctl::Command::kHealth) {
    absl::StatusOr<std::string> health = dispatchd::ctl::CheckHealth(*options);
    if (!health.ok()) {
      std::cerr << "dispatchctl: " << health.status().message() << "\n";
      return 1;
    }
    std::cout << *health;
    return 0;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      dispatchd::ChannelCredentialsFromFlags(
          dispatchd::TlsFiles{options->tls_cert, options->tls_key, options->tls_ca});
  if (!credentials.ok()) {
    std::cerr << "dispatchctl: " << credentials.status().message() << "\n";
    return 2;
  }
  // A channel per controller replica tried (the first that answers, and
  // the leader it names).
  dispatchd::ctl::ChannelFactory channels =
      [credentials = *credentials](const std::string& address) {
        return std::shared_ptr<grpc::ChannelInterface>(grpc::CreateChannel(address, credentials));
      };
  if (options->command == dispatchd::ctl::Command::kWatch) {
    absl::Status status = dispatchd::ctl::RunWatch(*options, channels, [](const std::string& line) {
      std::cout << line << std::endl;  // as it happens
      return static_cast<bool>(std::cout);
    });
    if (!status.ok()) {
      std::cerr << "dispatchctl: " << status.message() << "\n";
      return 1;
    }
    return 0;
  }
  absl::StatusOr<std::string> output =
      dispatchd::ctl::RunDispatchctl(*options, channels, absl::Now());
  if (!output.ok()) {
    std::cerr << "dispatchctl: " << output.status().message() << "\n";
    return 1;
  }
  std::cout << *output;
  return 0;
}
