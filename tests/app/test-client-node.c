/* test-client-node.c: GeneriaClient against a real node
 *
 * Run through run-with-node.sh, which starts generia-node and sets GENERIA_TEST_GATEWAY_URL:
 * every endpoint the app uses, the errors a person can meet (name taken, wrong password,
 * unknown user), the short-lived access tokens the app asks for (the node gives clients that do
 * not say they refresh tokens for a day), `me` refreshing an expired access token once and retrying, logout
 * revoking the refresh token, and posting a photo that then leads the global feed.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <string.h>

#include <gdk/gdk.h>
#include <json-glib/json-glib.h>

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

/* exp - iat of a JWT access token, read from its (unverified) payload. */
static gint64
access_token_lifetime (const char *token)
{
  g_auto(GStrv) parts = g_strsplit (token, ".", 3);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  g_autofree guchar *payload = NULL;
  g_autofree char *base64 = NULL;
  gsize len = 0;
  JsonObject *claims;

  g_assert_cmpuint (g_strv_length (parts), ==, 3);
  /* base64url without padding to plain base64 */
  base64 = g_strnfill ((strlen (parts[1]) + 3) / 4 * 4, '=');
  memcpy (base64, parts[1], strlen (parts[1]));
  g_strdelimit (base64, "-", '+');
  g_strdelimit (base64, "_", '/');
  payload = g_base64_decode (base64, &len);
  g_assert_true (json_parser_load_from_data (parser, (const char *) payload, len, &error));
  g_assert_no_error (error);
  claims = json_node_get_object (json_parser_get_root (parser));

  return json_object_get_int_member (claims, "exp") - json_object_get_int_member (claims, "iat");
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
  /* The app refreshes, so it asks for the node's short-lived tokens (auth.access_token_ttl). */
  g_assert_cmpint (access_token_lifetime (generia_session_get_access_token (registered)), ==, 15 * 60);

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
  g_assert_cmpint (access_token_lifetime (generia_session_get_access_token (session)), ==, 15 * 60);

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

/* A small PNG made here, so that no binary file is kept in the repository. */
static GBytes *
new_png (int width,
         int height)
{
  g_autoptr(GBytes) pixels = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  guchar *data = g_malloc (width * height * 3);

  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      {
        guchar *pixel = data + (y * width + x) * 3;

        pixel[0] = 255 * x / width;
        pixel[1] = 255 * y / height;
        pixel[2] = 160;
      }

  pixels = g_bytes_new_take (data, width * height * 3);
  texture = gdk_memory_texture_new (width, height, GDK_MEMORY_R8G8B8, pixels, width * 3);

  return gdk_texture_save_to_png_bytes (texture);
}

static void
test_post_and_feed (void)
{
  g_autoptr(GeneriaClient) client = new_client_or_skip ();
  g_autofree char *username = g_strdup_printf ("poster_%08x", g_random_int ());
  g_autofree char *caption = g_strdup_printf ("Sunset at the lake #%s", username);
  g_autofree char *media_id = NULL;
  g_autofree char *post_id = NULL;
  g_autofree char *next_cursor = NULL;
  g_autofree char *refresh_token = NULL;
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GPtrArray) posts = NULL;
  g_autoptr(GBytes) png = new_png (320, 240);
  g_autoptr(GBytes) text = g_bytes_new_static ("just words", 10);
  g_autoptr(GBytes) image = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  GeneriaPost *post;

  if (client == NULL)
    return;

  /* Not logged in: refused before sending. */
  generia_client_upload_media_async (client, png, "photo.png", "image/png", NULL,
                                     store_result, &result);
  g_assert_null (generia_client_upload_media_finish (client, wait_for_result (&result), &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED);
  g_clear_error (&error);

  session = register_user (client, username);
  generia_client_set_session (client, session);

  /* What is not an image is refused by the node (415), with a sentence for the person. */
  generia_client_upload_media_async (client, text, "notes.txt", "text/plain", NULL,
                                     store_result, &result);
  g_assert_null (generia_client_upload_media_finish (client, wait_for_result (&result), &error));
  g_assert_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID);
  g_assert_cmpstr (generia_client_error_get_reason (error), ==, "unsupported_media_type");
  g_assert_cmpstr (error->message, ==, "That file is not a photo or video Generia supports.");
  g_clear_error (&error);

  /* An expired access token on the upload: refreshed once, then uploaded. */
  refresh_token = g_strdup (generia_session_get_refresh_token (session));
  generia_session_set_tokens (session, "not.a.token", refresh_token);
  generia_client_upload_media_async (client, png, "photo.png", "image/png", NULL,
                                     store_result, &result);
  media_id = generia_client_upload_media_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);
  g_assert_nonnull (media_id);

  generia_client_create_post_async (client, caption, media_id, NULL, store_result, &result);
  post_id = generia_client_create_post_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);
  g_assert_nonnull (post_id);

  /* The same upload cannot be used twice. */
  generia_client_create_post_async (client, "again", media_id, NULL, store_result, &result);
  g_assert_null (generia_client_create_post_finish (client, wait_for_result (&result), &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == GENERIA_CLIENT_ERROR);
  g_clear_error (&error);

  /* The new post leads the feed, one post a page. */
  generia_client_feed_async (client, NULL, 1, NULL, store_result, &result);
  posts = generia_client_feed_finish (client, wait_for_result (&result), &next_cursor, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (posts->len, ==, 1);
  post = g_ptr_array_index (posts, 0);
  g_assert_cmpstr (generia_post_get_id (post), ==, post_id);
  g_assert_cmpstr (generia_post_get_username (post), ==, username);
  g_assert_cmpstr (generia_post_get_caption (post), ==, caption);
  g_assert_cmpuint (generia_post_get_n_media (post), ==, 1);
  g_assert_cmpint (generia_post_get_width (post), ==, 320);
  g_assert_cmpint (generia_post_get_height (post), ==, 240);
  g_assert_nonnull (generia_post_get_created_at (post));
  g_assert_nonnull (generia_post_get_media_url (post));

  /* Its image is at the signed URL, without credentials. */
  generia_client_download_async (client, generia_post_get_media_url (post), NULL,
                                 store_result, &result);
  image = generia_client_download_finish (client, wait_for_result (&result), &error);
  g_assert_no_error (error);
  texture = gdk_texture_new_from_bytes (image, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gdk_texture_get_width (texture) * 240, ==, gdk_texture_get_height (texture) * 320);

  /* Paging goes on from the cursor until the last page, which has none. */
  while (next_cursor != NULL)
    {
      g_autofree char *cursor = g_steal_pointer (&next_cursor);

      g_clear_pointer (&posts, g_ptr_array_unref);
      generia_client_feed_async (client, cursor, 20, NULL, store_result, &result);
      posts = generia_client_feed_finish (client, wait_for_result (&result), &next_cursor, &error);
      g_assert_no_error (error);
      for (guint i = 0; i < posts->len; i++)
        g_assert_cmpstr (generia_post_get_id (g_ptr_array_index (posts, i)), !=, post_id);
    }

  g_clear_object (&result);
  g_clear_pointer (&posts, g_ptr_array_unref);
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
  g_test_add_func ("/generia/client-node/post-and-feed", test_post_and_feed);

  return g_test_run ();
}
