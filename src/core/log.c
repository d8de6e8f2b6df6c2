// Log configuration and formatting. The default sink writes to stderr, so that stdout stays
// for results (check:, final:, RESULT lines) that scripts read.
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"

static struct {
    pthread_mutex_t lock;
    int level; // -1: not yet read from the environment
    int rank;
    dp_log_sink sink;
    void *sink_ctx;
} log_cfg = {PTHREAD_MUTEX_INITIALIZER, -1, 0, NULL, NULL};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

dp_status dp_log_level_parse(dp_log_level *out, const char *text)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, level_names[i]) == 0 ||
            (text[0] == (char)('0' + i) && text[1] == '\0')) {
            *out = (dp_log_level)i;
            return DP_OK;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *out = DP_LOG_LEVEL_WARN;
        return DP_OK;
    }
    return dp_error_set(DP_ERR_ARG, "log level '%s': expected error, warn, info, debug or 0-3",
                        text);
}

// Caller holds log_cfg.lock.
static int current_level(void)
{
    if (log_cfg.level < 0) {
        log_cfg.level = DP_LOG_LEVEL_INFO;
        const char *env = getenv("DP_LOG_LEVEL");
        dp_log_level lv;
        if (env != NULL && env[0] != '\0') {
            if (dp_log_level_parse(&lv, env) == DP_OK) {
                log_cfg.level = (int)lv;
            } else {
                fprintf(stderr, "dptrain: warning: DP_LOG_LEVEL=%s is not a level; using info\n",
                        env);
                dp_error_clear();
            }
        }
    }
    return log_cfg.level;
}

void dp_log_set_level(dp_log_level level)
{
    pthread_mutex_lock(&log_cfg.lock);
    log_cfg.level = (int)level;
    pthread_mutex_unlock(&log_cfg.lock);
}

dp_log_level dp_log_get_level(void)
{
    pthread_mutex_lock(&log_cfg.lock);
    int lv = current_level();
    pthread_mutex_unlock(&log_cfg.lock);
    return (dp_log_level)lv;
}

void dp_log_set_rank(int rank)
{
    pthread_mutex_lock(&log_cfg.lock);
    log_cfg.rank = rank;
    pthread_mutex_unlock(&log_cfg.lock);
}

void dp_log_set_sink(dp_log_sink sink, void *ctx)
{
    pthread_mutex_lock(&log_cfg.lock);
    log_cfg.sink = sink;
    log_cfg.sink_ctx = ctx;
    pthread_mutex_unlock(&log_cfg.lock);
}

static const char *base_name(const char *path)
{
    const char *src = strstr(path, "src/");
    return src != NULL ? src : path;
}

void dp_log(dp_log_level level, const char *file, int line, const char *fmt, ...)
{
    pthread_mutex_lock(&log_cfg.lock);
    int enabled = (int)level <= current_level();
    if (level >= DP_LOG_LEVEL_INFO && log_cfg.rank != 0) {
        enabled = 0;
    }
    if (!enabled) {
        pthread_mutex_unlock(&log_cfg.lock);
        return;
    }
    char text[4096];
    int n = 0;
    if (level <= DP_LOG_LEVEL_WARN) {
        n = snprintf(text, sizeof text, "%s: [rank %d] %s:%d: ", level_names[level], log_cfg.rank,
                     base_name(file), line);
    } else if (level == DP_LOG_LEVEL_DEBUG) {
        n = snprintf(text, sizeof text, "debug: ");
    }
    if (n < 0 || (size_t)n >= sizeof text) {
        n = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    va_end(ap);
    if (log_cfg.sink != NULL) {
        log_cfg.sink(level, text, log_cfg.sink_ctx);
    } else {
        fprintf(stderr, "%s\n", text);
        fflush(stderr);
    }
    pthread_mutex_unlock(&log_cfg.lock);
}
