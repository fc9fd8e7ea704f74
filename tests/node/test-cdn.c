/* The CDN service as generia-node runs it: gn_cdn_module's init starts the real HTTP listener
 * (cdn.port; the same routes also go on another server's router, as on the gateway's port)
 * over real storage (the fs backend in a temp folder; the S3 backend on s3rver, a real
 * SigV4-checking S3 server, through the local copies of cache.c), the module's gRPC service is
 * served on a unix socket, and a real HTTP client (libsoup) fetches the signed URLs.
 *
 * Run through tests/node/s3-server/run.sh, which installs s3rver first. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <libsoup/soup.h>

#include "cdn.pb-c.h"
#include "common.pb-c.h"
#include "cdn/cache.h"
#include "cdn/sign.h"
#include "http.h"
#include "service.h"
#include "storage.h"

#define S3_BUCKET "generia"
#define S3_ACCESS_KEY "S3RVER" /* s3rver's built-in credentials */
#define S3_SECRET_KEY "S3RVER"
#define MIB (1024 * 1024)
#define CDN_SERVICE (&generia__cdn__v1__cdnservice__descriptor)

static struct {
  GPid pid;
  int stdin_fd;
  char *dir;
  char *endpoint;
} s3_server = { .stdin_fd = -1 };

static void
remove_tree (const char *path)
{
  struct stat st;

  if (lstat (path, &st) != 0)
    return;
  if (S_ISDIR (st.st_mode)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
    const char *name;

    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
  }
  g_assert_cmpint (g_remove (path), ==, 0);
}

static void
s3_server_start (void)
{
  GError *error = NULL;
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "s3-server", "server.mjs", NULL);
  int stdout_fd = -1;
  char line[64] = "";
  size_t length = 0;
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  int port = 0;

  s3_server.dir = g_dir_make_tmp ("test-cdn-s3-XXXXXX", &error);
  g_assert_no_error (error);
  const char *argv[] = { "node", script, s3_server.dir, NULL };
  g_spawn_async_with_pipes (NULL, (char **)argv, NULL,
                            G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                            &s3_server.pid, &s3_server.stdin_fd, &stdout_fd, NULL, &error);
  g_assert_no_error (error);
  /* server.mjs prints "port N" once it accepts connections. */
  while (strchr (line, '\n') == NULL) {
    struct pollfd pfd = { .fd = stdout_fd, .events = POLLIN };
    int wait_ms = (int)((deadline - g_get_monotonic_time ()) / 1000);
    ssize_t got;

    g_assert_cmpint (wait_ms, >, 0);
    if (poll (&pfd, 1, wait_ms) <= 0)
      continue;
    got = read (stdout_fd, line + length, sizeof line - 1 - length);
    g_assert_cmpint (got, >, 0);
    length += (size_t)got;
    line[length] = '\0';
  }
  close (stdout_fd);
  g_assert_cmpint (sscanf (line, "port %d", &port), ==, 1);
  s3_server.endpoint = g_strdup_printf ("http://127.0.0.1:%d", port);
}

static void
s3_server_stop (void)
{
  int status;

  if (s3_server.pid == 0)
    return;
  close (s3_server.stdin_fd);
  kill (s3_server.pid, SIGTERM);
  waitpid (s3_server.pid, &status, 0);
  g_spawn_close_pid (s3_server.pid);
  remove_tree (s3_server.dir);
  g_free (s3_server.dir);
  g_free (s3_server.endpoint);
  s3_server.pid = 0;
}

/* ---- the fixture: the module with its listener and its gRPC service ---- */

typedef struct {
  char *dir;
  gn_config *config;
  gn_rpc_service service;
  gn_rpc_server *rpc;
  char *target;
  gn_storage *storage; /* the test's own handle on the same storage, to put objects */
  char *s3_prefix;
  gn_cdn_key key; /* read from the module's secret file */
  char *base;     /* where the listener is: "http://127.0.0.1:<port>" */
  SoupSession *session;
  gn_arena *arena;
} fixture;

static void
set (fixture *f, const char *key, const char *value)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (gn_config_set (f->config, key, value, &error));
  g_assert_no_error (error);
}

static grpc_status_code
call (fixture *f, const char *method, const ProtobufCMessage *request, ProtobufCMessage **response,
      gn_rpc_status *status)
{
  return gn_rpc_unary (gn_rpc_client_get (f->target), CDN_SERVICE, method, request, response,
                       f->arena, NULL, status);
}

static void
fixture_setup (fixture *f, gconstpointer data)
{
  gboolean s3 = GPOINTER_TO_INT (data);
  g_autoptr (GError) error = NULL;
  gn_service_env env = { 0 };
  Generia__Cdn__V1__GetCDNConfigRequest request = GENERIA__CDN__V1__GET_CDNCONFIG_REQUEST__INIT;
  Generia__Cdn__V1__CDNConfig *config = NULL;
  gn_rpc_status status;

  f->dir = g_dir_make_tmp ("test-cdn-XXXXXX", &error);
  g_assert_no_error (error);
  f->config = gn_config_new_default ();
  gn_config_set_data_dir (f->config, f->dir);
  set (f, "cdn.port", "0");
  set (f, "cdn.threads", "2");
  set (f, "media.max_upload_bytes", "52428800");
  if (s3) {
    /* Each case in its own part of the bucket. */
    g_autofree char *uuid = g_uuid_string_random ();

    f->s3_prefix = g_strdup_printf ("%s/", uuid);
    set (f, "storage.backend", "s3");
    set (f, "storage.s3_endpoint", s3_server.endpoint);
    set (f, "storage.s3_bucket", S3_BUCKET);
    set (f, "storage.s3_access_key", S3_ACCESS_KEY);
    set (f, "storage.s3_secret_key", S3_SECRET_KEY);
    set (f, "storage.s3_prefix", f->s3_prefix);
    set (f, "cdn.cache_max_bytes", "1048576");
  }
  f->storage = gn_storage_new_from_config (f->config, &error);
  g_assert_no_error (error);

  env.config = f->config;
  g_assert_true (gn_cdn_module.init (&env, &f->service, &error));
  g_assert_no_error (error);
  g_assert_true (gn_cdn_key_load (&f->key, f->config->cdn_secret_file, &error));
  g_assert_no_error (error);

  f->rpc = gn_rpc_server_new (NULL);
  g_assert_true (gn_rpc_server_add_service (f->rpc, &f->service, &error));
  f->target = g_strdup_printf ("unix:%s/rpc.sock", f->dir);
  g_assert_true (gn_rpc_server_listen (f->rpc, f->target, NULL, &error));
  g_assert_true (gn_rpc_server_start (f->rpc, &error));
  g_assert_no_error (error);
  f->arena = gn_arena_new ();

  /* cdn.port = 0: the listener's port is the one picked; no public URL is configured. */
  g_assert_cmpint (call (f, "GetCDNConfig", &request.base, (ProtobufCMessage **)&config, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpint (config->http_port, >, 0);
  g_assert_cmpstr (config->public_base_url, ==, "");
  f->base = g_strdup_printf ("http://127.0.0.1:%d", config->http_port);
  f->session = soup_session_new ();
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  g_object_unref (f->session);
  gn_rpc_server_shutdown (f->rpc, 1000);
  gn_rpc_server_free (f->rpc);
  gn_cdn_module.fini (&f->service);
  gn_storage_free (f->storage);
  gn_arena_free (f->arena);
  gn_config_free (f->config);
  remove_tree (f->dir);
  g_free (f->dir);
  g_free (f->target);
  g_free (f->s3_prefix);
  g_free (f->base);
}

/* ---- objects ---- */

static GBytes *
random_bytes (size_t len)
{
  guint8 *data = g_malloc (len);

  for (size_t i = 0; i < len; i++)
    data[i] = (guint8)g_random_int ();
  return g_bytes_new_take (data, len);
}

/* Stores data under a content-addressed key "media/<uuid>/<variant>-<sha256>.<ext>" (or, with
 * variant NULL, the plain name "media/<uuid>/plain.<ext>") and returns the key. */
static char *
put_object (fixture *f, const char *variant, const char *ext, GBytes *data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uuid = g_uuid_string_random ();
  g_autofree char *hash = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, data);
  g_autofree char *source = g_build_filename (f->dir, "upload.tmp", NULL);
  char *key = variant != NULL ? g_strdup_printf ("media/%s/%s-%s.%s", uuid, variant, hash, ext)
                              : g_strdup_printf ("media/%s/plain.%s", uuid, ext);

  g_assert_true (g_file_set_contents (source, g_bytes_get_data (data, NULL),
                                      (gssize)g_bytes_get_size (data), &error));
  g_assert_true (gn_storage_put_file (f->storage, key, source, NULL, &error));
  g_assert_no_error (error);
  g_unlink (source);
  return key;
}

/* A path with the query of a URL valid until `expires`. */
static char *
signed_path (fixture *f, const char *key, int64_t expires)
{
  gn_arena *arena = gn_arena_new ();
  char *url = gn_cdn_signed_url (arena, &f->key, "", key, expires);
  char *path = g_strdup (url);

  gn_arena_free (arena);
  return path;
}

static int64_t
now_s (void)
{
  return g_get_real_time () / G_USEC_PER_SEC;
}

/* ---- HTTP ---- */

typedef struct {
  SoupMessage *msg;
  GBytes *body;
} reply;

static void
reply_clear (reply *r)
{
  g_clear_object (&r->msg);
  g_clear_pointer (&r->body, g_bytes_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (reply, reply_clear)

/* Sends method path with the given headers (name, value pairs, NULL-terminated). */
static void
fetch (fixture *f, reply *r, const char *method, const char *path, ...)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri = g_strconcat (f->base, path, NULL);
  const char *name;
  va_list ap;

  reply_clear (r);
  r->msg = soup_message_new (method, uri);
  g_assert_nonnull (r->msg);
  va_start (ap, path);
  while ((name = va_arg (ap, const char *)) != NULL)
    soup_message_headers_replace (soup_message_get_request_headers (r->msg), name,
                                  va_arg (ap, const char *));
  va_end (ap);
  r->body = soup_session_send_and_read (f->session, r->msg, NULL, &error);
  g_assert_no_error (error);
}

static const char *
header (reply *r, const char *name)
{
  return soup_message_headers_get_one (soup_message_get_response_headers (r->msg), name);
}

static guint
status_of (reply *r)
{
  return soup_message_get_status (r->msg);
}

static void
assert_body (reply *r, GBytes *data, size_t offset, size_t length)
{
  const guint8 *bytes = g_bytes_get_data (data, NULL);

  g_assert_cmpmem (g_bytes_get_data (r->body, NULL), g_bytes_get_size (r->body), bytes + offset,
                   length);
}

/* ---- gRPC ---- */

static void
test_grpc (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (1000);
  g_autofree char *first = put_object (f, "medium", "jpg", bytes);
  g_autofree char *second = put_object (f, "thumbnail", "jpg", bytes);
  char *keys[] = { first, second };
  Generia__Cdn__V1__GetSignedURLRequest request = GENERIA__CDN__V1__GET_SIGNED_URLREQUEST__INIT;
  Generia__Cdn__V1__GetSignedURLResponse *response = NULL;
  Generia__Cdn__V1__CDNConfig *config = NULL;
  Generia__Common__V1__HealthCheckResponse *health = NULL;
  Generia__Cdn__V1__GetCDNConfigRequest config_request
      = GENERIA__CDN__V1__GET_CDNCONFIG_REQUEST__INIT;
  Generia__Common__V1__HealthCheckRequest health_request
      = GENERIA__COMMON__V1__HEALTH_CHECK_REQUEST__INIT;
  gn_rpc_status status;
  int64_t before = now_s ();
  g_auto (reply) r = { 0 };

  request.storage_keys = keys;
  request.n_storage_keys = 2;
  g_assert_cmpint (call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpuint (response->n_urls, ==, 2);
  for (size_t i = 0; i < 2; i++) {
    Generia__Cdn__V1__SignedURL *url = response->urls[i];
    /* A path: the gateway puts the base URL in front. */
    g_autofree char *prefix = g_strdup_printf ("/%s?expires=", keys[i]);
    int64_t expires = url->expires_at_us / G_USEC_PER_SEC;

    g_assert_cmpstr (url->storage_key, ==, keys[i]);
    g_assert_true (g_str_has_prefix (url->url, prefix));
    /* The default lifetime (an hour), rounded up by at most an eighth. */
    g_assert_cmpint (expires, >=, before + 3600);
    g_assert_cmpint (expires, <=, now_s () + 3600 + 450);
    /* The URL works as it is. */
    fetch (f, &r, "GET", url->url, NULL);
    g_assert_cmpuint (status_of (&r), ==, 200);
    assert_body (&r, bytes, 0, 1000);
  }

  /* A chosen lifetime. */
  request.ttl_seconds = 60;
  g_assert_cmpint (call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpint (response->urls[0]->expires_at_us / G_USEC_PER_SEC, <=, now_s () + 60 + 7);

  /* Refusals. */
  request.ttl_seconds = -5;
  g_assert_cmpint (call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status),
                   ==, GRPC_STATUS_INVALID_ARGUMENT);
  g_assert_cmpstr (status.reason, ==, "invalid_ttl");
  request.ttl_seconds = 365 * 24 * 3600;
  g_assert_cmpint (call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status),
                   ==, GRPC_STATUS_INVALID_ARGUMENT);
  request.ttl_seconds = 0;
  {
    char *bad[] = { first, "media/../etc/passwd" };

    request.storage_keys = bad;
    g_assert_cmpint (
        call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status), ==,
        GRPC_STATUS_INVALID_ARGUMENT);
    g_assert_cmpstr (status.reason, ==, "invalid_storage_key");
  }
  {
    char **many = g_new (char *, 1001);

    for (size_t i = 0; i < 1001; i++)
      many[i] = first;
    request.storage_keys = many;
    request.n_storage_keys = 1001;
    g_assert_cmpint (
        call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status), ==,
        GRPC_STATUS_INVALID_ARGUMENT);
    g_assert_cmpstr (status.reason, ==, "too_many_keys");
    /* The limit itself is fine: a feed page of 1000 media in one call. */
    request.n_storage_keys = 1000;
    g_assert_cmpint (
        call (f, "GetSignedURL", &request.base, (ProtobufCMessage **)&response, &status), ==,
        GRPC_STATUS_OK);
    g_assert_cmpuint (response->n_urls, ==, 1000);
    g_free (many);
  }

  g_assert_cmpint (
      call (f, "GetCDNConfig", &config_request.base, (ProtobufCMessage **)&config, &status), ==,
      GRPC_STATUS_OK);
  g_assert_cmpint (config->default_ttl_seconds, ==, 3600);
  g_assert_cmpint (config->max_file_bytes, ==, 50 * MIB);

  g_assert_cmpint (
      call (f, "HealthCheck", &health_request.base, (ProtobufCMessage **)&health, &status), ==,
      GRPC_STATUS_OK);
  g_assert_cmpint (health->status, ==,
                   GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  g_assert_cmpstr (health->service, ==, "cdn");
}

/* ---- serving ---- */

static void
test_get (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (200 * 1024);
  g_autofree char *hash = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, bytes);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  int64_t expires = now_s () + 600;
  g_autofree char *path = signed_path (f, key, expires);
  g_autofree char *etag = g_strdup_printf ("\"%s\"", hash);
  g_autoptr (GDateTime) modified = NULL;
  gn_storage_stat st;
  g_auto (reply) r = { 0 };

  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  assert_body (&r, bytes, 0, 200 * 1024);
  g_assert_cmpstr (header (&r, "Content-Type"), ==, "image/jpeg");
  g_assert_cmpstr (header (&r, "Content-Length"), ==, "204800");
  g_assert_cmpstr (header (&r, "ETag"), ==, etag);
  g_assert_cmpstr (header (&r, "Cache-Control"), ==, "public, max-age=31536000, immutable");
  g_assert_cmpstr (header (&r, "Accept-Ranges"), ==, "bytes");
  g_assert_cmpstr (header (&r, "X-Content-Type-Options"), ==, "nosniff");
  g_assert_nonnull (header (&r, "X-Request-Id"));
  /* Last-Modified is the object's time. */
  g_assert_true (gn_storage_stat_object (f->storage, key, &st, NULL));
  modified = soup_date_time_new_from_http_string (header (&r, "Last-Modified"));
  g_assert_nonnull (modified);
  g_assert_cmpint (g_date_time_to_unix (modified), ==, st.mtime_us / G_USEC_PER_SEC);

  /* The other types, and names without a content hash: an ETag from size and time, and a
   * cache lifetime no longer than the signature's. */
  {
    static const char *const types[][2] = {
      { "png", "image/png" },
      { "webp", "image/webp" },
      { "gif", "image/gif" },
      { "mp4", "video/mp4" },
      { "webm", "video/webm" },
      { "jpeg", "image/jpeg" },
      { "bin", "application/octet-stream" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS (types); i++) {
      g_autofree char *plain = put_object (f, NULL, types[i][0], bytes);
      g_autofree char *plain_path = signed_path (f, plain, expires);
      int max_age;

      fetch (f, &r, "GET", plain_path, NULL);
      g_assert_cmpuint (status_of (&r), ==, 200);
      g_assert_cmpstr (header (&r, "Content-Type"), ==, types[i][1]);
      g_assert_true (g_str_has_prefix (header (&r, "ETag"), "\"32000-"));
      g_assert_cmpint (sscanf (header (&r, "Cache-Control"), "public, max-age=%d", &max_age), ==,
                       1);
      g_assert_cmpint (max_age, <=, expires - now_s () + 1);
      g_assert_cmpint (max_age, >=, expires - now_s () - 5);
    }
  }
}

static void
test_head (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (12345);
  g_autofree char *key = put_object (f, "original", "webp", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  g_auto (reply) r = { 0 };
  g_autofree char *etag = NULL;

  fetch (f, &r, "GET", path, NULL);
  etag = g_strdup (header (&r, "ETag"));
  fetch (f, &r, "HEAD", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  g_assert_cmpuint (g_bytes_get_size (r.body), ==, 0);
  g_assert_cmpstr (header (&r, "Content-Length"), ==, "12345");
  g_assert_cmpstr (header (&r, "Content-Type"), ==, "image/webp");
  g_assert_cmpstr (header (&r, "ETag"), ==, etag);
  g_assert_nonnull (header (&r, "Last-Modified"));
  /* Range is for GET only. */
  fetch (f, &r, "HEAD", path, "Range", "bytes=0-9", NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  g_assert_cmpstr (header (&r, "Content-Length"), ==, "12345");
}

static void
test_conditional (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (5000);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  g_autofree char *hash = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, bytes);
  g_autofree char *etag = g_strdup_printf ("\"%s\"", hash);
  g_autofree char *weak = g_strdup_printf ("W/%s", etag);
  g_autofree char *list = g_strdup_printf ("\"other\", W/\"x\" ,%s", etag);
  g_autofree char *last_modified = NULL;
  g_autofree char *rfc850 = NULL;
  g_autofree char *asctime_form = NULL;
  g_autofree char *cookie_form = NULL;
  g_autoptr (GDateTime) modified = NULL;
  g_autoptr (GDateTime) earlier = NULL;
  g_autofree char *earlier_text = NULL;
  g_auto (reply) r = { 0 };

  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  last_modified = g_strdup (header (&r, "Last-Modified"));

  const char *const matching[] = { etag, weak, list, "*" };
  for (size_t i = 0; i < G_N_ELEMENTS (matching); i++) {
    fetch (f, &r, "GET", path, "If-None-Match", matching[i], NULL);
    g_assert_cmpuint (status_of (&r), ==, 304);
    g_assert_cmpuint (g_bytes_get_size (r.body), ==, 0);
    g_assert_cmpstr (header (&r, "ETag"), ==, etag);
    g_assert_cmpstr (header (&r, "Cache-Control"), ==, "public, max-age=31536000, immutable");
    g_assert_cmpstr (header (&r, "Last-Modified"), ==, last_modified);
  }
  fetch (f, &r, "HEAD", path, "If-None-Match", etag, NULL);
  g_assert_cmpuint (status_of (&r), ==, 304);
  fetch (f, &r, "GET", path, "If-None-Match", "\"something-else\", W/\"abc\"", NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  assert_body (&r, bytes, 0, 5000);

  /* If-Modified-Since in each of the three date forms. */
  modified = soup_date_time_new_from_http_string (last_modified);
  {
    static const char *const days[]
        = { "", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday" };
    static const char *const months[] = { "",    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

    rfc850 = g_strdup_printf (
        "%s, %02d-%s-%02d %02d:%02d:%02d GMT", days[g_date_time_get_day_of_week (modified)],
        g_date_time_get_day_of_month (modified), months[g_date_time_get_month (modified)],
        g_date_time_get_year (modified) % 100, g_date_time_get_hour (modified),
        g_date_time_get_minute (modified), g_date_time_get_second (modified));
    asctime_form = g_strdup_printf (
        "%.3s %s %2d %02d:%02d:%02d %d", days[g_date_time_get_day_of_week (modified)],
        months[g_date_time_get_month (modified)], g_date_time_get_day_of_month (modified),
        g_date_time_get_hour (modified), g_date_time_get_minute (modified),
        g_date_time_get_second (modified), g_date_time_get_year (modified));
  }
  cookie_form = soup_date_time_to_string (modified, SOUP_DATE_COOKIE);
  const char *const not_older[] = { last_modified, rfc850, asctime_form, cookie_form };
  for (size_t i = 0; i < G_N_ELEMENTS (not_older); i++) {
    fetch (f, &r, "GET", path, "If-Modified-Since", not_older[i], NULL);
    g_assert_cmpuint (status_of (&r), ==, 304);
  }
  earlier = g_date_time_add_seconds (modified, -1);
  earlier_text = soup_date_time_to_string (earlier, SOUP_DATE_HTTP);
  fetch (f, &r, "GET", path, "If-Modified-Since", earlier_text, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  fetch (f, &r, "GET", path, "If-Modified-Since", "not a date", NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  /* If-None-Match decides when both are present. */
  fetch (f, &r, "GET", path, "If-None-Match", "\"other\"", "If-Modified-Since", last_modified,
         NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
}

static void
assert_range (fixture *f, const char *path, GBytes *bytes, const char *range, size_t first,
              size_t last)
{
  size_t size = g_bytes_get_size (bytes);
  g_autofree char *content_range = g_strdup_printf ("bytes %zu-%zu/%zu", first, last, size);
  g_autofree char *length = g_strdup_printf ("%zu", last - first + 1);
  g_auto (reply) r = { 0 };

  fetch (f, &r, "GET", path, "Range", range, NULL);
  g_assert_cmpuint (status_of (&r), ==, 206);
  g_assert_cmpstr (header (&r, "Content-Range"), ==, content_range);
  g_assert_cmpstr (header (&r, "Content-Length"), ==, length);
  assert_body (&r, bytes, first, last - first + 1);
}

static void
test_range (fixture *f, gconstpointer data)
{
  size_t size = 5 * MIB + 123;
  g_autoptr (GBytes) bytes = random_bytes (size);
  g_autofree char *key = put_object (f, "original", "mp4", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  g_autofree char *from_end = g_strdup_printf ("bytes=%zu-", size - 1000);
  g_autofree char *past_end = g_strdup_printf ("bytes=%zu-%zu", size - 10, size + 1000);
  g_autofree char *at_end = g_strdup_printf ("bytes=%zu-", size);
  g_autofree char *unsatisfiable = g_strdup_printf ("bytes */%zu", size);
  g_auto (reply) r = { 0 };
  g_autofree char *etag = NULL;

  /* The whole 5 MiB, through sendfile, byte for byte. */
  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  g_assert_cmpstr (header (&r, "Content-Type"), ==, "video/mp4");
  assert_body (&r, bytes, 0, size);
  etag = g_strdup (header (&r, "ETag"));

  assert_range (f, path, bytes, "bytes=0-99", 0, 99);
  assert_range (f, path, bytes, "bytes=3000000-3000099", 3000000, 3000099);
  assert_range (f, path, bytes, "bytes=-100", size - 100, size - 1);
  assert_range (f, path, bytes, from_end, size - 1000, size - 1);
  assert_range (f, path, bytes, past_end, size - 10, size - 1);
  assert_range (f, path, bytes, "bytes=-99999999", 0, size - 1);
  assert_range (f, path, bytes, "bytes=7-7", 7, 7);

  /* Past the end: 416 and the size. */
  const char *const refused[] = { at_end, "bytes=99999999-", "bytes=-0" };
  for (size_t i = 0; i < G_N_ELEMENTS (refused); i++) {
    fetch (f, &r, "GET", path, "Range", refused[i], NULL);
    g_assert_cmpuint (status_of (&r), ==, 416);
    g_assert_cmpstr (header (&r, "Content-Range"), ==, unsatisfiable);
  }

  /* Several ranges, or a Range that does not parse: the whole file. */
  const char *const whole[]
      = { "bytes=0-9,20-29", "bytes=abc", "bytes=9-3", "items=0-9", "bytes=0x10-20" };
  for (size_t i = 0; i < G_N_ELEMENTS (whole); i++) {
    fetch (f, &r, "GET", path, "Range", whole[i], NULL);
    g_assert_cmpuint (status_of (&r), ==, 200);
    g_assert_cmpuint (g_bytes_get_size (r.body), ==, size);
  }

  /* If-Range: the range for the version named, the whole file for another. */
  fetch (f, &r, "GET", path, "Range", "bytes=0-99", "If-Range", etag, NULL);
  g_assert_cmpuint (status_of (&r), ==, 206);
  fetch (f, &r, "GET", path, "Range", "bytes=0-99", "If-Range", "\"stale\"", NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  g_assert_cmpuint (g_bytes_get_size (r.body), ==, size);
}

static void
test_refusals (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (100);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  int64_t expires = now_s () + 600;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];
  g_autofree char *expired = signed_path (f, key, now_s () - 1);
  g_autofree char *unsigned_path = g_strdup_printf ("/%s", key);
  g_autofree char *no_expiry = NULL;
  g_autofree char *later = NULL;
  g_autofree char *tampered = NULL;
  g_autofree char *other_key = NULL;
  g_autofree char *missing = NULL;
  g_autofree char *bad_key = NULL;
  g_auto (reply) r = { 0 };

  gn_cdn_sign (&f->key, key, expires, signature);
  no_expiry = g_strdup_printf ("/%s?signature=%s", key, signature);
  later = g_strdup_printf ("/%s?expires=%" G_GINT64_FORMAT "&signature=%s", key, expires + 1,
                           signature);
  signature[5] = signature[5] == 'A' ? 'B' : 'A';
  tampered
      = g_strdup_printf ("/%s?expires=%" G_GINT64_FORMAT "&signature=%s", key, expires, signature);
  gn_cdn_sign (&f->key, key, expires, signature);
  /* A valid signature of one object does not open another. */
  {
    g_autofree char *dir = g_path_get_dirname (key);

    other_key = g_strdup_printf ("/%s/other.jpg?expires=%" G_GINT64_FORMAT "&signature=%s", dir,
                                 expires, signature);
  }

  const char *const forged[] = { unsigned_path, no_expiry, later, tampered, other_key };
  for (size_t i = 0; i < G_N_ELEMENTS (forged); i++) {
    fetch (f, &r, "GET", forged[i], "Accept", "application/problem+json", NULL);
    g_assert_cmpuint (status_of (&r), ==, 403);
    g_assert_nonnull (g_strstr_len (g_bytes_get_data (r.body, NULL),
                                    (gssize)g_bytes_get_size (r.body),
                                    "\"code\":\"invalid_signature\""));
  }
  fetch (f, &r, "GET", expired, "Accept", "application/problem+json", NULL);
  g_assert_cmpuint (status_of (&r), ==, 403);
  g_assert_nonnull (g_strstr_len (g_bytes_get_data (r.body, NULL),
                                  (gssize)g_bytes_get_size (r.body), "\"code\":\"url_expired\""));
  fetch (f, &r, "HEAD", expired, NULL);
  g_assert_cmpuint (status_of (&r), ==, 403);

  /* A correctly signed key with no object: 404. */
  {
    g_autofree char *uuid = g_uuid_string_random ();
    g_autofree char *absent = g_strdup_printf ("media/%s/medium.jpg", uuid);

    missing = signed_path (f, absent, expires);
    fetch (f, &r, "GET", missing, NULL);
    g_assert_cmpuint (status_of (&r), ==, 404);
  }
  /* Not a storage key (upper case, an encoded slash, a dot segment), or not a media path. */
  const char *const not_keys[] = {
    "/media/ABC/x.jpg?expires=1&signature=x",
    "/media/a%2F..%2F..%2Fsecrets/cdn.key?expires=1&signature=x",
    "/media/a/..?expires=1&signature=x",
    "/media/a/b/c.jpg",
    "/secrets/cdn.key",
    "/media/a",
  };
  for (size_t i = 0; i < G_N_ELEMENTS (not_keys); i++) {
    fetch (f, &r, "GET", not_keys[i], NULL);
    g_assert_cmpuint (status_of (&r), ==, 404);
  }
  bad_key
      = g_strdup_printf ("/%s?expires=%" G_GINT64_FORMAT "&signature=%s", key, expires, signature);
  fetch (f, &r, "POST", bad_key, NULL);
  g_assert_cmpuint (status_of (&r), ==, 405);
  /* And the right URL still works. */
  fetch (f, &r, "GET", bad_key, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
}

static void
test_cors (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (100);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  g_auto (reply) r = { 0 };

  fetch (f, &r, "OPTIONS", path, "Origin", "https://web.example", "Access-Control-Request-Method",
         "GET", "Access-Control-Request-Headers", "range", NULL);
  g_assert_cmpuint (status_of (&r), ==, 204);
  g_assert_cmpstr (header (&r, "Access-Control-Allow-Origin"), ==, "https://web.example");
  g_assert_nonnull (strstr (header (&r, "Access-Control-Allow-Methods"), "GET"));
  g_assert_cmpstr (header (&r, "Access-Control-Allow-Headers"), ==, "range");

  fetch (f, &r, "GET", path, "Origin", "https://web.example", NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  g_assert_cmpstr (header (&r, "Access-Control-Allow-Origin"), ==, "https://web.example");
  g_assert_cmpstr (header (&r, "Vary"), ==, "Origin");
}

/* ---- S3: served from local copies ---- */

static gboolean
copy_exists (fixture *f, const char *key)
{
  g_autofree char *path = g_build_filename (f->config->cdn_cache_dir, key, NULL);

  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

static void
test_s3_served (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (300 * 1024);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  char *keys[] = { key, "media/x/never-cached.jpg" };
  Generia__Cdn__V1__InvalidateCacheRequest request
      = GENERIA__CDN__V1__INVALIDATE_CACHE_REQUEST__INIT;
  Generia__Cdn__V1__InvalidateCacheResponse *response = NULL;
  gn_rpc_status status;
  g_auto (reply) r = { 0 };

  g_assert_false (copy_exists (f, key));
  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  assert_body (&r, bytes, 0, 300 * 1024);
  g_assert_nonnull (header (&r, "Last-Modified"));
  g_assert_true (copy_exists (f, key));
  assert_range (f, path, bytes, "bytes=-100", 300 * 1024 - 100, 300 * 1024 - 1);

  /* A missing object is a 404, not a storage failure. */
  {
    g_autofree char *absent = signed_path (f, "media/x/absent.jpg", now_s () + 600);

    fetch (f, &r, "GET", absent, NULL);
    g_assert_cmpuint (status_of (&r), ==, 404);
  }

  request.storage_keys = keys;
  request.n_storage_keys = 2;
  g_assert_cmpint (
      call (f, "InvalidateCache", &request.base, (ProtobufCMessage **)&response, &status), ==,
      GRPC_STATUS_OK);
  g_assert_cmpint (response->invalidated, ==, 1);
  g_assert_false (copy_exists (f, key));
  g_assert_cmpint (
      call (f, "InvalidateCache", &request.base, (ProtobufCMessage **)&response, &status), ==,
      GRPC_STATUS_OK);
  g_assert_cmpint (response->invalidated, ==, 0);

  /* After invalidation the object is fetched again. */
  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  assert_body (&r, bytes, 0, 300 * 1024);
}

typedef struct {
  gn_cdn_cache *cache;
  const char *key;
  GBytes *expected;
} open_job;

static gpointer
open_and_check (gpointer data)
{
  open_job *job = data;
  g_autoptr (GError) error = NULL;
  int fd = gn_cdn_cache_open (job->cache, job->key, &error);
  g_autofree guint8 *read_back = g_malloc (g_bytes_get_size (job->expected));

  g_assert_no_error (error);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (read (fd, read_back, g_bytes_get_size (job->expected)), ==,
                   (gssize)g_bytes_get_size (job->expected));
  g_assert_cmpmem (read_back, g_bytes_get_size (job->expected),
                   g_bytes_get_data (job->expected, NULL), g_bytes_get_size (job->expected));
  close (fd);
  return NULL;
}

static gn_cdn_cache *
new_cache (fixture *f, const char *dir, uint64_t max_bytes)
{
  g_autoptr (GError) error = NULL;
  gn_cdn_cache *cache = gn_cdn_cache_new (f->storage, dir, max_bytes, &error);

  g_assert_no_error (error);
  return cache;
}

static void
test_s3_cache (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (f->dir, "own-cache", NULL);
  GBytes *bytes[3];
  char *keys[3];
  GThread *threads[8];
  gn_cdn_cache *cache = new_cache (f, dir, 450 * 1024);
  int fd;

  for (int i = 0; i < 3; i++) {
    bytes[i] = random_bytes (200 * 1024);
    keys[i] = put_object (f, "medium", "jpg", bytes[i]);
  }

  /* Eight requests miss at once: one fetch. */
  open_job job = { cache, keys[0], bytes[0] };
  for (size_t i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("open", open_and_check, &job);
  for (size_t i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  g_assert_cmpuint (gn_cdn_cache_fetches (cache), ==, 1);
  g_assert_cmpuint (gn_cdn_cache_count (cache), ==, 1);

  /* Least recently used goes first: 0 and 1 in, 0 used again, 2 in -> 1 evicted. */
  job.key = keys[1];
  job.expected = bytes[1];
  open_and_check (&job);
  job.key = keys[0];
  job.expected = bytes[0];
  open_and_check (&job);
  job.key = keys[2];
  job.expected = bytes[2];
  open_and_check (&job);
  g_assert_cmpuint (gn_cdn_cache_fetches (cache), ==, 3);
  g_assert_cmpuint (gn_cdn_cache_count (cache), ==, 2);
  g_assert_cmpuint (gn_cdn_cache_bytes (cache), ==, 400 * 1024);
  {
    g_autofree char *evicted = g_build_filename (dir, keys[1], NULL);
    g_autofree char *evicted_dir = g_path_get_dirname (evicted);
    g_autofree char *kept = g_build_filename (dir, keys[0], NULL);

    g_assert_false (g_file_test (evicted, G_FILE_TEST_EXISTS));
    g_assert_false (g_file_test (evicted_dir, G_FILE_TEST_EXISTS));
    g_assert_true (g_file_test (kept, G_FILE_TEST_IS_REGULAR));
  }

  /* A missing object. */
  fd = gn_cdn_cache_open (cache, "media/x/absent.jpg", &error);
  g_assert_cmpint (fd, ==, -1);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_cmpint (gn_cdn_cache_open (cache, "../escape", &error), ==, -1);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* A restart keeps the copies (and drops a half-finished download). */
  gn_cdn_cache_free (cache);
  {
    g_autofree char *leftover = g_build_filename (dir, "INCOMING", "partial", NULL);

    g_assert_true (g_file_set_contents (leftover, "half", 4, NULL));
    cache = new_cache (f, dir, 450 * 1024);
    g_assert_false (g_file_test (leftover, G_FILE_TEST_EXISTS));
  }
  g_assert_cmpuint (gn_cdn_cache_count (cache), ==, 2);
  g_assert_cmpuint (gn_cdn_cache_bytes (cache), ==, 400 * 1024);
  job.cache = cache;
  open_and_check (&job);
  g_assert_cmpuint (gn_cdn_cache_fetches (cache), ==, 0);

  /* A smaller budget at start evicts down to it. */
  gn_cdn_cache_free (cache);
  cache = new_cache (f, dir, 250 * 1024);
  g_assert_cmpuint (gn_cdn_cache_count (cache), ==, 1);

  g_assert_true (gn_cdn_cache_invalidate (cache, keys[2]));
  g_assert_false (gn_cdn_cache_invalidate (cache, keys[2]));
  g_assert_cmpuint (gn_cdn_cache_count (cache), ==, 0);
  gn_cdn_cache_free (cache);

  for (int i = 0; i < 3; i++) {
    g_bytes_unref (bytes[i]);
    g_free (keys[i]);
  }
}

static void
test_s3_down (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (100);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  Generia__Common__V1__HealthCheckRequest request = GENERIA__COMMON__V1__HEALTH_CHECK_REQUEST__INIT;
  Generia__Common__V1__HealthCheckResponse *health = NULL;
  gn_rpc_status status;
  g_auto (reply) r = { 0 };

  /* The S3 server goes away (the last S3 case: nothing needs it after this one). */
  s3_server_stop ();
  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 503);
  g_assert_cmpint (call (f, "HealthCheck", &request.base, (ProtobufCMessage **)&health, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpint (health->status, ==,
                   GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  g_assert_nonnull (strstr (health->detail, "storage"));
}

/* ---- on another server's port (the gateway's) ---- */

/* The module's routes on a router of another HTTP server, as the gateway of a node mounts
 * them: the same answers as on the CDN's own listener. */
static void
test_on_gateway_port (fixture *f, gconstpointer data)
{
  g_autoptr (GBytes) bytes = random_bytes (5000);
  g_autofree char *key = put_object (f, "medium", "jpg", bytes);
  g_autofree char *path = signed_path (f, key, now_s () + 600);
  g_autofree char *expired = signed_path (f, key, now_s () - 1);
  g_autoptr (GError) error = NULL;
  gn_router *router = gn_router_new ();
  gn_http_server_options options
      = { .name = "gateway", .address = "127.0.0.1", .port = 0, .threads = 2, .router = router };
  gn_http_server *server;
  g_auto (reply) r = { 0 };

  gn_cdn_module.add_http_routes (&f->service, router);
  server = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  g_free (f->base);
  f->base = g_strdup_printf ("http://127.0.0.1:%d", gn_http_server_port (server));

  fetch (f, &r, "GET", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  assert_body (&r, bytes, 0, 5000);
  g_assert_cmpstr (header (&r, "Content-Type"), ==, "image/jpeg");
  fetch (f, &r, "GET", path, "Range", "bytes=100-199", NULL);
  g_assert_cmpuint (status_of (&r), ==, 206);
  assert_body (&r, bytes, 100, 100);
  fetch (f, &r, "HEAD", path, NULL);
  g_assert_cmpuint (status_of (&r), ==, 200);
  fetch (f, &r, "GET", expired, NULL);
  g_assert_cmpuint (status_of (&r), ==, 403);

  gn_http_server_stop (server);
  gn_router_free (router);
}

/* Without cdn.port the module opens no port of its own and is still healthy (the gateway of
 * its process serves the media); without the gateway as well, nothing would serve them, and
 * init says so. */
static void
test_no_listener (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-cdn-XXXXXX", &error);
  gn_config *config = gn_config_new_default ();
  gn_service_env env = { .config = config };
  gn_rpc_service service = { 0 };
  gn_rpc_server *rpc;
  g_autofree char *target = g_strdup_printf ("unix:%s/rpc.sock", dir);
  gn_arena *arena = gn_arena_new ();
  Generia__Cdn__V1__GetCDNConfigRequest config_request
      = GENERIA__CDN__V1__GET_CDNCONFIG_REQUEST__INIT;
  Generia__Common__V1__HealthCheckRequest health_request
      = GENERIA__COMMON__V1__HEALTH_CHECK_REQUEST__INIT;
  Generia__Cdn__V1__CDNConfig *cdn_config = NULL;
  Generia__Common__V1__HealthCheckResponse *health = NULL;
  gn_rpc_status status;

  gn_config_set_data_dir (config, dir);
  g_assert_true (gn_config_set (config, "cdn.public_url", "https://media.example/", &error));
  g_assert_true (gn_cdn_module.init (&env, &service, &error));
  g_assert_no_error (error);
  rpc = gn_rpc_server_new (NULL);
  g_assert_true (gn_rpc_server_add_service (rpc, &service, &error));
  g_assert_true (gn_rpc_server_listen (rpc, target, NULL, &error));
  g_assert_true (gn_rpc_server_start (rpc, &error));
  g_assert_no_error (error);
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (target), CDN_SERVICE, "GetCDNConfig",
                                 &config_request.base, (ProtobufCMessage **)&cdn_config, arena,
                                 NULL, &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpint (cdn_config->http_port, ==, 0);
  g_assert_cmpstr (cdn_config->public_base_url, ==, "https://media.example/");
  g_assert_cmpint (gn_rpc_unary (gn_rpc_client_get (target), CDN_SERVICE, "HealthCheck",
                                 &health_request.base, (ProtobufCMessage **)&health, arena, NULL,
                                 &status),
                   ==, GRPC_STATUS_OK);
  g_assert_cmpint (health->status, ==,
                   GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  gn_rpc_server_shutdown (rpc, 1000);
  gn_rpc_server_free (rpc);
  gn_cdn_module.fini (&service);

  g_assert_true (gn_config_set_services (config, "cdn", &error));
  memset (&service, 0, sizeof service);
  g_assert_false (gn_cdn_module.init (&env, &service, &error));
  g_assert_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE);
  g_assert_nonnull (strstr (error->message, "cdn.port"));

  gn_arena_free (arena);
  gn_config_free (config);
  remove_tree (dir);
}

int
main (int argc, char **argv)
{
  int result;

  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);
  s3_server_start ();
  g_test_add ("/cdn/grpc", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_grpc,
              fixture_teardown);
  g_test_add ("/cdn/get", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_get,
              fixture_teardown);
  g_test_add ("/cdn/head", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_head,
              fixture_teardown);
  g_test_add ("/cdn/conditional", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_conditional,
              fixture_teardown);
  g_test_add ("/cdn/range", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_range,
              fixture_teardown);
  g_test_add ("/cdn/refusals", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_refusals,
              fixture_teardown);
  g_test_add ("/cdn/cors", fixture, GINT_TO_POINTER (FALSE), fixture_setup, test_cors,
              fixture_teardown);
  g_test_add ("/cdn/gateway-port", fixture, GINT_TO_POINTER (FALSE), fixture_setup,
              test_on_gateway_port, fixture_teardown);
  g_test_add_func ("/cdn/no-listener", test_no_listener);
  g_test_add ("/cdn/s3/served", fixture, GINT_TO_POINTER (TRUE), fixture_setup, test_s3_served,
              fixture_teardown);
  g_test_add ("/cdn/s3/cache", fixture, GINT_TO_POINTER (TRUE), fixture_setup, test_s3_cache,
              fixture_teardown);
  g_test_add ("/cdn/s3/down", fixture, GINT_TO_POINTER (TRUE), fixture_setup, test_s3_down,
              fixture_teardown);
  result = g_test_run ();
  s3_server_stop ();
  gn_rpc_clients_shutdown ();
  return result;
}
