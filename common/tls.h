// TLS for the agent <-> controller session: gRPC credentials built from PEM
// files. The controller presents a certificate and, given a client CA,
// requires and verifies agents' client certificates; agents verify the
// controller against a CA and may present their own certificate.
#ifndef DISPATCHD_COMMON_TLS_H_
#define DISPATCHD_COMMON_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace dispatchd {

struct TlsFiles {
  std::string cert;  // PEM certificate chain of this side
  std::string key;   // PEM private key of this side
  std::string ca;    // PEM CA bundle that verifies the other side
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// Server side. cert and key are required; with ca, clients must present a
// certificate signed by it. Unreadable files: NotFound/PermissionDenied
// naming the file; cert without key (or the reverse): InvalidArgument.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const TlsFiles& files);

// Client side. ca is required (verifies the controller); cert and key
// (both or neither) are presented to the controller.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const TlsFiles& files);

// What a process builds from its --tls-* flags: plaintext credentials when
// no file is given, else ServerCredentials / ChannelCredentials above.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFromFlags(
    const TlsFiles& files);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromFlags(
    const TlsFiles& files);

// Reads a whole file; errors name it.
absl::StatusOr<std::string> ReadPemFile(const std::string& path);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_TLS_H_
