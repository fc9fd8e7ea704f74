/* log.c - structured log lines (see log.h).
 *
 * A line is built in a stack buffer and written with one write(2), so lines from different
 * threads never interleave.  The message is quoted and escaped (", \, control characters) so a
 * line stays one line and parses as logfmt.  Service and request id live in thread-local
 * storage, set by the rpc layer and the HTTP layer around each handler. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>

static atomic_int min_level = GN_LOG_INFO;
static _Thread_local char thread_service[32];
static _Thread_local char thread_request_id[72];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int
gn_log_level_parse (const char *name)
{
  for (int i = 0; i < 4; i++)
    if (name != NULL && strcmp (name, level_names[i]) == 0)
      return i;
  if (name != NULL && strcmp (name, "warning") == 0)
    return GN_LOG_WARN;
  return -1;
}

void
gn_log_set_level (gn_log_level level)
{
  atomic_store (&min_level, (int)level);
}

gn_log_level
gn_log_get_level (void)
{
  return (gn_log_level)atomic_load (&min_level);
}

static void
copy_field (char *dst, size_t size, const char *src)
{
  if (src == NULL) {
    dst[0] = '\0';
    return;
  }
  size_t n = strlen (src);
  if (n >= size)
    n = size - 1;
  memcpy (dst, src, n);
  dst[n] = '\0';
}

void
gn_log_set_service (const char *service)
{
  copy_field (thread_service, sizeof thread_service, service);
}

void
gn_log_set_request_id (const char *request_id)
{
  copy_field (thread_request_id, sizeof thread_request_id, request_id);
}

const char *
gn_log_request_id (void)
{
  return thread_request_id[0] != '\0' ? thread_request_id : NULL;
}

/* Appends src to buf[*len..size) escaped for a logfmt quoted value; truncates safely. */
static void
append_escaped (char *buf, size_t size, size_t *len, const char *src)
{
  for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
    char tmp[8];
    const char *piece = tmp;
    size_t piece_len;
    if (*p == '"' || *p == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)*p;
      piece_len = 2;
    } else if (*p == '\n') {
      piece = "\\n";
      piece_len = 2;
    } else if (*p < 0x20 || *p == 0x7f) {
      piece_len = (size_t)snprintf (tmp, sizeof tmp, "\\x%02x", *p);
    } else {
      tmp[0] = (char)*p;
      piece_len = 1;
    }
    if (*len + piece_len >= size)
      return;
    memcpy (buf + *len, piece, piece_len);
    *len += piece_len;
  }
}

static void __attribute__ ((format (printf, 3, 0)))
emit (gn_log_level level, const char *kv, const char *fmt, va_list ap)
{
  if ((int)level < atomic_load (&min_level))
    return;

  char message[2048];
  vsnprintf (message, sizeof message, fmt, ap);

  struct timeval tv;
  gettimeofday (&tv, NULL);
  struct tm tm;
  gmtime_r (&tv.tv_sec, &tm);

  char line[4096];
  size_t len
      = (size_t)snprintf (line, sizeof line, "time=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s",
                          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                          tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level]);
  if (thread_service[0] != '\0')
    len += (size_t)snprintf (line + len, sizeof line - len, " service=%s", thread_service);
  if (thread_request_id[0] != '\0' && len < sizeof line)
    len += (size_t)snprintf (line + len, sizeof line - len, " req=%s", thread_request_id);
  if (len < sizeof line - 8) {
    memcpy (line + len, " msg=\"", 6);
    len += 6;
    append_escaped (line, sizeof line - 2, &len, message);
    line[len++] = '"';
  }
  if (kv != NULL && kv[0] != '\0' && len < sizeof line - 2)
    len += (size_t)snprintf (line + len, sizeof line - len, " %s", kv);
  if (len > sizeof line - 2)
    len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t written = write (STDERR_FILENO, line, len);
  (void)written;
}

void
gn_logv (gn_log_level level, const char *fmt, va_list ap)
{
  emit (level, NULL, fmt, ap);
}

void
gn_log (gn_log_level level, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  emit (level, NULL, fmt, ap);
  va_end (ap);
}

void
gn_log_kv (gn_log_level level, const char *kv, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  emit (level, kv, fmt, ap);
  va_end (ap);
}
