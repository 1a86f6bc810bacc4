#include "router/forward.h"

namespace rollertrace::router {

using grpc::Status;
using grpc::StatusCode;

Status ToGrpc(const absl::Status& s) {
  StatusCode code = StatusCode::INTERNAL;
  if (absl::IsNotFound(s)) code = StatusCode::NOT_FOUND;
  if (absl::IsInvalidArgument(s)) code = StatusCode::INVALID_ARGUMENT;
  if (absl::IsUnavailable(s)) code = StatusCode::UNAVAILABLE;
  if (absl::IsFailedPrecondition(s)) code = StatusCode::FAILED_PRECONDITION;
  if (absl::IsPermissionDenied(s)) code = StatusCode::PERMISSION_DENIED;
  if (absl::IsUnauthenticated(s)) code = StatusCode::UNAUTHENTICATED;
  return {code, std::string(s.message())};
}

absl::Status FromGrpc(const Status& s) {
  switch (s.error_code()) {
    case StatusCode::OK: return absl::OkStatus();
    case StatusCode::NOT_FOUND: return absl::NotFoundError(s.error_message());
    case StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(s.error_message());
    case StatusCode::PERMISSION_DENIED: return absl::PermissionDeniedError(s.error_message());
    case StatusCode::UNAUTHENTICATED: return absl::UnauthenticatedError(s.error_message());
    default: return absl::UnavailableError(s.error_message());
  }
}

}  // namespace rollertrace::router
