#include "agent/docker_client.h"

#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace dispatchd {
namespace agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;
using Stream = beast::basic_stream<Local>;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr char kUnixScheme[] = "unix://";
constexpr int kMaxApiMinor = 41;  // the client speaks at most API 1.41
constexpr std::uint64_t kMaxResponseBody = 64 << 20;
// Longest single wait honoured (keeps steady_clock arithmetic finite).
constexpr absl::Duration kMaxWait = absl::Hours(24);
constexpr char kContainerEventsFilter[] = "%7B%22type%22%3A%5B%22container%22%5D%7D";

// Socket and protocol failures: a timeout is DeadlineExceeded, anything else
// (refused, missing socket, reset, EOF) means the daemon is not there.
absl::Status IoError(absl::string_view op, absl::string_view step, const beast::error_code& ec) {
  if (ec == beast::error::timeout) {
    return absl::DeadlineExceededError(absl::StrCat(op, ": ", step, " timed out"));
  }
  return absl::UnavailableError(absl::StrCat(op, ": ", step, ": ", ec.message()));
}

// A failed connect to the engine's socket, in words that say what to fix:
// the socket missing (the usual mistake when dispatchd runs in a container),
// a path that is not a socket, nobody listening, or no permission.
absl::Status ConnectError(absl::string_view op, const std::string& path,
                          const beast::error_code& ec) {
  namespace errc = boost::system::errc;
  if (ec == beast::error::timeout) return IoError(op, absl::StrCat("connect to ", path), ec);
  std::string why;
  struct stat st;
  if (ec == errc::no_such_file_or_directory) {
    why = absl::StrCat("no Docker socket at ", path,
                       " (in a container, mount the host's: -v /var/run/docker.sock:", path,
                       "; elsewhere, start Docker or pass --docker-host)");
  } else if (ec == errc::permission_denied) {
    why = absl::StrCat("permission denied on ", path,
                       " (run dispatchd as root or in the socket's group, usually docker)");
  } else if (stat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    why = absl::StrCat(path, " is not a socket (mount the Docker engine's socket there)");
  } else if (ec == errc::connection_refused) {
    why = absl::StrCat("nothing listens on ", path, " (is the Docker daemon running?)");
  } else {
    why = absl::StrCat("connect to ", path, ": ", ec.message());
  }
  return absl::UnavailableError(absl::StrCat(op, ": ", why));
}

// Docker's error bodies are {"message": "..."}; fall back to the raw text.
std::string DockerMessage(absl::string_view body) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto it = j.find("message");
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return std::string(absl::StripAsciiWhitespace(body));
}

absl::Status HttpError(absl::string_view op, unsigned status, absl::string_view body) {
  std::string text = absl::StrCat(op, ": HTTP ", status, ": ", DockerMessage(body));
  if (status == 404) return absl::NotFoundError(text);
  if (status == 409) return absl::FailedPreconditionError(text);
  if (status >= 400 && status < 500) return absl::InvalidArgumentError(text);
  // The daemon answered, with an error of its own: Internal. Unavailable is
  // kept for a daemon that cannot be reached at all (IoError, ConnectError).
  if (status >= 500) return absl::InternalError(text);
  return absl::UnknownError(text);
}

// Percent-encodes one path segment or query value.
std::string Escape(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Container and exec ids and names never hold '/'; one that does would walk
// the daemon's URL space.
absl::Status CheckId(absl::string_view op, absl::string_view id) {
  if (id.empty() || id.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": \"", id, "\" is not an id or name"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ParseJson(absl::string_view op, absl::string_view body) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InternalError(absl::StrCat(op, ": malformed JSON from the daemon: ",
                                            body.substr(0, 200)));
  }
  return j;
}

std::string StringField(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// Labels and attributes: a string map that Docker may send as null.
std::map<std::string, std::string> StringMap(const Json& j) {
  std::map<std::string, std::string> out;
  if (!j.is_object()) return out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    out[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return out;
}

const Json& Field(const Json& j, const char* key) {
  static const Json* const kNull = new Json(nullptr);
  if (!j.is_object()) return *kNull;
  auto it = j.find(key);
  return it == j.end() ? *kNull : *it;
}

// Reads one HTTP response from `stream` into `parser`. Runs `ioc` until the
// operation completes; the basic_stream expiry bounds it.
template <typename Parser>
beast::error_code ReadResponse(asio::io_context& ioc, Stream& stream, beast::flat_buffer& buffer,
                               Parser& parser, absl::Duration timeout) {
  beast::error_code result;
  stream.expires_after(absl::ToChronoNanoseconds(timeout));
  http::async_read(stream, buffer, parser,
                   [&result](beast::error_code ec, std::size_t) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

beast::error_code Connect(asio::io_context& ioc, Stream& stream, const Local::endpoint& endpoint,
                          absl::Duration timeout) {
  beast::error_code result;
  stream.expires_after(absl::ToChronoNanoseconds(timeout));
  stream.async_connect(endpoint, [&result](beast::error_code ec) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

template <typename Request>
beast::error_code Write(asio::io_context& ioc, Stream& stream, Request& request,
                        absl::Duration timeout) {
  beast::error_code result;
  stream.expires_after(absl::ToChronoNanoseconds(timeout));
  http::async_write(stream, request,
                    [&result](beast::error_code ec, std::size_t) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

http::request<http::string_body> MakeRequest(http::verb verb, const std::string& target,
                                             std::optional<std::string> json_body) {
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "docker");
  request.set(http::field::user_agent, "dispatchd");
  request.keep_alive(false);
  if (json_body) {
    request.set(http::field::content_type, "application/json");
    request.body() = std::move(*json_body);
  }
  request.prepare_payload();
  return request;
}

// One GET /events response, read incrementally. The read in flight stays
// queued on `ioc_` between Next() calls, so a timeout loses nothing.
class EventStream final : public DockerEventStream {
 public:
  EventStream() : stream_(ioc_) {
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
  }

  ~EventStream() override {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  absl::Status Open(const Local::endpoint& endpoint, const std::string& target,
                    absl::Duration timeout) {
    if (beast::error_code ec = Connect(ioc_, stream_, endpoint, timeout)) {
      return ConnectError("events", endpoint.path(), ec);
    }
    auto request = MakeRequest(http::verb::get, target, std::nullopt);
    if (beast::error_code ec = Write(ioc_, stream_, request, timeout)) {
      return IoError("events", "write", ec);
    }
    return ReadHeader(timeout);
  }

  absl::Status Adopt(int fd, absl::Duration timeout) {
    beast::error_code ec;
    stream_.socket().assign(Local(), fd, ec);
    if (ec) return IoError("events", "adopt socket", ec);
    return ReadHeader(timeout);
  }

  absl::StatusOr<std::optional<DockerEvent>> Next(absl::Duration timeout) override {
    const SteadyClock::time_point deadline =
        SteadyClock::now() + absl::ToChronoNanoseconds(
                                 std::clamp(timeout, absl::ZeroDuration(), kMaxWait));
    while (true) {
      while (std::optional<std::string> line = splitter_.Pop()) {
        if (absl::StripAsciiWhitespace(*line).empty()) continue;
        absl::StatusOr<DockerEvent> event = internal::ParseDockerEvent(*line);
        if (!event.ok()) {
          LOG(WARNING) << "skipping an unreadable Docker event: " << event.status();
          continue;
        }
        return std::optional<DockerEvent>(*std::move(event));
      }
      if (!broken_.ok()) return broken_;
      if (!read_in_flight_) StartRead();
      if (ioc_.stopped()) ioc_.restart();
      if (SteadyClock::now() >= deadline) {
        // Run what already completed, then give up for this call.
        if (ioc_.poll() == 0) return std::optional<DockerEvent>();
        continue;
      }
      ioc_.run_one_until(deadline);
    }
  }

 private:
  absl::Status ReadHeader(absl::Duration timeout) {
    beast::error_code result;
    stream_.expires_after(absl::ToChronoNanoseconds(timeout));
    http::async_read_header(stream_, buffer_, parser_,
                            [&result](beast::error_code ec, std::size_t) { result = ec; });
    ioc_.restart();
    ioc_.run();
    if (result) {
      stream_.expires_never();
      return IoError("events", "read header", result);
    }
    const unsigned status = parser_.get().result_int();
    if (status == 200) {
      stream_.expires_never();
      // A body that ended with its header (Content-Length: 0, from a peer
      // that is not the engine) is a stream already over: reading on from
      // a complete parser is not allowed.
      if (parser_.is_done()) broken_ = absl::UnavailableError("events: the daemon ended the stream");
      return absl::OkStatus();
    }
    // Collect the (short) error body within the same bound.
    while (!parser_.is_done() && broken_.ok()) {
      StartRead();
      ioc_.restart();
      ioc_.run();
    }
    std::string body(absl::StrJoin(PendingLines(), "\n"));
    return HttpError("events", status, body);
  }

  std::vector<std::string> PendingLines() {
    std::vector<std::string> lines;
    while (std::optional<std::string> line = splitter_.Pop()) lines.push_back(*std::move(line));
    return lines;
  }

  void StartRead() {
    read_in_flight_ = true;
    parser_.get().body().data = chunk_;
    parser_.get().body().size = sizeof(chunk_);
    http::async_read_some(stream_, buffer_, parser_,
                          [this](beast::error_code ec, std::size_t) { OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    read_in_flight_ = false;
    if (ec == http::error::need_buffer) ec = {};
    const size_t n = sizeof(chunk_) - parser_.get().body().size;
    if (n > 0) splitter_.Append(absl::string_view(chunk_, n));
    if (ec) {
      broken_ = IoError("events", "read", ec);
    } else if (parser_.is_done()) {
      broken_ = absl::UnavailableError("events: the daemon ended the stream");
      // A final line without '\n' is still an event.
      splitter_.Append("\n");
    }
  }

  asio::io_context ioc_;  // first: outlives the stream and any queued read
  Stream stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  char chunk_[8192];
  internal::LineSplitter splitter_;
  bool read_in_flight_ = false;
  absl::Status broken_;
};

class DockerClient final : public DockerApi {
 public:
  DockerClient(DockerClientOptions options, std::string socket_path)
      : options_(std::move(options)), endpoint_(socket_path) {}

  absl::StatusOr<std::string> Version() override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(NegotiateLocked());
    return version_;
  }

  absl::StatusOr<std::vector<ContainerInfo>> ListContainers() override {
    constexpr char kOp[] = "list containers";
    ASSIGN_OR_RETURN(Response response, Call(kOp, http::verb::get, "/containers/json?all=1"));
    RETURN_IF_ERROR(Expect(kOp, response, {200}));
    return internal::ParseContainerList(response.body);
  }

  absl::StatusOr<ContainerInfo> InspectContainer(absl::string_view id) override {
    const std::string op = absl::StrCat("inspect container ", id);
    RETURN_IF_ERROR(CheckId(op, id));
    ASSIGN_OR_RETURN(Response response,
                     Call(op, http::verb::get, absl::StrCat("/containers/", Escape(id), "/json")));
    RETURN_IF_ERROR(Expect(op, response, {200}));
    return internal::ParseContainerInspect(op, response.body);
  }

  absl::StatusOr<std::string> CreateExec(absl::string_view container_id,
                                         const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env) override {
    const std::string op = absl::StrCat("create exec in ", container_id);
    RETURN_IF_ERROR(CheckId(op, container_id));
    Json body = {{"AttachStdin", false}, {"AttachStdout", false}, {"AttachStderr", false},
                 {"Tty", false},         {"Cmd", argv},           {"Env", env}};
    ASSIGN_OR_RETURN(Response response,
                     Call(op, http::verb::post,
                          absl::StrCat("/containers/", Escape(container_id), "/exec"), body.dump()));
    RETURN_IF_ERROR(Expect(op, response, {201, 200}));
    ASSIGN_OR_RETURN(Json j, ParseJson(op, response.body));
    std::string exec_id = StringField(j, "Id");
    if (exec_id.empty()) return absl::InternalError(absl::StrCat(op, ": no exec id in the answer"));
    return exec_id;
  }

  absl::Status StartExec(absl::string_view exec_id) override {
    const std::string op = absl::StrCat("start exec ", exec_id);
    RETURN_IF_ERROR(CheckId(op, exec_id));
    Json body = {{"Detach", true}, {"Tty", false}};
    ASSIGN_OR_RETURN(Response response,
                     Call(op, http::verb::post, absl::StrCat("/exec/", Escape(exec_id), "/start"),
                          body.dump()));
    return Expect(op, response, {200, 204});
  }

  absl::StatusOr<ExecInfo> InspectExec(absl::string_view exec_id) override {
    const std::string op = absl::StrCat("inspect exec ", exec_id);
    RETURN_IF_ERROR(CheckId(op, exec_id));
    ASSIGN_OR_RETURN(Response response,
                     Call(op, http::verb::get, absl::StrCat("/exec/", Escape(exec_id), "/json")));
    RETURN_IF_ERROR(Expect(op, response, {200}));
    return internal::ParseExecInspect(op, response.body);
  }

  absl::Status StartContainer(absl::string_view id) override {
    const std::string op = absl::StrCat("start container ", id);
    RETURN_IF_ERROR(CheckId(op, id));
    ASSIGN_OR_RETURN(Response response,
                     Call(op, http::verb::post, absl::StrCat("/containers/", Escape(id), "/start")));
    return Expect(op, response, {204, 304, 200});
  }

  absl::StatusOr<std::unique_ptr<DockerEventStream>> OpenEventStream() override {
    std::string prefix;
    {
      absl::MutexLock lock(&mu_);
      RETURN_IF_ERROR(NegotiateLocked());
      prefix = prefix_;
    }
    auto stream = std::make_unique<EventStream>();
    RETURN_IF_ERROR(stream->Open(endpoint_,
                                 absl::StrCat(prefix, "/events?filters=", kContainerEventsFilter),
                                 options_.timeout));
    return std::unique_ptr<DockerEventStream>(std::move(stream));
  }

 private:
  struct Response {
    unsigned status = 0;
    std::string body;
  };

  static absl::Status Expect(absl::string_view op, const Response& response,
                             std::initializer_list<unsigned> ok) {
    if (std::find(ok.begin(), ok.end(), response.status) != ok.end()) return absl::OkStatus();
    return HttpError(op, response.status, response.body);
  }

  // A versioned call: negotiates first, then sends `target` under /v1.xx.
  absl::StatusOr<Response> Call(absl::string_view op, http::verb verb, const std::string& target,
                                std::optional<std::string> json_body = std::nullopt) {
    std::string prefix;
    {
      absl::MutexLock lock(&mu_);
      RETURN_IF_ERROR(NegotiateLocked());
      prefix = prefix_;
    }
    return RoundTrip(op, verb, absl::StrCat(prefix, target), std::move(json_body));
  }

  absl::StatusOr<Response> RoundTrip(absl::string_view op, http::verb verb,
                                     const std::string& target,
                                     std::optional<std::string> json_body) const {
    asio::io_context ioc;
    Stream stream(ioc);
    if (beast::error_code ec = Connect(ioc, stream, endpoint_, options_.timeout)) {
      return ConnectError(op, endpoint_.path(), ec);
    }
    auto request = MakeRequest(verb, target, std::move(json_body));
    if (beast::error_code ec = Write(ioc, stream, request, options_.timeout)) {
      return IoError(op, "write request", ec);
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    if (beast::error_code ec = ReadResponse(ioc, stream, buffer, parser, options_.timeout)) {
      // An answer that is not HTTP at all: something else owns the socket.
      // (A connection closed early is just a daemon going away.)
      if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message) {
        return NotAnEngine(absl::StrCat(op, ": ", ec.message()));
      }
      return IoError(op, "read response", ec);
    }
    beast::error_code ignored;
    stream.socket().shutdown(Local::socket::shutdown_both, ignored);
    Response response;
    response.status = parser.get().result_int();
    response.body = std::move(parser.get().body());
    return response;
  }

  absl::Status NegotiateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!prefix_.empty()) return absl::OkStatus();
    constexpr char kOp[] = "version";
    ASSIGN_OR_RETURN(Response response, RoundTrip(kOp, http::verb::get, "/version", std::nullopt));
    if (response.status >= 500) return Expect(kOp, response, {200});
    if (response.status != 200) {
      return NotAnEngine(HttpError(kOp, response.status, response.body).message());
    }
    Json j = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    const std::string server = StringField(j, "ApiVersion");
    std::vector<std::string> parts = absl::StrSplit(server, '.');
    int major = 0;
    int minor = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &major) ||
        !absl::SimpleAtoi(parts[1], &minor)) {
      return NotAnEngine(absl::StrCat("GET /version has no ApiVersion: ",
                                      absl::string_view(response.body).substr(0, 200)));
    }
    if (major > 1 || (major == 1 && minor > kMaxApiMinor)) minor = kMaxApiMinor;
    version_ = absl::StrCat(1, ".", minor);
    prefix_ = absl::StrCat("/v", version_);
    return absl::OkStatus();
  }

  // Unavailable, not a permanent error: the socket may be replaced by the
  // right one (a daemon started late), so callers keep retrying.
  absl::Status NotAnEngine(absl::string_view detail) const {
    return absl::UnavailableError(absl::StrCat(endpoint_.path(),
                                               " answered, but it is not a Docker engine (",
                                               detail, ")"));
  }

  const DockerClientOptions options_;
  const Local::endpoint endpoint_;
  absl::Mutex mu_;
  std::string version_ ABSL_GUARDED_BY(mu_);
  std::string prefix_ ABSL_GUARDED_BY(mu_);  // "/v1.41"; empty until negotiated
};

}  // namespace

std::string DefaultDockerHost() {
  const char* host = std::getenv("DOCKER_HOST");
  if (host != nullptr && *host != '\0') return host;
  // The old dispatcher's place first; a container that mounts the socket at
  // the host's usual place works too.
  for (const char* path : {"/run/docker.sock", "/var/run/docker.sock"}) {
    struct stat st;
    if (stat(path, &st) == 0) return absl::StrCat(kUnixScheme, path);
  }
  return absl::StrCat(kUnixScheme, "/run/docker.sock");
}

absl::StatusOr<std::unique_ptr<DockerApi>> NewDockerClient(DockerClientOptions options) {
  if (!absl::StartsWith(options.host, kUnixScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("docker host \"", options.host, "\" is not supported: only unix:// hosts"));
  }
  std::string path = options.host.substr(sizeof(kUnixScheme) - 1);
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("docker host \"", options.host, "\" names no socket path"));
  }
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("docker host \"", options.host, "\": socket path is too long"));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("docker client timeout must be positive");
  }
  options.timeout = std::min(options.timeout, kMaxWait);
  return std::unique_ptr<DockerApi>(new DockerClient(std::move(options), std::move(path)));
}

namespace internal {

absl::StatusOr<std::vector<ContainerInfo>> ParseContainerList(absl::string_view body) {
  constexpr char kOp[] = "list containers";
  ASSIGN_OR_RETURN(Json j, ParseJson(kOp, body));
  if (!j.is_array()) return absl::InternalError("list containers: expected a JSON array");
  std::vector<ContainerInfo> containers;
  containers.reserve(j.size());
  for (const Json& c : j) {
    ContainerInfo info;
    info.id = StringField(c, "Id");
    const Json& names = Field(c, "Names");
    if (names.is_array()) {
      // Linked containers have extra names like "/other/alias"; take the
      // container's own ("/name").
      for (const Json& name : names) {
        if (!name.is_string()) continue;
        std::string n = name.get<std::string>();
        if (absl::StartsWith(n, "/")) n.erase(0, 1);
        if (info.name.empty() || n.find('/') == std::string::npos) info.name = n;
        if (n.find('/') == std::string::npos) break;
      }
    }
    info.labels = StringMap(Field(c, "Labels"));
    info.state = ParseContainerState(StringField(c, "State"));
    containers.push_back(std::move(info));
  }
  return containers;
}

absl::StatusOr<ContainerInfo> ParseContainerInspect(absl::string_view op, absl::string_view body) {
  ASSIGN_OR_RETURN(Json j, ParseJson(op, body));
  ContainerInfo info;
  info.id = StringField(j, "Id");
  info.name = StringField(j, "Name");
  if (absl::StartsWith(info.name, "/")) info.name.erase(0, 1);
  info.labels = StringMap(Field(Field(j, "Config"), "Labels"));
  info.state = ParseContainerState(StringField(Field(j, "State"), "Status"));
  return info;
}

absl::StatusOr<ExecInfo> ParseExecInspect(absl::string_view op, absl::string_view body) {
  ASSIGN_OR_RETURN(Json j, ParseJson(op, body));
  ExecInfo info;
  const Json& running = Field(j, "Running");
  info.running = running.is_boolean() && running.get<bool>();
  const Json& exit_code = Field(j, "ExitCode");
  if (exit_code.is_number_integer()) info.exit_code = exit_code.get<int>();
  return info;
}

void LineSplitter::Append(absl::string_view data) {
  while (!data.empty()) {
    size_t newline = data.find('\n');
    if (newline == absl::string_view::npos) {
      partial_.append(data.data(), data.size());
      return;
    }
    partial_.append(data.data(), newline);
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    lines_.push_back(std::move(partial_));
    partial_.clear();
    data.remove_prefix(newline + 1);
  }
}

std::optional<std::string> LineSplitter::Pop() {
  if (lines_.empty()) return std::nullopt;
  std::string line = std::move(lines_.front());
  lines_.pop_front();
  return line;
}

absl::StatusOr<DockerEvent> ParseDockerEvent(absl::string_view line) {
  ASSIGN_OR_RETURN(Json j, ParseJson("event", line));
  if (!j.is_object()) return absl::InvalidArgumentError("event: not a JSON object");
  DockerEvent event;
  event.type = StringField(j, "Type");
  event.action = StringField(j, "Action");
  if (event.action.empty()) event.action = StringField(j, "status");
  const Json& actor = Field(j, "Actor");
  event.id = StringField(actor, "ID");
  if (event.id.empty()) event.id = StringField(j, "id");
  event.attributes = StringMap(Field(actor, "Attributes"));
  const Json& time_nano = Field(j, "timeNano");
  const Json& time = Field(j, "time");
  if (time_nano.is_number_integer()) {
    event.time = absl::FromUnixNanos(time_nano.get<int64_t>());
  } else if (time.is_number_integer()) {
    event.time = absl::FromUnixSeconds(time.get<int64_t>());
  } else {
    event.time = absl::UnixEpoch();
  }
  return event;
}

absl::StatusOr<std::unique_ptr<DockerEventStream>> NewEventStreamFromFd(int fd,
                                                                        absl::Duration timeout) {
  auto stream = std::make_unique<EventStream>();
  RETURN_IF_ERROR(stream->Adopt(fd, timeout));
  return std::unique_ptr<DockerEventStream>(std::move(stream));
}

}  // namespace internal
}  // namespace agent
}  // namespace dispatchd
