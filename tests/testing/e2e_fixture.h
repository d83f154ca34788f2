// DockerHostTest: the base fixture of end-to-end tests on one host. The
// suite shares one private dockerd (with the busybox test image); each test
// gets a fresh directory with an `events/` tree, runs the real dispatchd
// binary against them, and leaves nothing behind: its dispatchd is stopped
// (its log printed if the test failed), its containers removed, its
// directory deleted.
#ifndef DISPATCHD_TESTS_TESTING_E2E_FIXTURE_H_
#define DISPATCHD_TESTS_TESTING_E2E_FIXTURE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"

namespace dispatchd {
namespace testing {

class DockerHostTest : public ::testing::Test {
 protected:
  using Labels = std::vector<std::pair<std::string, std::string>>;

  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  // all-in-one on events_ against the suite's daemon, on a free gRPC port,
  // logging at debug level.
  std::vector<std::string> BaseArgs() const;
  // Starts dispatchd with BaseArgs() and `extra`, and waits until the first
  // container inventory has reached the controller.
  void StartDispatchd(const std::vector<std::string>& extra = {});
  std::string Log() const;

  // A container name unique to this test; removed in TearDown.
  std::string Name(const std::string& base);
  // `docker run -d` (or `create` when !running) of a busybox container that
  // sleeps, with `labels` and extra `docker run` flags.
  void Run(const std::string& name, const Labels& labels, bool running = true,
           const std::vector<std::string>& extra = {});
  bool InContainer(const std::string& name, const std::string& path);
  std::string CatInContainer(const std::string& name, const std::string& path);
  // The event file events/<relative> is gone (settled).
  bool Gone(const std::string& relative) const;

  static PrivateDockerd* daemon_;
  std::string dir_;
  std::string events_;
  std::unique_ptr<DispatchdProcess> dispatchd_;
  std::vector<std::string> containers_;
};

}  // namespace testing
}  // namespace dispatchd

#endif  // DISPATCHD_TESTS_TESTING_E2E_FIXTURE_H_
