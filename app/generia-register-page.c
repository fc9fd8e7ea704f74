/* generia-register-page.c: creating an account
 *
 * The form sends username, e-mail and password through generia_application_register_async();
 * the client checks them the way the server does before anything is sent. A failure is written
 * under the form and the field to fix is marked and focused: the server's reason
 * ("username_taken", "invalid_email", ...) says which one, and for the client's own checks the
 * first field that fails them. On success the window moves to the account page by itself.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-register-page.h"

struct _GeneriaRegisterPage
{
  AdwBin        parent_instance;

  AdwEntryRow  *username_row;
  AdwEntryRow  *email_row;
  AdwEntryRow  *password_row;
  GtkLabel     *server_label;
  GtkLabel     *error_label;
  GtkButton    *register_button;
  GtkSpinner   *spinner;

  GCancellable *cancellable;
};

G_DEFINE_FINAL_TYPE (GeneriaRegisterPage, generia_register_page, ADW_TYPE_BIN)

static const char *
get_row_text (AdwEntryRow *row)
{
  return gtk_editable_get_text (GTK_EDITABLE (row));
}

static void
set_busy (GeneriaRegisterPage *self,
          gboolean             busy)
{
  /* Read-only rather than insensitive: the focused row must stay able to take focus events. */
  gtk_editable_set_editable (GTK_EDITABLE (self->username_row), !busy);
  gtk_editable_set_editable (GTK_EDITABLE (self->email_row), !busy);
  gtk_editable_set_editable (GTK_EDITABLE (self->password_row), !busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->register_button), !busy);
  gtk_widget_set_visible (GTK_WIDGET (self->spinner), busy);
  gtk_spinner_set_spinning (self->spinner, busy);
}

static AdwEntryRow *
find_culprit (GeneriaRegisterPage *self,
              const GError        *error)
{
  const char *reason = generia_client_error_get_reason (error);
  g_autofree char *stripped = NULL;
  g_autofree char *username = NULL;
  g_autofree char *email = NULL;

  if (g_strcmp0 (reason, "username_taken") == 0 || g_strcmp0 (reason, "invalid_username") == 0)
    return self->username_row;
  if (g_strcmp0 (reason, "email_taken") == 0 || g_strcmp0 (reason, "invalid_email") == 0)
    return self->email_row;
  if (g_strcmp0 (reason, "weak_password") == 0)
    return self->password_row;

  if (!g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID))
    return NULL;

  stripped = g_strstrip (g_strdup (get_row_text (self->username_row)));
  username = g_utf8_strdown (stripped, -1);
  email = g_strstrip (g_strdup (get_row_text (self->email_row)));

  if (!generia_client_check_username (username, NULL))
    return self->username_row;
  if (!generia_client_check_email (email, NULL))
    return self->email_row;
  if (!generia_client_check_password (get_row_text (self->password_row), NULL))
    return self->password_row;

  return NULL;
}

static void
show_error (GeneriaRegisterPage *self,
            const GError        *error)
{
  AdwEntryRow *culprit = find_culprit (self, error);

  gtk_label_set_text (self->error_label, error->message);
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), TRUE);

  if (culprit != NULL)
    {
      gtk_widget_add_css_class (GTK_WIDGET (culprit), "error");
      gtk_widget_grab_focus (GTK_WIDGET (culprit));
    }
}

static void
on_input_changed (GeneriaRegisterPage *self)
{
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), FALSE);
  gtk_widget_remove_css_class (GTK_WIDGET (self->username_row), "error");
  gtk_widget_remove_css_class (GTK_WIDGET (self->email_row), "error");
  gtk_widget_remove_css_class (GTK_WIDGET (self->password_row), "error");
}

static void
on_registered (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GeneriaRegisterPage) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!generia_application_register_finish (GENERIA_APPLICATION (object), result, &error) &&
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
on_register_clicked (GeneriaRegisterPage *self)
{
  if (!gtk_widget_get_sensitive (GTK_WIDGET (self->register_button)))
    return;

  on_input_changed (self);
  set_busy (self, TRUE);
  generia_application_register_async (GENERIA_APPLICATION_DEFAULT,
                                      get_row_text (self->username_row),
                                      get_row_text (self->email_row),
                                      get_row_text (self->password_row),
                                      self->cancellable, on_registered, g_object_ref (self));
}

/* Enter moves on to the next empty field, and sends the form once all are filled. */
static void
on_row_activated (GeneriaRegisterPage *self,
                  AdwEntryRow         *row)
{
  AdwEntryRow *rows[] = { self->username_row, self->email_row, self->password_row };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      if (get_row_text (rows[i])[0] == '\0')
        {
          gtk_widget_grab_focus (GTK_WIDGET (rows[i]));
          return;
        }
    }

  on_register_clicked (self);
}

static void
on_server_url_changed (GeneriaRegisterPage *self,
                       const char          *key,
                       GSettings           *settings)
{
  g_autofree char *server_url = g_settings_get_string (settings, "server-url");
  /* Translators: %s is a server address such as http://localhost:8080 */
  g_autofree char *text = g_strdup_printf (_("on the Generia node at %s"), server_url);

  gtk_label_set_text (self->server_label, text);
}

static gboolean
generia_register_page_grab_focus (GtkWidget *widget)
{
  GeneriaRegisterPage *self = GENERIA_REGISTER_PAGE (widget);

  return gtk_widget_grab_focus (GTK_WIDGET (self->username_row));
}

static void
generia_register_page_dispose (GObject *object)
{
  GeneriaRegisterPage *self = (GeneriaRegisterPage *)object;

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);

  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_REGISTER_PAGE);

  G_OBJECT_CLASS (generia_register_page_parent_class)->dispose (object);
}

static void
generia_register_page_class_init (GeneriaRegisterPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_register_page_dispose;
  widget_class->grab_focus = generia_register_page_grab_focus;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-register-page.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, username_row);
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, email_row);
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, password_row);
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, server_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, error_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, register_button);
  gtk_widget_class_bind_template_child (widget_class, GeneriaRegisterPage, spinner);
  gtk_widget_class_bind_template_callback (widget_class, on_register_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_row_activated);
  gtk_widget_class_bind_template_callback (widget_class, on_input_changed);
}

static void
generia_register_page_init (GeneriaRegisterPage *self)
{
  GSettings *settings = generia_application_get_settings (GENERIA_APPLICATION_DEFAULT);

  gtk_widget_init_template (GTK_WIDGET (self));

  self->cancellable = g_cancellable_new ();

  g_signal_connect_object (settings, "changed::server-url",
                           G_CALLBACK (on_server_url_changed), self, G_CONNECT_SWAPPED);
  on_server_url_changed (self, "server-url", settings);
}
