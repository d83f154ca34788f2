// End to end: the public API as a user reaches it. The real dispatchd
// (all-in-one, with a token) runs against a private dockerd; the real
// dispatchctl binary asks it for subscriptions, the invalid ones with their
// reason, agents and status.
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/sync_stream.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "api-test-token";

std::string DispatchctlBinary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr) {
    std::string path = absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "dispatchd",
                                     "/cmd/dispatchctl/dispatchctl");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "bazel-bin/cmd/dispatchctl/dispatchctl";
}

// The address in "controller listening on ADDR " of the log, or "".
std::string ListeningAddress(const std::string& log) {
  const std::string kMarker = "controller listening on ";
  size_t at = log.find(kMarker);
  if (at == std::string::npos) return "";
  at += kMarker.size();
  size_t end = log.find_first_of(" \n", at);
  return log.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

class ApiTest : public DockerHostTest {
 protected:
  // dispatchctl --controller <the dispatchd of this test> args...
  absl::StatusOr<std::string> Dispatchctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {DispatchctlBinary(), "--controller", address_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  std::string address_;
};

TEST_F(ApiTest, DispatchctlShowsSubscriptionsInvalidLabelsAgentsAndStatus) {
  const std::string handler = Name("api-handler");
  Run(handler, {{"subscription.api.ping.container.command", "touch /pinged"},
                {"subscription.api.broken.container.command", "echo 'unterminated"}});
  StartDispatchd({"--token", kToken, "--agent-id", "api-host"});
  ASSERT_TRUE(WaitFor([&] { return !ListeningAddress(Log()).empty(); })) << Log();
  address_ = ListeningAddress(Log());
  EXPECT_THAT(address_, Not(HasSubstr(":0"))) << "the log names the port actually bound";

  // Without the token the controller refuses, and dispatchctl says so.
  auto refused = Dispatchctl({"subscriptions"});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("exit 1"));
  EXPECT_THAT(refused.status().message(), HasSubstr("--token"));

  auto subscriptions = Dispatchctl({"--token", kToken, "subscriptions"});
  ASSERT_TRUE(subscriptions.ok()) << subscriptions.status();
  EXPECT_THAT(*subscriptions, HasSubstr("api.ping"));
  EXPECT_THAT(*subscriptions, HasSubstr("api-handler"));
  EXPECT_THAT(*subscriptions, HasSubstr("running"));
  EXPECT_THAT(*subscriptions, HasSubstr("touch /pinged"));
  EXPECT_THAT(*subscriptions, Not(HasSubstr("api.broken")));

  auto invalid = Dispatchctl({"--token", kToken, "--json", "invalid"});
  ASSERT_TRUE(invalid.ok()) << invalid.status();
  nlohmann::json invalid_json = nlohmann::json::parse(*invalid);
  ASSERT_EQ(invalid_json["invalid"].size(), 1u) << *invalid;
  const nlohmann::json& bad = invalid_json["invalid"][0];
  EXPECT_EQ(bad["container_name"], handler);
  EXPECT_EQ(bad["agent_id"], "api-host");
  EXPECT_EQ(bad["event_id"], "api.broken");
  EXPECT_EQ(bad["label"], "subscription.api.broken.container.command");
  EXPECT_THAT(bad["reason"].get<std::string>(), HasSubstr("quote"));

  auto agents = Dispatchctl({"--token", kToken, "agents"});
  ASSERT_TRUE(agents.ok()) << agents.status();
  EXPECT_THAT(*agents, HasSubstr("api-host"));
  EXPECT_THAT(*agents, HasSubstr("fresh"));

  // An event is delivered; status counts it.
  WriteFile(events_ + "/api/ping", "hello");
  ASSERT_TRUE(WaitFor([&] {
    return daemon_->Docker({"exec", handler, "test", "-e", "/pinged"}).ok();
  })) << Log();
  ASSERT_TRUE(WaitFor([&] { return !FileExists(events_ + "/api/ping"); })) << Log();
  auto status = Dispatchctl({"--token", kToken, "--json", "status"});
  ASSERT_TRUE(status.ok()) << status.status();
  nlohmann::json status_json = nlohmann::json::parse(*status);
  EXPECT_EQ(status_json["events_observed"], "1") << *status;
  EXPECT_EQ(status_json["events_settled_delivered"], "1") << *status;
  EXPECT_EQ(status_json["deliveries"]["delivered"], "1") << *status;
  EXPECT_EQ(status_json["subscriptions_valid"], "1") << *status;
  EXPECT_EQ(status_json["subscriptions_invalid"], "1") << *status;
  EXPECT_EQ(status_json["agents_connected"], "1") << *status;

  auto table = Dispatchctl({"--token", kToken, "status"});
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_THAT(*table, HasSubstr("deliveries delivered"));

  // Once dispatchd is gone, dispatchctl fails with a clear message.
  auto exit_status = dispatchd_->Terminate();
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  auto unreachable = Dispatchctl({"--token", kToken, "status"});
  ASSERT_FALSE(unreachable.ok());
  EXPECT_THAT(unreachable.status().message(), HasSubstr("exit 1"));
  EXPECT_THAT(unreachable.status().message(),
              HasSubstr("cannot reach the controller at " + address_));
}

// Message bytes for the generic calls below: the standard services' messages
// are built and read field by field, so the test needs no copy of their
// .proto files.
grpc::ByteBuffer Bytes(const std::string& data) {
  grpc::Slice slice(data);
  return grpc::ByteBuffer(&slice, 1);
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// grpc.health.v1.Health/Check for `service`: the status enum (1 SERVING,
// 2 NOT_SERVING), or -1 when the call failed.
int HealthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  google::protobuf::UnknownFieldSet request;
  if (!service.empty()) request.AddLengthDelimited(1, service);
  std::string request_bytes;
  request.SerializeToString(&request_bytes);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::ByteBuffer response;
  grpc::Status status = grpc::internal::BlockingUnaryCall(
      channel.get(),
      grpc::internal::RpcMethod("/grpc.health.v1.Health/Check",
                                grpc::internal::RpcMethod::NORMAL_RPC),
      &context, Bytes(request_bytes), &response);
  if (!status.ok()) return -1;
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(Bytes(response))) return -1;
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() == 1) return static_cast<int>(fields.field(i).varint());
  }
  return 0;  // UNKNOWN is the default, omitted on the wire
}

// The service names grpc.reflection.v1alpha.ServerReflection lists.
std::vector<std::string> ReflectedServices(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel.get(),
          grpc::internal::RpcMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                    grpc::internal::RpcMethod::BIDI_STREAMING),
          &context));
  google::protobuf::UnknownFieldSet request;
  request.AddLengthDelimited(7, "");  // list_services
  std::string request_bytes;
  request.SerializeToString(&request_bytes);
  std::vector<std::string> names;
  if (!stream->Write(Bytes(request_bytes))) return names;
  stream->WritesDone();
  grpc::ByteBuffer response;
  while (stream->Read(&response)) {
    google::protobuf::UnknownFieldSet top;
    if (!top.ParseFromString(Bytes(response))) continue;
    for (int i = 0; i < top.field_count(); ++i) {
      if (top.field(i).number() != 6) continue;  // list_services_response
      google::protobuf::UnknownFieldSet list;
      if (!list.ParseFromString(top.field(i).length_delimited())) continue;
      for (int j = 0; j < list.field_count(); ++j) {
        google::protobuf::UnknownFieldSet service;
        if (list.field(j).number() == 1 && service.ParseFromString(list.field(j).length_delimited())) {
          for (int k = 0; k < service.field_count(); ++k) {
            if (service.field(k).number() == 1) names.push_back(service.field(k).length_delimited());
          }
        }
      }
    }
  }
  stream->Finish().IgnoreError();
  return names;
}

// Generic gRPC tools: health follows /readyz, reflection lists the API.
TEST_F(ApiTest, StandardHealthAndReflectionServicesAnswer) {
  StartDispatchd({"--agent-id", "api-host"});
  ASSERT_TRUE(WaitFor([&] { return !ListeningAddress(Log()).empty(); })) << Log();
  address_ = ListeningAddress(Log());
  auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  EXPECT_TRUE(WaitFor([&] { return HealthStatus(channel, "") == 1; })) << HealthStatus(channel, "");
  EXPECT_EQ(HealthStatus(channel, "dispatch.v1.Dispatch"), 1);
  EXPECT_EQ(HealthStatus(channel, "no.such.Service"), -1) << "NOT_FOUND";
  EXPECT_THAT(ReflectedServices(channel),
              ::testing::IsSupersetOf({"dispatch.v1.Dispatch", "dispatch.v1.AgentSession",
                                       "grpc.health.v1.Health"}));
}

// Least privilege: one token per role, and every cross use is refused.
TEST_F(ApiTest, AgentAndApiTokensAreSeparate) {
  StartDispatchd({"--agent-token", "agent-secret", "--api-token", "api-secret",
                  "--api-read-token", "read-secret", "--agent-id", "api-host"});
  ASSERT_TRUE(WaitFor([&] { return !ListeningAddress(Log()).empty(); })) << Log();
  address_ = ListeningAddress(Log());
  // The in-process agent presented the agent token and is in.
  EXPECT_THAT(Log(), HasSubstr("agent api-host inventory:"));

  // API callers: the API token and the read-only token may read...
  EXPECT_TRUE(Dispatchctl({"--token", "api-secret", "status"}).ok());
  EXPECT_TRUE(Dispatchctl({"--token", "read-secret", "agents"}).ok());
  // ...an agent's token may not, and an unknown one is not known.
  auto agent_token = Dispatchctl({"--token", "agent-secret", "status"});
  ASSERT_FALSE(agent_token.ok());
  EXPECT_THAT(agent_token.status().message(), HasSubstr("may not call the API"));
  auto unknown = Dispatchctl({"--token", "guess", "status"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("wrong token"));

  // An agent presenting an API token cannot open a session.
  auto intruder = DispatchdProcess::Start(
      {"agent", "--controller", address_, "--token", "api-secret", "--agent-id", "intruder",
       "--events-dir", dir_ + "/intruder-events", "--docker-host", daemon_->host()},
      dir_ + "/intruder.log");
  ASSERT_TRUE(intruder.ok()) << intruder.status();
  EXPECT_TRUE(WaitFor([&] {
    return (*intruder)->Log().find("PERMISSION_DENIED") != std::string::npos;
  })) << (*intruder)->Log();
  EXPECT_THAT((*intruder)->Log(), HasSubstr("may not open an agent session"));
  EXPECT_THAT(Log(), HasSubstr("(agent intruder) refused"));
  EXPECT_THAT(Log(), Not(HasSubstr("agent intruder (host")));
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
