/* generia-application.c: the app: settings, the client, the stored session
 *
 * GeneriaApplication owns what outlives a window: the GSettings, the one GeneriaClient and its
 * image loader (so that every window shares one image cache), the session store, and the
 * session itself ("session", NULL when logged out). Windows watch "session" to choose their
 * page and listen to "message" to show what happened in the background (a restored session
 * that could not be checked, a keyring that is missing).
 *
 * On start-up a stored session is restored at once, so the account page shows the cached user
 * even offline, and then `me` is asked for fresh details (refreshing the access token if it
 * expired). Whenever the client rotates the tokens or the user changes, the session is stored
 * again. Logging out forgets the session locally right away and tells the node in the
 * background; if the node can't be reached the refresh token simply expires there.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-application.h"
#include "generia-window.h"

struct _GeneriaApplication
{
  AdwApplication       parent_instance;

  GSettings           *settings;
  GeneriaClient       *client;
  GeneriaImageLoader  *image_loader;
  GeneriaSessionStore *store;
  GeneriaSession      *session;
  GCancellable        *cancellable;
};

G_DEFINE_FINAL_TYPE (GeneriaApplication, generia_application, ADW_TYPE_APPLICATION)

enum {
  PROP_0,
  PROP_SESSION,
  N_PROPS
};

enum {
  MESSAGE,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

static void save_session (GeneriaApplication *self);

static void
show_message (GeneriaApplication *self,
              const char         *message)
{
  g_signal_emit (self, signals[MESSAGE], 0, message);
}

static void
on_session_changed (GeneriaApplication *self)
{
  save_session (self);
}

static void
set_session (GeneriaApplication *self,
             GeneriaSession     *session)
{
  if (self->session == session)
    return;

  if (self->session != NULL)
    g_signal_handlers_disconnect_by_func (self->session, on_session_changed, self);

  g_set_object (&self->session, session);
  generia_client_set_session (self->client, session);

  if (session != NULL)
    {
      g_signal_connect_swapped (session, "notify::refresh-token",
                                G_CALLBACK (on_session_changed), self);
      g_signal_connect_swapped (session, "notify::user",
                                G_CALLBACK (on_session_changed), self);
    }

  g_simple_action_set_enabled (G_SIMPLE_ACTION (g_action_map_lookup_action (G_ACTION_MAP (self),
                                                                            "logout")),
                               session != NULL);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SESSION]);
}

static void
on_session_saved (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GeneriaApplication *self = g_task_get_source_object (task);
  g_autoptr(GError) error = NULL;

  if (!generia_session_store_save_finish (GENERIA_SESSION_STORE (object), result, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          /* Translators: %s says why, e.g. "Permission denied" */
          g_autofree char *message = g_strdup_printf (_("Your session could not be saved: %s"),
                                                      error->message);
          show_message (self, message);
        }
    }

  g_task_return_boolean (task, TRUE);
}

static void
save_session_then (GeneriaApplication *self,
                   GTask              *task)
{
  generia_session_store_save_async (self->store, self->session, self->cancellable,
                                    on_session_saved, task);
}

static void
save_session (GeneriaApplication *self)
{
  g_autoptr(GTask) task = g_task_new (self, self->cancellable, NULL, NULL);

  g_task_set_source_tag (task, save_session);
  save_session_then (self, g_steal_pointer (&task));
}

static void
on_me_answered (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GeneriaApplication) self = user_data;
  g_autoptr(GeneriaUser) user = NULL;
  g_autoptr(GError) error = NULL;

  user = generia_client_me_finish (GENERIA_CLIENT (object), result, &error);

  if (user != NULL)
    {
      if (self->session != NULL)
        generia_session_set_user (self->session, user);
      return;
    }

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;

  if (g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED))
    {
      set_session (self, NULL);
      generia_session_store_clear_async (self->store, NULL, NULL, NULL);
      show_message (self, error->message);
      return;
    }

  /* Offline: keep showing the account as it was stored. */
  show_message (self, error->message);
}

static void
on_session_loaded (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GeneriaApplication) self = user_data;
  g_autoptr(GeneriaSession) session = NULL;
  g_autoptr(GError) error = NULL;
  const char *server_url;

  session = generia_session_store_load_finish (GENERIA_SESSION_STORE (object), result, &error);

  if (error != NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          /* Translators: %s says why, e.g. "Permission denied" */
          g_autofree char *message = g_strdup_printf (_("Your saved session could not be read: %s"),
                                                      error->message);
          show_message (self, message);
        }
      return;
    }

  if (session == NULL || self->session != NULL)
    return;

  server_url = generia_session_get_server_url (session);
  if (g_strcmp0 (server_url, generia_client_get_server_url (self->client)) != 0)
    g_settings_set_string (self->settings, "server-url", server_url);

  set_session (self, session);
  generia_client_me_async (self->client, self->cancellable, on_me_answered, g_object_ref (self));
}

static void
on_logged_out (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  /* Best effort: the session is already forgotten here, and an unrevoked refresh token
   * expires on the node by itself. */
  if (!generia_client_logout_finish (GENERIA_CLIENT (object), result, &error))
    g_debug ("The node did not confirm the logout: %s", error->message);
}

static void
on_stored_session_cleared (GObject      *object,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  g_autoptr(GeneriaApplication) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!generia_session_store_clear_finish (GENERIA_SESSION_STORE (object), result, &error))
    {
      /* Translators: %s says why, e.g. "Permission denied" */
      g_autofree char *message = g_strdup_printf (_("Your saved session could not be removed: %s"),
                                                  error->message);
      show_message (self, message);
    }
}

static void
logout_action (GSimpleAction *action,
               GVariant      *parameter,
               gpointer       user_data)
{
  GeneriaApplication *self = user_data;

  if (self->session == NULL)
    return;

  generia_client_logout_async (self->client, NULL, on_logged_out, NULL);
  set_session (self, NULL);
  generia_session_store_clear_async (self->store, NULL, on_stored_session_cleared,
                                     g_object_ref (self));
}

static void
about_action (GSimpleAction *action,
              GVariant      *parameter,
              gpointer       user_data)
{
  GeneriaApplication *self = user_data;
  static const char *developers[] = { "The Generia developers", NULL };
  GtkWidget *about;

  about = g_object_new (ADW_TYPE_ABOUT_WINDOW,
                        "transient-for", gtk_application_get_active_window (GTK_APPLICATION (self)),
                        "application-name", _("Generia"),
                        "application-icon", APP_ID,
                        "developer-name", _("The Generia developers"),
                        "developers", developers,
                        "version", PACKAGE_VERSION,
                        "license-type", GTK_LICENSE_AGPL_3_0,
                        /* Translators: put your name here, one per line */
                        "translator-credits", _("translator-credits"),
                        NULL);
  gtk_window_present (GTK_WINDOW (about));
}

static void
quit_action (GSimpleAction *action,
             GVariant      *parameter,
             gpointer       user_data)
{
  g_application_quit (G_APPLICATION (user_data));
}

static const GActionEntry app_actions[] = {
  { "logout", logout_action, NULL, NULL, NULL, { 0 } },
  { "about", about_action, NULL, NULL, NULL, { 0 } },
  { "quit", quit_action, NULL, NULL, NULL, { 0 } },
};

static void
generia_application_startup (GApplication *application)
{
  GeneriaApplication *self = GENERIA_APPLICATION (application);
  static const char *quit_accels[] = { "<Control>q", NULL };

  G_APPLICATION_CLASS (generia_application_parent_class)->startup (application);

  g_action_map_add_action_entries (G_ACTION_MAP (self), app_actions,
                                   G_N_ELEMENTS (app_actions), self);
  g_simple_action_set_enabled (G_SIMPLE_ACTION (g_action_map_lookup_action (G_ACTION_MAP (self),
                                                                            "logout")),
                               FALSE);
  gtk_application_set_accels_for_action (GTK_APPLICATION (self), "app.quit", quit_accels);

  self->settings = g_settings_new (APP_ID);
  self->client = generia_client_new (NULL);
  g_settings_bind (self->settings, "server-url", self->client, "server-url", G_SETTINGS_BIND_GET);
  self->image_loader = generia_image_loader_new (self->client);
  self->store = generia_session_store_new (NULL);
  self->cancellable = g_cancellable_new ();

  generia_session_store_load_async (self->store, self->cancellable, on_session_loaded,
                                    g_object_ref (self));
}

static void
generia_application_shutdown (GApplication *application)
{
  GeneriaApplication *self = GENERIA_APPLICATION (application);

  g_cancellable_cancel (self->cancellable);

  G_APPLICATION_CLASS (generia_application_parent_class)->shutdown (application);
}

static void
generia_application_activate (GApplication *application)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (application));

  if (window == NULL)
    window = GTK_WINDOW (generia_window_new (GENERIA_APPLICATION (application)));

  gtk_window_present (window);
}

static void
generia_application_dispose (GObject *object)
{
  GeneriaApplication *self = (GeneriaApplication *)object;

  if (self->session != NULL)
    g_signal_handlers_disconnect_by_func (self->session, on_session_changed, self);

  g_clear_object (&self->session);
  g_clear_object (&self->image_loader);
  g_clear_object (&self->client);
  g_clear_object (&self->store);
  g_clear_object (&self->settings);
  g_clear_object (&self->cancellable);

  G_OBJECT_CLASS (generia_application_parent_class)->dispose (object);
}

static void
generia_application_get_property (GObject    *object,
                                  guint       prop_id,
                                  GValue     *value,
                                  GParamSpec *pspec)
{
  GeneriaApplication *self = GENERIA_APPLICATION (object);

  switch (prop_id)
    {
    case PROP_SESSION:
      g_value_set_object (value, self->session);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

/* `generia --server URL` points the app at a node (the run script uses it for the local
 * node it just started); the address is remembered like one typed on the welcome page. */
static int
generia_application_handle_local_options (GApplication *application,
                                          GVariantDict *options)
{
  const char *server_url = NULL;

  if (g_variant_dict_lookup (options, "server", "&s", &server_url))
    {
      g_autoptr(GSettings) settings = g_settings_new (APP_ID);
      g_autoptr(GUri) uri = g_uri_parse (server_url, G_URI_FLAGS_NONE, NULL);

      if (uri == NULL
          || (g_strcmp0 (g_uri_get_scheme (uri), "http") != 0
              && g_strcmp0 (g_uri_get_scheme (uri), "https") != 0))
        {
          /* Translators: %s is what was given after --server */
          g_printerr (_("“%s” is not a server address (use http://host:port)\n"), server_url);
          return 2;
        }
      g_settings_set_string (settings, "server-url", server_url);
    }

  return G_APPLICATION_CLASS (generia_application_parent_class)->handle_local_options (application, options);
}

static void
generia_application_class_init (GeneriaApplicationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GApplicationClass *application_class = G_APPLICATION_CLASS (klass);

  object_class->dispose = generia_application_dispose;
  object_class->get_property = generia_application_get_property;

  application_class->startup = generia_application_startup;
  application_class->shutdown = generia_application_shutdown;
  application_class->activate = generia_application_activate;
  application_class->handle_local_options = generia_application_handle_local_options;

  properties[PROP_SESSION] =
    g_param_spec_object ("session", NULL, NULL, GENERIA_TYPE_SESSION,
                         (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * GeneriaApplication::message:
   * @message: a sentence for the person
   *
   * Something happened in the background that the person should know about.
   */
  signals[MESSAGE] =
    g_signal_new ("message",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
generia_application_init (GeneriaApplication *self)
{
  g_application_add_main_option (G_APPLICATION (self), "server", 0, G_OPTION_FLAG_NONE,
                                 G_OPTION_ARG_STRING,
                                 _("Connect to the Generia node at this address"),
                                 /* Translators: placeholder in --help output */
                                 _("URL"));
}

GeneriaApplication *
generia_application_new (void)
{
  return g_object_new (GENERIA_TYPE_APPLICATION,
                       "application-id", APP_ID,
                       "flags", G_APPLICATION_DEFAULT_FLAGS,
                       "resource-base-path", "/org/generia/Generia",
                       NULL);
}

/**
 * generia_application_get_settings:
 *
 * Returns: (transfer none): the app's settings
 */
GSettings *
generia_application_get_settings (GeneriaApplication *self)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), NULL);

  return self->settings;
}

/**
 * generia_application_get_client:
 *
 * Returns: (transfer none): the client of the configured server
 */
GeneriaClient *
generia_application_get_client (GeneriaApplication *self)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), NULL);

  return self->client;
}

/**
 * generia_application_get_image_loader:
 *
 * Returns: (transfer none): the loader, and cache, of the images the app shows
 */
GeneriaImageLoader *
generia_application_get_image_loader (GeneriaApplication *self)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), NULL);

  return self->image_loader;
}

/**
 * generia_application_get_session_store:
 *
 * Returns: (transfer none): where the session is kept between runs
 */
GeneriaSessionStore *
generia_application_get_session_store (GeneriaApplication *self)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), NULL);

  return self->store;
}

/**
 * generia_application_get_session:
 *
 * Returns: (transfer none) (nullable): the logged-in session
 */
GeneriaSession *
generia_application_get_session (GeneriaApplication *self)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), NULL);

  return self->session;
}

static void
adopt_session (GTask          *task,
               GeneriaSession *session,
               GError         *error)
{
  GeneriaApplication *self = g_task_get_source_object (task);

  if (session == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }

  set_session (self, session);
  g_object_unref (session);

  /* The caller hears back once the session is stored, so a failure to store it is reported
   * before the login counts as done. */
  save_session_then (self, task);
}

static void
on_logged_in (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  GError *error = NULL;
  GeneriaSession *session = generia_client_login_finish (GENERIA_CLIENT (object), result, &error);

  adopt_session (user_data, session, error);
}

/**
 * generia_application_log_in_async:
 *
 * Logs in to the configured server and, on success, makes and stores the new session.
 */
void
generia_application_log_in_async (GeneriaApplication  *self,
                                  const char          *email_or_username,
                                  const char          *password,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (GENERIA_IS_APPLICATION (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_application_log_in_async);

  generia_client_login_async (self->client, email_or_username, password, cancellable,
                              on_logged_in, task);
}

gboolean
generia_application_log_in_finish (GeneriaApplication  *self,
                                   GAsyncResult        *result,
                                   GError             **error)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
on_registered (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  GError *error = NULL;
  GeneriaSession *session = generia_client_register_finish (GENERIA_CLIENT (object), result, &error);

  adopt_session (user_data, session, error);
}

/**
 * generia_application_register_async:
 *
 * Creates an account on the configured server and, on success, makes and stores its session.
 */
void
generia_application_register_async (GeneriaApplication  *self,
                                    const char          *username,
                                    const char          *email,
                                    const char          *password,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (GENERIA_IS_APPLICATION (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_application_register_async);

  generia_client_register_async (self->client, username, email, password, cancellable,
                                 on_registered, task);
}

gboolean
generia_application_register_finish (GeneriaApplication  *self,
                                     GAsyncResult        *result,
                                     GError             **error)
{
  g_return_val_if_fail (GENERIA_IS_APPLICATION (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
