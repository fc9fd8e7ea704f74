/* test-client.c: GeneriaClient without a server: error mapping, input checks, an unreachable
 * node, and the session's stored form.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <gio/gio.h>
#include <libsoup/soup.h>

#include "generia-client.h"

static GBytes *
bytes_from_string (const char *text)
{
  return g_bytes_new_static (text, strlen (text));
}

static void
test_error_from_problem (void)
{
  g_autoptr(GBytes) body = bytes_from_string ("{\"type\":\"about:blank\",\"title\":\"Conflict\","
                                              "\"status\":409,\"detail\":\"that username is taken\","
                                              "\"code\":\"username_taken\"}");
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) copy = NULL;

  error = generia_client_error_new_from_response (409, "application/problem+json", body);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_CONFLICT);
  g_assert_cmpstr (generia_client_error_get_reason (error), ==, "username_taken");
  g_assert_cmpstr (error->message, ==, "That username is already taken.");

  /* The reason survives g_error_copy(), as GTask copies errors between callers. */
  copy = g_error_copy (error);
  g_assert_cmpstr (generia_client_error_get_reason (copy), ==, "username_taken");
}

static void
test_error_unknown_reason_keeps_detail (void)
{
  g_autoptr(GBytes) body = bytes_from_string ("{\"title\":\"Forbidden\",\"status\":403,"
                                              "\"detail\":\"this node is read-only\","
                                              "\"code\":\"read_only\"}");
  g_autoptr(GError) error = NULL;

  error = generia_client_error_new_from_response (403, "application/problem+json", body);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_FORBIDDEN);
  g_assert_cmpstr (generia_client_error_get_reason (error), ==, "read_only");
  g_assert_cmpstr (error->message, ==, "this node is read-only");
}

static void
test_error_title_without_detail (void)
{
  g_autoptr(GBytes) body = bytes_from_string ("{\"title\":\"Payload Too Large\",\"status\":413}");
  g_autoptr(GError) error = NULL;

  error = generia_client_error_new_from_response (413, "application/problem+json", body);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_TOO_LARGE);
  g_assert_null (generia_client_error_get_reason (error));
  g_assert_cmpstr (error->message, ==, "Payload Too Large");
}

static void
test_error_plain_text (void)
{
  g_autoptr(GBytes) body = bytes_from_string ("wrong password\n");
  g_autoptr(GError) error = NULL;

  error = generia_client_error_new_from_response (401, "text/plain", body);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED);
  g_assert_null (generia_client_error_get_reason (error));
  g_assert_cmpstr (error->message, ==, "wrong password");
}

static void
test_error_status_codes (void)
{
  static const struct
  {
    guint              status;
    GeneriaClientError code;
  } cases[] = {
    { 400, GENERIA_CLIENT_ERROR_INVALID },
    { 401, GENERIA_CLIENT_ERROR_UNAUTHORIZED },
    { 403, GENERIA_CLIENT_ERROR_FORBIDDEN },
    { 404, GENERIA_CLIENT_ERROR_NOT_FOUND },
    { 409, GENERIA_CLIENT_ERROR_CONFLICT },
    { 413, GENERIA_CLIENT_ERROR_TOO_LARGE },
    { 415, GENERIA_CLIENT_ERROR_INVALID },
    { 429, GENERIA_CLIENT_ERROR_RATE_LIMITED },
    { 500, GENERIA_CLIENT_ERROR_SERVER },
    { 502, GENERIA_CLIENT_ERROR_SERVER },
    { 503, GENERIA_CLIENT_ERROR_UNAVAILABLE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = generia_client_error_new_from_response (cases[i].status, NULL, NULL);

      g_assert_error (error, GENERIA_CLIENT_ERROR, (int)cases[i].code);
      g_assert_cmpstr (error->message, !=, "");
    }
}

static void
test_error_malformed_problem (void)
{
  g_autoptr(GBytes) body = bytes_from_string ("{not json");
  g_autoptr(GError) error = NULL;

  error = generia_client_error_new_from_response (500, "application/problem+json", body);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_SERVER);
  g_assert_cmpstr (error->message, ==, "The server answered with error 500.");
}

static void
test_checks (void)
{
  static const char *good_usernames[] = { "abc", "alice_1.x", "a23456789012345678901234567890" };
  static const char *bad_usernames[] = { "", "ab", "Alice", "al ice", "a-b", "élan",
                                         "a234567890123456789012345678901" };
  static const char *good_emails[] = { "a@b.co", "alice.smith+tag@mail.example.org" };
  static const char *bad_emails[] = { "", "alice", "@b.co", "a@b", "a@.co", "a@b.", "a b@c.de",
                                      "a@b@c.de" };
  static const char *good_urls[] = { "http://localhost:8080", "https://generia.example.org/",
                                     "HTTP://127.0.0.1" };
  static const char *bad_urls[] = { "", "localhost:8080", "ftp://example.org", "http://",
                                    "generia" };

  for (guint i = 0; i < G_N_ELEMENTS (good_usernames); i++)
    g_assert_true (generia_client_check_username (good_usernames[i], NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad_usernames); i++)
    {
      g_autoptr(GError) error = NULL;

      g_assert_false (generia_client_check_username (bad_usernames[i], &error));
      g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID);
    }

  for (guint i = 0; i < G_N_ELEMENTS (good_emails); i++)
    g_assert_true (generia_client_check_email (good_emails[i], NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad_emails); i++)
    g_assert_false (generia_client_check_email (bad_emails[i], NULL));

  for (guint i = 0; i < G_N_ELEMENTS (good_urls); i++)
    g_assert_true (generia_client_check_server_url (good_urls[i], NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad_urls); i++)
    g_assert_false (generia_client_check_server_url (bad_urls[i], NULL));

  g_assert_true (generia_client_check_password ("12345678", NULL));
  g_assert_true (generia_client_check_password ("пароль12", NULL));
  g_assert_false (generia_client_check_password ("1234567", NULL));
  g_assert_false (generia_client_check_password ("", NULL));
}

static void
store_result (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

static GAsyncResult *
wait_for_result (GAsyncResult **slot)
{
  while (*slot == NULL)
    g_main_context_iteration (NULL, TRUE);

  return *slot;
}

/* A port on which nothing listens: bound by the kernel, then closed again. */
static guint16
find_closed_port (void)
{
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any_port = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                         &error);
  g_assert_no_error (error);
  g_socket_bind (socket, any_port, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  g_socket_close (socket, &error);
  g_assert_no_error (error);

  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static void
test_unreachable (void)
{
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u", find_closed_port ());
  g_autofree char *expected = g_strdup_printf ("Can't reach the server at %s. Is it running?", url);
  g_autoptr(GeneriaClient) client = generia_client_new (url);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GError) error = NULL;

  generia_client_login_async (client, "alice", "password123", NULL, store_result, &result);
  session = generia_client_login_finish (client, wait_for_result (&result), &error);

  g_assert_null (session);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNREACHABLE);
  g_assert_cmpstr (error->message, ==, expected);

  g_clear_object (&result);
  g_assert_finalize_object (g_steal_pointer (&client));
}

static void
test_invalid_input_is_not_sent (void)
{
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u", find_closed_port ());
  g_autoptr(GeneriaClient) client = generia_client_new (url);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GError) error = NULL;

  /* Were it sent, this would fail as unreachable instead. */
  generia_client_register_async (client, "  Alice  ", "alice@example", "password123", NULL,
                                 store_result, &result);
  session = generia_client_register_finish (client, wait_for_result (&result), &error);

  g_assert_null (session);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID);
  g_assert_cmpstr (error->message, ==, "That doesn't look like an e-mail address.");

  g_clear_object (&result);
  g_assert_finalize_object (g_steal_pointer (&client));
}

static void
test_me_needs_session (void)
{
  g_autoptr(GeneriaClient) client = generia_client_new ("http://localhost:8080");
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GeneriaUser) user = NULL;
  g_autoptr(GError) error = NULL;

  generia_client_me_async (client, NULL, store_result, &result);
  user = generia_client_me_finish (client, wait_for_result (&result), &error);

  g_assert_null (user);
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED);

  g_clear_object (&result);
  g_assert_finalize_object (g_steal_pointer (&client));
}

static void
test_session_json (void)
{
  static const char *json =
    "{\"server_url\":\"http://localhost:8080\",\"access_token\":\"a.b.c\","
    "\"refresh_token\":\"r1\",\"user\":{\"id\":\"b1092f85-7bf4-4c2a-8d4c-38c5c971f219\","
    "\"username\":\"alice\",\"email\":\"alice@example.org\","
    "\"created_at\":\"2026-11-26T15:46:51Z\"}}";
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GeneriaSession) again = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *written = NULL;
  GeneriaUser *user;

  session = generia_session_new_from_json (json, &error);
  g_assert_no_error (error);
  user = generia_session_get_user (session);
  g_assert_cmpstr (generia_user_get_username (user), ==, "alice");
  g_assert_cmpint (g_date_time_get_year (generia_user_get_created_at (user)), ==, 2026);

  generia_session_set_tokens (session, "d.e.f", "r2");
  written = generia_session_to_json (session);
  again = generia_session_new_from_json (written, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (generia_session_get_access_token (again), ==, "d.e.f");
  g_assert_cmpstr (generia_session_get_refresh_token (again), ==, "r2");
  g_assert_cmpstr (generia_session_get_server_url (again), ==, "http://localhost:8080");
  g_assert_cmpstr (generia_user_get_id (generia_session_get_user (again)), ==,
                   "b1092f85-7bf4-4c2a-8d4c-38c5c971f219");

  g_assert_null (generia_session_new_from_json ("{\"server_url\":\"x\"}", &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE);

  g_assert_finalize_object (g_steal_pointer (&again));
  g_assert_finalize_object (g_steal_pointer (&session));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/generia/client/error/problem", test_error_from_problem);
  g_test_add_func ("/generia/client/error/unknown-reason", test_error_unknown_reason_keeps_detail);
  g_test_add_func ("/generia/client/error/title", test_error_title_without_detail);
  g_test_add_func ("/generia/client/error/plain-text", test_error_plain_text);
  g_test_add_func ("/generia/client/error/status-codes", test_error_status_codes);
  g_test_add_func ("/generia/client/error/malformed", test_error_malformed_problem);
  g_test_add_func ("/generia/client/checks", test_checks);
  g_test_add_func ("/generia/client/unreachable", test_unreachable);
  g_test_add_func ("/generia/client/invalid-input", test_invalid_input_is_not_sent);
  g_test_add_func ("/generia/client/me-needs-session", test_me_needs_session);
  g_test_add_func ("/generia/session/json", test_session_json);

  return g_test_run ();
}
