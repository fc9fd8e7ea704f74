/* test-session-store.c: the session store when no keyring answers
 *
 * Run with no session bus (DBUS_SESSION_BUS_ADDRESS points nowhere, no DISPLAY), as on a bare
 * server or in a container: libsecret fails, and the session must land in a 0600 file, come
 * back from it, and go away with it.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <glib/gstdio.h>
#include <sys/stat.h>

#include "generia-session-store.h"

static const char *session_json =
  "{\"server_url\":\"http://localhost:8080\",\"access_token\":\"a.b.c\","
  "\"refresh_token\":\"r1\",\"user\":{\"id\":\"b1092f85-7bf4-4c2a-8d4c-38c5c971f219\","
  "\"username\":\"alice\",\"email\":\"alice@example.org\","
  "\"created_at\":\"2026-11-26T15:46:51Z\"}}";

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

static char *
make_fallback_path (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *folder = g_dir_make_tmp ("generia-store-XXXXXX", &error);

  g_assert_no_error (error);
  /* A folder that does not exist yet: the store creates it, private to its owner. */
  return g_build_filename (folder, "generia", "session.json", NULL);
}

static void
remove_fallback_folders (const char *path)
{
  g_autofree char *folder = g_path_get_dirname (path);
  g_autofree char *top = g_path_get_dirname (folder);

  g_assert_cmpint (g_rmdir (folder), ==, 0);
  g_assert_cmpint (g_rmdir (top), ==, 0);
}

static void
test_file_fallback (void)
{
  g_autofree char *path = make_fallback_path ();
  g_autofree char *folder = g_path_get_dirname (path);
  g_autoptr(GeneriaSessionStore) store = generia_session_store_new (path);
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GeneriaSession) loaded = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  GStatBuf st;

  session = generia_session_new_from_json (session_json, &error);
  g_assert_no_error (error);
  g_assert_false (generia_session_store_get_uses_file (store));

  generia_session_store_save_async (store, session, NULL, store_result, &result);
  g_assert_true (generia_session_store_save_finish (store, wait_for_result (&result), &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  g_assert_true (generia_session_store_get_uses_file (store));
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (g_stat (folder, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);

  generia_session_store_load_async (store, NULL, store_result, &result);
  loaded = generia_session_store_load_finish (store, wait_for_result (&result), &error);
  g_assert_no_error (error);
  g_clear_object (&result);

  g_assert_nonnull (loaded);
  g_assert_cmpstr (generia_session_get_access_token (loaded), ==, "a.b.c");
  g_assert_cmpstr (generia_session_get_refresh_token (loaded), ==, "r1");
  g_assert_cmpstr (generia_user_get_email (generia_session_get_user (loaded)), ==,
                   "alice@example.org");

  generia_session_store_clear_async (store, NULL, store_result, &result);
  g_assert_true (generia_session_store_clear_finish (store, wait_for_result (&result), &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  g_assert_false (generia_session_store_get_uses_file (store));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));

  generia_session_store_load_async (store, NULL, store_result, &result);
  g_assert_null (generia_session_store_load_finish (store, wait_for_result (&result), &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  remove_fallback_folders (path);
  g_assert_finalize_object (g_steal_pointer (&loaded));
  g_assert_finalize_object (g_steal_pointer (&session));
  g_assert_finalize_object (g_steal_pointer (&store));
}

static void
test_unreadable_file (void)
{
  g_autofree char *path = make_fallback_path ();
  g_autofree char *folder = g_path_get_dirname (path);
  g_autoptr(GeneriaSessionStore) store = generia_session_store_new (path);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (g_mkdir_with_parents (folder, 0700), ==, 0);
  g_file_set_contents (path, "{\"server_url\": 42", -1, &error);
  g_assert_no_error (error);

  /* A damaged file means "logged out", not a failure to start. */
  generia_session_store_load_async (store, NULL, store_result, &result);
  g_assert_null (generia_session_store_load_finish (store, wait_for_result (&result), &error));
  g_assert_no_error (error);
  g_assert_false (generia_session_store_get_uses_file (store));
  g_clear_object (&result);

  g_assert_cmpint (g_unlink (path), ==, 0);
  remove_fallback_folders (path);
  g_assert_finalize_object (g_steal_pointer (&store));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/generia/session-store/file-fallback", test_file_fallback);
  g_test_add_func ("/generia/session-store/unreadable-file", test_unreadable_file);

  return g_test_run ();
}
