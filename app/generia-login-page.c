/* generia-login-page.c: logging in with an e-mail address or username
 *
 * The form sends its two fields through generia_application_log_in_async(). While the request
 * runs the form is insensitive and the button spins; a failure (wrong password, unknown user,
 * unreachable server) is written under the form and the field to fix gets the focus. On
 * success the window moves to the account page by itself, following the new session.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-login-page.h"

struct _GeneriaLoginPage
{
  AdwBin        parent_instance;

  AdwEntryRow  *identifier_row;
  AdwEntryRow  *password_row;
  GtkLabel     *server_label;
  GtkLabel     *error_label;
  GtkButton    *log_in_button;
  GtkSpinner   *spinner;

  GCancellable *cancellable;
};

G_DEFINE_FINAL_TYPE (GeneriaLoginPage, generia_login_page, ADW_TYPE_BIN)

static void
set_busy (GeneriaLoginPage *self,
          gboolean          busy)
{
  /* Read-only rather than insensitive: the focused row must stay able to take focus events. */
  gtk_editable_set_editable (GTK_EDITABLE (self->identifier_row), !busy);
  gtk_editable_set_editable (GTK_EDITABLE (self->password_row), !busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->log_in_button), !busy);
  gtk_widget_set_visible (GTK_WIDGET (self->spinner), busy);
  gtk_spinner_set_spinning (self->spinner, busy);
}

static void
show_error (GeneriaLoginPage *self,
            const GError     *error)
{
  GtkWidget *culprit = NULL;

  gtk_label_set_text (self->error_label, error->message);
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), TRUE);

  if (g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED))
    culprit = GTK_WIDGET (self->password_row);
  else if (g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_NOT_FOUND))
    culprit = GTK_WIDGET (self->identifier_row);
  else if (g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID))
    culprit = gtk_editable_get_text (GTK_EDITABLE (self->identifier_row))[0] == '\0'
              ? GTK_WIDGET (self->identifier_row) : GTK_WIDGET (self->password_row);

  if (culprit != NULL)
    {
      gtk_widget_add_css_class (culprit, "error");
      gtk_widget_grab_focus (culprit);
    }
}

static void
on_input_changed (GeneriaLoginPage *self)
{
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), FALSE);
  gtk_widget_remove_css_class (GTK_WIDGET (self->identifier_row), "error");
  gtk_widget_remove_css_class (GTK_WIDGET (self->password_row), "error");
}

static void
on_logged_in (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GeneriaLoginPage) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!generia_application_log_in_finish (GENERIA_APPLICATION (object), result, &error) &&
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  set_busy (self, FALSE);

  if (error != NULL)
    {
      show_error (self, error);
      return;
    }

  gtk_editable_set_text (GTK_EDITABLE (self->password_row), "");
}

static void
on_log_in_clicked (GeneriaLoginPage *self)
{
  if (!gtk_widget_get_sensitive (GTK_WIDGET (self->log_in_button)))
    return;

  on_input_changed (self);
  set_busy (self, TRUE);
  generia_application_log_in_async (GENERIA_APPLICATION_DEFAULT,
                                    gtk_editable_get_text (GTK_EDITABLE (self->identifier_row)),
                                    gtk_editable_get_text (GTK_EDITABLE (self->password_row)),
                                    self->cancellable, on_logged_in, g_object_ref (self));
}

static void
on_identifier_activated (GeneriaLoginPage *self)
{
  if (gtk_editable_get_text (GTK_EDITABLE (self->password_row))[0] == '\0')
    gtk_widget_grab_focus (GTK_WIDGET (self->password_row));
  else
    on_log_in_clicked (self);
}

static void
on_server_url_changed (GeneriaLoginPage *self,
                       const char       *key,
                       GSettings        *settings)
{
  g_autofree char *server_url = g_settings_get_string (settings, "server-url");
  /* Translators: %s is a server address such as http://localhost:8080 */
  g_autofree char *text = g_strdup_printf (_("to the Generia node at %s"), server_url);

  gtk_label_set_text (self->server_label, text);
}

static gboolean
generia_login_page_grab_focus (GtkWidget *widget)
{
  GeneriaLoginPage *self = GENERIA_LOGIN_PAGE (widget);

  if (gtk_editable_get_text (GTK_EDITABLE (self->identifier_row))[0] != '\0')
    return gtk_widget_grab_focus (GTK_WIDGET (self->password_row));

  return gtk_widget_grab_focus (GTK_WIDGET (self->identifier_row));
}

static void
generia_login_page_dispose (GObject *object)
{
  GeneriaLoginPage *self = (GeneriaLoginPage *)object;

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);

  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_LOGIN_PAGE);

  G_OBJECT_CLASS (generia_login_page_parent_class)->dispose (object);
}

static void
generia_login_page_class_init (GeneriaLoginPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_login_page_dispose;
  widget_class->grab_focus = generia_login_page_grab_focus;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-login-page.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaLoginPage, identifier_row);
  gtk_widget_class_bind_template_child (widget_class, GeneriaLoginPage, password_row);
  gtk_widget_class_bind_template_child (widget_class, GeneriaLoginPage, server_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaLoginPage, error_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaLoginPage, log_in_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaLoginPage, spinner);
  gtk_widget_class_bind_template_callback (widget_class, on_log_in_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_identifier_activated);
  gtk_widget_class_bind_template_callback (widget_class, on_input_changed);
}

static void
generia_login_page_init (GeneriaLoginPage *self)
{
  GSettings *settings = generia_application_get_settings (GENERIA_APPLICATION_DEFAULT);

  gtk_widget_init_template (GTK_WIDGET (self));

  self->cancellable = g_cancellable_new ();

  g_signal_connect_object (settings, "changed::server-url",
                           G_CALLBACK (on_server_url_changed), self, G_CONNECT_SWAPPED);
  on_server_url_changed (self, "server-url", settings);
}
