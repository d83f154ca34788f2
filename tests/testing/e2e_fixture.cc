#include "tests/testing/e2e_fixture.h"

#include <sys/stat.h>

#include <iostream>

#include "absl/strings/str_cat.h"

namespace dispatchd {
namespace testing {

PrivateDockerd* DockerHostTest::daemon_ = nullptr;

void DockerHostTest::SetUpTestSuite() {
  auto daemon = PrivateDockerd::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon_ = daemon->release();
  ASSERT_TRUE(daemon_->EnsureBusyboxImage().ok());
}

void DockerHostTest::TearDownTestSuite() {
  delete daemon_;
  daemon_ = nullptr;
}

void DockerHostTest::SetUp() {
  ASSERT_NE(daemon_, nullptr);
  dir_ = MakeTempDir("dispatchd-e2e");
  ASSERT_FALSE(dir_.empty());
  events_ = dir_ + "/events";
  ASSERT_EQ(mkdir(events_.c_str(), 0755), 0);
}

void DockerHostTest::TearDown() {
  if (dispatchd_ != nullptr && dispatchd_->Running()) dispatchd_->Terminate().IgnoreError();
  if (HasFailure() && dispatchd_ != nullptr) {
    std::cerr << "---- dispatchd log ----\n" << dispatchd_->Log() << "----\n";
  }
  dispatchd_.reset();
  if (daemon_ != nullptr) {
    for (const std::string& name : containers_) daemon_->Docker({"rm", "-f", name}).IgnoreError();
  }
  RemoveTree(dir_);
}

std::vector<std::string> DockerHostTest::BaseArgs() const {
  return {"all-in-one", "--events-dir", events_,     "--docker-host", daemon_->host(),
          "--log-level", "debug",       "--listen", "127.0.0.1:0"};
}

void DockerHostTest::StartDispatchd(const std::vector<std::string>& extra) {
  std::vector<std::string> args = BaseArgs();
  args.insert(args.end(), extra.begin(), extra.end());
  auto process = DispatchdProcess::Start(args, dir_ + "/dispatchd.log");
  ASSERT_TRUE(process.ok()) << process.status();
  dispatchd_ = *std::move(process);
  ASSERT_TRUE(WaitFor([&] { return Log().find("inventory:") != std::string::npos; })) << Log();
}

std::string DockerHostTest::Log() const { return dispatchd_ == nullptr ? "" : dispatchd_->Log(); }

std::string DockerHostTest::Name(const std::string& base) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = absl::StrCat(info->name(), "-", base);
  containers_.push_back(name);
  return name;
}

void DockerHostTest::Run(const std::string& name, const Labels& labels, bool running,
                         const std::vector<std::string>& extra) {
  std::vector<std::string> args = {running ? "run" : "create", "--network", "none", "--name",
                                   name};
  if (running) args.insert(args.begin() + 1, "-d");
  for (const auto& [k, v] : labels) {
    args.push_back("--label");
    args.push_back(absl::StrCat(k, "=", v));
  }
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(PrivateDockerd::kBusyboxImage);
  args.push_back("sleep");
  args.push_back("86400");
  auto out = daemon_->Docker(args);
  ASSERT_TRUE(out.ok()) << out.status();
}

bool DockerHostTest::InContainer(const std::string& name, const std::string& path) {
  return daemon_->Docker({"exec", name, "test", "-e", path}).ok();
}

std::string DockerHostTest::CatInContainer(const std::string& name, const std::string& path) {
  auto out = daemon_->Docker({"exec", name, "cat", path});
  return out.ok() ? *out : "";
}

bool DockerHostTest::Gone(const std::string& relative) const {
  return !FileExists(events_ + "/" + relative);
}

}  // namespace testing
}  // namespace dispatchd
