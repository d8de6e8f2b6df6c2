// Leveled logging. Process-wide state is only the log configuration (level, rank, sink).
// WARN and ERROR carry "[rank r] file:line"; INFO and DEBUG are printed by rank 0 only.
// Metrics are JSON lines elsewhere, never log lines; nothing is logged in per-element loops.
#ifndef DP_CORE_LOG_H
#define DP_CORE_LOG_H

#include "core/status.h"

typedef enum dp_log_level {
    DP_LOG_LEVEL_ERROR = 0,
    DP_LOG_LEVEL_WARN = 1,
    DP_LOG_LEVEL_INFO = 2,
    DP_LOG_LEVEL_DEBUG = 3,
} dp_log_level;

// A sink receives one finished line (no trailing newline) with its level. ctx is the pointer
// given to dp_log_set_sink. It may be called from any thread; calls are serialized.
typedef void (*dp_log_sink)(dp_log_level level, const char *line, void *ctx);

// Sets the level; messages above it are dropped. The initial level is INFO, or the value of
// the environment variable DP_LOG_LEVEL (error|warn|info|debug or 0-3) read on first use.
void dp_log_set_level(dp_log_level level);
dp_log_level dp_log_get_level(void);

// Parses "error", "warn", "info", "debug" (any case) or "0".."3". Returns DP_ERR_ARG with a
// message naming the text if it is none of these.
DP_MUST_CHECK dp_status dp_log_level_parse(dp_log_level *out, const char *text);

// Sets the rank printed in WARN/ERROR lines and used to mute INFO/DEBUG on ranks other than 0.
void dp_log_set_rank(int rank);

// Replaces the sink (NULL restores the default, stderr). Returns nothing; thread-safe.
void dp_log_set_sink(dp_log_sink sink, void *ctx);

void dp_log(dp_log_level level, const char *file, int line, const char *fmt, ...)
    DP_PRINTF(4, 5);

#define DP_LOG_ERROR(...) dp_log(DP_LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define DP_LOG_WARN(...) dp_log(DP_LOG_LEVEL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define DP_LOG_INFO(...) dp_log(DP_LOG_LEVEL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define DP_LOG_DEBUG(...) dp_log(DP_LOG_LEVEL_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#endif
