#include "controller/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <functional>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/tls.h"
#include "proto/etcd/etcd.grpc.pb.h"
#include "proto/etcd/etcd.pb.h"

namespace dispatchd {
namespace controller {
namespace {

// Between rounds of members that all answered UNAVAILABLE: a leader
// election takes about one election timeout (1 s by default).
constexpr absl::Duration kFirstPause = absl::Milliseconds(25);
constexpr absl::Duration kMaxPause = absl::Milliseconds(500);

// etcd's metadata: the token from Authenticate, and the request that a
// member without a leader refuse the call at once (codes.Unavailable,
// "etcdserver: no leader") rather than keep it until the deadline.
constexpr char kTokenKey[] = "token";
constexpr char kRequireLeaderKey[] = "hasleader";

// What etcd says of a token it does not know: unused for longer than the
// members' --auth-token-ttl (300 s by default), or its user's password changed.
constexpr char kInvalidToken[] = "invalid auth token";

struct Endpoint {
  std::string text;    // as configured
  std::string target;  // host:port, for gRPC
  bool tls = false;
};

absl::StatusOr<Endpoint> ParseEndpoint(const std::string& text) {
  Endpoint endpoint;
  endpoint.text = text;
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "https://")) {
    endpoint.tls = true;
  } else if (!absl::ConsumePrefix(&rest, "http://") && absl::StrContains(rest, "://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint '", text, "': the scheme must be http:// or https://"));
  }
  absl::ConsumeSuffix(&rest, "/");
  auto invalid = [&text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint '", text, "': ", why, " (want [http[s]://]host:port)"));
  };
  const size_t colon = rest.rfind(':');
  if (rest.empty() || absl::StrContains(rest, "/")) return invalid("not host:port");
  if (colon == absl::string_view::npos || colon == 0) return invalid("no port");
  const absl::string_view host = rest.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return invalid("bad port");
  }
  const bool bracketed = absl::StartsWith(host, "[") && absl::EndsWith(host, "]");
  if (!bracketed && absl::StrContains(host, ":")) return invalid("an IPv6 address needs [ ]");
  endpoint.target = std::string(rest);
  return endpoint;
}

// Credentials for https endpoints: the CA (or the system's roots) and the
// client's own certificate when given.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const EtcdClientOptions& options) {
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    auto ca = ReadPemFile(options.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  if (!options.cert_file.empty()) {
    auto cert = ReadPemFile(options.cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(options.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

bool IsInvalidToken(const grpc::Status& status) {
  return absl::StrContains(status.error_message(), kInvalidToken);
}

// A gRPC status from `endpoint` as an absl::Status naming the member and
// the call. The codes are the same numbers; etcd's authentication failures
// (InvalidArgument or Unauthenticated there) become Unauthenticated, and a
// missing lease is NotFound whatever code carried it.
absl::Status FromGrpc(const grpc::Status& status, const std::string& endpoint,
                      absl::string_view call) {
  absl::StatusCode code = static_cast<absl::StatusCode>(status.error_code());
  const std::string& message = status.error_message();
  std::string hint;
  if (absl::StrContains(message, "authentication failed") || IsInvalidToken(status)) {
    code = absl::StatusCode::kUnauthenticated;
  } else if (absl::StrContains(message, "user name is empty")) {
    code = absl::StatusCode::kUnauthenticated;
    hint = " (the cluster requires authentication: give a username and password)";
  } else if (absl::StrContains(message, "lease not found")) {
    code = absl::StatusCode::kNotFound;
  }
  return absl::Status(code, absl::StrCat("etcd ", endpoint, ": ", call, ": ", message, hint));
}

EtcdKeyValue FromProto(const etcdserverpb::KeyValue& kv) {
  EtcdKeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.lease = kv.lease();
  return out;
}

// The end of the range of every key that starts with `prefix`: the prefix
// with its last byte below 0xff incremented (what follows dropped). "\0"
// (every key from `prefix` on) when there is no such byte.
std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// One gRPC channel to a member and the stubs on it.
struct Connection {
  std::string endpoint;  // as configured, for messages
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
};

// A member: where it is and the credentials to reach it with.
struct Member {
  Endpoint endpoint;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

std::shared_ptr<const Connection> Connect(const Member& member) {
  grpc::ChannelArguments args;
  // A channel of its own subchannels: without this gRPC shares one
  // connection (and its reconnect backoff) among equal channels, and a
  // replaced channel (Reconnect) would inherit the failed one's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto connection = std::make_shared<Connection>();
  connection->endpoint = member.endpoint.text;
  connection->channel = grpc::CreateCustomChannel(member.endpoint.target, member.credentials, args);
  connection->kv = etcdserverpb::KV::NewStub(connection->channel);
  connection->lease = etcdserverpb::Lease::NewStub(connection->channel);
  connection->auth = etcdserverpb::Auth::NewStub(connection->channel);
  return connection;
}

// Whether `status` says the connection failed rather than the member
// answered: etcd's own errors start with "etcdserver:" ("no leader",
// "request timed out", ...), and a connection that carried one works.
bool ConnectionFailed(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return true;
  return status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         !absl::StartsWith(status.error_message(), "etcdserver:");
}

class EtcdClient final : public EtcdApi {
 public:
  EtcdClient(std::vector<Member> members, std::string username, std::string password)
      : members_(std::move(members)),
        username_(std::move(username)),
        password_(std::move(password)) {
    absl::MutexLock lock(&mu_);
    for (const Member& member : members_) connections_.push_back(Connect(member));
  }

  absl::StatusOr<int64_t> Grant(absl::Duration ttl, absl::Time deadline) override {
    if (ttl <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd lease TTL must be positive, not ", absl::FormatDuration(ttl)));
    }
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1))));
    etcdserverpb::LeaseGrantResponse response;
    std::string by;  // the member that answered
    absl::Status status =
        Call("LeaseGrant", deadline, [&](const Connection& member, grpc::ClientContext* context) {
          by = member.endpoint;
          response.Clear();
          return member.lease->LeaseGrant(context, request, &response);
        });
    if (!status.ok()) return status;
    if (!response.error().empty()) {
      return absl::InternalError(absl::StrCat("etcd ", by, ": LeaseGrant: ", response.error()));
    }
    return response.id();
  }

  absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease, absl::Time deadline) override {
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(lease);
    etcdserverpb::LeaseKeepAliveResponse response;
    std::string by;  // the member that answered
    // A stream of its own per call: one request, one response, then the
    // stream is closed from this side (the member ends it on that).
    auto keep_alive = [&](const Connection& member, grpc::ClientContext* context) {
      by = member.endpoint;
      response.Clear();
      auto stream = member.lease->LeaseKeepAlive(context);
      if (!stream->Write(request)) return stream->Finish();
      if (!stream->Read(&response)) return stream->Finish();
      stream->WritesDone();
      // The answer is in; how the member closes the stream changes nothing.
      (void)stream->Finish();
      return grpc::Status::OK;
    };
    absl::Status status = Call("LeaseKeepAlive", deadline, keep_alive);
    if (!status.ok()) return status;
    if (response.ttl() <= 0) {
      return absl::NotFoundError(absl::StrCat("etcd ", by, ": LeaseKeepAlive: lease ", lease,
                                              " does not exist (expired or revoked)"));
    }
    return absl::Seconds(response.ttl());
  }

  absl::Status Revoke(int64_t lease, absl::Time deadline) override {
    etcdserverpb::LeaseRevokeRequest request;
    request.set_id(lease);
    etcdserverpb::LeaseRevokeResponse response;
    absl::Status status =
        Call("LeaseRevoke", deadline, [&](const Connection& member, grpc::ClientContext* context) {
          return member.lease->LeaseRevoke(context, request, &response);
        });
    if (absl::IsNotFound(status)) return absl::OkStatus();  // gone already: what was asked
    return status;
  }

  absl::StatusOr<CreateResult> CreateIfAbsent(const std::string& key, const std::string& value,
                                              int64_t lease, absl::Time deadline) override {
    // If the key was never created (or was deleted since), create it bound
    // to the lease; else read it. One transaction, so no other writer can
    // come in between.
    etcdserverpb::TxnRequest request;
    etcdserverpb::Compare* absent = request.add_compare();
    absent->set_key(key);
    absent->set_target(etcdserverpb::Compare::CREATE);
    absent->set_result(etcdserverpb::Compare::EQUAL);
    absent->set_create_revision(0);
    etcdserverpb::PutRequest* put = request.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    put->set_lease(lease);
    request.add_failure()->mutable_request_range()->set_key(key);

    etcdserverpb::TxnResponse response;
    std::string by;  // the member that answered
    absl::Status status =
        Call("Txn", deadline, [&](const Connection& member, grpc::ClientContext* context) {
          by = member.endpoint;
          response.Clear();
          return member.kv->Txn(context, request, &response);
        });
    if (!status.ok()) return status;

    CreateResult result;
    if (response.succeeded()) {
      result.created = true;
      result.current.key = key;
      result.current.value = value;
      result.current.lease = lease;
      // The transaction's revision is the key's creation.
      result.current.create_revision = response.header().revision();
      result.current.mod_revision = response.header().revision();
      return result;
    }
    if (response.responses_size() != 1 || !response.responses(0).has_response_range() ||
        response.responses(0).response_range().kvs_size() != 1) {
      return absl::InternalError(
          absl::StrCat("etcd ", by, ": Txn on '", key,
                       "': the key exists, but the transaction did not return it: ",
                       response.ShortDebugString()));
    }
    result.current = FromProto(response.responses(0).response_range().kvs(0));
    return result;
  }

  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key,
                                                  absl::Time deadline) override {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    etcdserverpb::RangeResponse response;
    absl::Status status =
        Call("Range", deadline, [&](const Connection& member, grpc::ClientContext* context) {
          response.Clear();
          return member.kv->Range(context, request, &response);
        });
    if (!status.ok()) return status;
    if (response.kvs_size() == 0) return std::optional<EtcdKeyValue>();
    return std::optional<EtcdKeyValue>(FromProto(response.kvs(0)));
  }

  absl::StatusOr<std::vector<EtcdKeyValue>> GetPrefix(const std::string& prefix,
                                                      absl::Time deadline) override {
    etcdserverpb::RangeRequest request;
    // etcd reads key "\0" with range_end "\0" as every key.
    request.set_key(prefix.empty() ? std::string(1, '\0') : prefix);
    request.set_range_end(PrefixRangeEnd(prefix));
    request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
    request.set_sort_target(etcdserverpb::RangeRequest::KEY);
    etcdserverpb::RangeResponse response;
    absl::Status status =
        Call("Range", deadline, [&](const Connection& member, grpc::ClientContext* context) {
          response.Clear();
          return member.kv->Range(context, request, &response);
        });
    if (!status.ok()) return status;
    std::vector<EtcdKeyValue> out;
    out.reserve(response.kvs_size());
    for (const etcdserverpb::KeyValue& kv : response.kvs()) out.push_back(FromProto(kv));
    return out;
  }

  absl::Status Put(const std::string& key, const std::string& value, absl::Time deadline) override {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    return Call("Put", deadline, [&](const Connection& member, grpc::ClientContext* context) {
      return member.kv->Put(context, request, &response);
    });
  }

  absl::Status Delete(const std::string& key, absl::Time deadline) override {
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(key);
    etcdserverpb::DeleteRangeResponse response;
    return Call("DeleteRange", deadline,
                [&](const Connection& member, grpc::ClientContext* context) {
                  return member.kv->DeleteRange(context, request, &response);
                });
  }

 private:
  // One attempt of a call on `member`, with `context` ready (the caller's
  // deadline, the token, "hasleader"). Fills the call's response.
  using Attempt =
      std::function<grpc::Status(const Connection& member, grpc::ClientContext* context)>;

  // Runs `attempt` on the current member, and on the next ones while they
  // answer UNAVAILABLE and the deadline allows (the header comment).
  absl::Status Call(absl::string_view method, absl::Time deadline, const Attempt& attempt) {
    absl::Duration pause = kFirstPause;
    bool token_traded_again = false;
    int unavailable = 0;  // attempts that met UNAVAILABLE, for the pauses
    // Each member's last UNAVAILABLE, for the error when none answered.
    std::vector<std::string> last_errors(members_.size());
    while (true) {
      if (absl::Now() >= deadline) {
        if (unavailable > 0) return NoneAnswered(method, last_errors);
        return absl::DeadlineExceededError(
            absl::StrCat("etcd ", method, ": the deadline had passed before the call"));
      }
      size_t index = 0;
      const std::shared_ptr<const Connection> connection = Current(&index);

      std::string token;
      grpc::Status status;
      std::string call(method);
      if (!username_.empty()) {
        status = Token(*connection, deadline, &token);
        if (!status.ok()) call = absl::StrCat("Authenticate as '", username_, "'");
      }
      if (status.ok()) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(deadline));
        context.AddMetadata(kRequireLeaderKey, "true");
        if (!token.empty()) context.AddMetadata(kTokenKey, token);
        status = attempt(*connection, &context);
        if (status.ok()) {
          Answered(index);
          return absl::OkStatus();
        }
        if (!token.empty() && IsInvalidToken(status) && !token_traded_again) {
          // The member no longer knows the token: trade the password for a
          // new one, once per call.
          token_traded_again = true;
          ForgetToken(token);
          continue;
        }
      }

      if (ConnectionFailed(status)) Reconnect(index, connection);
      switch (status.error_code()) {
        case grpc::StatusCode::DEADLINE_EXCEEDED:
          MoveOn(index, status);
          return FromGrpc(status, connection->endpoint, call);
        case grpc::StatusCode::UNAVAILABLE:
          MoveOn(index, status);
          last_errors[index] = status.error_message();
          break;
        default:
          return FromGrpc(status, connection->endpoint, call);
      }
      // Every member had a try since the last pause: give an election (or a
      // restart) a moment.
      if (++unavailable % static_cast<int>(members_.size()) == 0) {
        absl::SleepFor(std::min(pause, deadline - absl::Now()));
        pause = std::min(pause * 2, kMaxPause);
      }
    }
  }

  absl::Status NoneAnswered(absl::string_view method,
                            const std::vector<std::string>& last_errors) const {
    std::vector<std::string> parts;
    for (size_t i = 0; i < members_.size(); ++i) {
      if (!last_errors[i].empty()) {
        parts.push_back(absl::StrCat(members_[i].endpoint.text, ": ", last_errors[i]));
      }
    }
    return absl::UnavailableError(absl::StrCat("etcd ", method,
                                               ": no member answered before the deadline (",
                                               absl::StrJoin(parts, "; "), ")"));
  }

  // The current member's connection, and its index.
  std::shared_ptr<const Connection> Current(size_t* index) const {
    absl::MutexLock lock(&mu_);
    *index = current_;
    return connections_[current_];
  }

  // Drops `failed`, member `index`'s connection, for a new one: the next
  // call on the member connects afresh, at once, from the calling thread.
  // gRPC would reconnect the old channel by itself, but only after a
  // backoff, and the events of a connection it starts from its backoff
  // timer are seen late (grpc/grpc#28866: up to 5 s per step of the
  // handshake), so a restarted member would stay out of reach for seconds.
  void Reconnect(size_t index, const std::shared_ptr<const Connection>& failed) {
    std::shared_ptr<const Connection> fresh = Connect(members_[index]);
    absl::MutexLock lock(&mu_);
    if (connections_[index] == failed) connections_[index] = std::move(fresh);
  }

  // Later calls go to the member after `from`, unless another call moved
  // on already. Logged once per outage: the first move after a call
  // succeeded.
  void MoveOn(size_t from, const grpc::Status& why) {
    absl::MutexLock lock(&mu_);
    if (members_.size() < 2 || current_ != from) return;
    current_ = (from + 1) % members_.size();
    if (!failing_) {
      LOG(WARNING) << "etcd " << members_[from].endpoint.text << ": " << why.error_message()
                   << "; calls go to " << members_[current_].endpoint.text << " now";
    }
    failing_ = true;
  }

  // A call succeeded on member `index`.
  void Answered(size_t index) {
    absl::MutexLock lock(&mu_);
    if (!failing_) return;
    failing_ = false;
    LOG(INFO) << "etcd " << members_[index].endpoint.text << " answers";
  }

  // The token to send, trading the username and password for one on
  // `member` when there is none.
  grpc::Status Token(const Connection& member, absl::Time deadline, std::string* token) {
    {
      absl::MutexLock lock(&mu_);
      if (!token_.empty()) {
        *token = token_;
        return grpc::Status::OK;
      }
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    context.AddMetadata(kRequireLeaderKey, "true");
    etcdserverpb::AuthenticateRequest request;
    request.set_name(username_);
    request.set_password(password_);
    etcdserverpb::AuthenticateResponse response;
    grpc::Status status = member.auth->Authenticate(&context, request, &response);
    if (!status.ok()) return status;
    if (response.token().empty()) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "the member answered without a token");
    }
    absl::MutexLock lock(&mu_);
    token_ = response.token();
    *token = token_;
    return grpc::Status::OK;
  }

  void ForgetToken(const std::string& token) {
    absl::MutexLock lock(&mu_);
    if (token_ == token) token_.clear();
  }

  const std::vector<Member> members_;
  const std::string username_;
  const std::string password_;

  mutable absl::Mutex mu_;
  // One per member, replaced after a connection failure (Reconnect).
  std::vector<std::shared_ptr<const Connection>> connections_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;    // index in members_
  bool failing_ ABSL_GUARDED_BY(mu_) = false;  // no call succeeded since the last move
  std::string token_ ABSL_GUARDED_BY(mu_);     // empty: none yet
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdApi>> NewEtcdClient(EtcdClientOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("no etcd endpoint");
  if (options.username.empty() && !options.password.empty()) {
    return absl::InvalidArgumentError("an etcd password without a username");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("the etcd client certificate and key go together");
  }
  std::vector<Endpoint> endpoints;
  std::set<std::string> targets;
  bool any_tls = false;
  for (const std::string& text : options.endpoints) {
    auto endpoint = ParseEndpoint(text);
    if (!endpoint.ok()) return endpoint.status();
    if (!targets.insert(endpoint->target).second) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint '", text, "' is listed twice"));
    }
    any_tls = any_tls || endpoint->tls;
    endpoints.push_back(*std::move(endpoint));
  }

  std::shared_ptr<grpc::ChannelCredentials> tls;
  if (any_tls) {
    auto credentials = TlsCredentials(options);
    if (!credentials.ok()) return credentials.status();
    tls = *std::move(credentials);
  }

  std::vector<Member> members;
  for (Endpoint& endpoint : endpoints) {
    if (!endpoint.tls && !options.username.empty()) {
      LOG(WARNING) << "etcd " << endpoint.text << ": the password for etcd user '"
                   << options.username << "' goes to this member unencrypted (http)";
    }
    Member member;
    member.credentials = endpoint.tls ? tls : grpc::InsecureChannelCredentials();
    member.endpoint = std::move(endpoint);
    members.push_back(std::move(member));
  }
  return std::unique_ptr<EtcdApi>(
      new EtcdClient(std::move(members), std::move(options.username), std::move(options.password)));
}

}  // namespace controller
}  // namespace dispatchd
