// Return-if-error and assign-or-return, instead of hand-written `if (!st.ok()) return st;`.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SH_CONCAT_INNER(a, b) a##b
#define SH_CONCAT(a, b) SH_CONCAT_INNER(a, b)

// Evaluates `expr` (an absl::Status) once; returns it from the enclosing function when not OK.
#define SH_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status sh_status_ = (expr);      \
    if (!sh_status_.ok()) return sh_status_; \
  } while (0)

// `lhs` (a declaration such as `auto x` or an existing variable) = the value of `expr` (an
// absl::StatusOr); returns the status from the enclosing function when it is not OK.
#define SH_ASSIGN_OR_RETURN(lhs, expr) \
  SH_ASSIGN_OR_RETURN_IMPL(SH_CONCAT(sh_statusor_, __LINE__), lhs, expr)
#define SH_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = *std::move(tmp)
