// Status helpers shared by every component.
#ifndef RUNG_COMMON_STATUS_H_
#define RUNG_COMMON_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RUNG_CONCAT_INNER(a, b) a##b
#define RUNG_CONCAT(a, b) RUNG_CONCAT_INNER(a, b)

// Returns from the calling function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status rung_status_ = (expr);        \
    if (!rung_status_.ok()) return rung_status_; \
  } while (0)

// `lhs = value of expr` when the StatusOr `expr` is OK; returns its status otherwise.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(RUNG_CONCAT(rung_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#endif  // RUNG_COMMON_STATUS_H_
