/* serve.c - media by signed URLs over HTTP: the routes and the CDN's own listener (see serve.h).
 *
 * A request costs a route match, one HMAC, open(2) + fstat(2) of the file and a few header
 * strings in the request's arena; the body is never copied through user space.  No open-file
 * or metadata cache is kept: objects are immutable and the kernel's dentry and page caches
 * already make open and fstat cheap, and without one there is nothing to invalidate for the
 * fs backend.
 *
 * Conditional requests and ranges follow RFC 9110: If-None-Match beats If-Modified-Since;
 * Range is read for GET only and ignored when If-Range names another version; a Range that
 * cannot be parsed is ignored (200), one that starts past the end is refused (416). */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <gio/gio.h>

#include "http.h"
#include "log.h"
#include "metrics.h"

#define SHA256_HEX_CHARS 64
#define IMMUTABLE_CACHE_CONTROL "public, max-age=31536000, immutable"
#define HTTP_DATE_SIZE 30 /* "Sun, 06 Nov 1994 08:49:37 GMT" and a NUL */

struct gn_cdn_server {
  gn_router *router;
  gn_http_server *http;
};

static const char *const day_names[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const month_names[]
    = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* ---- HTTP dates (RFC 9110 5.6.7), by hand: strftime and strptime follow the locale ---- */

static void
format_http_date (time_t t, char out[HTTP_DATE_SIZE])
{
  struct tm tm;

  gmtime_r (&t, &tm);
  g_snprintf (out, HTTP_DATE_SIZE, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_names[tm.tm_wday],
              tm.tm_mday, month_names[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
              tm.tm_sec);
}

static int
month_from_name (const char *name)
{
  for (int i = 0; i < 12; i++)
    if (strcmp (name, month_names[i]) == 0)
      return i;
  return -1;
}

/* The three forms a recipient must accept: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
 * RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" (also with a four-digit year, as cookies write
 * it) and asctime "Sun Nov  6 08:49:37 1994". */
static gboolean
parse_http_date (const char *text, time_t *out)
{
  struct tm tm = { 0 };
  char month[4] = "";
  char rest[2];
  int day, year, hour, minute, second;

  if (text == NULL || strlen (text) > 64)
    return FALSE;
  if (sscanf (text, "%*3[A-Za-z], %2d %3s %4d %2d:%2d:%2d GMT%1s", &day, month, &year, &hour,
              &minute, &second, rest)
          == 6
      || sscanf (text, "%*[A-Za-z], %2d-%3s-%4d %2d:%2d:%2d GMT%1s", &day, month, &year, &hour,
                 &minute, &second, rest)
             == 6) {
    if (year < 100) /* RFC 850's two digits: the nearest century not in the future */
      year += year < 70 ? 2000 : 1900;
  } else if (sscanf (text, "%*3[A-Za-z] %3s %2d %2d:%2d:%2d %4d%1s", month, &day, &hour, &minute,
                     &second, &year, rest)
             != 6) {
    return FALSE;
  }
  tm.tm_mon = month_from_name (month);
  if (tm.tm_mon < 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60
      || year < 1970)
    return FALSE;
  tm.tm_mday = day;
  tm.tm_year = year - 1900;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  *out = timegm (&tm);
  return *out != (time_t)-1;
}

/* ---- representation metadata ---- */

static const char *
content_type_for (const char *file)
{
  static const struct {
    const char *ext;
    const char *type;
  } types[] = {
    { "jpg", "image/jpeg" },  { "jpeg", "image/jpeg" }, { "png", "image/png" },
    { "webp", "image/webp" }, { "gif", "image/gif" },   { "mp4", "video/mp4" },
    { "webm", "video/webm" },
  };
  const char *dot = strrchr (file, '.');

  if (dot != NULL)
    for (size_t i = 0; i < G_N_ELEMENTS (types); i++)
      if (g_ascii_strcasecmp (dot + 1, types[i].ext) == 0)
        return types[i].type;
  return "application/octet-stream";
}

/* The sha256 of a content-addressed name "<variant>-<64 hex>.<ext>", or NULL. */
static const char *
content_hash_of (const char *file, size_t *len)
{
  const char *dot = strrchr (file, '.');
  const char *end = dot != NULL ? dot : file + strlen (file);

  if (end - file < SHA256_HEX_CHARS + 1 || end[-SHA256_HEX_CHARS - 1] != '-')
    return NULL;
  for (const char *p = end - SHA256_HEX_CHARS; p < end; p++)
    if (!g_ascii_isxdigit (*p) || g_ascii_isupper (*p))
      return NULL;
  *len = SHA256_HEX_CHARS;
  return end - SHA256_HEX_CHARS;
}

/* Opaque tags are compared without a W/ prefix (the weak comparison of If-None-Match). */
static const char *
opaque_tag (const char *tag, size_t *len)
{
  if (*len >= 2 && tag[0] == 'W' && tag[1] == '/') {
    *len -= 2;
    return tag + 2;
  }
  return tag;
}

/* If-None-Match: "*" or a comma-separated list of entity tags. */
static gboolean
etag_list_matches (const char *list, const char *etag)
{
  size_t etag_len = strlen (etag);
  const char *p = list;

  while (*p != '\0') {
    const char *start, *end;
    size_t len;

    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (*p == '\0')
      break;
    start = p;
    if (*p == 'W' && p[1] == '/')
      p += 2;
    if (*p == '"') {
      const char *close = strchr (p + 1, '"');
      p = close != NULL ? close + 1 : p + strlen (p);
    } else {
      while (*p != '\0' && *p != ',')
        p++;
    }
    end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
      end--;
    len = (size_t)(end - start);
    if (len == 1 && *start == '*')
      return TRUE;
    start = opaque_tag (start, &len);
    if (len == etag_len && memcmp (start, etag, len) == 0)
      return TRUE;
  }
  return FALSE;
}

/* ---- ranges ---- */

typedef enum {
  RANGE_WHOLE,         /* no usable Range: the whole file */
  RANGE_PART,          /* [first, last] */
  RANGE_UNSATISFIABLE, /* 416 */
} range_result;

/* Up to 19 digits (fits int64), nothing else. */
static gboolean
parse_position (const char *start, const char *end, uint64_t *out)
{
  uint64_t value = 0;

  if (start == end || end - start > 18)
    return FALSE;
  for (const char *p = start; p < end; p++) {
    if (!g_ascii_isdigit (*p))
      return FALSE;
    value = value * 10 + (uint64_t)(*p - '0');
  }
  *out = value;
  return TRUE;
}

static range_result
parse_range (const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
  const char *spec, *dash, *end;
  uint64_t a, b;

  if (g_ascii_strncasecmp (header, "bytes=", 6) != 0)
    return RANGE_WHOLE;
  spec = header + 6;
  while (*spec == ' ' || *spec == '\t')
    spec++;
  if (strchr (spec, ',') != NULL)
    return RANGE_WHOLE;
  end = spec + strlen (spec);
  while (end > spec && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  dash = memchr (spec, '-', (size_t)(end - spec));
  if (dash == NULL)
    return RANGE_WHOLE;

  if (dash == spec) { /* -n: the last n bytes */
    if (!parse_position (dash + 1, end, &b))
      return RANGE_WHOLE;
    if (b == 0 || size == 0)
      return RANGE_UNSATISFIABLE;
    *first = b < size ? size - b : 0;
    *last = size - 1;
    return RANGE_PART;
  }
  if (!parse_position (spec, dash, &a))
    return RANGE_WHOLE;
  if (dash + 1 == end) { /* a-: from a to the end */
    b = UINT64_MAX;
  } else if (!parse_position (dash + 1, end, &b) || b < a) {
    return RANGE_WHOLE;
  }
  if (a >= size)
    return RANGE_UNSATISFIABLE;
  *first = a;
  *last = b < size ? b : size - 1;
  return RANGE_PART;
}

/* If-Range: the range applies only to the version the client names (strong comparison for a
 * tag, an exact match for a date). */
static gboolean
if_range_allows (const char *if_range, const char *etag, time_t mtime)
{
  time_t date;

  if (if_range == NULL)
    return TRUE;
  if (if_range[0] == '"' || if_range[0] == 'W')
    return strcmp (if_range, etag) == 0;
  return parse_http_date (if_range, &date) && date == mtime;
}

/* ---- the handler ---- */

/* An open descriptor of the object's bytes, or -1 with the answer given. */
static int
open_object (gn_http_request *request, const gn_cdn_media *media, const char *key)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  int fd;

  if (media->cache != NULL) {
    fd = gn_cdn_cache_open (media->cache, key, &error);
    if (fd >= 0)
      return fd;
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
      gn_http_respond_error (request, 404, "not_found", "No such media");
    } else {
      gn_error ("cdn: fetching %s: %s", key, error->message);
      gn_http_respond_error (request, 503, "storage_unavailable",
                             "The media storage cannot be reached; try again later");
    }
    return -1;
  }

  path = gn_storage_local_path (media->storage, key);
  fd = path != NULL ? open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
  if (fd >= 0)
    return fd;
  if (path == NULL || errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
    gn_http_respond_error (request, 404, "not_found", "No such media");
  } else {
    gn_error ("cdn: cannot open %s: %s", path, g_strerror (errno));
    gn_http_respond_error (request, 500, "internal_error", "Internal error");
  }
  return -1;
}

static void
handle_media (gn_http_request *request, void *data)
{
  const gn_cdn_media *media = data;
  gn_arena *arena = request->arena;
  const char *file = gn_http_param (request, "file");
  const char *key = gn_arena_printf (arena, "media/%s/%s", gn_http_param (request, "id"), file);
  const char *expires = gn_http_query (request, "expires");
  int64_t now = g_get_real_time () / G_USEC_PER_SEC;
  const char *hash, *header;
  size_t hash_len = 0;
  char last_modified[HTTP_DATE_SIZE];
  char *etag;
  struct stat st;
  time_t since;
  uint64_t first = 0, last = 0;
  range_result range = RANGE_WHOLE;
  int fd;

  if (!gn_storage_key_is_valid (key)) {
    gn_http_respond_error (request, 404, "not_found", "No such media");
    return;
  }
  switch (gn_cdn_verify (media->key, key, expires, gn_http_query (request, "signature"), now)) {
    case GN_CDN_URL_VALID:
      break;
    case GN_CDN_URL_EXPIRED:
      gn_http_respond_error (request, 403, "url_expired", "This media link has expired");
      return;
    case GN_CDN_URL_UNSIGNED:
    case GN_CDN_URL_FORGED:
      gn_http_respond_error (request, 403, "invalid_signature",
                             "This media link is not validly signed");
      return;
  }

  fd = open_object (request, media, key);
  if (fd < 0)
    return;
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
    close (fd);
    gn_http_respond_error (request, 404, "not_found", "No such media");
    return;
  }

  hash = content_hash_of (file, &hash_len);
  etag = hash != NULL
             ? gn_arena_printf (arena, "\"%.*s\"", (int)hash_len, hash)
             : gn_arena_printf (arena, "\"%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x\"",
                                (gint64)st.st_size, (gint64)st.st_mtime);
  format_http_date (st.st_mtime, last_modified);
  gn_http_add_header (request, "ETag", etag);
  gn_http_add_header (request, "Last-Modified", last_modified);
  gn_http_add_header (request, "Cache-Control",
                      hash != NULL
                          ? IMMUTABLE_CACHE_CONTROL
                          : gn_arena_printf (arena, "public, max-age=%" G_GINT64_FORMAT,
                                             MAX (g_ascii_strtoll (expires, NULL, 10) - now, 0)));
  gn_http_add_header (request, "Accept-Ranges", "bytes");
  /* User content: never let a browser guess a more dangerous type than the one we say. */
  gn_http_add_header (request, "X-Content-Type-Options", "nosniff");

  header = gn_http_header (request, "If-None-Match");
  if (header != NULL ? etag_list_matches (header, etag)
                     : parse_http_date (gn_http_header (request, "If-Modified-Since"), &since)
                           && st.st_mtime <= since) {
    close (fd);
    gn_http_respond (request, 304, NULL, NULL, 0);
    return;
  }

  header = gn_http_header (request, "Range");
  if (header != NULL && strcmp (request->method, "GET") == 0
      && if_range_allows (gn_http_header (request, "If-Range"), etag, st.st_mtime))
    range = parse_range (header, (uint64_t)st.st_size, &first, &last);

  switch (range) {
    case RANGE_WHOLE:
      gn_http_respond_file (request, 200, fd, 0, (uint64_t)st.st_size, content_type_for (file));
      break;
    case RANGE_PART:
      gn_http_add_header (request, "Content-Range",
                          gn_arena_printf (arena,
                                           "bytes %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT
                                           "/%" G_GINT64_FORMAT,
                                           first, last, (gint64)st.st_size));
      gn_http_respond_file (request, 206, fd, first, last - first + 1, content_type_for (file));
      break;
    case RANGE_UNSATISFIABLE:
      close (fd);
      gn_http_add_header (request, "Content-Range",
                          gn_arena_printf (arena, "bytes */%" G_GINT64_FORMAT, (gint64)st.st_size));
      gn_http_respond_error (request, 416, "range_not_satisfiable",
                             "The requested range starts past the end of the file");
      break;
  }
}

/* ---- routes and the listener ---- */

void
gn_cdn_add_routes (gn_router *router, const gn_cdn_media *media)
{
  gn_router_add (router, "GET", "/media/{id}/{file}", handle_media, (void *)media, 0);
}

gn_cdn_server *
gn_cdn_server_start (const gn_cdn_server_options *options, GError **error)
{
  gn_cdn_server *server = g_new0 (gn_cdn_server, 1);

  server->router = gn_router_new ();
  gn_cdn_add_routes (server->router, options->media);

  gn_http_server_options http_options = {
    .name = "cdn",
    .address = options->address,
    .port = options->port,
    .threads = options->threads,
    /* Serving local files never waits; a cache miss waits on the object store, which in a
     * shared epoll pool would stall every connection of the thread. */
    .blocking_handlers = options->media->cache != NULL,
    .cors_origins = options->cors_origins,
    .router = server->router,
    .observer = gn_metrics_observe_http,
  };
  server->http = gn_http_server_start (&http_options, error);
  if (server->http == NULL) {
    gn_router_free (server->router);
    g_free (server);
    return NULL;
  }
  return server;
}

int
gn_cdn_server_port (gn_cdn_server *server)
{
  return gn_http_server_port (server->http);
}

void
gn_cdn_server_stop (gn_cdn_server *server)
{
  if (server == NULL)
    return;
  gn_http_server_stop (server->http);
  gn_router_free (server->router);
  g_free (server);
}
