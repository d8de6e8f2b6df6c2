// dp_status: the one error enum of the library, from one X-macro list (libuv style).
// Every fallible function returns a dp_status; the message lives in error.h.
#ifndef DP_CORE_STATUS_H
#define DP_CORE_STATUS_H

#define DP_STATUS_LIST(X)                                                                          \
    X(OK, "ok")                                                                                    \
    X(ERR_ARG, "invalid argument")                                                                 \
    X(ERR_CFG, "configuration error")                                                              \
    X(ERR_IO, "I/O error")                                                                         \
    X(ERR_DATA, "bad data")                                                                        \
    X(ERR_SHAPE, "shape mismatch")                                                                 \
    X(ERR_NOMEM, "out of memory")                                                                  \
    X(ERR_CUDA, "CUDA error")                                                                      \
    X(ERR_NCCL, "NCCL error")                                                                      \
    X(ERR_MPI, "MPI error")                                                                        \
    X(ERR_TIMEOUT, "timeout")                                                                      \
    X(ERR_UNSUPPORTED, "unsupported")                                                              \
    X(ERR_INTERNAL, "internal error")

typedef enum dp_status {
#define DP_STATUS_ENUM(name, text) DP_##name,
    DP_STATUS_LIST(DP_STATUS_ENUM)
#undef DP_STATUS_ENUM
        DP_STATUS_COUNT_
} dp_status;

#ifdef __cplusplus
#define DP_EXTERN_C_BEGIN extern "C" {
#define DP_EXTERN_C_END }
#define DP_NORETURN [[noreturn]]
#else
#define DP_EXTERN_C_BEGIN
#define DP_EXTERN_C_END
#define DP_NORETURN _Noreturn
#endif

#if defined(__GNUC__)
#define DP_MUST_CHECK __attribute__((warn_unused_result))
#define DP_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define DP_MUST_CHECK
#define DP_PRINTF(fmt_idx, arg_idx)
#endif

DP_EXTERN_C_BEGIN

// Returns a short static description of st ("configuration error"); never NULL.
const char *dp_status_str(dp_status st);

// Returns the enum name of st without the prefix ("ERR_CFG"); never NULL.
const char *dp_status_name(dp_status st);

DP_EXTERN_C_END

#endif
