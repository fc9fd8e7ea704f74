/* test-ui.c: the app's window against a real node
 *
 * Starts the application in-process, points it at the node in GENERIA_TEST_GATEWAY_URL (see
 * run-with-node.sh), and drives the real widgets the way a person would: registers an
 * account, logs out, fails to log in with a wrong password, logs in, posts a photo (made here,
 * a gradient) with the composer and sees it lead the feed, and saves screenshots of the
 * windows (rendered by GTK itself) into the build folder. Widgets are found by their id in
 * the templates, so the test sees what the person sees and needs no hooks in the app.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <adwaita.h>

#include "generia-application.h"
#include "generia-composer.h"
#include "generia-feed-page.h"

#define WAIT_TIMEOUT_SECONDS 60

static GeneriaApplication *application;

static GtkWidget *
find_widget (GtkWidget  *root,
             const char *id)
{
  const char *root_id = gtk_buildable_get_buildable_id (GTK_BUILDABLE (root));

  if (g_strcmp0 (root_id, id) == 0)
    return root;

  for (GtkWidget *child = gtk_widget_get_first_child (root);
       child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_widget (child, id);

      if (found != NULL)
        return found;
    }

  return NULL;
}

/* Finds the widget @id inside the widget @parent_id of the window. */
static GtkWidget *
get_widget (const char *parent_id,
            const char *id)
{
  GtkWidget *window = GTK_WIDGET (gtk_application_get_active_window (GTK_APPLICATION (application)));
  GtkWidget *parent = parent_id != NULL ? find_widget (window, parent_id) : window;
  GtkWidget *widget;

  g_assert_nonnull (parent);
  widget = find_widget (parent, id);
  if (widget == NULL)
    g_error ("No widget “%s” in “%s”", id, parent_id);

  return widget;
}

typedef gboolean (*Condition) (gconstpointer data);

static void
wait_until (Condition      condition,
            gconstpointer  data,
            const char    *what)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_SECONDS * G_USEC_PER_SEC;

  while (!condition (data))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("Timed out waiting for %s", what);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

static gboolean
page_is_shown (gconstpointer data)
{
  GtkStack *stack = GTK_STACK (get_widget (NULL, "stack"));

  return g_strcmp0 (gtk_stack_get_visible_child_name (stack), data) == 0 &&
         !gtk_stack_get_transition_running (stack);
}

static void
wait_for_page (const char *name)
{
  g_autofree char *what = g_strdup_printf ("the “%s” page", name);

  wait_until (page_is_shown, name, what);
}

static gboolean
label_is_shown (gconstpointer data)
{
  GtkWidget *label = GTK_WIDGET (data);

  return gtk_widget_get_visible (label) && gtk_label_get_text (GTK_LABEL (label))[0] != '\0';
}

static gboolean
is_drawn (gconstpointer data)
{
  GtkWidget *widget = GTK_WIDGET (data);

  return gtk_widget_get_mapped (widget) && gtk_widget_get_width (widget) > 0;
}

static void
set_text (const char *page,
          const char *row,
          const char *text)
{
  gtk_editable_set_text (GTK_EDITABLE (get_widget (page, row)), text);
}

static void
click (const char *page,
       const char *button)
{
  GtkWidget *widget = get_widget (page, button);

  g_assert_true (gtk_widget_is_sensitive (widget));
  g_signal_emit_by_name (widget, "clicked");
}

static void
save_window_screenshot (GtkWidget  *window,
                        const char *name)
{
  g_autofree char *path = g_test_build_filename (G_TEST_BUILT, name, NULL);
  g_autoptr(GdkPaintable) paintable = NULL;
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  g_autoptr(GdkTexture) reloaded = NULL;
  g_autoptr(GError) error = NULL;
  GtkSnapshot *snapshot;
  GskRenderer *renderer;
  int width;
  int height;

  wait_until (is_drawn, window, "the window to be drawn");
  gtk_test_widget_wait_for_draw (window);

  width = gtk_widget_get_width (window);
  height = gtk_widget_get_height (window);
  paintable = gtk_widget_paintable_new (window);
  snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, width, height);
  node = gtk_snapshot_free_to_node (snapshot);
  g_assert_nonnull (node);

  renderer = gtk_native_get_renderer (GTK_NATIVE (window));
  texture = gsk_renderer_render_texture (renderer, node,
                                         &GRAPHENE_RECT_INIT (0, 0, width, height));
  g_assert_true (gdk_texture_save_to_png (texture, path));

  reloaded = gdk_texture_new_from_filename (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gdk_texture_get_width (reloaded), ==, width);
  g_assert_cmpint (gdk_texture_get_height (reloaded), ==, height);
  g_test_message ("Screenshot: %s", path);
}

static void
save_screenshot (const char *name)
{
  save_window_screenshot (GTK_WIDGET (gtk_application_get_active_window (GTK_APPLICATION (application))),
                          name);
}

static void
test_register_log_out_log_in (void)
{
  const char *url = g_getenv ("GENERIA_TEST_GATEWAY_URL");
  g_autofree char *username = g_strdup_printf ("tester_%08x", g_random_int ());
  g_autofree char *email = g_strdup_printf ("%s@example.org", username);
  const char *password = "correct horse battery";
  GeneriaSessionStore *store = generia_application_get_session_store (application);
  GtkWidget *error_label;

  if (url == NULL)
    {
      g_test_skip ("GENERIA_TEST_GATEWAY_URL is not set: run through run-with-node.sh");
      return;
    }

  /* The welcome page, pointed at the test node. */
  wait_for_page ("server");
  set_text ("server_page", "server_row", url);
  save_screenshot ("screenshot-welcome.png");
  click ("server_page", "create_account_button");
  wait_for_page ("register");

  /* Input the server would refuse is refused before sending, next to the form. */
  set_text ("register_page", "username_row", "x");
  set_text ("register_page", "email_row", email);
  set_text ("register_page", "password_row", password);
  click ("register_page", "register_button");
  error_label = get_widget ("register_page", "error_label");
  wait_until (label_is_shown, error_label, "the invalid username error");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (error_label)), ==,
                   "Usernames have 3 to 30 characters: letters, digits, “_” and “.”.");

  /* Register for real: the feed shows, and the account page who is logged in. */
  set_text ("register_page", "username_row", username);
  click ("register_page", "register_button");
  wait_for_page ("feed");
  click (NULL, "account_button");
  wait_for_page ("account");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (get_widget ("account_page", "username_label"))),
                   ==, username);
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (get_widget ("account_page", "email_value"))),
                   ==, email);
  /* The wrapper provides an unlocked keyring, so no file fallback and no warning. */
  g_assert_false (generia_session_store_get_uses_file (store));
  g_assert_false (gtk_widget_get_visible (get_widget ("account_page", "keyring_warning")));

  /* Registering the same name again is refused with the server's reason. */
  gtk_widget_activate_action (get_widget (NULL, "stack"), "app.logout", NULL);
  wait_for_page ("server");
  g_assert_null (generia_application_get_session (application));
  click ("server_page", "create_account_button");
  wait_for_page ("register");
  set_text ("register_page", "username_row", username);
  set_text ("register_page", "email_row", "someone.else@example.org");
  set_text ("register_page", "password_row", password);
  click ("register_page", "register_button");
  error_label = get_widget ("register_page", "error_label");
  wait_until (label_is_shown, error_label, "the username taken error");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (error_label)), ==,
                   "That username is already taken.");

  /* A wrong password is shown on the login page. */
  gtk_widget_activate_action (get_widget (NULL, "stack"), "win.navigate", "s", "server");
  wait_for_page ("server");
  click ("server_page", "log_in_button");
  wait_for_page ("login");
  set_text ("login_page", "identifier_row", username);
  set_text ("login_page", "password_row", "not the password");
  click ("login_page", "log_in_button");
  error_label = get_widget ("login_page", "error_label");
  wait_until (label_is_shown, error_label, "the wrong password error");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (error_label)), ==, "Wrong password.");
  save_screenshot ("screenshot-wrong-password.png");

  /* The right one logs in. */
  set_text ("login_page", "password_row", password);
  click ("login_page", "log_in_button");
  wait_for_page ("feed");
  click (NULL, "account_button");
  wait_for_page ("account");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (get_widget ("account_page", "username_label"))),
                   ==, username);
  g_assert_nonnull (generia_application_get_session (application));

  save_screenshot ("screenshot-logged-in.png");
}

/* A 640×480 gradient as a PNG file in the build folder. */
static GFile *
write_test_photo (void)
{
  g_autofree char *path = g_test_build_filename (G_TEST_BUILT, "test-photo.png", NULL);
  g_autoptr(GBytes) pixels = NULL;
  g_autoptr(GdkTexture) texture = NULL;
  const int width = 640;
  const int height = 480;
  guchar *data = g_malloc (width * height * 3);

  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      {
        guchar *pixel = data + (y * width + x) * 3;

        pixel[0] = 40 + 200 * x / width;
        pixel[1] = 60 + 120 * y / height;
        pixel[2] = 220 - 160 * x / width;
      }

  pixels = g_bytes_new_take (data, width * height * 3);
  texture = gdk_memory_texture_new (width, height, GDK_MEMORY_R8G8B8, pixels, width * 3);
  g_assert_true (gdk_texture_save_to_png (texture, path));

  return g_file_new_for_path (path);
}

static GeneriaComposer *
find_composer (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GObject) window = g_list_model_get_item (toplevels, i);

      if (GENERIA_IS_COMPOSER (window) && gtk_widget_get_visible (GTK_WIDGET (window)))
        return GENERIA_COMPOSER (window);
    }

  return NULL;
}

static gboolean
composer_is_open (gconstpointer data)
{
  return find_composer () != NULL;
}

static gboolean
composer_is_closed (gconstpointer data)
{
  return find_composer () == NULL;
}

static gboolean
is_sensitive (gconstpointer data)
{
  return gtk_widget_is_sensitive (GTK_WIDGET (data));
}

static gboolean
feed_leads_with (gconstpointer data)
{
  GtkWidget *feed_page = get_widget (NULL, "feed_page");
  GtkStack *stack = GTK_STACK (get_widget ("feed_page", "stack"));
  GtkWidget *caption_label;
  GtkWidget *picture;

  if (g_strcmp0 (gtk_stack_get_visible_child_name (stack), "posts") != 0 ||
      gtk_stack_get_transition_running (stack))
    return FALSE;

  caption_label = find_widget (feed_page, "caption_label");
  picture = find_widget (feed_page, "picture");

  return caption_label != NULL && picture != NULL &&
         g_strcmp0 (gtk_label_get_text (GTK_LABEL (caption_label)), data) == 0 &&
         GDK_IS_TEXTURE (gtk_picture_get_paintable (GTK_PICTURE (picture)));
}

static gboolean
feed_is_empty (gconstpointer data)
{
  GtkStack *stack = GTK_STACK (get_widget ("feed_page", "stack"));

  return g_strcmp0 (gtk_stack_get_visible_child_name (stack), "empty") == 0 &&
         !gtk_stack_get_transition_running (stack);
}

static void
test_post_a_photo (void)
{
  g_autoptr(GFile) photo = NULL;
  g_autofree char *caption = g_strdup_printf ("Evening light #gradient #test_%08x", g_random_int ());
  GeneriaComposer *composer;
  GtkTextView *caption_view;
  GtkWidget *share_button;
  GtkLabel *caption_label;
  GdkPaintable *texture;

  if (generia_application_get_session (application) == NULL)
    {
      g_test_skip ("not logged in: the previous test did not run");
      return;
    }

  /* A new node has no posts yet. */
  gtk_widget_activate_action (get_widget (NULL, "stack"), "win.navigate", "s", "feed");
  wait_for_page ("feed");
  wait_until (feed_is_empty, NULL, "the empty feed");
  save_screenshot ("screenshot-feed-empty.png");

  click (NULL, "new_post_button");
  wait_until (composer_is_open, NULL, "the composer");
  composer = find_composer ();
  share_button = find_widget (GTK_WIDGET (composer), "share_button");
  g_assert_false (gtk_widget_is_sensitive (share_button));

  /* What the file chooser would do. */
  photo = write_test_photo ();
  generia_composer_set_file (composer, photo);
  wait_until (is_sensitive, share_button, "the photo to be read");
  g_assert_true (gtk_widget_get_visible (find_widget (GTK_WIDGET (composer), "preview")));

  caption_view = GTK_TEXT_VIEW (find_widget (GTK_WIDGET (composer), "caption_view"));
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (caption_view), caption, -1);
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (find_widget (GTK_WIDGET (composer), "counter_label"))),
                   ==, "38/2200");
  save_window_screenshot (GTK_WIDGET (composer), "screenshot-composer.png");

  g_signal_emit_by_name (share_button, "clicked");
  wait_until (composer_is_closed, NULL, "the composer to close");
  wait_until (feed_leads_with, caption, "the new post with its image at the top of the feed");

  caption_label = GTK_LABEL (find_widget (get_widget (NULL, "feed_page"), "caption_label"));
  g_assert_cmpstr (gtk_label_get_text (caption_label), ==, caption);
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (find_widget (get_widget (NULL, "feed_page"), "username_label"))),
                   ==, generia_user_get_username (generia_session_get_user (generia_application_get_session (application))));
  texture = gtk_picture_get_paintable (GTK_PICTURE (find_widget (get_widget (NULL, "feed_page"), "picture")));
  g_assert_cmpint (gdk_paintable_get_intrinsic_width (texture) * 480, ==,
                   gdk_paintable_get_intrinsic_height (texture) * 640);
  g_assert_cmpuint (g_list_model_get_n_items (generia_feed_page_get_posts (GENERIA_FEED_PAGE (get_widget (NULL, "feed_page")))),
                    ==, 1);

  save_screenshot ("screenshot-feed.png");
  /* The image takes its room in the row: as wide as the card, at its own aspect ratio. */
  g_assert_cmpint (gtk_widget_get_height (find_widget (get_widget (NULL, "feed_page"), "picture")), >, 100);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GError) error = NULL;
  int status;

  gtk_test_init (&argc, &argv, NULL);

  application = generia_application_new ();
  g_application_register (G_APPLICATION (application), NULL, &error);
  g_assert_no_error (error);
  g_application_activate (G_APPLICATION (application));

  g_test_add_func ("/generia/ui/register-log-out-log-in", test_register_log_out_log_in);
  g_test_add_func ("/generia/ui/post-a-photo", test_post_a_photo);

  status = g_test_run ();

  g_application_quit (G_APPLICATION (application));
  g_clear_object (&application);

  return status;
}
