/* generia-window.c: the main window
 *
 * A header bar over a stack of pages: the server page (welcome, server address), the login and
 * register pages, the feed and the account page. Which page shows follows the application's
 * "session": logged in means the feed, whose header offers a new post (the composer), a
 * refresh and the account page; logging out returns to the server page. The pages move
 * between themselves with the "win.navigate" action, whose parameter is a page name, and the
 * application's "message" signal becomes a toast. The window's size is kept in GSettings.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-account-page.h"
#include "generia-composer.h"
#include "generia-feed-page.h"
#include "generia-login-page.h"
#include "generia-register-page.h"
#include "generia-server-page.h"
#include "generia-window.h"

struct _GeneriaWindow
{
  AdwApplicationWindow  parent_instance;

  AdwToastOverlay      *toast_overlay;
  GtkButton            *back_button;
  GtkButton            *new_post_button;
  GtkButton            *refresh_button;
  GtkButton            *account_button;
  GtkStack             *stack;
  GeneriaFeedPage      *feed_page;
  GeneriaAccountPage   *account_page;
};

G_DEFINE_FINAL_TYPE (GeneriaWindow, generia_window, ADW_TYPE_APPLICATION_WINDOW)

static void
show_page (GeneriaWindow *self,
           const char    *name)
{
  gtk_stack_set_visible_child_name (self->stack, name);
  gtk_widget_grab_focus (gtk_stack_get_visible_child (self->stack));
}

static void
on_session_changed (GeneriaWindow      *self,
                    GParamSpec         *pspec,
                    GeneriaApplication *application)
{
  GeneriaSession *session = generia_application_get_session (application);

  generia_account_page_set_session (self->account_page, session);

  if (session != NULL)
    show_page (self, "feed");
  else if (g_strcmp0 (gtk_stack_get_visible_child_name (self->stack), "feed") == 0 ||
           g_strcmp0 (gtk_stack_get_visible_child_name (self->stack), "account") == 0)
    show_page (self, "server");
}

static void
on_visible_page_changed (GeneriaWindow *self)
{
  const char *name = gtk_stack_get_visible_child_name (self->stack);
  gboolean on_feed = g_strcmp0 (name, "feed") == 0;
  gboolean on_account = g_strcmp0 (name, "account") == 0;

  gtk_widget_set_visible (GTK_WIDGET (self->back_button),
                          g_strcmp0 (name, "login") == 0 || g_strcmp0 (name, "register") == 0 ||
                          on_account);
  gtk_actionable_set_action_target (GTK_ACTIONABLE (self->back_button), "s",
                                    on_account ? "feed" : "server");
  gtk_widget_set_visible (GTK_WIDGET (self->new_post_button), on_feed);
  gtk_widget_set_visible (GTK_WIDGET (self->refresh_button), on_feed);
  gtk_widget_set_visible (GTK_WIDGET (self->account_button), on_feed);
}

static void
on_posted (GeneriaWindow *self)
{
  generia_feed_page_refresh (self->feed_page);
}

static void
new_post_action (GtkWidget  *widget,
                 const char *action_name,
                 GVariant   *parameter)
{
  GeneriaWindow *self = GENERIA_WINDOW (widget);
  GeneriaComposer *composer = generia_composer_new (GTK_WINDOW (self));

  g_signal_connect_object (composer, "posted", G_CALLBACK (on_posted), self, G_CONNECT_SWAPPED);
  gtk_window_present (GTK_WINDOW (composer));
}

static void
refresh_action (GtkWidget  *widget,
                const char *action_name,
                GVariant   *parameter)
{
  generia_feed_page_refresh (GENERIA_WINDOW (widget)->feed_page);
}

static void
navigate_action (GtkWidget  *widget,
                 const char *action_name,
                 GVariant   *parameter)
{
  GeneriaWindow *self = GENERIA_WINDOW (widget);
  const char *name = g_variant_get_string (parameter, NULL);

  g_return_if_fail (gtk_stack_get_child_by_name (self->stack, name) != NULL);

  show_page (self, name);
}

static void
generia_window_constructed (GObject *object)
{
  GeneriaWindow *self = (GeneriaWindow *)object;
  /* Not the "application" property: GtkWindow sets it only after construction. */
  GeneriaApplication *application = GENERIA_APPLICATION_DEFAULT;
  GSettings *settings;

  G_OBJECT_CLASS (generia_window_parent_class)->constructed (object);

  settings = generia_application_get_settings (application);

  g_settings_bind (settings, "window-width", self, "default-width", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (settings, "window-height", self, "default-height", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (settings, "window-maximized", self, "maximized", G_SETTINGS_BIND_DEFAULT);

  g_signal_connect_object (application, "notify::session",
                           G_CALLBACK (on_session_changed), self, G_CONNECT_SWAPPED);
  g_signal_connect_object (application, "message",
                           G_CALLBACK (generia_window_show_toast), self, G_CONNECT_SWAPPED);

  generia_account_page_set_session (self->account_page, generia_application_get_session (application));
  if (generia_application_get_session (application) != NULL)
    show_page (self, "feed");
  on_visible_page_changed (self);
}

static void
generia_window_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_WINDOW);

  G_OBJECT_CLASS (generia_window_parent_class)->dispose (object);
}

static void
generia_window_class_init (GeneriaWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->constructed = generia_window_constructed;
  object_class->dispose = generia_window_dispose;

  g_type_ensure (GENERIA_TYPE_ACCOUNT_PAGE);
  g_type_ensure (GENERIA_TYPE_FEED_PAGE);
  g_type_ensure (GENERIA_TYPE_LOGIN_PAGE);
  g_type_ensure (GENERIA_TYPE_REGISTER_PAGE);
  g_type_ensure (GENERIA_TYPE_SERVER_PAGE);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/generia/Generia/generia-window.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, back_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, new_post_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, refresh_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, account_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, stack);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, feed_page);
  gtk_widget_class_bind_template_child (widget_class, GeneriaWindow, account_page);
  gtk_widget_class_bind_template_callback (widget_class, on_visible_page_changed);

  gtk_widget_class_install_action (widget_class, "win.navigate", "s", navigate_action);
  gtk_widget_class_install_action (widget_class, "win.new-post", NULL, new_post_action);
  gtk_widget_class_install_action (widget_class, "win.refresh", NULL, refresh_action);
}

static void
generia_window_init (GeneriaWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GeneriaWindow *
generia_window_new (GeneriaApplication *application)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (application), NULL);

  return g_object_new (GENERIA_TYPE_WINDOW, "application", application, NULL);
}

/**
 * generia_window_show_toast:
 * @message: a sentence for the person
 *
 * Shows @message in a toast over the current page.
 */
void
generia_window_show_toast (GeneriaWindow *self,
                           const char    *message)
{
  AdwToast *toast;

  g_return_if_fail (GENERIA_IS_WINDOW (self));
  g_return_if_fail (message != NULL);

  toast = adw_toast_new (message);
  adw_toast_set_timeout (toast, 6);
  adw_toast_overlay_add_toast (self->toast_overlay, toast);
}
