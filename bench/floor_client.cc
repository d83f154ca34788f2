#include "bench/floor_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace dispatchd {
namespace bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;

struct FloorClient::Impl {
  asio::io_context ioc;
  Local::socket socket{ioc};
  beast::flat_buffer buffer;
  std::string prefix;  // "/v1.41"

  absl::StatusOr<http::response<http::string_body>> RoundTrip(http::verb verb,
                                                              const std::string& target,
                                                              std::string body) {
    http::request<http::string_body> request{verb, target, 11};
    request.set(http::field::host, "docker");
    if (!body.empty()) {
      request.set(http::field::content_type, "application/json");
      request.body() = std::move(body);
    }
    request.prepare_payload();
    beast::error_code ec;
    http::write(socket, request, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(target, ": write: ", ec.message()));
    http::response<http::string_body> response;
    http::read(socket, buffer, response, ec);
    if (ec) return absl::UnavailableError(absl::StrCat(target, ": read: ", ec.message()));
    if (!response.keep_alive()) {
      return absl::FailedPreconditionError(absl::StrCat(target, ": the engine closes the connection"));
    }
    return response;
  }
};

FloorClient::FloorClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FloorClient::~FloorClient() = default;

absl::StatusOr<std::unique_ptr<FloorClient>> FloorClient::Connect(const std::string& docker_host) {
  absl::string_view path = docker_host;
  if (!absl::ConsumePrefix(&path, "unix://")) {
    return absl::InvalidArgumentError(absl::StrCat("not a unix socket: ", docker_host));
  }
  auto impl = std::make_unique<Impl>();
  beast::error_code ec;
  impl->socket.connect(Local::endpoint(std::string(path)), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("connect to ", path, ": ", ec.message()));
  auto version = impl->RoundTrip(http::verb::get, "/version", "");
  if (!version.ok()) return version.status();
  nlohmann::json j = nlohmann::json::parse(version->body(), nullptr, false);
  if (!j.is_object() || !j.contains("ApiVersion") || !j["ApiVersion"].is_string()) {
    return absl::InternalError(absl::StrCat("no ApiVersion in ", version->body()));
  }
  impl->prefix = absl::StrCat("/v", j["ApiVersion"].get<std::string>());
  return std::unique_ptr<FloorClient>(new FloorClient(std::move(impl)));
}

absl::Status FloorClient::Exec(const std::string& container_id,
                               const std::vector<std::string>& argv, absl::Time* start_sent) {
  auto created = impl_->RoundTrip(
      http::verb::post, absl::StrCat(impl_->prefix, "/containers/", container_id, "/exec"),
      nlohmann::json{{"Cmd", argv}}.dump());
  if (!created.ok()) return created.status();
  if (created->result_int() != 201) {
    return absl::InternalError(absl::StrCat("exec create: ", created->result_int(), " ",
                                            created->body()));
  }
  nlohmann::json j = nlohmann::json::parse(created->body(), nullptr, false);
  if (!j.is_object() || !j.contains("Id") || !j["Id"].is_string()) {
    return absl::InternalError(absl::StrCat("exec create: no Id in ", created->body()));
  }
  if (start_sent != nullptr) *start_sent = absl::Now();
  auto started = impl_->RoundTrip(
      http::verb::post, absl::StrCat(impl_->prefix, "/exec/", j["Id"].get<std::string>(), "/start"),
      R"({"Detach":true})");
  if (!started.ok()) return started.status();
  if (started->result_int() != 200 && started->result_int() != 204) {
    return absl::InternalError(absl::StrCat("exec start: ", started->result_int(), " ",
                                            started->body()));
  }
  return absl::OkStatus();
}

}  // namespace bench
}  // namespace dispatchd
