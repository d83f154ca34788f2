#include "cmd/dispatchd/metrics_server.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dispatchd {

Readiness Both(const Readiness& a, const Readiness& b) {
  Readiness out;
  out.ready = a.ready && b.ready;
  out.state = a.state != "ok" ? a.state : b.state;
  out.leader = a.leader.empty() ? b.leader : a.leader;
  if (!a.ready) out.reason = a.reason;
  if (!b.ready) out.reason = out.reason.empty() ? b.reason : absl::StrCat(out.reason, "; ", b.reason);
  return out;
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(
    absl::string_view listen, const Registry* registry, std::function<Readiness()> readiness) {
  std::map<std::string, HttpHandler> routes;
  routes["/metrics"] = [registry](const HttpRequest&) {
    return HttpResponse{200, std::string(kPrometheusTextContentType), SerializeText(*registry)};
  };
  routes["/healthz"] = [](const HttpRequest&) { return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"}; };
  routes["/readyz"] = [readiness = std::move(readiness)](const HttpRequest&) {
    const Readiness r = readiness();
    const std::string leader = r.leader.empty() ? "" : absl::StrCat("leader: ", r.leader, "\n");
    if (r.ready) {
      return HttpResponse{200, "text/plain; charset=utf-8", absl::StrCat(r.state, "\n", leader)};
    }
    return HttpResponse{503, "text/plain; charset=utf-8",
                        absl::StrCat("not ready: ", r.reason, "\n", leader)};
  };
  return HttpServer::Start(listen, std::move(routes));
}

}  // namespace dispatchd
