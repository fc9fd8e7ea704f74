/* test-image-loader.c: GeneriaImageLoader against a tiny local HTTP server that serves PNGs
 * made at run time and counts the requests for each path: the cache (keyed without the query,
 * bounded, least recently used evicted first), one download shared by concurrent loads, one
 * caller's cancellation, and failures that are not cached.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <gio/gio.h>
#include <libsoup/soup.h>

#include "generia-image-loader.h"

typedef struct
{
  SoupServer         *server;
  GHashTable         *requests;
  char               *base_url;
  GeneriaClient      *client;
  GeneriaImageLoader *loader;
} Fixture;

/* A PNG of width × height, filled with one colour */
static GBytes *
make_png (guint width,
          guint height)
{
  gsize stride = (gsize)width * 4;
  g_autofree guchar *pixels = g_malloc (stride * height);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  for (gsize i = 0; i < stride * height; i += 4)
    {
      pixels[i] = 0x33;
      pixels[i + 1] = 0x88;
      pixels[i + 2] = 0xcc;
      pixels[i + 3] = 0xff;
    }
  bytes = g_bytes_new_take (g_steal_pointer (&pixels), stride * height);
  texture = gdk_memory_texture_new (width, height, GDK_MEMORY_R8G8B8A8, bytes, stride);

  return gdk_texture_save_to_png_bytes (texture);
}

/* "/missing…" answers 404, "/text…" a plain-text body, "/media/WxH-name.png" a PNG of that
 * size, whatever the query. */
static void
handle_request (SoupServer        *server,
                SoupServerMessage *message,
                const char        *path,
                GHashTable        *query,
                gpointer           user_data)
{
  Fixture *fixture = user_data;
  guint count = GPOINTER_TO_UINT (g_hash_table_lookup (fixture->requests, path));
  guint width;
  guint height;

  g_hash_table_insert (fixture->requests, g_strdup (path), GUINT_TO_POINTER (count + 1));

  if (g_str_has_prefix (path, "/text"))
    {
      soup_server_message_set_response (message, "text/plain", SOUP_MEMORY_STATIC, "hello", 5);
      soup_server_message_set_status (message, SOUP_STATUS_OK, NULL);
    }
  else if (sscanf (path, "/media/%ux%u-", &width, &height) == 2)
    {
      g_autoptr(GBytes) png = make_png (width, height);

      soup_server_message_set_response (message, "image/png", SOUP_MEMORY_COPY,
                                        g_bytes_get_data (png, NULL), g_bytes_get_size (png));
      soup_server_message_set_status (message, SOUP_STATUS_OK, NULL);
    }
  else
    {
      soup_server_message_set_status (message, SOUP_STATUS_NOT_FOUND, NULL);
    }
}

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GUri) uri = NULL;
  GSList *uris;

  fixture->requests = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  fixture->server = soup_server_new (NULL, NULL);
  soup_server_add_handler (fixture->server, NULL, handle_request, fixture, NULL);
  soup_server_listen_local (fixture->server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error);
  g_assert_no_error (error);

  uris = soup_server_get_uris (fixture->server);
  g_assert_nonnull (uris);
  uri = g_uri_ref (uris->data);
  g_slist_free_full (uris, (GDestroyNotify)g_uri_unref);
  fixture->base_url = g_strdup_printf ("http://127.0.0.1:%d", g_uri_get_port (uri));

  fixture->client = generia_client_new (NULL);
  fixture->loader = generia_image_loader_new (fixture->client);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  data)
{
  g_assert_finalize_object (g_steal_pointer (&fixture->loader));
  g_assert_finalize_object (g_steal_pointer (&fixture->client));
  soup_server_disconnect (fixture->server);
  g_clear_object (&fixture->server);
  g_clear_pointer (&fixture->requests, g_hash_table_unref);
  g_clear_pointer (&fixture->base_url, g_free);
}

static guint
n_requests (Fixture    *fixture,
            const char *path)
{
  return GPOINTER_TO_UINT (g_hash_table_lookup (fixture->requests, path));
}

static char *
url_for (Fixture    *fixture,
         const char *path_and_query)
{
  return g_strconcat (fixture->base_url, path_and_query, NULL);
}

typedef struct
{
  gboolean    done;
  GdkTexture *texture;
  GError     *error;
} Load;

static void
on_loaded (GObject      *object,
           GAsyncResult *result,
           gpointer      user_data)
{
  Load *load = user_data;

  load->texture = generia_image_loader_load_finish (GENERIA_IMAGE_LOADER (object), result,
                                                    &load->error);
  load->done = TRUE;
}

static void
start_load (Fixture      *fixture,
            const char   *path_and_query,
            GCancellable *cancellable,
            Load         *load)
{
  g_autofree char *url = url_for (fixture, path_and_query);

  generia_image_loader_load_async (fixture->loader, url, cancellable, on_loaded, load);
}

static void
wait_for (Load *load)
{
  while (!load->done)
    g_main_context_iteration (NULL, TRUE);
}

static void
load_clear (Load *load)
{
  g_clear_object (&load->texture);
  g_clear_error (&load->error);
  load->done = FALSE;
}

/* Loads and checks that the result is a texture of width × height */
static void
load_texture (Fixture    *fixture,
              const char *path_and_query,
              int         width,
              int         height)
{
  Load load = { 0 };

  start_load (fixture, path_and_query, NULL, &load);
  wait_for (&load);
  g_assert_no_error (load.error);
  g_assert_true (GDK_IS_TEXTURE (load.texture));
  g_assert_cmpint (gdk_texture_get_width (load.texture), ==, width);
  g_assert_cmpint (gdk_texture_get_height (load.texture), ==, height);
  load_clear (&load);
}

static void
test_load (Fixture       *fixture,
           gconstpointer  data)
{
  load_texture (fixture, "/media/5x3-a.png?expires=1&signature=abc", 5, 3);
  g_assert_cmpuint (n_requests (fixture, "/media/5x3-a.png"), ==, 1);
}

static void
test_cached_without_query (Fixture       *fixture,
                           gconstpointer  data)
{
  g_autofree char *other_url = url_for (fixture, "/media/5x3-a.png?expires=9&signature=zzz");
  g_autofree char *unknown_url = url_for (fixture, "/media/5x3-b.png");
  g_autoptr(GdkTexture) cached = NULL;

  load_texture (fixture, "/media/5x3-a.png?expires=1&signature=abc", 5, 3);
  load_texture (fixture, "/media/5x3-a.png?expires=2&signature=def", 5, 3);
  g_assert_cmpuint (n_requests (fixture, "/media/5x3-a.png"), ==, 1);

  cached = generia_image_loader_lookup (fixture->loader, other_url);
  g_assert_true (GDK_IS_TEXTURE (cached));
  g_assert_null (generia_image_loader_lookup (fixture->loader, unknown_url));
}

static void
test_concurrent_share_download (Fixture       *fixture,
                                gconstpointer  data)
{
  Load first = { 0 };
  Load second = { 0 };

  start_load (fixture, "/media/4x4-a.png?signature=1", NULL, &first);
  start_load (fixture, "/media/4x4-a.png?signature=2", NULL, &second);
  wait_for (&first);
  wait_for (&second);

  g_assert_no_error (first.error);
  g_assert_no_error (second.error);
  g_assert_true (first.texture == second.texture);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 1);

  load_clear (&first);
  load_clear (&second);
}

static void
test_cancel_one_caller (Fixture       *fixture,
                        gconstpointer  data)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Load cancelled = { 0 };
  Load kept = { 0 };

  start_load (fixture, "/media/4x4-a.png", cancellable, &cancelled);
  start_load (fixture, "/media/4x4-a.png", NULL, &kept);
  g_cancellable_cancel (cancellable);

  wait_for (&cancelled);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (cancelled.texture);
  /* The cancelled caller is told at once, before the shared download is done. */
  g_assert_false (kept.done);

  wait_for (&kept);
  g_assert_no_error (kept.error);
  g_assert_true (GDK_IS_TEXTURE (kept.texture));
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 1);

  load_clear (&cancelled);
  load_clear (&kept);

  /* And the result was cached for later callers. */
  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 1);
}

static void
test_cancel_every_caller (Fixture       *fixture,
                          gconstpointer  data)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Load first = { 0 };
  Load second = { 0 };

  start_load (fixture, "/media/4x4-a.png", cancellable, &first);
  start_load (fixture, "/media/4x4-a.png", cancellable, &second);
  g_cancellable_cancel (cancellable);
  wait_for (&first);
  wait_for (&second);
  g_assert_error (first.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_error (second.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  load_clear (&first);
  load_clear (&second);

  /* A later load starts afresh, and the loader is finalized only once the cancelled download
   * has let go of it. */
  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
test_eviction (Fixture       *fixture,
               gconstpointer  data)
{
  /* 4 × 4 × 4 = 64 bytes each: room for one only */
  generia_image_loader_set_max_bytes (fixture->loader, 100);
  g_assert_cmpuint (generia_image_loader_get_max_bytes (fixture->loader), ==, 100);

  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  load_texture (fixture, "/media/4x4-b.png", 4, 4);
  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 2);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-b.png"), ==, 1);

  /* Room for two: A and B both stay. */
  generia_image_loader_set_max_bytes (fixture->loader, 128);
  load_texture (fixture, "/media/4x4-b.png", 4, 4);
  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 2);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-b.png"), ==, 2);

  /* Least recently used, not first loaded: using B again makes A the one C pushes out. */
  load_texture (fixture, "/media/4x4-b.png", 4, 4);
  load_texture (fixture, "/media/4x4-c.png", 4, 4);
  load_texture (fixture, "/media/4x4-b.png", 4, 4);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-b.png"), ==, 2);
  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 3);

  /* Lowering the bound evicts at once. */
  generia_image_loader_set_max_bytes (fixture->loader, 0);
  load_texture (fixture, "/media/4x4-a.png", 4, 4);
  g_assert_cmpuint (n_requests (fixture, "/media/4x4-a.png"), ==, 4);
}

static void
test_failures_not_cached (Fixture       *fixture,
                          gconstpointer  data)
{
  Load load = { 0 };

  for (guint i = 1; i <= 2; i++)
    {
      start_load (fixture, "/missing.png?signature=x", NULL, &load);
      wait_for (&load);
      g_assert_error (load.error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_NOT_FOUND);
      g_assert_null (load.texture);
      load_clear (&load);
      g_assert_cmpuint (n_requests (fixture, "/missing.png"), ==, i);

      start_load (fixture, "/text.png", NULL, &load);
      wait_for (&load);
      g_assert_nonnull (load.error);
      g_assert_null (load.texture);
      load_clear (&load);
      g_assert_cmpuint (n_requests (fixture, "/text.png"), ==, i);
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) \
  g_test_add ("/generia/image-loader/" path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)

  ADD ("load", test_load);
  ADD ("cached-without-query", test_cached_without_query);
  ADD ("concurrent-share-download", test_concurrent_share_download);
  ADD ("cancel-one-caller", test_cancel_one_caller);
  ADD ("cancel-every-caller", test_cancel_every_caller);
  ADD ("eviction", test_eviction);
  ADD ("failures-not-cached", test_failures_not_cached);

#undef ADD

  return g_test_run ();
}
