/* generia-account-page.c: who is logged in
 *
 * Shows the session's user (avatar, username, e-mail, member since) and the server, follows
 * the user when `me` brings fresh details, offers the log-out action, and warns when there is
 * no keyring and the session lives in a private file instead.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-account-page.h"
#include "generia-application.h"

struct _GeneriaAccountPage
{
  AdwBin          parent_instance;

  AdwAvatar      *avatar;
  GtkLabel       *username_label;
  GtkLabel       *server_label;
  GtkWidget      *keyring_warning;
  GtkLabel       *username_value;
  GtkLabel       *email_value;
  GtkLabel       *member_since_value;
  GtkButton      *log_out_button;

  GeneriaSession *session;
};

G_DEFINE_FINAL_TYPE (GeneriaAccountPage, generia_account_page, ADW_TYPE_BIN)

enum {
  PROP_0,
  PROP_SESSION,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
show_user (GeneriaAccountPage *self)
{
  GeneriaUser *user;
  g_autoptr(GDateTime) created_at = NULL;
  g_autofree char *member_since = NULL;
  g_autofree char *server = NULL;

  if (self->session == NULL)
    return;

  user = generia_session_get_user (self->session);
  created_at = g_date_time_to_local (generia_user_get_created_at (user));
  /* Translators: the date an account was created, as GDateTime format codes ("November 26, 2026"); %B is the month, %-d the day without a leading zero */
  member_since = g_date_time_format (created_at, _("%B %-d, %Y"));
  /* Translators: %s is a server address such as http://localhost:8080 */
  server = g_strdup_printf (_("Logged in to %s"), generia_session_get_server_url (self->session));

  adw_avatar_set_text (self->avatar, generia_user_get_username (user));
  gtk_label_set_text (self->username_label, generia_user_get_username (user));
  gtk_label_set_text (self->server_label, server);
  gtk_label_set_text (self->username_value, generia_user_get_username (user));
  gtk_label_set_text (self->email_value, generia_user_get_email (user));
  gtk_label_set_text (self->member_since_value, member_since);
}

static gboolean
generia_account_page_grab_focus (GtkWidget *widget)
{
  GeneriaAccountPage *self = GENERIA_ACCOUNT_PAGE (widget);

  return gtk_widget_grab_focus (GTK_WIDGET (self->log_out_button));
}

static void
generia_account_page_dispose (GObject *object)
{
  GeneriaAccountPage *self = (GeneriaAccountPage *)object;

  generia_account_page_set_session (self, NULL);

  gtk_widget_dispose_template (GTK_WIDGET (object), GENERIA_TYPE_ACCOUNT_PAGE);

  G_OBJECT_CLASS (generia_account_page_parent_class)->dispose (object);
}

static void
generia_account_page_get_property (GObject    *object,
                                   guint       prop_id,
                                   GValue     *value,
                                   GParamSpec *pspec)
{
  GeneriaAccountPage *self = GENERIA_ACCOUNT_PAGE (object);

  switch (prop_id)
    {
    case PROP_SESSION:
      g_value_set_object (value, self->session);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_account_page_set_property (GObject      *object,
                                   guint         prop_id,
                                   const GValue *value,
                                   GParamSpec   *pspec)
{
  GeneriaAccountPage *self = GENERIA_ACCOUNT_PAGE (object);

  switch (prop_id)
    {
    case PROP_SESSION:
      generia_account_page_set_session (self, g_value_get_object (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_account_page_class_init (GeneriaAccountPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = generia_account_page_dispose;
  object_class->get_property = generia_account_page_get_property;
  object_class->set_property = generia_account_page_set_property;
  widget_class->grab_focus = generia_account_page_grab_focus;

  properties[PROP_SESSION] =
    g_param_spec_object ("session", NULL, NULL, GENERIA_TYPE_SESSION,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/generia/Generia/generia-account-page.ui");
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, avatar);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, username_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, server_label);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, keyring_warning);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, username_value);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, email_value);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, member_since_value);
  gtk_widget_class_bind_template_child (widget_class, GeneriaAccountPage, log_out_button);
}

static void
generia_account_page_init (GeneriaAccountPage *self)
{
  GeneriaSessionStore *store = generia_application_get_session_store (GENERIA_APPLICATION_DEFAULT);

  gtk_widget_init_template (GTK_WIDGET (self));

  g_object_bind_property (store, "uses-file", self->keyring_warning, "visible",
                          G_BINDING_SYNC_CREATE);
}

/**
 * generia_account_page_get_session:
 *
 * Returns: (transfer none) (nullable): the session shown
 */
GeneriaSession *
generia_account_page_get_session (GeneriaAccountPage *self)
{
  g_return_val_if_fail (GENERIA_IS_ACCOUNT_PAGE (self), NULL);

  return self->session;
}

/**
 * generia_account_page_set_session:
 * @session: (nullable): the session to show
 */
void
generia_account_page_set_session (GeneriaAccountPage *self,
                                  GeneriaSession     *session)
{
  g_return_if_fail (GENERIA_IS_ACCOUNT_PAGE (self));
  g_return_if_fail (session == NULL || GENERIA_IS_SESSION (session));

  if (self->session == session)
    return;

  if (self->session != NULL)
    g_signal_handlers_disconnect_by_func (self->session, show_user, self);

  g_set_object (&self->session, session);

  if (session != NULL)
    g_signal_connect_swapped (session, "notify::user", G_CALLBACK (show_user), self);

  show_user (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SESSION]);
}
