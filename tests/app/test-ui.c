/* test-ui.c: the app's window against a real node
 *
 * Starts the application in-process, points it at the node in GENERIA_TEST_GATEWAY_URL (see
 * run-with-node.sh), and drives the real widgets the way a person would: registers an
 * account, logs out, fails to log in with a wrong password, logs in, and saves screenshots of
 * the window (rendered by GTK itself) into the build folder. Widgets are found by their id in
 * the templates, so the test sees what the person sees and needs no hooks in the app.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include <adwaita.h>

#include "generia-application.h"

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
save_screenshot (const char *name)
{
  GtkWidget *window = GTK_WIDGET (gtk_application_get_active_window (GTK_APPLICATION (application)));
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

  /* Register for real: the account page shows who is logged in. */
  set_text ("register_page", "username_row", username);
  click ("register_page", "register_button");
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
  wait_for_page ("account");
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (get_widget ("account_page", "username_label"))),
                   ==, username);
  g_assert_nonnull (generia_application_get_session (application));

  save_screenshot ("screenshot-logged-in.png");
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

  status = g_test_run ();

  g_application_quit (G_APPLICATION (application));
  g_clear_object (&application);

  return status;
}
