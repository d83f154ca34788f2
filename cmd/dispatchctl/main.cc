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
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(options->controller, grpc::InsecureChannelCredentials());
  absl::StatusOr<std::string> output = dispatchd::ctl::RunDispatchctl(*options, channel, absl::Now());
  if (!output.ok()) {
    std::cerr << "dispatchctl: " << output.status().message() << "\n";
    return 1;
  }
  std::cout << *output;
  return 0;
}
