/* generia-server-page.c: the welcome page, where the server address is chosen
 *
 * The first thing a logged-out person sees. The address row edits the "server-url" setting
 * directly (the client follows it); the two buttons check that it is an http(s) address before
 * going on to the login or register page, and say so here when it is not.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-server-page.h"

struct _GeneriaServerPage
{
  AdwBin       parent_instance;

  AdwEntryRow *server_row;
  GtkLabel    *error_label;
};

G_DEFINE_FINAL_TYPE (GeneriaServerPage, generia_server_page, ADW_TYPE_BIN)

static void
go_on_to (GeneriaServerPage *self,
          const char        *page)
{
  g_autoptr(GError) error = NULL;

  if (!generia_client_check_server_url (gtk_editable_get_text (GTK_EDITABLE (self->server_row)),
                                        &error))
    {
      gtk_label_set_text (self->error_label, error->message);
      gtk_widget_set_visible (GTK_WIDGET (self->error_label), TRUE);
      gtk_widget_add_css_class (GTK_WIDGET (self->server_row), "error");
      gtk_widget_grab_focus (GTK_WIDGET (self->server_row));
      return;
    }

  gtk_widget_activate_action (GTK_WIDGET (self), "win.navigate", "s", page);
}

static void
on_log_in_clicked (GeneriaServerPage *self)
{
  go_on_to (self, "login");
}

static void
on_create_account_clicked (GeneriaServerPage *self)
{
  go_on_to (self, "register");
}

static void
on_server_changed (GeneriaServerPage *self)
{
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), FALSE);
  gtk_widget_remove_css_class (GTK_WIDGET (self->server_row), "error");
}

static gboolean
generia_server_page_grab_focus (GtkWidget *widget)
{
  GeneriaServerPage *self = GENERIA_SERVER_PAGE (widget);

  return gtk_widget_grab_focus (GTK_WIDGET (self->server_row));
}

static void
generia_server_page_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_SERVER_PAGE);

  G_OBJECT_CLASS (generia_server_page_parent_class)->dispose (object);
}

static void
generia_server_page_class_init (GeneriaServerPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_server_page_dispose;
  widget_class->grab_focus = generia_server_page_grab_focus;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-server-page.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaServerPage, server_row);
  gtk_widget_class_bind_template_child (widget_class, GeneriaServerPage, error_label);
  gtk_widget_class_bind_template_callback (widget_class, on_log_in_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_create_account_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_server_changed);
}

static void
generia_server_page_init (GeneriaServerPage *self)
{
  GSettings *settings = generia_application_get_settings (GENERIA_APPLICATION_DEFAULT);

  gtk_widget_init_template (GTK_WIDGET (self));

  g_settings_bind (settings, "server-url", self->server_row, "text", G_SETTINGS_BIND_DEFAULT);
}
