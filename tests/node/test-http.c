/* test-http.c - the HTTP layer on a real libmicrohttpd server (127.0.0.1, port 0), driven by a
 * real HTTP client (libsoup's synchronous API). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "http.h"

#define MAX_BODY 1024
#define SPOOL_THRESHOLD (64 * 1024)
#define UPLOAD_MAX (4 * 1024 * 1024)

/* How a fixture's server runs its handlers: inline on the event threads, or on the worker pool
 * (blocking_handlers); every fixture test runs both ways. */
typedef struct {
  int connection_timeout_s;
  gboolean pool;
} server_mode;

static const server_mode inline_mode = { 0, FALSE };
static const server_mode pool_mode = { 0, TRUE };

typedef struct {
  gn_router *router;
  gn_http_server *server;
  char *spool_dir;
  char *base;
  SoupSession *session;
} fixture;

/* What the handlers saw, for the test thread to check (handlers run on server threads). */
static GMutex seen_lock;
static char *seen_spool_path;
static gboolean seen_spool_existed;
static gsize seen_spool_size;
static char *error_message; /* answered by /error */
static int reports_seen;
static gn_http_report last_report;
static char last_report_route[64];

static void
handle_echo (gn_http_request *request, void *data)
{
  if (request->body == NULL) {
    gn_http_respond_json (request, 200, "null", 4);
    return;
  }
  gn_http_respond_json (request, 200, request->body, request->body_len);
}

static void
handle_whoami (gn_http_request *request, void *data)
{
  char *body = gn_arena_printf (request->arena, "{\"user\":%s}",
                                gn_http_json_quote (request->arena, request->user_id));
  gn_http_respond_json (request, 200, body, strlen (body));
}

static void
handle_item (gn_http_request *request, void *data)
{
  gn_arena *arena = request->arena;
  char *body = gn_arena_printf (arena, "{\"id\":%s,\"q\":%s}",
                                gn_http_json_quote (arena, gn_http_param (request, "id")),
                                gn_http_json_quote (arena, gn_http_query (request, "q")));
  gn_http_add_header (request, "X-Item", "yes");
  gn_http_respond_json (request, 200, body, strlen (body));
}

static void
handle_error (gn_http_request *request, void *data)
{
  gn_http_respond_error (request, 409, "name_taken", "%s", error_message);
}

static void
handle_nothing (gn_http_request *request, void *data)
{
}

static void
handle_upload (gn_http_request *request, void *data)
{
  GStatBuf st;
  char *body;

  g_mutex_lock (&seen_lock);
  g_free (seen_spool_path);
  seen_spool_path = g_strdup (request->spool_path);
  seen_spool_existed = request->spool_path != NULL && g_stat (request->spool_path, &st) == 0
                       && (st.st_mode & 0777) == 0600;
  seen_spool_size = seen_spool_existed ? (gsize)st.st_size : 0;
  g_mutex_unlock (&seen_lock);

  body = gn_arena_printf (request->arena, "{\"spooled\":%s,\"size\":%zu,\"in_memory\":%zu}",
                          request->spool_path ? "true" : "false", request->body_len,
                          request->body ? strlen (request->body) : 0);
  gn_http_respond_json (request, 201, body, strlen (body));
}

/* Reports what the multipart parsing produced: the file part (spooled) and the other fields. */
static void
handle_form (gn_http_request *request, void *data)
{
  GStatBuf st;
  gboolean file_on_disk = request->spool_path != NULL && g_stat (request->spool_path, &st) == 0
                          && (gsize)st.st_size == request->body_len;
  g_autofree char *head = NULL;
  if (file_on_disk) {
    g_autofree char *contents = NULL;
    gsize len = 0;
    g_file_get_contents (request->spool_path, &contents, &len, NULL);
    head = g_strndup (contents, MIN (len, (gsize)16));
  }
  g_mutex_lock (&seen_lock);
  g_free (seen_spool_path);
  seen_spool_path = g_strdup (request->spool_path);
  g_mutex_unlock (&seen_lock);

  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "file_on_disk");
  json_builder_add_boolean_value (builder, file_on_disk);
  json_builder_set_member_name (builder, "size");
  json_builder_add_int_value (builder, (gint64)request->body_len);
  json_builder_set_member_name (builder, "head");
  json_builder_add_string_value (builder, head != NULL ? head : "");
  json_builder_set_member_name (builder, "filename");
  json_builder_add_string_value (builder, request->upload_filename ? request->upload_filename : "");
  json_builder_set_member_name (builder, "content_type");
  json_builder_add_string_value (builder,
                                 request->upload_content_type ? request->upload_content_type : "");
  json_builder_set_member_name (builder, "type");
  json_builder_add_string_value (builder, gn_http_form_field (request, "type") ?: "");
  json_builder_set_member_name (builder, "caption");
  json_builder_add_string_value (builder, gn_http_form_field (request, "caption") ?: "");
  json_builder_end_object (builder);
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  gsize len = 0;
  g_autofree char *text = json_generator_to_data (generator, &len);
  gn_http_respond_json (request, 201, text, len);
}

static void
handle_whereami (gn_http_request *request, void *data)
{
  gn_arena *arena = request->arena;
  char *body = gn_arena_printf (arena, "{\"base\":%s,\"ip\":%s}",
                                gn_http_json_quote (arena, gn_http_base_url (request)),
                                gn_http_json_quote (arena, request->client_ip));
  gn_http_respond_json (request, 200, body, strlen (body));
}

/* Admission refuses requests that carry "X-Deny" (a stand-in for a rate limit). */
static bool
admit (void *data, gn_http_request *request)
{
  if (gn_http_header (request, "X-Deny") == NULL)
    return true;
  gn_http_add_header (request, "Retry-After", "7");
  gn_http_respond_error (request, 429, "rate_limited", "Too many requests");
  return false;
}

/* The precheck of PUT /checked/{name} lets only ?key=open through. */
static bool
precheck_key (gn_http_request *request, void *data)
{
  const char *key = gn_http_query (request, "key");

  if (key != NULL && strcmp (key, "open") == 0) {
    const char *size = gn_http_query (request, "size");
    if (size != NULL)
      gn_http_set_body_limit (request, (size_t)g_ascii_strtoull (size, NULL, 10));
    return true;
  }
  gn_http_respond_error (request, 403, "invalid_signature", "Bad key");
  return false;
}

static bool
authenticate (void *data, const char *token, char user_id[64])
{
  if (strcmp (token, "good-token") != 0)
    return false;
  g_strlcpy (user_id, "user-42", 64);
  return true;
}

static void
observe (void *data, const gn_http_report *report)
{
  g_mutex_lock (&seen_lock);
  reports_seen++;
  last_report = *report;
  g_strlcpy (last_report_route, report->route, sizeof last_report_route);
  last_report.route = last_report_route;
  last_report.method = NULL;
  last_report.request_id = NULL;
  g_mutex_unlock (&seen_lock);
}

static void
fixture_setup (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gn_route *route;

  f->router = gn_router_new ();
  gn_router_add (f->router, "POST", "/echo", handle_echo, NULL, 0);
  gn_router_add (f->router, "GET", "/whoami", handle_whoami, NULL, GN_ROUTE_AUTH_REQUIRED);
  gn_router_add (f->router, "GET", "/maybe", handle_whoami, NULL, GN_ROUTE_AUTH_OPTIONAL);
  gn_router_add (f->router, "GET", "/items/{id}", handle_item, NULL, 0);
  gn_router_add (f->router, "GET", "/error", handle_error, NULL, 0);
  gn_router_add (f->router, "GET", "/nothing", handle_nothing, NULL, 0);
  route = gn_router_add (f->router, "POST", "/small", handle_echo, NULL, 0);
  route->max_body = 16;
  route
      = gn_router_add (f->router, "PUT", "/upload/{name}", handle_upload, NULL, GN_ROUTE_RAW_BODY);
  route->max_body = UPLOAD_MAX;
  route = gn_router_add (f->router, "POST", "/form", handle_form, NULL, GN_ROUTE_MULTIPART);
  route->max_body = UPLOAD_MAX;
  route
      = gn_router_add (f->router, "PUT", "/checked/{name}", handle_upload, NULL, GN_ROUTE_RAW_BODY);
  route->max_body = UPLOAD_MAX;
  route->precheck = precheck_key;
  gn_router_add (f->router, "GET", "/whereami", handle_whereami, NULL, 0);

  f->spool_dir = g_dir_make_tmp ("test-http-spool-XXXXXX", &error);
  g_assert_no_error (error);

  gn_http_server_options options = {
    .name = "test",
    .address = "127.0.0.1",
    .port = 0,
    .threads = 2,
    .max_body = MAX_BODY,
    .spool_threshold = SPOOL_THRESHOLD,
    .spool_dir = f->spool_dir,
    .cors_origins = "https://app.example, https://other.example",
    .router = f->router,
    .authenticate = authenticate,
    .observer = observe,
    .connection_timeout_s = ((const server_mode *)data)->connection_timeout_s,
    .blocking_handlers = ((const server_mode *)data)->pool,
    .workers = 2,
    .admit = admit,
  };
  f->server = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->server);
  g_assert_cmpint (gn_http_server_port (f->server), >, 0);
  f->base = g_strdup_printf ("http://127.0.0.1:%d", gn_http_server_port (f->server));
  f->session = soup_session_new ();
}

static gboolean
dir_is_empty (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);

  return dir != NULL && g_dir_read_name (dir) == NULL;
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  g_object_unref (f->session);
  gn_http_server_stop (f->server);
  gn_router_free (f->router);
  g_assert_true (dir_is_empty (f->spool_dir));
  g_rmdir (f->spool_dir);
  g_free (f->spool_dir);
  g_free (f->base);
  g_clear_pointer (&seen_spool_path, g_free);
}

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

static SoupMessage *
new_message (fixture *f, const char *method, const char *path)
{
  g_autofree char *uri = g_strconcat (f->base, path, NULL);
  SoupMessage *msg = soup_message_new (method, uri);

  g_assert_nonnull (msg);
  return msg;
}

static void
send_message (fixture *f, SoupMessage *msg, reply *r)
{
  g_autoptr (GError) error = NULL;

  /* libsoup opens a new connection for non-idempotent requests unless told they are safe to
   * send on a kept-alive one: say so, so that every test exercises keep-alive. */
  soup_message_add_flags (msg, SOUP_MESSAGE_IDEMPOTENT);
  r->msg = msg;
  r->body = soup_session_send_and_read (f->session, msg, NULL, &error);
  g_assert_no_error (error);
}

static int
status_of (reply *r)
{
  return (int)soup_message_get_status (r->msg);
}

static const char *
header_of (reply *r, const char *name)
{
  return soup_message_headers_get_one (soup_message_get_response_headers (r->msg), name);
}

/* The body as a string (replies here are small text). */
static char *
text_of (reply *r)
{
  gsize len;
  const char *data = g_bytes_get_data (r->body, &len);

  return g_strndup (data, len);
}

static JsonObject *
json_of (reply *r, JsonParser **parser)
{
  g_autoptr (GError) error = NULL;
  gsize len;
  const char *data = g_bytes_get_data (r->body, &len);

  *parser = json_parser_new ();
  json_parser_load_from_data (*parser, data, (gssize)len, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (*parser)));
  return json_node_get_object (json_parser_get_root (*parser));
}

static void
do_get (fixture *f, const char *path, reply *r)
{
  send_message (f, new_message (f, "GET", path), r);
}

static void
do_post (fixture *f, const char *path, const char *content_type, const char *body, reply *r)
{
  SoupMessage *msg = new_message (f, "POST", path);
  g_autoptr (GBytes) bytes = g_bytes_new (body, strlen (body));

  soup_message_set_request_body_from_bytes (msg, content_type, bytes);
  send_message (f, msg, r);
}

static void
test_json_echo (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autofree char *text = NULL;

  do_post (f, "/echo", "application/json", "{\"caption\":\"h\\u00e9llo\",\"n\":[1,2]}", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpstr (header_of (&r, "Content-Type"), ==, "application/json");
  text = text_of (&r);
  g_assert_cmpstr (text, ==, "{\"caption\":\"h\\u00e9llo\",\"n\":[1,2]}");

  /* Any JSON media type is fine, parameters included. */
  reply_clear (&r);
  do_post (f, "/echo", "application/merge-patch+json; charset=utf-8", "{}", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  reply_clear (&r);
  do_post (f, "/echo", "Application/JSON;charset=UTF-8", "[]", &r);
  g_assert_cmpint (status_of (&r), ==, 200);

  /* No body at all: the handler sees NULL. */
  reply_clear (&r);
  send_message (f, new_message (f, "POST", "/echo"), &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_free (text);
  text = text_of (&r);
  g_assert_cmpstr (text, ==, "null");
}

static void
test_params_query_and_headers (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autoptr (JsonParser) parser = NULL;
  JsonObject *object;

  do_get (f, "/items/a%20b%C3%A9?q=x+y%21&other=1", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpstr (header_of (&r, "X-Item"), ==, "yes");
  object = json_of (&r, &parser);
  g_assert_cmpstr (json_object_get_string_member (object, "id"), ==, "a b\xc3\xa9");
  g_assert_cmpstr (json_object_get_string_member (object, "q"), ==, "x y!");

  /* A parameter that decodes to a path separator does not match anything. */
  reply_clear (&r);
  do_get (f, "/items/a%2Fb", &r);
  g_assert_cmpint (status_of (&r), ==, 404);

  /* HEAD runs the GET route and gets no body. */
  reply_clear (&r);
  send_message (f, new_message (f, "HEAD", "/items/7"), &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpuint (g_bytes_get_size (r.body), ==, 0);
  g_assert_cmpstr (header_of (&r, "X-Item"), ==, "yes");
}

static void
test_not_found_and_method (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autofree char *text = NULL;

  do_get (f, "/nope", &r);
  g_assert_cmpint (status_of (&r), ==, 404);
  g_assert_cmpstr (header_of (&r, "Content-Type"), ==, "text/plain; charset=utf-8");
  text = text_of (&r);
  g_assert_cmpstr (text, ==, "Not found\n");

  reply_clear (&r);
  send_message (f, new_message (f, "DELETE", "/echo"), &r);
  g_assert_cmpint (status_of (&r), ==, 405);
  g_assert_cmpstr (header_of (&r, "Allow"), ==, "POST");

  reply_clear (&r);
  do_post (f, "/items/1", "application/json", "{}", &r);
  g_assert_cmpint (status_of (&r), ==, 405);
  g_assert_cmpstr (header_of (&r, "Allow"), ==, "GET, HEAD");

  /* A 404 with a body, on a kept-alive connection, still answers the next request. */
  reply_clear (&r);
  do_post (f, "/nope", "application/json", "{\"x\":1}", &r);
  g_assert_cmpint (status_of (&r), ==, 404);
  reply_clear (&r);
  do_get (f, "/items/1", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
}

static void
test_handler_answering_nothing (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autofree char *text = NULL;

  do_get (f, "/nothing", &r);
  g_assert_cmpint (status_of (&r), ==, 500);
  text = text_of (&r);
  g_assert_cmpstr (text, ==, "Internal error\n");
}

static void
test_too_large_by_length (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autoptr (JsonParser) parser = NULL;
  g_autofree char *big = g_strnfill (MAX_BODY + 1, 'a');
  g_autofree char *fits = g_strnfill (MAX_BODY, 'a');
  SoupMessage *msg;

  msg = new_message (f, "POST", "/echo");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                               "application/problem+json");
  {
    g_autoptr (GBytes) bytes = g_bytes_new (big, strlen (big));
    soup_message_set_request_body_from_bytes (msg, "application/json", bytes);
  }
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 413);
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "code"), ==,
                   "payload_too_large");

  /* The route's own limit applies, not the server's. */
  reply_clear (&r);
  do_post (f, "/small", "application/json", "\"0123456789abcdef\"", &r);
  g_assert_cmpint (status_of (&r), ==, 413);
  reply_clear (&r);
  do_post (f, "/small", "application/json", "\"0123456789abcd\"", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  /* Exactly at the limit is fine. */
  fits[0] = fits[MAX_BODY - 1] = '"';
  reply_clear (&r);
  do_post (f, "/echo", "application/json", fits, &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpuint (g_bytes_get_size (r.body), ==, MAX_BODY);
}

static void
test_too_large_chunked (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autofree char *text = NULL;
  gsize size = 3 * 1024 * 1024;
  char *big = g_malloc (size);
  g_autoptr (GInputStream) stream = NULL;
  SoupMessage *msg;

  memset (big, ' ', size);
  big[0] = '[';
  big[size - 1] = ']';
  stream = g_memory_input_stream_new_from_data (big, (gssize)size, g_free);

  /* Length -1: libsoup sends the body chunked, so only counting the bytes can catch it. */
  msg = new_message (f, "POST", "/echo");
  soup_message_set_request_body (msg, "application/json", stream, -1);
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 413);
  text = text_of (&r);
  g_assert_cmpstr (text, ==, "The request body is larger than the limit of 1024 bytes\n");

  /* The rest of the body was read and thrown away: the connection serves the next one. */
  {
    guint64 connection = soup_message_get_connection_id (r.msg);

    reply_clear (&r);
    do_get (f, "/items/1", &r);
    g_assert_cmpint (status_of (&r), ==, 200);
    g_assert_cmpuint (soup_message_get_connection_id (r.msg), ==, connection);
  }
}

static void
test_wrong_content_type (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autoptr (JsonParser) parser = NULL;
  SoupMessage *msg;

  do_post (f, "/echo", "text/plain", "{}", &r);
  g_assert_cmpint (status_of (&r), ==, 415);

  reply_clear (&r);
  do_post (f, "/echo", "application/jsonx", "{}", &r);
  g_assert_cmpint (status_of (&r), ==, 415);

  reply_clear (&r);
  msg = new_message (f, "POST", "/echo");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                               "application/problem+json");
  {
    g_autoptr (GBytes) bytes = g_bytes_new_static ("a=1", 3);
    soup_message_set_request_body_from_bytes (msg, "application/x-www-form-urlencoded", bytes);
  }
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 415);
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "code"), ==,
                   "unsupported_media_type");
}

static void
get_with_token (fixture *f, const char *path, const char *authorization, reply *r)
{
  SoupMessage *msg = new_message (f, "GET", path);

  if (authorization != NULL)
    soup_message_headers_append (soup_message_get_request_headers (msg), "Authorization",
                                 authorization);
  soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                               "application/problem+json");
  send_message (f, msg, r);
}

static void
test_auth (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autoptr (JsonParser) parser = NULL;

  get_with_token (f, "/whoami", NULL, &r);
  g_assert_cmpint (status_of (&r), ==, 401);
  g_assert_cmpstr (header_of (&r, "WWW-Authenticate"), ==, "Bearer");
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "code"), ==,
                   "unauthorized");

  reply_clear (&r);
  g_clear_object (&parser);
  get_with_token (f, "/whoami", "Bearer bad-token", &r);
  g_assert_cmpint (status_of (&r), ==, 401);
  g_assert_true (g_str_has_prefix (header_of (&r, "WWW-Authenticate"), "Bearer"));
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "code"), ==,
                   "invalid_token");

  reply_clear (&r);
  get_with_token (f, "/whoami", "Basic Zm9vOmJhcg==", &r);
  g_assert_cmpint (status_of (&r), ==, 401);

  reply_clear (&r);
  g_clear_object (&parser);
  get_with_token (f, "/whoami", "Bearer good-token", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "user"), ==, "user-42");

  /* The scheme is case-insensitive. */
  reply_clear (&r);
  get_with_token (f, "/whoami", "bearer good-token", &r);
  g_assert_cmpint (status_of (&r), ==, 200);

  /* Optional: anonymous is fine, a valid token is used, an invalid one is refused. */
  reply_clear (&r);
  g_clear_object (&parser);
  get_with_token (f, "/maybe", NULL, &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_true (json_object_get_null_member (json_of (&r, &parser), "user"));
  reply_clear (&r);
  g_clear_object (&parser);
  get_with_token (f, "/maybe", "Bearer good-token", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "user"), ==, "user-42");
  reply_clear (&r);
  g_clear_object (&parser);
  get_with_token (f, "/maybe", "Bearer expired", &r);
  g_assert_cmpint (status_of (&r), ==, 401);
  g_assert_cmpstr (json_object_get_string_member (json_of (&r, &parser), "code"), ==,
                   "invalid_token");

  /* Routes without auth flags ignore the header. */
  reply_clear (&r);
  get_with_token (f, "/items/1", "Bearer bad-token", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
}

static void
test_cors (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  SoupMessage *msg;
  SoupMessageHeaders *headers;

  msg = new_message (f, "OPTIONS", "/echo");
  headers = soup_message_get_request_headers (msg);
  soup_message_headers_append (headers, "Origin", "https://app.example");
  soup_message_headers_append (headers, "Access-Control-Request-Method", "POST");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 204);
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Origin"), ==, "https://app.example");
  g_assert_cmpstr (header_of (&r, "Vary"), ==, "Origin");
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Methods"), ==, "POST");
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Headers"), ==,
                   "Authorization, Content-Type, Accept, X-Request-Id");
  g_assert_cmpstr (header_of (&r, "Access-Control-Max-Age"), ==, "600");
  g_assert_nonnull (header_of (&r, "X-Request-Id"));

  /* Requested headers are echoed; the GET route lists HEAD too. */
  reply_clear (&r);
  msg = new_message (f, "OPTIONS", "/items/5");
  headers = soup_message_get_request_headers (msg);
  soup_message_headers_append (headers, "Origin", "https://other.example");
  soup_message_headers_append (headers, "Access-Control-Request-Method", "GET");
  soup_message_headers_append (headers, "Access-Control-Request-Headers",
                               "authorization, x-custom");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 204);
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Origin"), ==, "https://other.example");
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Methods"), ==, "GET, HEAD");
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Headers"), ==, "authorization, x-custom");

  /* Unknown path: 404.  Unknown origin: no CORS headers. */
  reply_clear (&r);
  msg = new_message (f, "OPTIONS", "/nope");
  headers = soup_message_get_request_headers (msg);
  soup_message_headers_append (headers, "Origin", "https://app.example");
  soup_message_headers_append (headers, "Access-Control-Request-Method", "GET");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 404);

  reply_clear (&r);
  msg = new_message (f, "OPTIONS", "/echo");
  headers = soup_message_get_request_headers (msg);
  soup_message_headers_append (headers, "Origin", "https://evil.example");
  soup_message_headers_append (headers, "Access-Control-Request-Method", "POST");
  send_message (f, msg, &r);
  g_assert_null (header_of (&r, "Access-Control-Allow-Origin"));
  g_assert_null (header_of (&r, "Access-Control-Allow-Methods"));

  /* Normal answers, errors included, carry Allow-Origin for allowed origins only. */
  reply_clear (&r);
  msg = new_message (f, "GET", "/items/1");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Origin",
                               "https://app.example");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Origin"), ==, "https://app.example");
  g_assert_cmpstr (header_of (&r, "Access-Control-Expose-Headers"), ==, "X-Request-Id");

  reply_clear (&r);
  msg = new_message (f, "GET", "/whoami");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Origin",
                               "https://app.example");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 401);
  g_assert_cmpstr (header_of (&r, "Access-Control-Allow-Origin"), ==, "https://app.example");

  reply_clear (&r);
  msg = new_message (f, "GET", "/items/1");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Origin",
                               "https://evil.example");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  g_assert_null (header_of (&r, "Access-Control-Allow-Origin"));
  g_assert_null (header_of (&r, "Access-Control-Expose-Headers"));

  /* OPTIONS without Access-Control-Request-Method is not a preflight: routed as usual. */
  reply_clear (&r);
  send_message (f, new_message (f, "OPTIONS", "/echo"), &r);
  g_assert_cmpint (status_of (&r), ==, 405);
}

static void
test_cors_any_origin (void)
{
  g_autoptr (GError) error = NULL;
  gn_router *router = gn_router_new ();
  gn_http_server_options options = {
    .address = "127.0.0.1",
    .cors_origins = "*",
    .router = router,
  };
  gn_http_server *server;
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autofree char *uri = NULL;
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GBytes) body = NULL;
  SoupMessageHeaders *headers;

  gn_router_add (router, "GET", "/items/{id}", handle_item, NULL, 0);
  server = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  uri = g_strdup_printf ("http://127.0.0.1:%d/items/1", gn_http_server_port (server));
  msg = soup_message_new ("OPTIONS", uri);
  headers = soup_message_get_request_headers (msg);
  soup_message_headers_append (headers, "Origin", "http://localhost:5173");
  soup_message_headers_append (headers, "Access-Control-Request-Method", "GET");
  body = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (soup_message_get_status (msg), ==, 204);
  g_assert_cmpstr (soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                 "Access-Control-Allow-Origin"),
                   ==, "http://localhost:5173");

  gn_http_server_stop (server);
  gn_router_free (router);
}

static void
test_error_formats (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autoptr (JsonParser) parser = NULL;
  g_autofree char *text = NULL;
  JsonObject *object;
  SoupMessage *msg;

  do_get (f, "/nope", &r);
  g_assert_cmpstr (header_of (&r, "Content-Type"), ==, "text/plain; charset=utf-8");

  reply_clear (&r);
  msg = new_message (f, "GET", "/nope");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                               "application/json, application/problem+json;q=0.9");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 404);
  g_assert_cmpstr (header_of (&r, "Content-Type"), ==, "application/problem+json");
  object = json_of (&r, &parser);
  g_assert_cmpstr (json_object_get_string_member (object, "type"), ==, "about:blank");
  g_assert_cmpstr (json_object_get_string_member (object, "title"), ==, "Not Found");
  g_assert_cmpint (json_object_get_int_member (object, "status"), ==, 404);
  g_assert_cmpstr (json_object_get_string_member (object, "detail"), ==, "Not found");
  g_assert_cmpstr (json_object_get_string_member (object, "code"), ==, "not_found");
  g_assert_cmpuint (json_object_get_size (object), ==, 5);

  /* Accept: application/json alone is not a request for problem documents. */
  reply_clear (&r);
  msg = new_message (f, "GET", "/nope");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                               "application/json");
  send_message (f, msg, &r);
  text = text_of (&r);
  g_assert_cmpstr (text, ==, "Not found\n");

  reply_clear (&r);
  g_clear_object (&parser);
  msg = new_message (f, "DELETE", "/items/3");
  soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                               "application/problem+json");
  send_message (f, msg, &r);
  g_assert_cmpint (status_of (&r), ==, 405);
  object = json_of (&r, &parser);
  g_assert_cmpstr (json_object_get_string_member (object, "code"), ==, "method_not_allowed");
  g_assert_cmpstr (json_object_get_string_member (object, "title"), ==, "Method Not Allowed");
}

static void
test_error_escaping (fixture *f, gconstpointer data)
{
  static const struct {
    const char *message;
    const char *expected; /* NULL: the same as message */
  } cases[] = {
    { "plain", NULL },
    { "say \"hi\" \\ back\\", NULL },
    { "line\nbreak\ttab\r\x01\x1f\x7f end", NULL },
    { "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", NULL },
    { "bad \xff byte \xc3", "bad \xef\xbf\xbd byte \xef\xbf\xbd" },
    { "</script><b>{\"json\":1}", NULL },
    { "", NULL },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_auto (reply) r = { 0 };
    g_autoptr (JsonParser) parser = NULL;
    g_autofree char *text = NULL;
    g_autofree char *expected_text = NULL;
    JsonObject *object;
    SoupMessage *msg;

    g_free (error_message);
    error_message = g_strdup (cases[i].message);

    msg = new_message (f, "GET", "/error");
    soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                                 "application/problem+json");
    send_message (f, msg, &r);
    g_assert_cmpint (status_of (&r), ==, 409);
    object = json_of (&r, &parser);
    g_assert_cmpstr (json_object_get_string_member (object, "detail"), ==,
                     cases[i].expected ? cases[i].expected : cases[i].message);
    g_assert_cmpstr (json_object_get_string_member (object, "code"), ==, "name_taken");
    g_assert_cmpstr (json_object_get_string_member (object, "title"), ==, "Conflict");

    /* Plain text passes the message through as is. */
    reply_clear (&r);
    do_get (f, "/error", &r);
    g_assert_cmpint (status_of (&r), ==, 409);
    text = text_of (&r);
    expected_text = g_strconcat (cases[i].message, "\n", NULL);
    g_assert_cmpstr (text, ==, expected_text);
  }
  g_clear_pointer (&error_message, g_free);
}

static void
test_json_quote (void)
{
  gn_arena *arena = gn_arena_new ();

  g_assert_cmpstr (gn_http_json_quote (arena, NULL), ==, "null");
  g_assert_cmpstr (gn_http_json_quote (arena, ""), ==, "\"\"");
  g_assert_cmpstr (gn_http_json_quote (arena, "a\"b\\c/d"), ==, "\"a\\\"b\\\\c/d\"");
  g_assert_cmpstr (gn_http_json_quote (arena, "\n\r\t\b\x01\x7f"), ==,
                   "\"\\n\\r\\t\\u0008\\u0001\\u007f\"");
  g_assert_cmpstr (gn_http_json_quote (arena, "\xc3\xa9\xf0\x9f\x98\x80"), ==,
                   "\"\xc3\xa9\xf0\x9f\x98\x80\"");
  g_assert_cmpstr (gn_http_json_quote (arena, "x\xc0\xafy\xed\xa0\x80z"), ==,
                   "\"x\\ufffd\\ufffdy\\ufffd\\ufffd\\ufffdz\"");
  gn_arena_free (arena);

  g_assert_cmpstr (gn_http_status_title (404), ==, "Not Found");
  g_assert_cmpstr (gn_http_status_title (409), ==, "Conflict");
  g_assert_cmpstr (gn_http_status_title (799), ==, "Unknown Status");
}

static void
test_request_id (fixture *f, gconstpointer data)
{
  static const struct {
    const char *sent;
    gboolean kept;
  } cases[] = {
    { "abc-123_x.Y", TRUE },
    { "0123456789012345678901234567890123456789012345678901234567890123", TRUE },   /* 64 */
    { "01234567890123456789012345678901234567890123456789012345678901234", FALSE }, /* 65 */
    { "bad id", FALSE },
    { "evil\"quote", FALSE },
    { "a/b", FALSE },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_auto (reply) r = { 0 };
    SoupMessage *msg = new_message (f, i % 2 ? "GET" : "DELETE", "/items/1");

    soup_message_headers_append (soup_message_get_request_headers (msg), "X-Request-Id",
                                 cases[i].sent);
    send_message (f, msg, &r);
    if (cases[i].kept)
      g_assert_cmpstr (header_of (&r, "X-Request-Id"), ==, cases[i].sent);
    else
      g_assert_true (g_uuid_string_is_valid (header_of (&r, "X-Request-Id")));
  }

  /* Without one, each request gets a fresh UUID. */
  {
    g_auto (reply) a = { 0 };
    g_auto (reply) b = { 0 };

    do_get (f, "/items/1", &a);
    do_get (f, "/nope", &b);
    g_assert_true (g_uuid_string_is_valid (header_of (&a, "X-Request-Id")));
    g_assert_true (g_uuid_string_is_valid (header_of (&b, "X-Request-Id")));
    g_assert_cmpstr (header_of (&a, "X-Request-Id"), !=, header_of (&b, "X-Request-Id"));
  }
}

static void
test_keep_alive (fixture *f, gconstpointer data)
{
  g_auto (reply) first = { 0 };
  g_auto (reply) second = { 0 };
  g_auto (reply) third = { 0 };

  do_get (f, "/items/1", &first);
  do_post (f, "/echo", "application/json", "{}", &second);
  do_get (f, "/nope", &third);
  g_assert_cmpint (status_of (&first), ==, 200);
  g_assert_cmpint (status_of (&second), ==, 200);
  g_assert_cmpint (status_of (&third), ==, 404);
  g_assert_null (header_of (&first, "Connection"));
  g_assert_null (header_of (&second, "Connection"));
  g_assert_cmpuint (soup_message_get_connection_id (first.msg), !=, 0);
  g_assert_cmpuint (soup_message_get_connection_id (first.msg), ==,
                    soup_message_get_connection_id (second.msg));
  g_assert_cmpuint (soup_message_get_connection_id (first.msg), ==,
                    soup_message_get_connection_id (third.msg));
}

static void
put_upload (fixture *f, const char *path, gsize size, gboolean chunked, reply *r)
{
  SoupMessage *msg = new_message (f, "PUT", path);
  char *data = g_malloc (size);
  g_autoptr (GInputStream) stream = NULL;

  for (gsize i = 0; i < size; i++)
    data[i] = (char)('a' + i % 26);
  stream = g_memory_input_stream_new_from_data (data, (gssize)size, g_free);
  soup_message_set_request_body (msg, "image/jpeg", stream, chunked ? -1 : (gssize)size);
  send_message (f, msg, r);
}

/* A refusal by the admission hook: the handler never runs, a request without a body keeps its
 * connection, one with a body is answered at once without its body being read. */
static void
test_admit (fixture *f, gconstpointer data)
{
  g_auto (reply) refused = { 0 };
  g_auto (reply) after = { 0 };
  g_auto (reply) refused_body = { 0 };
  SoupMessage *msg = new_message (f, "GET", "/items/1");

  soup_message_headers_append (soup_message_get_request_headers (msg), "X-Deny", "1");
  send_message (f, msg, &refused);
  g_assert_cmpint (status_of (&refused), ==, 429);
  g_assert_cmpstr (header_of (&refused, "Retry-After"), ==, "7");
  g_assert_null (header_of (&refused, "X-Item"));
  g_assert_null (header_of (&refused, "Connection"));
  do_get (f, "/items/1", &after);
  g_assert_cmpint (status_of (&after), ==, 200);
  g_assert_cmpuint (soup_message_get_connection_id (refused.msg), ==,
                    soup_message_get_connection_id (after.msg));

  msg = new_message (f, "PUT", "/upload/big");
  soup_message_headers_append (soup_message_get_request_headers (msg), "X-Deny", "1");
  g_clear_pointer (&seen_spool_path, g_free);
  g_autoptr (GBytes) bytes
      = g_bytes_new_take (g_malloc0 (2 * SPOOL_THRESHOLD), 2 * SPOOL_THRESHOLD);
  soup_message_set_request_body_from_bytes (msg, "image/jpeg", bytes);
  send_message (f, msg, &refused_body);
  g_assert_cmpint (status_of (&refused_body), ==, 429);
  g_assert_null (seen_spool_path);
}

/* A route's precheck runs before the body is read: a refused upload never reaches the disk. */
static void
test_precheck (fixture *f, gconstpointer data)
{
  g_auto (reply) refused = { 0 };
  g_auto (reply) accepted = { 0 };

  g_clear_pointer (&seen_spool_path, g_free);
  put_upload (f, "/checked/a?key=wrong", 2 * SPOOL_THRESHOLD, FALSE, &refused);
  g_assert_cmpint (status_of (&refused), ==, 403);
  g_assert_null (seen_spool_path);
  g_assert_true (dir_is_empty (f->spool_dir));

  put_upload (f, "/checked/a?key=open", 2 * SPOOL_THRESHOLD, FALSE, &accepted);
  g_assert_cmpint (status_of (&accepted), ==, 201);
  g_assert_nonnull (seen_spool_path);

  /* The precheck lowered the limit to the size the URL names: declared or streamed, more is 413. */
  g_auto (reply) declared = { 0 };
  g_auto (reply) streamed = { 0 };
  g_auto (reply) within = { 0 };
  put_upload (f, "/checked/c?key=open&size=1000", 1001, FALSE, &declared);
  g_assert_cmpint (status_of (&declared), ==, 413);
  put_upload (f, "/checked/c?key=open&size=1000", 70000, TRUE, &streamed);
  g_assert_cmpint (status_of (&streamed), ==, 413);
  put_upload (f, "/checked/c?key=open&size=1000", 1000, TRUE, &within);
  g_assert_cmpint (status_of (&within), ==, 201);

  /* A client that waits for "100 Continue" before a large body is answered without sending it. */
  g_auto (reply) waiting = { 0 };
  SoupMessage *msg = new_message (f, "PUT", "/checked/b?key=wrong");
  g_autoptr (GBytes) bytes = g_bytes_new_take (g_malloc0 (UPLOAD_MAX / 2), UPLOAD_MAX / 2);
  soup_message_headers_set_expectations (soup_message_get_request_headers (msg),
                                         SOUP_EXPECTATION_CONTINUE);
  soup_message_set_request_body_from_bytes (msg, "image/jpeg", bytes);
  g_clear_pointer (&seen_spool_path, g_free);
  send_message (f, msg, &waiting);
  g_assert_cmpint (status_of (&waiting), ==, 403);
  g_assert_null (seen_spool_path);
}

/* Where a client is and which URL it used: from the connection and Host, and from
 * X-Forwarded-* only when the peer is a trusted proxy; a configured public URL wins. */
static void
check_whereami (const char *base, const char *host, const char *forwarded_for,
                const char *forwarded_host, const char *want_base, const char *want_ip)
{
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autofree char *uri = g_strconcat (base, "/whereami", NULL);
  g_autoptr (SoupMessage) msg = soup_message_new ("GET", uri);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) body = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();

  if (host != NULL)
    soup_message_headers_replace (headers, "Host", host);
  if (forwarded_for != NULL)
    soup_message_headers_append (headers, "X-Forwarded-For", forwarded_for);
  if (forwarded_host != NULL) {
    soup_message_headers_append (headers, "X-Forwarded-Host", forwarded_host);
    soup_message_headers_append (headers, "X-Forwarded-Proto", "https");
  }
  body = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (soup_message_get_status (msg), ==, 200);
  json_parser_load_from_data (parser, g_bytes_get_data (body, NULL),
                              (gssize)g_bytes_get_size (body), &error);
  g_assert_no_error (error);
  JsonObject *object = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (object, "base"), ==, want_base);
  g_assert_cmpstr (json_object_get_string_member (object, "ip"), ==, want_ip);
}

static void
test_addresses (void)
{
  g_autoptr (GError) error = NULL;
  gn_router *router = gn_router_new ();
  gn_http_server_options options = {
    .name = "test", .address = "127.0.0.1", .router = router, .trusted_proxies = "10.0.0.0/8"
  };
  gn_http_server *untrusted, *trusted, *configured;
  g_autofree char *untrusted_base = NULL, *trusted_base = NULL, *configured_base = NULL;
  g_autofree char *local = NULL;

  gn_router_add (router, "GET", "/whereami", handle_whereami, NULL, 0);
  untrusted = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  options.trusted_proxies = "::1, 127.0.0.0/8";
  trusted = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  options.public_url = "https://photos.example.org/";
  configured = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  untrusted_base = g_strdup_printf ("http://127.0.0.1:%d", gn_http_server_port (untrusted));
  trusted_base = g_strdup_printf ("http://127.0.0.1:%d", gn_http_server_port (trusted));
  configured_base = g_strdup_printf ("http://127.0.0.1:%d", gn_http_server_port (configured));

  check_whereami (untrusted_base, "192.168.1.20:8080", NULL, NULL, "http://192.168.1.20:8080",
                  "127.0.0.1");
  /* Forwarded headers from a peer that is not a trusted proxy are ignored. */
  check_whereami (untrusted_base, "lan-host:8080", "203.0.113.7", "evil.example",
                  "http://lan-host:8080", "127.0.0.1");
  /* A Host that cannot be a host name falls back to the address the connection came in on. */
  local = g_strdup_printf ("http://127.0.0.1:%d", gn_http_server_port (untrusted));
  check_whereami (untrusted_base, "evil.example/x?y", NULL, NULL, local, "127.0.0.1");
  /* Behind a trusted proxy: the client is the rightmost untrusted hop. */
  check_whereami (trusted_base, "127.0.0.1", "198.51.100.1, 203.0.113.7, 127.0.0.9",
                  "photos.example", "https://photos.example", "203.0.113.7");
  check_whereami (trusted_base, NULL, "not-an-address", NULL, trusted_base, "127.0.0.1");
  check_whereami (configured_base, "other:1", NULL, NULL, "https://photos.example.org",
                  "127.0.0.1");

  gn_http_server_stop (untrusted);
  gn_http_server_stop (trusted);
  gn_http_server_stop (configured);
  options.trusted_proxies = "10.0.0.0/99";
  g_assert_null (gn_http_server_start (&options, &error));
  g_assert_nonnull (error);
  gn_router_free (router);
}

static void
test_spool (fixture *f, gconstpointer data)
{
  const struct {
    gsize size;
    gboolean chunked;
    gboolean spooled;
  } cases[] = {
    { 1000, FALSE, FALSE },
    { SPOOL_THRESHOLD, TRUE, FALSE },
    { 3 * SPOOL_THRESHOLD + 7, FALSE, TRUE },
    { 3 * SPOOL_THRESHOLD + 7, TRUE, TRUE },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_auto (reply) r = { 0 };
    g_autoptr (JsonParser) parser = NULL;
    JsonObject *object;

    g_test_message ("upload of %zu bytes, chunked %d", cases[i].size, cases[i].chunked);
    put_upload (f, "/upload/photo.jpg", cases[i].size, cases[i].chunked, &r);
    g_assert_cmpint (status_of (&r), ==, 201);
    object = json_of (&r, &parser);
    g_assert_cmpint (json_object_get_boolean_member (object, "spooled"), ==, cases[i].spooled);
    g_assert_cmpint (json_object_get_int_member (object, "size"), ==, cases[i].size);

    g_mutex_lock (&seen_lock);
    if (cases[i].spooled) {
      /* The handler saw a private file in the spool folder, with the whole body in it... */
      g_assert_true (g_str_has_prefix (seen_spool_path, f->spool_dir));
      g_assert_true (seen_spool_existed);
      g_assert_cmpuint (seen_spool_size, ==, cases[i].size);
      g_assert_cmpint (json_object_get_int_member (object, "in_memory"), ==, 0);
    } else {
      g_assert_null (seen_spool_path);
      g_assert_cmpint (json_object_get_int_member (object, "in_memory"), ==, cases[i].size);
    }
    g_mutex_unlock (&seen_lock);

    /* ...which is gone by the time the answer arrives. */
    g_assert_true (dir_is_empty (f->spool_dir));
  }

  /* Over the route's limit: 413, nothing left behind. */
  {
    g_auto (reply) r = { 0 };

    put_upload (f, "/upload/huge.jpg", UPLOAD_MAX + 1, TRUE, &r);
    g_assert_cmpint (status_of (&r), ==, 413);
    g_assert_true (dir_is_empty (f->spool_dir));
  }
}

/* A client that sends half a large upload and hangs up: the spool file must not stay.
 * libmicrohttpd may only notice the hang-up at the connection timeout (see http.c), so this
 * server's timeout is one second and the test waits up to five. */
static void
test_spool_aborted_upload (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) connection = NULL;
  GOutputStream *out;
  g_autofree char *head = NULL;
  g_autofree char *chunk = g_strnfill (2 * SPOOL_THRESHOLD, 'x');
  gboolean appeared = FALSE;

  connection = g_socket_client_connect_to_host (
      client, "127.0.0.1", (guint16)gn_http_server_port (f->server), NULL, &error);
  g_assert_no_error (error);
  out = g_io_stream_get_output_stream (G_IO_STREAM (connection));
  head = g_strdup_printf ("PUT /upload/partial.jpg HTTP/1.1\r\nHost: test\r\n"
                          "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n",
                          UPLOAD_MAX);
  g_output_stream_write_all (out, head, strlen (head), NULL, NULL, &error);
  g_assert_no_error (error);
  g_output_stream_write_all (out, chunk, strlen (chunk), NULL, NULL, &error);
  g_assert_no_error (error);
  for (int tries = 0; tries < 200 && !appeared; tries++) {
    appeared = !dir_is_empty (f->spool_dir);
    if (!appeared)
      g_usleep (10 * 1000);
  }
  g_assert_true (appeared);

  g_io_stream_close (G_IO_STREAM (connection), NULL, &error);
  g_assert_no_error (error);
  for (int tries = 0; tries < 500 && !dir_is_empty (f->spool_dir); tries++)
    g_usleep (10 * 1000);
  g_assert_true (dir_is_empty (f->spool_dir));
}

static void
test_observer (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  int before;

  g_mutex_lock (&seen_lock);
  before = reports_seen;
  g_mutex_unlock (&seen_lock);

  do_get (f, "/items/9", &r);
  g_assert_cmpint (status_of (&r), ==, 200);
  /* The report follows the answer, on the server's thread. */
  for (int tries = 0; tries < 200; tries++) {
    g_mutex_lock (&seen_lock);
    if (reports_seen > before) {
      g_assert_cmpint (last_report.status, ==, 200);
      g_assert_cmpstr (last_report.route, ==, "/items/{id}");
      g_assert_cmpuint (last_report.bytes_out, ==, g_bytes_get_size (r.body));
      g_assert_cmpfloat (last_report.ms, >=, 0.0);
      g_mutex_unlock (&seen_lock);
      return;
    }
    g_mutex_unlock (&seen_lock);
    g_usleep (10 * 1000);
  }
  g_assert_not_reached ();
}

static void
test_listen_errors (void)
{
  g_autoptr (GError) error = NULL;
  gn_router *router = gn_router_new ();
  gn_http_server_options options = { .address = "not-an-address", .router = router };
  gn_http_server *first, *second;

  g_assert_null (gn_http_server_start (&options, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* A port in use is an error, not a crash. */
  options.address = "127.0.0.1";
  first = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  options.port = gn_http_server_port (first);
  second = gn_http_server_start (&options, &error);
  g_assert_null (second);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  gn_http_server_stop (first);
  gn_router_free (router);
}

static void
send_form (fixture *f, SoupMultipart *multipart, reply *r)
{
  g_autofree char *uri = g_strconcat (f->base, "/form", NULL);
  SoupMessage *msg = soup_message_new_from_multipart (uri, multipart);
  send_message (f, msg, r);
}

/* A multipart upload: the file part lands in a 0600 spool file (never in memory), the other
 * fields are readable, and nothing is left on disk afterwards. */
static void
test_multipart (fixture *f, gconstpointer data)
{
  g_auto (reply) r = { 0 };
  g_autoptr (JsonParser) parser = NULL;
  const gsize size = 3 * 1024 * 1024 + 17;
  g_autofree char *payload = g_malloc (size);
  for (gsize i = 0; i < size; i++)
    payload[i] = (char)('a' + i % 26);
  g_autoptr (GBytes) bytes = g_bytes_new_take (g_steal_pointer (&payload), size);

  SoupMultipart *multipart = soup_multipart_new ("multipart/form-data");
  soup_multipart_append_form_string (multipart, "type", "image");
  soup_multipart_append_form_file (multipart, "file", "holiday photo.jpg", "image/jpeg", bytes);
  soup_multipart_append_form_string (multipart, "caption", "Ça va? \"quoted\"");
  send_form (f, multipart, &r);
  soup_multipart_free (multipart);

  g_assert_cmpint (status_of (&r), ==, 201);
  JsonObject *body = json_of (&r, &parser);
  g_assert_true (json_object_get_boolean_member (body, "file_on_disk"));
  g_assert_cmpint (json_object_get_int_member (body, "size"), ==, (gint64)size);
  g_assert_cmpstr (json_object_get_string_member (body, "head"), ==, "abcdefghijklmnop");
  g_assert_cmpstr (json_object_get_string_member (body, "filename"), ==, "holiday photo.jpg");
  g_assert_cmpstr (json_object_get_string_member (body, "content_type"), ==, "image/jpeg");
  g_assert_cmpstr (json_object_get_string_member (body, "type"), ==, "image");
  g_assert_cmpstr (json_object_get_string_member (body, "caption"), ==, "Ça va? \"quoted\"");
  g_assert_true (dir_is_empty (f->spool_dir));
}

static void
test_multipart_refusals (fixture *f, gconstpointer data)
{
  /* No file part: the handler sees none. */
  {
    g_auto (reply) r = { 0 };
    g_autoptr (JsonParser) parser = NULL;
    SoupMultipart *multipart = soup_multipart_new ("multipart/form-data");
    soup_multipart_append_form_string (multipart, "type", "image");
    send_form (f, multipart, &r);
    soup_multipart_free (multipart);
    g_assert_cmpint (status_of (&r), ==, 201);
    JsonObject *body = json_of (&r, &parser);
    g_assert_false (json_object_get_boolean_member (body, "file_on_disk"));
    g_assert_cmpstr (json_object_get_string_member (body, "filename"), ==, "");
  }
  /* Not multipart at all: 415. */
  {
    g_auto (reply) r = { 0 };
    SoupMessage *msg = new_message (f, "POST", "/form");
    g_autoptr (GBytes) json = g_bytes_new_static ("{}", 2);
    soup_message_set_request_body_from_bytes (msg, "application/json", json);
    send_message (f, msg, &r);
    g_assert_cmpint (status_of (&r), ==, 415);
  }
  /* A file over the route's limit: 413 and no spool file left. */
  {
    g_auto (reply) r = { 0 };
    gsize size = UPLOAD_MAX + 1024;
    g_autoptr (GBytes) bytes = g_bytes_new_take (g_malloc0 (size), size);
    SoupMultipart *multipart = soup_multipart_new ("multipart/form-data");
    soup_multipart_append_form_file (multipart, "file", "big.bin", "application/octet-stream",
                                     bytes);
    /* Chunked, so the limit is found while reading (with a Content-Length over the limit the
     * server answers at once and closes, before the client has written its body). */
    g_autofree char *uri = g_strconcat (f->base, "/form", NULL);
    SoupMessage *msg = soup_message_new_from_multipart (uri, multipart);
    soup_message_headers_set_encoding (soup_message_get_request_headers (msg),
                                       SOUP_ENCODING_CHUNKED);
    send_message (f, msg, &r);
    soup_multipart_free (multipart);
    g_assert_cmpint (status_of (&r), ==, 413);
  }
  /* A part whose Content-Disposition names no field (found by tests/fuzz/fuzz-http: the
   * form iterator compared its NULL name and crashed the node): 400. */
  {
    g_auto (reply) r = { 0 };
    SoupMultipart *multipart = soup_multipart_new ("multipart/form-data");
    soup_multipart_append_form_string (multipart, "caption", "hello");
    SoupMessageHeaders *headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_MULTIPART);
    soup_message_headers_append (headers, "Content-Disposition", "form-data; filename=\"a.png\"");
    g_autoptr (GBytes) part = g_bytes_new_static ("\x89PNG", 4);
    soup_multipart_append_part (multipart, headers, part);
    soup_message_headers_unref (headers);
    send_form (f, multipart, &r);
    soup_multipart_free (multipart);
    g_assert_cmpint (status_of (&r), ==, 400);
  }
  /* A boundary past RFC 2046's 70 characters: 400 before any part is parsed. */
  {
    g_auto (reply) r = { 0 };
    g_autofree char *boundary = g_strnfill (71, 'b');
    g_autofree char *type = g_strdup_printf ("multipart/form-data; boundary=\"%s\"", boundary);
    g_autofree char *body = g_strdup_printf ("--%s\r\nContent-Disposition: form-data; "
                                             "name=\"type\"\r\n\r\nimage\r\n--%s--\r\n",
                                             boundary, boundary);
    do_post (f, "/form", type, body, &r);
    g_assert_cmpint (status_of (&r), ==, 400);
  }
  g_assert_true (dir_is_empty (f->spool_dir));
}

/* ---- connections: the worker pool, caps and timeouts, on raw sockets ---- */

/* A gate the slow handlers and prechecks wait at until the test opens it. */
static GMutex gate_lock;
static GCond gate_cond;
static gboolean gate_open;
static int gate_waiting;

static void
gate_pass (void)
{
  g_mutex_lock (&gate_lock);
  gate_waiting++;
  g_cond_broadcast (&gate_cond);
  while (!gate_open)
    g_cond_wait (&gate_cond, &gate_lock);
  gate_waiting--;
  g_mutex_unlock (&gate_lock);
}

static void
gate_reset (void)
{
  g_mutex_lock (&gate_lock);
  gate_open = FALSE;
  g_mutex_unlock (&gate_lock);
}

static void
gate_release (void)
{
  g_mutex_lock (&gate_lock);
  gate_open = TRUE;
  g_cond_broadcast (&gate_cond);
  g_mutex_unlock (&gate_lock);
}

/* Waits until n callers wait at the gate. */
static void
gate_wait_for (int n)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  g_mutex_lock (&gate_lock);
  while (gate_waiting < n)
    g_assert_true (g_cond_wait_until (&gate_cond, &gate_lock, deadline));
  g_mutex_unlock (&gate_lock);
}

static void
handle_slow (gn_http_request *request, void *data)
{
  gate_pass ();
  gn_http_respond_json (request, 200, "{}", 2);
}

static bool
precheck_slow (gn_http_request *request, void *data)
{
  gate_pass ();
  return true;
}

static gn_http_server *
start_server (gn_router *router, const gn_http_server_options *extra)
{
  g_autoptr (GError) error = NULL;
  gn_http_server_options options = *extra;
  gn_http_server *server;

  options.name = "test";
  options.address = "127.0.0.1";
  options.router = router;
  server = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  return server;
}

/* A TCP connection to 127.0.0.1:port from the address `source` (NULL: any). */
static int
connect_from (const char *source, int port)
{
  struct sockaddr_in address = { .sin_family = AF_INET };
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  g_assert_cmpint (fd, >=, 0);
  if (source != NULL) {
    g_assert_cmpint (inet_pton (AF_INET, source, &address.sin_addr), ==, 1);
    g_assert_cmpint (bind (fd, (struct sockaddr *)&address, sizeof address), ==, 0);
  }
  address.sin_port = htons ((uint16_t)port);
  inet_pton (AF_INET, "127.0.0.1", &address.sin_addr);
  g_assert_cmpint (connect (fd, (struct sockaddr *)&address, sizeof address), ==, 0);
  return fd;
}

static void
send_text (int fd, const char *text)
{
  size_t len = strlen (text);

  while (len > 0) {
    ssize_t n = send (fd, text, len, MSG_NOSIGNAL);
    g_assert_cmpint (n, >, 0);
    text += n;
    len -= (size_t)n;
  }
}

/* Reads one answer (headers and a Content-Length body); returns its status, or 0 if the
 * connection closed or nothing came within timeout_ms. */
static int
read_status (int fd, int timeout_ms, GString *out)
{
  g_autoptr (GString) data = g_string_new (NULL);
  gint64 deadline = g_get_monotonic_time () + (gint64)timeout_ms * 1000;

  for (;;) {
    const char *end = strstr (data->str, "\r\n\r\n");
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char buffer[4096];
    int left = (int)((deadline - g_get_monotonic_time ()) / 1000);
    ssize_t n;

    if (end != NULL) {
      const char *length = strstr (data->str, "Content-Length: ");
      size_t body = length != NULL && length < end ? strtoul (length + 16, NULL, 10) : 0;
      if (data->len >= (size_t)(end + 4 - data->str) + body) {
        if (out != NULL)
          g_string_assign (out, data->str);
        return g_str_has_prefix (data->str, "HTTP/1.1 ") ? atoi (data->str + 9) : -1;
      }
    }
    if (left <= 0 || poll (&pfd, 1, left) <= 0)
      return 0;
    n = recv (fd, buffer, sizeof buffer, 0);
    if (n <= 0)
      return 0;
    g_string_append_len (data, buffer, n);
  }
}

static int
get_status (int fd, const char *path, int timeout_ms)
{
  g_autofree char *request = g_strdup_printf ("GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);

  send_text (fd, request);
  return read_status (fd, timeout_ms, NULL);
}

/* Whether the server closed fd within timeout_ms (EOF or reset, not just silence). */
static gboolean
closed_within (int fd, int timeout_ms)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };
  char buffer[256];

  if (poll (&pfd, 1, timeout_ms) <= 0)
    return FALSE;
  return recv (fd, buffer, sizeof buffer, MSG_DONTWAIT) <= 0;
}

static int
thread_count (void)
{
  g_autofree char *status = NULL;
  const char *line;

  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  line = strstr (status, "\nThreads:");
  g_assert_nonnull (line);
  return atoi (line + strlen ("\nThreads:"));
}

/* Slow handlers take both workers and fill the queue of two; the next requests are answered
 * 503 with Retry-After at once, and the queued ones are served once the workers are free. */
static void
test_pool_queue_full (void)
{
  gn_router *router = gn_router_new ();
  gn_http_server_options options
      = { .threads = 1, .blocking_handlers = true, .workers = 2, .queue_max = 2 };
  gn_http_server *server;
  int fds[6];
  int port;
  g_autoptr (GString) answer = g_string_new (NULL);

  gn_router_add (router, "GET", "/slow", handle_slow, NULL, 0);
  gn_router_add (router, "GET", "/items/{id}", handle_item, NULL, 0);
  server = start_server (router, &options);
  port = gn_http_server_port (server);
  gate_reset ();

  for (int i = 0; i < 6; i++)
    fds[i] = connect_from (NULL, port);
  send_text (fds[0], "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
  send_text (fds[1], "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
  gate_wait_for (2);
  send_text (fds[2], "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
  send_text (fds[3], "GET /items/1 HTTP/1.1\r\nHost: test\r\n\r\n");
  g_usleep (200 * 1000); /* both queued */

  for (int i = 4; i < 6; i++) {
    gint64 start = g_get_monotonic_time ();
    g_assert_cmpint (read_status (fds[i], 0, NULL), ==, 0);
    send_text (fds[i], "GET /items/2 HTTP/1.1\r\nHost: test\r\n\r\n");
    g_assert_cmpint (read_status (fds[i], 2000, answer), ==, 503);
    g_assert_nonnull (strstr (answer->str, "\r\nRetry-After: 1\r\n"));
    g_assert_cmpint (g_get_monotonic_time () - start, <, G_USEC_PER_SEC);
  }

  gate_release ();
  for (int i = 0; i < 4; i++)
    g_assert_cmpint (read_status (fds[i], 5000, NULL), ==, 200);
  /* The refused connections are kept and served again once there is room. */
  g_assert_cmpint (get_status (fds[4], "/items/3", 5000), ==, 200);
  for (int i = 0; i < 6; i++)
    close (fds[i]);
  g_assert_true (gn_http_server_stop (server));
  gn_router_free (router);
}

/* A precheck that blocks holds one worker, not the server: other connections are answered. */
static void
test_pool_slow_precheck (void)
{
  gn_router *router = gn_router_new ();
  gn_http_server_options options = { .threads = 1, .blocking_handlers = true, .workers = 2 };
  gn_http_server *server;
  gn_route *route;
  int slow, quick, port;
  gint64 start;

  route = gn_router_add (router, "PUT", "/gated/{name}", handle_upload, NULL, GN_ROUTE_RAW_BODY);
  route->precheck = precheck_slow;
  gn_router_add (router, "GET", "/items/{id}", handle_item, NULL, 0);
  server = start_server (router, &options);
  port = gn_http_server_port (server);
  gate_reset ();

  slow = connect_from (NULL, port);
  send_text (slow, "PUT /gated/a HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
  gate_wait_for (1);

  quick = connect_from (NULL, port);
  start = g_get_monotonic_time ();
  for (int i = 0; i < 20; i++)
    g_assert_cmpint (get_status (quick, "/items/1", 2000), ==, 200);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);
  g_assert_cmpint (read_status (slow, 0, NULL), ==, 0);

  gate_release ();
  g_assert_cmpint (read_status (slow, 5000, NULL), ==, 201);
  /* The same connection goes on with the next request (kept alive across the suspension). */
  g_assert_cmpint (get_status (slow, "/items/2", 2000), ==, 200);
  close (slow);
  close (quick);
  g_assert_true (gn_http_server_stop (server));
  gn_router_free (router);
}

#define IDLE_CONNECTIONS 2000

/* Idle connections cost no thread: 2,000 of them are held while other clients are served,
 * and the held ones still answer. */
static void
test_idle_connections (void)
{
  gn_router *router = gn_router_new ();
  gn_http_server_options options = { .threads = 1, .blocking_handlers = true, .workers = 4 };
  gn_http_server *server;
  int *fds = g_new (int, IDLE_CONNECTIONS);
  int port, before, during, fresh;

  gn_router_add (router, "GET", "/items/{id}", handle_item, NULL, 0);
  server = start_server (router, &options); /* also raises this process's open file limit */
  port = gn_http_server_port (server);
  before = thread_count ();

  /* Half have made a request (idle keep-alive), half have sent nothing yet; from ten
   * addresses, as many clients would (each stays under the per-address cap). */
  for (int i = 0; i < IDLE_CONNECTIONS; i++) {
    char source[32];

    g_snprintf (source, sizeof source, "127.0.0.%d", 2 + i % 10);
    fds[i] = connect_from (source, port);
    if (i % 2 == 0)
      g_assert_cmpint (get_status (fds[i], "/items/1", 5000), ==, 200);
  }
  for (int i = 0; i < 50; i++) {
    fresh = connect_from (NULL, port);
    g_assert_cmpint (get_status (fresh, "/items/2", 5000), ==, 200);
    close (fresh);
  }
  during = thread_count ();
  g_test_message ("threads: %d before, %d with %d idle connections", before, during,
                  IDLE_CONNECTIONS);
  g_assert_cmpint (during, <=, before + 2);
  g_assert_cmpint (get_status (fds[1], "/items/3", 5000), ==, 200);
  g_assert_cmpint (get_status (fds[IDLE_CONNECTIONS - 2], "/items/4", 5000), ==, 200);

  for (int i = 0; i < IDLE_CONNECTIONS; i++)
    close (fds[i]);
  g_free (fds);
  g_assert_true (gn_http_server_stop (server));
  gn_router_free (router);
}

/* An address holding its cap of connections gets no more; another address does; a trusted
 * proxy is exempt; a closed connection frees its place. */
static void
test_per_ip_cap (void)
{
  gn_router *router = gn_router_new ();
  gn_http_server_options options
      = { .threads = 1, .max_connections_per_ip = 3, .trusted_proxies = "127.0.0.4" };
  gn_http_server *server;
  int held[3], extra, other, proxy[5], port;
  gboolean refused_freed = FALSE;

  gn_router_add (router, "GET", "/items/{id}", handle_item, NULL, 0);
  server = start_server (router, &options);
  port = gn_http_server_port (server);

  for (int i = 0; i < 3; i++) {
    held[i] = connect_from ("127.0.0.1", port);
    g_assert_cmpint (get_status (held[i], "/items/1", 5000), ==, 200);
  }
  extra = connect_from ("127.0.0.1", port);
  g_assert_true (closed_within (extra, 5000));
  close (extra);

  other = connect_from ("127.0.0.2", port);
  g_assert_cmpint (get_status (other, "/items/2", 5000), ==, 200);
  for (int i = 0; i < 5; i++) {
    proxy[i] = connect_from ("127.0.0.4", port);
    g_assert_cmpint (get_status (proxy[i], "/items/3", 5000), ==, 200);
  }

  close (held[0]);
  for (int attempt = 0; attempt < 50 && !refused_freed; attempt++) {
    g_usleep (100 * 1000);
    extra = connect_from ("127.0.0.1", port);
    send_text (extra, "GET /items/4 HTTP/1.1\r\nHost: test\r\n\r\n");
    refused_freed = read_status (extra, 2000, NULL) == 200;
    close (extra);
  }
  g_assert_true (refused_freed);

  for (int i = 1; i < 3; i++)
    close (held[i]);
  for (int i = 0; i < 5; i++)
    close (proxy[i]);
  close (other);
  g_assert_true (gn_http_server_stop (server));
  gn_router_free (router);
}

/* Headers that trickle in are cut off at the header timeout even though bytes keep coming;
 * a connection idle after its request lives until the inactivity timeout; headers over the
 * connection's memory limit are refused with 431. */
static void
test_timeouts (void)
{
  gn_router *router = gn_router_new ();
  gn_http_server_options options = { .threads = 1,
                                     .blocking_handlers = true,
                                     .workers = 1,
                                     .connection_timeout_s = 4,
                                     .header_timeout_s = 1 };
  gn_http_server *server;
  int slow, idle, silent, big, port;
  gint64 start;
  gboolean closed = FALSE;
  g_autoptr (GString) huge = g_string_new ("GET /items/1 HTTP/1.1\r\nHost: test\r\nX-Big: ");

  gn_router_add (router, "GET", "/items/{id}", handle_item, NULL, 0);
  server = start_server (router, &options);
  port = gn_http_server_port (server);

  idle = connect_from (NULL, port);
  g_assert_cmpint (get_status (idle, "/items/1", 5000), ==, 200);
  silent = connect_from (NULL, port);

  /* A header byte every 200 ms: never idle, never done. */
  slow = connect_from (NULL, port);
  start = g_get_monotonic_time ();
  send_text (slow, "GET /items/1 HTTP/1.1\r\n");
  while (!closed && g_get_monotonic_time () - start < 6 * G_USEC_PER_SEC) {
    closed = closed_within (slow, 200);
    if (!closed && send (slow, "X", 1, MSG_NOSIGNAL) != 1)
      closed = TRUE;
  }
  g_assert_true (closed);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 4 * G_USEC_PER_SEC);
  close (slow);

  /* Idle for longer than the header timeout, still served. */
  g_assert_cmpint (get_status (idle, "/items/2", 2000), ==, 200);
  /* Then closed after 4 s without a byte, like the connection that never sent one. */
  g_assert_true (closed_within (idle, 7000));
  g_assert_true (closed_within (silent, 2000));
  close (idle);
  close (silent);

  /* 8 KiB of headers pass (a long cookie), 20 KiB do not. */
  big = connect_from (NULL, port);
  for (int i = 0; i < 8 * 1024; i++)
    g_string_append_c (huge, 'a');
  send_text (big, huge->str);
  send_text (big, "\r\n\r\n");
  g_assert_cmpint (read_status (big, 5000, NULL), ==, 200);
  close (big);
  big = connect_from (NULL, port);
  for (int i = 0; i < 12 * 1024; i++)
    g_string_append_c (huge, 'a');
  g_string_append (huge, "\r\n\r\n");
  send_text (big, huge->str);
  g_assert_cmpint (read_status (big, 5000, NULL), ==, 431);
  close (big);

  g_assert_true (gn_http_server_stop (server));
  gn_router_free (router);
}

/* Stopping is bounded: a queued request is answered 503, and a handler that outlives the
 * grace leaves the server to the process instead of hanging the stop. */
static void
test_pool_stop (void)
{
  gn_router *router = gn_router_new ();
  gn_http_server_options options
      = { .threads = 1, .blocking_handlers = true, .workers = 1, .stop_grace_ms = 500 };
  gn_http_server *server;
  int running, queued, port;
  gint64 start;

  gn_router_add (router, "GET", "/slow", handle_slow, NULL, 0);
  server = start_server (router, &options);
  port = gn_http_server_port (server);
  gate_reset ();

  running = connect_from (NULL, port);
  send_text (running, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
  gate_wait_for (1);
  queued = connect_from (NULL, port);
  send_text (queued, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
  g_usleep (200 * 1000);

  start = g_get_monotonic_time ();
  g_assert_false (gn_http_server_stop (server));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 2 * G_USEC_PER_SEC);
  g_assert_cmpint (read_status (queued, 2000, NULL), ==, 503);

  /* The abandoned handler still finishes its answer. */
  gate_release ();
  g_assert_cmpint (read_status (running, 5000, NULL), ==, 200);
  close (running);
  close (queued);
  /* server and router stay allocated: the server was left running */
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn)                                                                              \
  do {                                                                                             \
    g_test_add ("/http" path, fixture, &inline_mode, fixture_setup, fn, fixture_teardown);         \
    g_test_add ("/http/pool" path, fixture, &pool_mode, fixture_setup, fn, fixture_teardown);      \
  } while (0)
  ADD ("/json-echo", test_json_echo);
  ADD ("/params-query-headers", test_params_query_and_headers);
  ADD ("/not-found-and-method", test_not_found_and_method);
  ADD ("/handler-answering-nothing", test_handler_answering_nothing);
  ADD ("/too-large/content-length", test_too_large_by_length);
  ADD ("/too-large/chunked", test_too_large_chunked);
  ADD ("/wrong-content-type", test_wrong_content_type);
  ADD ("/auth", test_auth);
  ADD ("/cors", test_cors);
  ADD ("/error-formats", test_error_formats);
  ADD ("/error-escaping", test_error_escaping);
  ADD ("/request-id", test_request_id);
  ADD ("/keep-alive", test_keep_alive);
  ADD ("/spool", test_spool);
  ADD ("/observer", test_observer);
  ADD ("/multipart", test_multipart);
  ADD ("/multipart-refusals", test_multipart_refusals);
  ADD ("/admit", test_admit);
  ADD ("/precheck", test_precheck);
#undef ADD
  g_test_add_func ("/http/addresses", test_addresses);
  static const server_mode short_timeout = { 1, FALSE }, short_timeout_pool = { 1, TRUE };
  g_test_add ("/http/spool-aborted-upload", fixture, &short_timeout, fixture_setup,
              test_spool_aborted_upload, fixture_teardown);
  g_test_add ("/http/pool/spool-aborted-upload", fixture, &short_timeout_pool, fixture_setup,
              test_spool_aborted_upload, fixture_teardown);
  g_test_add_func ("/http/cors-any-origin", test_cors_any_origin);
  g_test_add_func ("/http/json-quote", test_json_quote);
  g_test_add_func ("/http/listen-errors", test_listen_errors);
  g_test_add_func ("/http/pool/queue-full", test_pool_queue_full);
  g_test_add_func ("/http/pool/slow-precheck", test_pool_slow_precheck);
  g_test_add_func ("/http/pool/stop", test_pool_stop);
  g_test_add_func ("/http/idle-connections", test_idle_connections);
  g_test_add_func ("/http/per-ip-cap", test_per_ip_cap);
  g_test_add_func ("/http/timeouts", test_timeouts);

  return g_test_run ();
}
