/* test-errors.c - gRPC failures as HTTP answers: the status table, and the bodies a real
 * gateway-style server sends for them in both formats (plain text and problem+json). */
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "gateway/errors.h"

static void
test_status_mapping (void)
{
  static const struct {
    grpc_status_code code;
    int http;
  } table[] = {
    { GRPC_STATUS_OK, 200 },
    { GRPC_STATUS_CANCELLED, 500 },
    { GRPC_STATUS_UNKNOWN, 500 },
    { GRPC_STATUS_INVALID_ARGUMENT, 400 },
    { GRPC_STATUS_DEADLINE_EXCEEDED, 504 },
    { GRPC_STATUS_NOT_FOUND, 404 },
    { GRPC_STATUS_ALREADY_EXISTS, 409 },
    { GRPC_STATUS_PERMISSION_DENIED, 403 },
    { GRPC_STATUS_RESOURCE_EXHAUSTED, 429 },
    { GRPC_STATUS_FAILED_PRECONDITION, 400 },
    { GRPC_STATUS_ABORTED, 409 },
    { GRPC_STATUS_OUT_OF_RANGE, 400 },
    { GRPC_STATUS_UNIMPLEMENTED, 501 },
    { GRPC_STATUS_INTERNAL, 500 },
    { GRPC_STATUS_UNAVAILABLE, 503 },
    { GRPC_STATUS_DATA_LOSS, 500 },
    { GRPC_STATUS_UNAUTHENTICATED, 401 },
    { (grpc_status_code)99, 500 },
  };

  for (size_t i = 0; i < G_N_ELEMENTS (table); i++) {
    g_test_message ("gRPC code %d", table[i].code);
    g_assert_cmpint (gn_gateway_http_status (table[i].code), ==, table[i].http);
  }
}

/* The statuses the server's /rpc/{n} route answers with. */
typedef struct {
  gn_rpc_status status;
  int http;
  const char *code;
  const char *detail;
} error_case;

static const error_case cases[] = {
  { { GRPC_STATUS_ALREADY_EXISTS, "username already taken", "username_taken" },
    409,
    "username_taken",
    "username already taken" },
  { { GRPC_STATUS_INVALID_ARGUMENT, "password must be at least 8 characters", "weak_password" },
    400,
    "weak_password",
    "password must be at least 8 characters" },
  { { GRPC_STATUS_NOT_FOUND, "no such user", "" }, 404, "not_found", "no such user" },
  { { GRPC_STATUS_UNAUTHENTICATED, "wrong password", "invalid_credentials" },
    401,
    "invalid_credentials",
    "wrong password" },
  { { GRPC_STATUS_PERMISSION_DENIED, "", "" }, 403, "forbidden", "Forbidden" },
  { { GRPC_STATUS_RESOURCE_EXHAUSTED, "too many attempts", "" },
    429,
    "rate_limited",
    "too many attempts" },
  { { GRPC_STATUS_ABORTED, "concurrent update", "" }, 409, "conflict", "concurrent update" },
  /* Out of password hash slots for a moment: 503 with Retry-After, not the client's 429. */
  { { GRPC_STATUS_RESOURCE_EXHAUSTED, "too many sign-ins at once; try again in a moment", "busy" },
    503,
    "busy",
    "The auth service is busy: try again" },
  { { GRPC_STATUS_UNAVAILABLE,
      "failed to connect to all addresses; last error: "
      "UNKNOWN: unix:/var/lib/generia/run/auth.sock: No such file or directory",
      "" },
    503,
    "unavailable",
    "The auth service is unavailable" },
  { { GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", "" },
    504,
    "timeout",
    "The auth service did not answer in time" },
  { { GRPC_STATUS_INTERNAL, "ERROR:  relation \"auth.users\" does not exist at 10.0.0.5",
      "db_error" },
    500,
    "internal_error",
    "Internal error" },
  { { GRPC_STATUS_UNKNOWN, "segfault in /srv/secret/path", "" },
    500,
    "internal_error",
    "Internal error" },
  { { GRPC_STATUS_DATA_LOSS, "disk /dev/sdb1 corrupt", "" },
    500,
    "internal_error",
    "Internal error" },
  { { GRPC_STATUS_UNIMPLEMENTED, "method Foo not found", "" },
    501,
    "not_implemented",
    "Not implemented by the auth service" },
  { { GRPC_STATUS_FAILED_PRECONDITION, "media not confirmed \"yet\"\n", "media_unconfirmed" },
    400,
    "media_unconfirmed",
    "media not confirmed \"yet\"\n" },
};

static void
handle_rpc_error (gn_http_request *request, void *data)
{
  int index = atoi (gn_http_param (request, "n"));

  gn_gateway_respond_rpc_error (request, &cases[index].status, "auth");
}

typedef struct {
  gn_router *router;
  gn_http_server *server;
  SoupSession *session;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gn_http_server_options options = { .name = "test-errors", .address = "127.0.0.1" };

  f->router = gn_router_new ();
  gn_router_add (f->router, "GET", "/rpc/{n}", handle_rpc_error, NULL, 0);
  options.router = f->router;
  f->server = gn_http_server_start (&options, &error);
  g_assert_no_error (error);
  f->session = soup_session_new ();
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  g_object_unref (f->session);
  gn_http_server_stop (f->server);
  gn_router_free (f->router);
}

static GBytes *
fetch (fixture *f, size_t index, gboolean problem, SoupMessage **out)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *uri
      = g_strdup_printf ("http://127.0.0.1:%d/rpc/%zu", gn_http_server_port (f->server), index);
  SoupMessage *msg = soup_message_new ("GET", uri);
  GBytes *body;

  if (problem)
    soup_message_headers_append (soup_message_get_request_headers (msg), "Accept",
                                 "application/problem+json");
  body = soup_session_send_and_read (f->session, msg, NULL, &error);
  g_assert_no_error (error);
  *out = msg;
  return body;
}

static void
test_plain_text (fixture *f, gconstpointer data)
{
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (SoupMessage) msg = NULL;
    g_autoptr (GBytes) body = fetch (f, i, FALSE, &msg);
    g_autofree char *expected = g_strconcat (cases[i].detail, "\n", NULL);
    g_autofree char *text = g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));

    g_test_message ("case %zu: %s", i, cases[i].status.message);
    g_assert_cmpint (soup_message_get_status (msg), ==, cases[i].http);
    g_assert_cmpstr (
        soup_message_headers_get_content_type (soup_message_get_response_headers (msg), NULL), ==,
        "text/plain");
    g_assert_cmpstr (text, ==, expected);
    g_assert_cmpstr (
        soup_message_headers_get_one (soup_message_get_response_headers (msg), "Retry-After"), ==,
        strcmp (cases[i].code, "busy") == 0 ? "1" : NULL);
  }
}

static void
test_problem_json (fixture *f, gconstpointer data)
{
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (SoupMessage) msg = NULL;
    g_autoptr (GBytes) body = fetch (f, i, TRUE, &msg);
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (GError) error = NULL;
    JsonObject *object;

    g_test_message ("case %zu: %s", i, cases[i].status.message);
    g_assert_cmpint (soup_message_get_status (msg), ==, cases[i].http);
    g_assert_cmpstr (
        soup_message_headers_get_content_type (soup_message_get_response_headers (msg), NULL), ==,
        "application/problem+json");
    json_parser_load_from_data (parser, g_bytes_get_data (body, NULL),
                                (gssize)g_bytes_get_size (body), &error);
    g_assert_no_error (error);
    object = json_node_get_object (json_parser_get_root (parser));
    g_assert_cmpstr (json_object_get_string_member (object, "type"), ==, "about:blank");
    g_assert_cmpstr (json_object_get_string_member (object, "title"), ==,
                     gn_http_status_title (cases[i].http));
    g_assert_cmpint (json_object_get_int_member (object, "status"), ==, cases[i].http);
    g_assert_cmpstr (json_object_get_string_member (object, "detail"), ==, cases[i].detail);
    g_assert_cmpstr (json_object_get_string_member (object, "code"), ==, cases[i].code);

    /* Server-side failures never show their internals. */
    if (cases[i].http >= 500) {
      g_autofree char *text = g_strndup (g_bytes_get_data (body, NULL), g_bytes_get_size (body));
      g_assert_null (strstr (text, cases[i].status.message));
    }
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/errors/status-mapping", test_status_mapping);
  g_test_add ("/errors/plain-text", fixture, NULL, fixture_setup, test_plain_text,
              fixture_teardown);
  g_test_add ("/errors/problem-json", fixture, NULL, fixture_setup, test_problem_json,
              fixture_teardown);
  return g_test_run ();
}
