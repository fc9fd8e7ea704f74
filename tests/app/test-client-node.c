/* test-client-node.c: GeneriaClient against a real node
 *
 * Run through run-with-node.sh, which starts generia-node and sets GENERIA_TEST_GATEWAY_URL:
 * every endpoint the app uses, the errors a person can meet (name taken, wrong password,
 * unknown user), `me` refreshing an expired access token once and retrying, and logout
 * revoking the refresh token.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <gio/gio.h>

#include "generia-client.h"

static const char *password = "correct horse battery";

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
  g_clear_object (slot);
  while (*slot == NULL)
    g_main_context_iteration (NULL, TRUE);

  return *slot;
}

static GeneriaClient *
new_client_or_skip (void)
{
  const char *url = g_getenv ("GENERIA_TEST_GATEWAY_URL");

  if (url == NULL)
    {
      g_test_skip ("GENERIA_TEST_GATEWAY_URL is not set: run through run-with-node.sh");
      return NULL;
    }

  return generia_client_new (url);
}

static GeneriaSession *
register_user (GeneriaClient *client,
               const char    *username)
{
  g_autofree char *email = g_strdup_printf ("%s@example.org", username);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  GeneriaSession *session;

  generia_client_register_async (client, username, email, password, NULL, store_result, &result);
  session = generia_client_register_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);

  return session;
}

static void
test_register_and_log_in (void)
{
  g_autoptr(GeneriaClient) client = new_client_or_skip ();
  g_autofree char *username = g_strdup_printf ("client_%08x", g_random_int ());
  g_autofree char *upper = g_ascii_strup (username, -1);
  g_autoptr(GeneriaSession) registered = NULL;
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  if (client == NULL)
    return;

  /* Typed in capitals, stored lowercased. */
  registered = register_user (client, upper);
  g_assert_cmpstr (generia_user_get_username (generia_session_get_user (registered)), ==, username);

  generia_client_register_async (client, username, "another@example.org", password, NULL,
                                 store_result, &result);
  g_assert_null (generia_client_register_finish (client, wait_for_result (&result), &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_CONFLICT);
  g_assert_cmpstr (generia_client_error_get_reason (error), ==, "username_taken");
  g_clear_error (&error);

  generia_client_login_async (client, username, "not the password", NULL, store_result, &result);
  g_assert_null (generia_client_login_finish (client, wait_for_result (&result), &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED);
  g_assert_cmpstr (error->message, ==, "Wrong password.");
  g_clear_error (&error);

  generia_client_login_async (client, "nobody_here", password, NULL, store_result, &result);
  g_assert_null (generia_client_login_finish (client, wait_for_result (&result), &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_NOT_FOUND);
  g_assert_cmpstr (generia_client_error_get_reason (error), ==, "user_not_found");
  g_clear_error (&error);

  /* By e-mail address too. */
  generia_client_login_async (client, generia_user_get_email (generia_session_get_user (registered)),
                              password, NULL, store_result, &result);
  session = generia_client_login_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (generia_user_get_id (generia_session_get_user (session)), ==,
                   generia_user_get_id (generia_session_get_user (registered)));

  g_clear_object (&result);
  g_assert_finalize_object (g_steal_pointer (&client));
}

static void
test_me_refreshes_once (void)
{
  g_autoptr(GeneriaClient) client = new_client_or_skip ();
  g_autofree char *username = g_strdup_printf ("refresh_%08x", g_random_int ());
  g_autofree char *old_refresh_token = NULL;
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GeneriaUser) user = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  if (client == NULL)
    return;

  session = register_user (client, username);
  generia_client_set_session (client, session);

  generia_client_me_async (client, NULL, store_result, &result);
  user = generia_client_me_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (generia_user_get_username (user), ==, username);
  g_clear_object (&user);

  /* An access token the node refuses, as an expired one would be: `me` refreshes and retries. */
  old_refresh_token = g_strdup (generia_session_get_refresh_token (session));
  generia_session_set_tokens (session, "not.a.token", old_refresh_token);
  generia_client_me_async (client, NULL, store_result, &result);
  user = generia_client_me_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);
  g_assert_cmpstr (generia_user_get_username (user), ==, username);
  g_assert_cmpstr (generia_session_get_access_token (session), !=, "not.a.token");
  g_assert_cmpstr (generia_session_get_refresh_token (session), !=, old_refresh_token);

  /* Logging out revokes the refresh token: refreshing afterwards is refused. */
  generia_client_logout_async (client, NULL, store_result, &result);
  g_assert_true (generia_client_logout_finish (client, wait_for_result (&result), &error));
  g_assert_no_error (error);

  generia_client_refresh_async (client, NULL, store_result, &result);
  g_assert_false (generia_client_refresh_finish (client, wait_for_result (&result), &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED);
  g_assert_cmpstr (error->message, ==, "Your session has expired. Please log in again.");

  g_clear_object (&result);
  generia_client_set_session (client, NULL);
  g_assert_finalize_object (g_steal_pointer (&client));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/generia/client-node/register-and-log-in", test_register_and_log_in);
  g_test_add_func ("/generia/client-node/me-refreshes-once", test_me_refreshes_once);

  return g_test_run ();
}
