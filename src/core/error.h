// Thread-local error message with its origin (file:line), and the control-flow macros that
// carry a dp_status up the stack (NCCLCHECK style). No function here exits or aborts, except
// DP_ASSERT, which is for programmer errors only and never for user input.
#ifndef DP_CORE_ERROR_H
#define DP_CORE_ERROR_H

#include <stdarg.h>

#include "core/status.h"

// Stores a message for st in this thread's error slot, replacing what was there, records the
// source location, and returns st, so that `return dp_error_set(DP_ERR_CFG, "...")` reads as one
// statement. The message should be complete for a user ("cfg.cfg:14: [net] batch: ...").
DP_EXTERN_C_BEGIN

#define dp_error_set(st, ...) dp__error_set(__FILE__, __LINE__, (st), __VA_ARGS__)

// Prepends "<context>: " to this thread's message (for context added on the way up, e.g.
// "layer conv2 (resnet.cfg:14)") and returns st unchanged.
#define dp_error_context(st, ...) dp__error_context((st), __VA_ARGS__)

dp_status dp__error_set(const char *file, int line, dp_status st, const char *fmt, ...)
    DP_PRINTF(4, 5);
dp_status dp__error_context(dp_status st, const char *fmt, ...) DP_PRINTF(2, 3);

// The message of the last error set in this thread, or "" if none. Valid until the next
// dp_error_* call in this thread.
const char *dp_error_message(void);

// The source location ("src/core/cfg.c:212") where the last error of this thread was set, or "".
const char *dp_error_origin(void);

// The status of the last error set in this thread (DP_OK if none or after dp_error_clear).
dp_status dp_error_status(void);

// Forgets this thread's error.
void dp_error_clear(void);

// --- control flow ---

// Returns from the calling function with the status of expr if it is not DP_OK.
#define DP_TRY(expr)                                                                               \
    do {                                                                                           \
        dp_status dp_try_st_ = (expr);                                                             \
        if (dp_try_st_ != DP_OK) {                                                                 \
            return dp_try_st_;                                                                     \
        }                                                                                          \
    } while (0)

// Stores the status of expr in st and jumps to label if it is not DP_OK.
#define DP_TRY_GOTO(expr, st, label)                                                               \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if ((st) != DP_OK) {                                                                       \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

// Programmer errors only: stays on in release builds, prints file:line and aborts.
#define DP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            dp__assert_fail(#cond, __FILE__, __LINE__);                                            \
        }                                                                                          \
    } while (0)

DP_NORETURN void dp__assert_fail(const char *cond, const char *file, int line);

DP_EXTERN_C_END

#endif
