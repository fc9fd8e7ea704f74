/* log.h - structured log lines.
 *
 * One line per event, logfmt style, to stderr (journald and `docker logs` read it as is):
 *
 *   time=2026-11-26T15:00:00.123Z level=info service=auth req=4f1c... msg="user registered"
 *
 * The service name and request id come from the calling thread's context, set by the rpc
 * layer and the gateway router around each handler, so handlers just call gn_info() etc. */
#pragma once

#include <stdarg.h>

typedef enum {
  GN_LOG_DEBUG,
  GN_LOG_INFO,
  GN_LOG_WARN,
  GN_LOG_ERROR,
} gn_log_level;

/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int gn_log_level_parse (const char *name);
void gn_log_set_level (gn_log_level level);
gn_log_level gn_log_get_level (void);

/* Thread context: strings are copied; NULL clears. */
void gn_log_set_service (const char *service);
void gn_log_set_request_id (const char *request_id);
const char *gn_log_request_id (void);

void gn_log (gn_log_level level, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
void gn_logv (gn_log_level level, const char *fmt, va_list ap)
    __attribute__ ((format (printf, 2, 0)));
/* Appends extra key=value pairs (already formatted, e.g. "status=201 ms=0.41") after msg. */
void gn_log_kv (gn_log_level level, const char *kv, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define gn_debug(...) gn_log (GN_LOG_DEBUG, __VA_ARGS__)
#define gn_info(...) gn_log (GN_LOG_INFO, __VA_ARGS__)
#define gn_warn(...) gn_log (GN_LOG_WARN, __VA_ARGS__)
#define gn_error(...) gn_log (GN_LOG_ERROR, __VA_ARGS__)
