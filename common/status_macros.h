// Two small status macros (Debian's abseil 20220623 has none).
#ifndef DISPATCHD_COMMON_STATUS_MACROS_H_
#define DISPATCHD_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DISPATCHD_STATUS_CONCAT_INNER_(a, b) a##b
#define DISPATCHD_STATUS_CONCAT_(a, b) DISPATCHD_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status _status_ = (expr);            \
    if (!_status_.ok()) return _status_;         \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MaybeX()); returns the error status if not OK.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(DISPATCHD_STATUS_CONCAT_(_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(statusor).value()

#endif  // DISPATCHD_COMMON_STATUS_MACROS_H_
