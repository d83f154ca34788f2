// NewEtcdClient against real etcd members (tests/testing/etcd_cluster.h):
// every EtcdApi call on one member and on three, leases that expire,
// members that stop, stall or lose quorum, authentication and TLS. The
// first test speaks proto/etcd/etcd.proto to a member directly, field by
// field, so that a wrong field number or enum value in that file fails here.
#include "controller/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/etcd/etcd.grpc.pb.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/etcd_cluster.h"

namespace dispatchd {
namespace controller {
namespace {

using ::dispatchd::testing::EtcdCluster;
using ::dispatchd::testing::EtcdClusterOptions;
using ::dispatchd::testing::IsOk;
using ::dispatchd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P(IsOkAndHolds, expected, "is OK and holds " + ::testing::PrintToString(expected)) {
  if (!arg.ok()) {
    *result_listener << "which is " << arg.status();
    return false;
  }
  *result_listener << "which holds " << ::testing::PrintToString(*arg);
  return *arg == expected;
}

// Deadlines for calls that should succeed: generous, the machine may be
// busy. Calls that should fail get short ones of their own.
absl::Time Soon() { return absl::Now() + absl::Seconds(15); }

// How late after its deadline a failing call may return: the time to
// notice it, not a retry.
constexpr absl::Duration kReturnSlack = absl::Seconds(2);

std::vector<std::string> Keys(const std::vector<EtcdKeyValue>& kvs) {
  std::vector<std::string> keys;
  for (const EtcdKeyValue& kv : kvs) keys.push_back(kv.key);
  return keys;
}

class EtcdClientTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) std::cerr << cluster_->LogTails();
  }

  void StartCluster(EtcdClusterOptions options) {
    auto cluster = EtcdCluster::Create(options);
    ASSERT_THAT(cluster, IsOk());
    cluster_ = *std::move(cluster);
  }
  void StartCluster(int members) {
    EtcdClusterOptions options;
    options.members = members;
    StartCluster(options);
  }

  std::unique_ptr<EtcdApi> Client(EtcdClientOptions options) {
    auto client = NewEtcdClient(std::move(options));
    EXPECT_THAT(client, IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }
  std::unique_ptr<EtcdApi> Client() { return Client(cluster_->client_options()); }

  std::unique_ptr<EtcdCluster> cluster_;
};

// --- proto/etcd/etcd.proto against a member, without NewEtcdClient -------

class WireTest : public EtcdClientTest {
 protected:
  void SetUp() override {
    StartCluster(1);
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", Port()), grpc::InsecureChannelCredentials());
    kv_ = etcdserverpb::KV::NewStub(channel);
    lease_ = etcdserverpb::Lease::NewStub(channel);
  }

  std::string Port() const {
    const std::string endpoint = cluster_->endpoint(0);
    return endpoint.substr(endpoint.rfind(':') + 1);
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(Soon()));
    return context;
  }

  etcdserverpb::PutResponse Put(const std::string& key, const std::string& value,
                                int64_t lease = 0) {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    request.set_lease(lease);
    request.set_prev_kv(true);
    etcdserverpb::PutResponse response;
    grpc::Status status = kv_->Put(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  etcdserverpb::TxnResponse Txn(const etcdserverpb::TxnRequest& request) {
    etcdserverpb::TxnResponse response;
    grpc::Status status = kv_->Txn(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
};

TEST_F(WireTest, ResponseHeaderKeyValuePutAndRange) {
  etcdserverpb::PutResponse first = Put("w/a", "one");
  EXPECT_NE(first.header().cluster_id(), 0u);
  EXPECT_NE(first.header().member_id(), 0u);
  EXPECT_GT(first.header().revision(), 0);
  EXPECT_GT(first.header().raft_term(), 0u);
  EXPECT_FALSE(first.has_prev_kv());

  etcdserverpb::PutResponse second = Put("w/a", "two");
  ASSERT_TRUE(second.has_prev_kv());
  EXPECT_EQ(second.prev_kv().key(), "w/a");
  EXPECT_EQ(second.prev_kv().value(), "one");
  EXPECT_EQ(second.prev_kv().version(), 1);
  EXPECT_EQ(second.prev_kv().create_revision(), first.header().revision());
  EXPECT_EQ(second.prev_kv().mod_revision(), first.header().revision());
  EXPECT_EQ(second.header().revision(), first.header().revision() + 1);
  Put("w/b", "b");
  Put("w/c", "c");

  etcdserverpb::RangeRequest range;
  range.set_key("w/a");
  etcdserverpb::RangeResponse got;
  ASSERT_TRUE(kv_->Range(Context().get(), range, &got).ok());
  ASSERT_EQ(got.kvs_size(), 1);
  EXPECT_EQ(got.kvs(0).value(), "two");
  EXPECT_EQ(got.kvs(0).version(), 2);
  EXPECT_EQ(got.kvs(0).create_revision(), first.header().revision());
  EXPECT_EQ(got.kvs(0).mod_revision(), second.header().revision());
  EXPECT_EQ(got.kvs(0).lease(), 0);
  EXPECT_EQ(got.count(), 1);

  // range_end, limit, sort, more and count.
  range.set_range_end("w0");  // every key under "w/"
  range.set_limit(2);
  range.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  range.set_sort_target(etcdserverpb::RangeRequest::KEY);
  got.Clear();
  ASSERT_TRUE(kv_->Range(Context().get(), range, &got).ok());
  ASSERT_EQ(got.kvs_size(), 2);
  EXPECT_EQ(got.kvs(0).key(), "w/c");
  EXPECT_EQ(got.kvs(1).key(), "w/b");
  EXPECT_TRUE(got.more());
  EXPECT_EQ(got.count(), 3);

  // An older revision, serializable, keys only.
  range.Clear();
  range.set_key("w/a");
  range.set_revision(first.header().revision());
  range.set_serializable(true);
  got.Clear();
  ASSERT_TRUE(kv_->Range(Context().get(), range, &got).ok());
  ASSERT_EQ(got.kvs_size(), 1);
  EXPECT_EQ(got.kvs(0).value(), "one");
  range.set_revision(0);
  range.set_keys_only(true);
  got.Clear();
  ASSERT_TRUE(kv_->Range(Context().get(), range, &got).ok());
  ASSERT_EQ(got.kvs_size(), 1);
  EXPECT_EQ(got.kvs(0).key(), "w/a");
  EXPECT_EQ(got.kvs(0).value(), "");
  range.set_keys_only(false);
  range.set_key("w/");
  range.set_range_end("w0");
  range.set_count_only(true);
  got.Clear();
  ASSERT_TRUE(kv_->Range(Context().get(), range, &got).ok());
  EXPECT_EQ(got.kvs_size(), 0);
  EXPECT_EQ(got.count(), 3);

  // DeleteRange: deleted and prev_kvs.
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("w/b");
  del.set_range_end("w0");
  del.set_prev_kv(true);
  etcdserverpb::DeleteRangeResponse deleted;
  ASSERT_TRUE(kv_->DeleteRange(Context().get(), del, &deleted).ok());
  EXPECT_EQ(deleted.deleted(), 2);
  ASSERT_EQ(deleted.prev_kvs_size(), 2);
  EXPECT_EQ(deleted.prev_kvs(0).key(), "w/b");
  EXPECT_EQ(deleted.prev_kvs(1).value(), "c");
  EXPECT_GT(deleted.header().revision(), second.header().revision());
}

TEST_F(WireTest, TxnCompareTargetsAndOps) {
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(30);
  grant.set_id(0x1234567);  // a chosen ID: LeaseGrantRequest.ID
  etcdserverpb::LeaseGrantResponse granted;
  ASSERT_TRUE(lease_->LeaseGrant(Context().get(), grant, &granted).ok());
  EXPECT_EQ(granted.id(), 0x1234567);
  EXPECT_EQ(granted.ttl(), 30);
  EXPECT_EQ(granted.error(), "");

  const etcdserverpb::PutResponse put = Put("t/k", "v1", granted.id());
  const int64_t revision = put.header().revision();
  Put("t/other", "x");

  // One comparison per target, true for t/k, and the ops a txn can hold.
  auto compare = [](etcdserverpb::TxnRequest* txn) { return txn->add_compare(); };
  etcdserverpb::TxnRequest txn;
  {
    auto* c = compare(&txn);
    c->set_key("t/k");
    c->set_target(etcdserverpb::Compare::VERSION);
    c->set_version(1);
    c = compare(&txn);
    c->set_key("t/k");
    c->set_target(etcdserverpb::Compare::CREATE);
    c->set_create_revision(revision);
    c = compare(&txn);
    c->set_key("t/k");
    c->set_target(etcdserverpb::Compare::MOD);
    c->set_result(etcdserverpb::Compare::LESS);
    c->set_mod_revision(revision + 1);
    c = compare(&txn);
    c->set_key("t/k");
    c->set_target(etcdserverpb::Compare::VALUE);
    c->set_value("v1");
    c = compare(&txn);
    c->set_key("t/k");
    c->set_target(etcdserverpb::Compare::LEASE);
    c->set_lease(granted.id());
    c = compare(&txn);
    c->set_key("t/k");
    c->set_target(etcdserverpb::Compare::VALUE);
    c->set_result(etcdserverpb::Compare::NOT_EQUAL);
    c->set_value("v2");
    // Every key in [t/, t0) was created after revision 0.
    c = compare(&txn);
    c->set_key("t/");
    c->set_range_end("t0");
    c->set_target(etcdserverpb::Compare::CREATE);
    c->set_result(etcdserverpb::Compare::GREATER);
    c->set_create_revision(0);
  }
  txn.add_success()->mutable_request_range()->set_key("t/k");
  auto* put_op = txn.add_success()->mutable_request_put();
  put_op->set_key("t/new");
  put_op->set_value("n");
  txn.add_success()->mutable_request_delete_range()->set_key("t/other");
  auto* nested = txn.add_success()->mutable_request_txn();
  nested->add_success()->mutable_request_range()->set_key("t/new");
  txn.add_failure()->mutable_request_range()->set_key("t/other");

  etcdserverpb::TxnResponse response = Txn(txn);
  ASSERT_TRUE(response.succeeded()) << response.ShortDebugString();
  ASSERT_EQ(response.responses_size(), 4);
  ASSERT_TRUE(response.responses(0).has_response_range());
  ASSERT_EQ(response.responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(response.responses(0).response_range().kvs(0).lease(), granted.id());
  EXPECT_TRUE(response.responses(1).has_response_put());
  ASSERT_TRUE(response.responses(2).has_response_delete_range());
  EXPECT_EQ(response.responses(2).response_delete_range().deleted(), 1);
  ASSERT_TRUE(response.responses(3).has_response_txn());
  const etcdserverpb::TxnResponse& inner = response.responses(3).response_txn();
  EXPECT_TRUE(inner.succeeded());
  ASSERT_EQ(inner.responses_size(), 1);
  ASSERT_EQ(inner.responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(inner.responses(0).response_range().kvs(0).value(), "n");

  // Each comparison alone, made false, sends the txn to `failure`.
  for (int i = 0; i < txn.compare_size(); ++i) {
    etcdserverpb::TxnRequest alone;
    *alone.add_compare() = txn.compare(i);
    etcdserverpb::Compare* c = alone.mutable_compare(0);
    switch (c->target()) {
      case etcdserverpb::Compare::VERSION:
        c->set_version(7);
        break;
      case etcdserverpb::Compare::CREATE:
        c->set_result(etcdserverpb::Compare::EQUAL);
        c->set_create_revision(revision + 100);
        break;
      case etcdserverpb::Compare::MOD:
        c->set_mod_revision(1);
        break;
      case etcdserverpb::Compare::VALUE:
        c->set_result(etcdserverpb::Compare::EQUAL);
        c->set_value("not-it");
        break;
      case etcdserverpb::Compare::LEASE:
        c->set_lease(granted.id() + 1);
        break;
      default:
        FAIL();
    }
    alone.add_failure()->mutable_request_range()->set_key("t/k");
    etcdserverpb::TxnResponse failed = Txn(alone);
    EXPECT_FALSE(failed.succeeded()) << c->ShortDebugString();
    ASSERT_EQ(failed.responses_size(), 1);
    EXPECT_TRUE(failed.responses(0).has_response_range());
  }

  // LeaseKeepAlive echoes the ID and the TTL; LeaseRevoke ends the lease,
  // and the next keep-alive says so with TTL 0.
  auto keep_alive = [&](int64_t id) {
    auto context = Context();
    auto stream = lease_->LeaseKeepAlive(context.get());
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(id);
    etcdserverpb::LeaseKeepAliveResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->Read(&response));
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
    return response;
  };
  etcdserverpb::LeaseKeepAliveResponse alive = keep_alive(granted.id());
  EXPECT_EQ(alive.id(), granted.id());
  EXPECT_EQ(alive.ttl(), 30);
  EXPECT_GT(alive.header().revision(), 0);

  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(granted.id());
  etcdserverpb::LeaseRevokeResponse revoked;
  ASSERT_TRUE(lease_->LeaseRevoke(Context().get(), revoke, &revoked).ok());
  EXPECT_GT(revoked.header().revision(), revision);
  EXPECT_EQ(keep_alive(granted.id()).ttl(), 0);
}

// etcdctl, etcd's own client, reads what ours writes and the reverse.
TEST_F(EtcdClientTest, EtcdctlAgrees) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Put("x/ours", "written by dispatchd", Soon()), IsOk());
  EXPECT_THAT(cluster_->Etcdctl({"get", "x/ours", "--print-value-only"}),
              IsOkAndHolds(std::string("written by dispatchd")));
  ASSERT_THAT(cluster_->Etcdctl({"put", "x/theirs", "written by etcdctl"}), IsOk());
  auto got = client->Get("x/theirs", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "written by etcdctl");
}

// --- NewEtcdClient's options ---------------------------------------------

TEST(EtcdClientOptionsTest, RefusesWhatCannotWork) {
  auto make = [](std::vector<std::string> endpoints) {
    EtcdClientOptions options;
    options.endpoints = std::move(endpoints);
    return NewEtcdClient(options).status();
  };
  EXPECT_THAT(make({}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no etcd")));
  EXPECT_THAT(make({"unix:///run/etcd.sock"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unix:///run/etcd.sock")));
  EXPECT_THAT(make({"http://127.0.0.1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no port")));
  EXPECT_THAT(make({"http://127.0.0.1:99999"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad port")));
  EXPECT_THAT(make({"http://127.0.0.1:2379/v3"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host:port")));
  EXPECT_THAT(make({"::1:2379"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("IPv6")));
  EXPECT_THAT(make({"http://127.0.0.1:2379", "127.0.0.1:2379"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(make({"127.0.0.1:2379", "http://localhost:2380/", "https://[::1]:2381"}), IsOk());

  EtcdClientOptions options;
  options.endpoints = {"http://127.0.0.1:2379"};
  options.password = "secret";
  EXPECT_THAT(NewEtcdClient(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without a username")));
  options.password.clear();
  options.cert_file = "/nonexistent/client.pem";
  EXPECT_THAT(NewEtcdClient(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("go together")));
  options.cert_file.clear();
  options.endpoints = {"https://127.0.0.1:2379"};
  options.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(NewEtcdClient(options).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/ca.pem")));
}

TEST(EtcdClientOptionsTest, DeadlineInThePast) {
  EtcdClientOptions options;
  options.endpoints = {"http://127.0.0.1:1"};
  auto client = NewEtcdClient(options);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->Put("k", "v", absl::Now() - absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(EtcdClientOptionsTest, NothingListeningIsUnavailableAtTheDeadline) {
  EtcdClientOptions options;
  options.endpoints = {absl::StrCat("http://127.0.0.1:", testing::FreePort()),
                       absl::StrCat("127.0.0.1:", testing::FreePort())};
  auto client = NewEtcdClient(options);
  ASSERT_THAT(client, IsOk());
  const absl::Time deadline = absl::Now() + absl::Milliseconds(800);
  EXPECT_THAT((*client)->Get("k", deadline),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(options.endpoints[0]), HasSubstr(options.endpoints[1]))));
  EXPECT_LE(absl::Now(), deadline + kReturnSlack);
}

// --- One member ------------------------------------------------------------

TEST_F(EtcdClientTest, PutGetDelete) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);

  auto missing = client->Get("k/missing", Soon());
  ASSERT_THAT(missing, IsOk());
  EXPECT_FALSE(missing->has_value());

  ASSERT_THAT(client->Put("k/a", "one", Soon()), IsOk());
  auto first = client->Get("k/a", Soon());
  ASSERT_THAT(first, IsOk());
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->key, "k/a");
  EXPECT_EQ((*first)->value, "one");
  EXPECT_GT((*first)->create_revision, 0);
  EXPECT_EQ((*first)->mod_revision, (*first)->create_revision);
  EXPECT_EQ((*first)->lease, 0);

  // Keys and values are bytes, NULs included.
  const std::string binary("two\0\xff", 5);
  ASSERT_THAT(client->Put("k/a", binary, Soon()), IsOk());
  auto second = client->Get("k/a", Soon());
  ASSERT_THAT(second, IsOk());
  ASSERT_TRUE(second->has_value());
  EXPECT_EQ((*second)->value, binary);
  EXPECT_EQ((*second)->create_revision, (*first)->create_revision);
  EXPECT_GT((*second)->mod_revision, (*first)->mod_revision);

  ASSERT_THAT(client->Delete("k/a", Soon()), IsOk());
  auto gone = client->Get("k/a", Soon());
  ASSERT_THAT(gone, IsOk());
  EXPECT_FALSE(gone->has_value());
  EXPECT_THAT(client->Delete("k/a", Soon()), IsOk());  // already gone: OK
}

TEST_F(EtcdClientTest, GetPrefix) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  for (const char* key : {"p/c", "p/a", "p/b", "p", "pz", "q", "o"}) {
    ASSERT_THAT(client->Put(key, absl::StrCat("v:", key), Soon()), IsOk());
  }
  // Prefixes whose last byte is 0xff end the range at the byte before.
  for (const std::string& key :
       {std::string("r\xff"), std::string("r\xff\x01"), std::string("s")}) {
    ASSERT_THAT(client->Put(key, "v", Soon()), IsOk());
  }

  auto under = client->GetPrefix("p/", Soon());
  ASSERT_THAT(under, IsOk());
  EXPECT_THAT(Keys(*under), ElementsAre("p/a", "p/b", "p/c"));
  EXPECT_EQ((*under)[1].value, "v:p/b");
  EXPECT_GT((*under)[1].create_revision, 0);

  auto p = client->GetPrefix("p", Soon());
  ASSERT_THAT(p, IsOk());
  EXPECT_THAT(Keys(*p), ElementsAre("p", "p/a", "p/b", "p/c", "pz"));

  auto ff = client->GetPrefix("r\xff", Soon());
  ASSERT_THAT(ff, IsOk());
  EXPECT_THAT(Keys(*ff), ElementsAre(std::string("r\xff"), std::string("r\xff\x01")));

  auto all = client->GetPrefix("", Soon());
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), 10u);

  auto none = client->GetPrefix("nothing/", Soon());
  ASSERT_THAT(none, IsOk());
  EXPECT_TRUE(none->empty());
}

TEST_F(EtcdClientTest, GrantKeepAliveRevoke) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);

  EXPECT_THAT(client->Grant(absl::ZeroDuration(), Soon()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // etcd counts whole seconds: 2.5 s is granted as 3.
  auto lease = client->Grant(absl::Milliseconds(2500), Soon());
  ASSERT_THAT(lease, IsOk());
  EXPECT_NE(*lease, 0);
  EXPECT_THAT(client->KeepAliveOnce(*lease, Soon()), IsOkAndHolds(absl::Seconds(3)));

  auto created = client->CreateIfAbsent("l/key", "held", *lease, Soon());
  ASSERT_THAT(created, IsOk());
  EXPECT_TRUE(created->created);
  auto bound = client->Get("l/key", Soon());
  ASSERT_THAT(bound, IsOk());
  ASSERT_TRUE(bound->has_value());
  EXPECT_EQ((*bound)->lease, *lease);

  ASSERT_THAT(client->Revoke(*lease, Soon()), IsOk());
  // The key bound to it went with it.
  auto gone = client->Get("l/key", Soon());
  ASSERT_THAT(gone, IsOk());
  EXPECT_FALSE(gone->has_value());
  EXPECT_THAT(client->KeepAliveOnce(*lease, Soon()),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(cluster_->endpoint(0)), HasSubstr(absl::StrCat(*lease)))));
  EXPECT_THAT(client->Revoke(*lease, Soon()), IsOk());  // gone already: OK
  // A key cannot be bound to it any more.
  EXPECT_THAT(client->CreateIfAbsent("l/key", "late", *lease, Soon()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("lease not found")));
}

TEST_F(EtcdClientTest, CreateIfAbsent) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto first_lease = client->Grant(absl::Seconds(60), Soon());
  auto second_lease = client->Grant(absl::Seconds(60), Soon());
  ASSERT_THAT(first_lease, IsOk());
  ASSERT_THAT(second_lease, IsOk());
  ASSERT_NE(*first_lease, *second_lease);

  auto first = client->CreateIfAbsent("leader", "controller-1", *first_lease, Soon());
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->created);
  EXPECT_EQ(first->current.key, "leader");
  EXPECT_EQ(first->current.value, "controller-1");
  EXPECT_EQ(first->current.lease, *first_lease);
  EXPECT_GT(first->current.create_revision, 0);

  // What CreateIfAbsent said of the key it created is what a read says.
  auto read = client->Get("leader", Soon());
  ASSERT_THAT(read, IsOk());
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ((*read)->create_revision, first->current.create_revision);
  EXPECT_EQ((*read)->mod_revision, first->current.mod_revision);
  EXPECT_EQ((*read)->lease, *first_lease);

  auto second = client->CreateIfAbsent("leader", "controller-2", *second_lease, Soon());
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->current.key, "leader");
  EXPECT_EQ(second->current.value, "controller-1");
  EXPECT_EQ(second->current.lease, *first_lease);
  EXPECT_EQ(second->current.create_revision, first->current.create_revision);

  // Once the holder's lease ends, the key can be created again.
  ASSERT_THAT(client->Revoke(*first_lease, Soon()), IsOk());
  auto third = client->CreateIfAbsent("leader", "controller-2", *second_lease, Soon());
  ASSERT_THAT(third, IsOk());
  EXPECT_TRUE(third->created);
  EXPECT_EQ(third->current.lease, *second_lease);
  EXPECT_GT(third->current.create_revision, first->current.create_revision);
}

TEST_F(EtcdClientTest, LeaseExpires) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  auto lease = client->Grant(absl::Seconds(2), Soon());
  ASSERT_THAT(lease, IsOk());
  auto created = client->CreateIfAbsent("e/key", "short-lived", *lease, Soon());
  ASSERT_THAT(created, IsOk());
  ASSERT_TRUE(created->created);

  // Never renewed: the member deletes the key once the TTL is over.
  absl::Status last;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        auto got = client->Get("e/key", Soon());
        last = got.status();
        return got.ok() && !got->has_value();
      },
      absl::Seconds(60)))
      << last;
  EXPECT_THAT(client->KeepAliveOnce(*lease, Soon()), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(EtcdClientTest, ConcurrentCalls) {
  StartCluster(1);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPuts = 20;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPuts; ++i) {
        const std::string key = absl::StrCat("c/", t, "/", i);
        if (!client->Put(key, key, Soon()).ok()) ++failed;
        auto got = client->Get(key, Soon());
        if (!got.ok() || !got->has_value() || (*got)->value != key) ++failed;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failed.load(), 0);
  auto all = client->GetPrefix("c/", Soon());
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), static_cast<size_t>(kThreads * kPuts));
}

// --- Three members -----------------------------------------------------------

TEST_F(EtcdClientTest, ThreeMembersServeTheSameData) {
  StartCluster(3);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Put("m/key", "value", Soon()), IsOk());
  auto lease = client->Grant(absl::Seconds(30), Soon());
  ASSERT_THAT(lease, IsOk());
  auto created = client->CreateIfAbsent("m/leased", "v", *lease, Soon());
  ASSERT_THAT(created, IsOk());
  EXPECT_TRUE(created->created);
  // Each member alone answers the same (reads are linearizable).
  for (int i = 0; i < 3; ++i) {
    EtcdClientOptions options = cluster_->client_options();
    options.endpoints = {cluster_->endpoint(i)};
    auto one = Client(options);
    ASSERT_NE(one, nullptr);
    auto got = one->Get("m/key", Soon());
    ASSERT_THAT(got, IsOk()) << "member " << i;
    ASSERT_TRUE(got->has_value()) << "member " << i;
    EXPECT_EQ((*got)->value, "value");
    EXPECT_THAT(one->KeepAliveOnce(*lease, Soon()), IsOkAndHolds(absl::Seconds(30)))
        << "member " << i;
    auto again = one->CreateIfAbsent("m/leased", "other", 0, Soon());
    ASSERT_THAT(again, IsOk());
    EXPECT_FALSE(again->created);
    EXPECT_EQ(again->current.lease, *lease);
  }
}

TEST_F(EtcdClientTest, MovesOnWhenItsMemberStopsOrDies) {
  StartCluster(3);
  auto client = Client();  // starts on member 0
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Put("f/key", "before", Soon()), IsOk());
  auto lease = client->Grant(absl::Seconds(60), Soon());
  ASSERT_THAT(lease, IsOk());

  // Member 0 stops: the same calls succeed on another, each within its
  // own deadline.
  ASSERT_THAT(cluster_->Stop(0), IsOk());
  ASSERT_THAT(client->Put("f/key", "after stop", Soon()), IsOk());
  auto got = client->Get("f/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "after stop");
  EXPECT_THAT(client->KeepAliveOnce(*lease, Soon()), IsOk());

  // Member 0 back; member 1 (where the client went) is killed outright.
  ASSERT_THAT(cluster_->Start(0), IsOk());
  ASSERT_THAT(cluster_->Kill(1), IsOk());
  ASSERT_THAT(client->Put("f/key", "after kill", Soon()), IsOk());
  got = client->Get("f/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "after kill");
  auto created = client->CreateIfAbsent("f/leased", "v", *lease, Soon());
  ASSERT_THAT(created, IsOk());
  EXPECT_TRUE(created->created);
  EXPECT_THAT(client->Revoke(*lease, Soon()), IsOk());
}

TEST_F(EtcdClientTest, MovesOnFromAMemberThatDoesNotAnswer) {
  StartCluster(3);
  auto client = Client();  // starts on member 0
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Put("s/key", "before", Soon()), IsOk());

  // Member 0 stalls with the client's connection open: the call in flight
  // has only its deadline; the next call goes to another member.
  ASSERT_THAT(cluster_->Pause(0), IsOk());
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  EXPECT_THAT(client->Put("s/key", "stalled", deadline),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr(cluster_->endpoint(0))));
  EXPECT_LE(absl::Now(), deadline + kReturnSlack);
  ASSERT_THAT(client->Put("s/key", "after", Soon()), IsOk());
  auto got = client->Get("s/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "after");
  ASSERT_THAT(cluster_->Resume(0), IsOk());
}

TEST_F(EtcdClientTest, QuorumLostFailsWithinTheDeadlineAndRecovers) {
  StartCluster(3);
  auto client = Client();  // starts on member 0, which stays up
  ASSERT_NE(client, nullptr);
  auto lease = client->Grant(absl::Seconds(60), Soon());
  ASSERT_THAT(lease, IsOk());
  ASSERT_THAT(client->Put("q/key", "before", Soon()), IsOk());

  ASSERT_THAT(cluster_->Stop(1), IsOk());
  ASSERT_THAT(cluster_->Stop(2), IsOk());

  // Member 0 is up but alone: no call can succeed, and each says so by
  // its own deadline.
  auto fails_in_time = [&](const std::function<absl::Status(absl::Time)>& call, const char* what) {
    const absl::Time deadline = absl::Now() + absl::Milliseconds(1500);
    const absl::Status status = call(deadline);
    EXPECT_THAT(status, AnyOf(StatusIs(absl::StatusCode::kUnavailable),
                              StatusIs(absl::StatusCode::kDeadlineExceeded)))
        << what;
    EXPECT_LE(absl::Now(), deadline + kReturnSlack) << what;
  };
  fails_in_time([&](absl::Time d) { return client->Put("q/key", "lost", d); }, "Put");
  fails_in_time([&](absl::Time d) { return client->Get("q/key", d).status(); }, "Get");
  fails_in_time([&](absl::Time d) { return client->GetPrefix("q/", d).status(); }, "GetPrefix");
  fails_in_time([&](absl::Time d) { return client->Delete("q/key", d); }, "Delete");
  fails_in_time([&](absl::Time d) { return client->Grant(absl::Seconds(5), d).status(); }, "Grant");
  fails_in_time([&](absl::Time d) { return client->KeepAliveOnce(*lease, d).status(); },
                "KeepAliveOnce");
  fails_in_time([&](absl::Time d) { return client->Revoke(*lease, d); }, "Revoke");
  fails_in_time([&](absl::Time d) { return client->CreateIfAbsent("q/c", "v", 0, d).status(); },
                "CreateIfAbsent");

  // Once a member is back there is a quorum again, and calls succeed.
  ASSERT_THAT(cluster_->Start(1), IsOk());
  ASSERT_THAT(client->Put("q/key", "after", Soon()), IsOk());
  auto got = client->Get("q/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "after");
  EXPECT_THAT(client->KeepAliveOnce(*lease, Soon()), IsOk());
}

// --- Authentication ---------------------------------------------------------

TEST_F(EtcdClientTest, Authentication) {
  EtcdClusterOptions cluster_options;
  // Tokens that members forget after a second without use.
  cluster_options.extra_flags = {"--auth-token-ttl=1"};
  StartCluster(cluster_options);
  ASSERT_THAT(cluster_->Etcdctl({"user", "add", "root:s3cret"}), IsOk());
  ASSERT_THAT(cluster_->Etcdctl({"auth", "enable"}), IsOk());

  EtcdClientOptions options = cluster_->client_options();
  options.username = "root";
  options.password = "s3cret";
  auto client = Client(options);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Put("a/key", "v", Soon()), IsOk());
  auto got = client->Get("a/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  auto lease = client->Grant(absl::Seconds(30), Soon());
  ASSERT_THAT(lease, IsOk());
  EXPECT_THAT(client->KeepAliveOnce(*lease, Soon()), IsOk());
  EXPECT_THAT(client->CreateIfAbsent("a/leased", "v", *lease, Soon()), IsOk());

  options.password = "wrong";
  auto wrong = Client(options);
  ASSERT_NE(wrong, nullptr);
  EXPECT_THAT(wrong->Get("a/key", Soon()),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("authentication failed"), HasSubstr("'root'"),
                             HasSubstr(cluster_->endpoint(0)))));

  auto anonymous = Client(cluster_->client_options());
  ASSERT_NE(anonymous, nullptr);
  EXPECT_THAT(anonymous->Put("a/key", "v", Soon()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("requires authentication")));

  // A token taken after the client's last call: once the member has
  // forgotten it, it has forgotten the client's too ...
  auto channel = grpc::CreateChannel(cluster_->endpoint(0).substr(strlen("http://")),
                                     grpc::InsecureChannelCredentials());
  etcdserverpb::AuthenticateResponse token;
  {
    etcdserverpb::AuthenticateRequest request;
    request.set_name("root");
    request.set_password("s3cret");
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(Soon()));
    ASSERT_TRUE(etcdserverpb::Auth::NewStub(channel)->Authenticate(&context, request, &token).ok());
    ASSERT_FALSE(token.token().empty());
  }
  auto kv = etcdserverpb::KV::NewStub(channel);
  std::string answer;
  // Each use of a valid token renews it: ask less often than it expires.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        absl::SleepFor(absl::Milliseconds(2500));
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(Soon()));
        context.AddMetadata("token", token.token());
        etcdserverpb::RangeRequest range;
        range.set_key("a/key");
        etcdserverpb::RangeResponse response;
        answer = kv->Range(&context, range, &response).error_message();
        return absl::StrContains(answer, "invalid auth token");
      },
      absl::Seconds(30)))
      << answer;
  // ... and the client trades its password for a new one by itself.
  ASSERT_THAT(client->Put("a/key", "after expiry", Soon()), IsOk());
  got = client->Get("a/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "after expiry");
}

// --- TLS ---------------------------------------------------------------------

// A CA, a member certificate for 127.0.0.1 and a client certificate, made by
// the openssl command line; and a second CA that signed neither.
class TlsFiles {
 public:
  TlsFiles() : dir_(testing::MakeTempDir("dispatchd-etcd-tls")) {}
  ~TlsFiles() { testing::RemoveTree(dir_); }

  absl::Status Make() {
    for (const char* ca : {"ca", "other-ca"}) {
      auto made =
          Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-days", "2", "-subj", absl::StrCat("/CN=dispatchd-test-", ca),
                   "-keyout", Path(ca, "key"), "-out", Path(ca, "pem")});
      if (!made.ok()) return made;
    }
    testing::WriteFile(Path("ext", "cnf"),
                       "subjectAltName=IP:127.0.0.1\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n");
    for (const char* who : {"member", "client"}) {
      absl::Status made = Openssl(
          {"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
           absl::StrCat("/CN=", who), "-keyout", Path(who, "key"), "-out", Path(who, "csr")});
      if (made.ok()) {
        made = Openssl({"x509", "-req", "-days", "2", "-in", Path(who, "csr"), "-CA",
                        Path("ca", "pem"), "-CAkey", Path("ca", "key"), "-CAcreateserial",
                        "-extfile", Path("ext", "cnf"), "-out", Path(who, "pem")});
      }
      if (!made.ok()) return made;
    }
    return absl::OkStatus();
  }

  std::string Path(const std::string& name, const std::string& ext) const {
    return absl::StrCat(dir_, "/", name, ".", ext);
  }

 private:
  static absl::Status Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    return testing::RunCommand(args).status();
  }
  const std::string dir_;
};

TEST_F(EtcdClientTest, MutualTls) {
  TlsFiles files;
  ASSERT_THAT(files.Make(), IsOk());
  EtcdClusterOptions cluster_options;
  cluster_options.cert_file = files.Path("member", "pem");
  cluster_options.key_file = files.Path("member", "key");
  cluster_options.ca_file = files.Path("ca", "pem");
  cluster_options.client_cert_file = files.Path("client", "pem");
  cluster_options.client_key_file = files.Path("client", "key");
  StartCluster(cluster_options);
  ASSERT_THAT(cluster_->endpoint(0), ::testing::StartsWith("https://"));

  auto client = Client();  // the CA and the client certificate
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Put("tls/key", "v", Soon()), IsOk());
  auto got = client->Get("tls/key", Soon());
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "v");

  // Without a client certificate the member refuses the handshake; a
  // client that trusts another CA refuses the member.
  EtcdClientOptions no_cert = cluster_->client_options();
  no_cert.cert_file.clear();
  no_cert.key_file.clear();
  EtcdClientOptions other_ca = cluster_->client_options();
  other_ca.ca_file = files.Path("other-ca", "pem");
  for (const EtcdClientOptions& options : {no_cert, other_ca}) {
    auto refused = Client(options);
    ASSERT_NE(refused, nullptr);
    const absl::Time deadline = absl::Now() + absl::Seconds(2);
    EXPECT_THAT(refused->Get("tls/key", deadline),
                AnyOf(StatusIs(absl::StatusCode::kUnavailable),
                      StatusIs(absl::StatusCode::kDeadlineExceeded)));
    EXPECT_LE(absl::Now(), deadline + kReturnSlack);
  }
}

}  // namespace
}  // namespace controller
}  // namespace dispatchd
