/* generia-session-store.c: where the session survives a restart
 *
 * The session's tokens are secrets, so they go to the person's keyring through libsecret
 * (schema "org.generia.Generia.Session", one item, the session's JSON as the secret). Many
 * machines have no Secret Service: no session bus at all (G_IO_ERROR), a bus with nobody owning
 * org.freedesktop.secrets (G_DBUS_ERROR_SERVICE_UNKNOWN), a keyring daemon whose login
 * collection was never created (G_DBUS_ERROR "Object does not exist at path ...") or is locked
 * (SECRET_ERROR_IS_LOCKED). Then the session goes to a file only its owner can read
 * (0600, in g_get_user_data_dir()/generia/session.json) and "uses-file" turns TRUE, so that the
 * window can tell the person where their session is. Whatever the keyring answers apart from a
 * cancellation is read as "no keyring": a session that is not stored at all is worse.
 *
 * Loading asks the keyring first and then the file (a session saved while the keyring was
 * away). Saving to a working keyring removes a stale file; clearing removes both. File work
 * runs in a GTask thread so that a slow disk never blocks the main loop.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <errno.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <libsecret/secret.h>

#include "generia-session-store.h"

struct _GeneriaSessionStore
{
  GObject   parent_instance;

  char     *fallback_path;
  gboolean  uses_file;
};

G_DEFINE_FINAL_TYPE (GeneriaSessionStore, generia_session_store, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_FALLBACK_PATH,
  PROP_USES_FILE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static const SecretSchema *
get_session_schema (void)
{
  static const SecretSchema schema = {
    APP_ID ".Session", SECRET_SCHEMA_NONE,
    {
      { "server-url", SECRET_SCHEMA_ATTRIBUTE_STRING },
      { "user-id", SECRET_SCHEMA_ATTRIBUTE_STRING },
      { NULL, 0 },
    },
    0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  };

  return &schema;
}

static void
generia_session_store_finalize (GObject *object)
{
  GeneriaSessionStore *self = (GeneriaSessionStore *)object;

  g_clear_pointer (&self->fallback_path, g_free);

  G_OBJECT_CLASS (generia_session_store_parent_class)->finalize (object);
}

static void
generia_session_store_get_property (GObject    *object,
                                    guint       prop_id,
                                    GValue     *value,
                                    GParamSpec *pspec)
{
  GeneriaSessionStore *self = GENERIA_SESSION_STORE (object);

  switch (prop_id)
    {
    case PROP_FALLBACK_PATH:
      g_value_set_string (value, self->fallback_path);
      break;

    case PROP_USES_FILE:
      g_value_set_boolean (value, self->uses_file);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_session_store_set_property (GObject      *object,
                                    guint         prop_id,
                                    const GValue *value,
                                    GParamSpec   *pspec)
{
  GeneriaSessionStore *self = GENERIA_SESSION_STORE (object);

  switch (prop_id)
    {
    case PROP_FALLBACK_PATH:
      self->fallback_path = g_value_dup_string (value);
      if (self->fallback_path == NULL)
        self->fallback_path = g_build_filename (g_get_user_data_dir (), "generia",
                                                "session.json", NULL);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_session_store_class_init (GeneriaSessionStoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = generia_session_store_finalize;
  object_class->get_property = generia_session_store_get_property;
  object_class->set_property = generia_session_store_set_property;

  properties[PROP_FALLBACK_PATH] =
    g_param_spec_string ("fallback-path", NULL, NULL, NULL,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));
  properties[PROP_USES_FILE] =
    g_param_spec_boolean ("uses-file", NULL, NULL, FALSE,
                          (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
generia_session_store_init (GeneriaSessionStore *self)
{
}

/**
 * generia_session_store_new:
 * @fallback_path: (nullable): the file used when there is no keyring; %NULL for the default,
 *   g_get_user_data_dir()/generia/session.json
 */
GeneriaSessionStore *
generia_session_store_new (const char *fallback_path)
{
  return g_object_new (GENERIA_TYPE_SESSION_STORE, "fallback-path", fallback_path, NULL);
}

const char *
generia_session_store_get_fallback_path (GeneriaSessionStore *self)
{
  g_return_val_if_fail (GENERIA_IS_SESSION_STORE (self), NULL);

  return self->fallback_path;
}

/**
 * generia_session_store_get_uses_file:
 *
 * Returns: %TRUE when the session is kept in the fallback file because no keyring answered
 */
gboolean
generia_session_store_get_uses_file (GeneriaSessionStore *self)
{
  g_return_val_if_fail (GENERIA_IS_SESSION_STORE (self), FALSE);

  return self->uses_file;
}

static void
set_uses_file (GeneriaSessionStore *self,
               gboolean             uses_file)
{
  if (self->uses_file == uses_file)
    return;

  self->uses_file = uses_file;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_USES_FILE]);
}

static gboolean
set_error_from_errno (GError     **error,
                      int          saved_errno,
                      const char  *what,
                      const char  *path)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               "%s %s: %s", what, path, g_strerror (saved_errno));
  return FALSE;
}

/* Thread: task data is the JSON to write, or NULL to remove the file. */
static void
write_file_thread (GTask        *task,
                   gpointer      source_object,
                   gpointer      task_data,
                   GCancellable *cancellable)
{
  GeneriaSessionStore *self = source_object;
  const char *json = task_data;
  g_autofree char *folder = NULL;
  GError *error = NULL;

  if (json == NULL)
    {
      if (g_unlink (self->fallback_path) != 0 && errno != ENOENT)
        {
          set_error_from_errno (&error, errno, "Can't remove", self->fallback_path);
          g_task_return_error (task, error);
          return;
        }
      g_task_return_boolean (task, TRUE);
      return;
    }

  folder = g_path_get_dirname (self->fallback_path);
  if (g_mkdir_with_parents (folder, 0700) != 0)
    {
      set_error_from_errno (&error, errno, "Can't create", folder);
      g_task_return_error (task, error);
      return;
    }

  if (!g_file_set_contents_full (self->fallback_path, json, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  g_task_return_boolean (task, TRUE);
}

/* Thread: returns the file's session, or NULL when there is no file. */
static void
read_file_thread (GTask        *task,
                  gpointer      source_object,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  GeneriaSessionStore *self = source_object;
  g_autofree char *json = NULL;
  g_autoptr(GError) error = NULL;
  GeneriaSession *session;

  if (!g_file_get_contents (self->fallback_path, &json, NULL, &error))
    {
      if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_task_return_pointer (task, NULL, NULL);
      else
        g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  if (!(session = generia_session_new_from_json (json, &error)))
    {
      g_debug ("Ignoring the unreadable session in %s: %s", self->fallback_path, error->message);
      g_task_return_pointer (task, NULL, NULL);
      return;
    }

  g_task_return_pointer (task, session, g_object_unref);
}

static void
run_file_task (GeneriaSessionStore *self,
               GTaskThreadFunc      func,
               char                *json,
               GCancellable        *cancellable,
               GAsyncReadyCallback  callback,
               gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, run_file_task);
  g_task_set_task_data (task, json, g_free);
  g_task_run_in_thread (task, func);
}

static void
log_keyring_failure (const GError *error)
{
  g_debug ("No usable keyring: %s (%s %d)", error->message,
           g_quark_to_string (error->domain), error->code);
}

static gboolean
return_if_cancelled (GTask  *task,
                     GError *error)
{
  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return FALSE;

  g_task_return_error (task, error);
  return TRUE;
}

typedef struct
{
  char           *json;
  GeneriaSession *session;
  gboolean        in_file;
} SaveState;

static void
save_state_free (SaveState *state)
{
  g_clear_pointer (&state->json, g_free);
  g_clear_object (&state->session);
  g_free (state);
}

static void
on_save_file_done (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  GeneriaSessionStore *self = GENERIA_SESSION_STORE (object);
  g_autoptr(GTask) task = user_data;
  SaveState *state = g_task_get_task_data (task);
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      if (!state->in_file)
        {
          /* The session is safe in the keyring; a stale file we can't remove only wastes space. */
          g_debug ("%s", error->message);
          g_clear_error (&error);
        }
      else
        {
          g_task_return_error (task, error);
          return;
        }
    }

  set_uses_file (self, state->in_file);
  g_task_return_boolean (task, TRUE);
}

static void
on_secret_stored (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GCancellable *cancellable = g_task_get_cancellable (task);
  GeneriaSessionStore *self = g_task_get_source_object (task);
  SaveState *state = g_task_get_task_data (task);
  GError *error = NULL;

  if (!secret_password_store_finish (result, &error))
    {
      if (return_if_cancelled (task, error))
        return;
      log_keyring_failure (error);
      g_clear_error (&error);
      state->in_file = TRUE;
    }

  run_file_task (self, write_file_thread, state->in_file ? g_strdup (state->json) : NULL,
                 cancellable, on_save_file_done, g_steal_pointer (&task));
}

static void
on_old_secret_cleared (GObject      *object,
                       GAsyncResult *result,
                       gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GCancellable *cancellable = g_task_get_cancellable (task);
  GeneriaSessionStore *self = g_task_get_source_object (task);
  SaveState *state = g_task_get_task_data (task);
  GeneriaSession *session = state->session;
  g_autofree char *label = NULL;
  GError *error = NULL;

  /* FALSE without an error only means there was nothing to clear. */
  if (!secret_password_clear_finish (result, &error) && error != NULL)
    {
      if (return_if_cancelled (task, error))
        return;

      log_keyring_failure (error);
      g_clear_error (&error);
      state->in_file = TRUE;
      run_file_task (self, write_file_thread, g_strdup (state->json),
                     cancellable, on_save_file_done, g_steal_pointer (&task));
      return;
    }

  /* Translators: the name of the keyring item; %s is a server address */
  label = g_strdup_printf (_("Generia session at %s"), generia_session_get_server_url (session));
  secret_password_store (get_session_schema (), SECRET_COLLECTION_DEFAULT, label, state->json,
                         cancellable, on_secret_stored, g_steal_pointer (&task),
                         "server-url", generia_session_get_server_url (session),
                         "user-id", generia_user_get_id (generia_session_get_user (session)),
                         NULL);
}

/**
 * generia_session_store_save_async:
 *
 * Stores @session in place of any stored before: in the keyring, or in the fallback file
 * when no keyring answers.
 */
void
generia_session_store_save_async (GeneriaSessionStore *self,
                                  GeneriaSession      *session,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  SaveState *state;

  g_return_if_fail (GENERIA_IS_SESSION_STORE (self));
  g_return_if_fail (GENERIA_IS_SESSION (session));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_session_store_save_async);

  state = g_new0 (SaveState, 1);
  state->json = generia_session_to_json (session);
  state->session = g_object_ref (session);
  g_task_set_task_data (task, state, (GDestroyNotify)save_state_free);

  /* One session at a time: an item for another user or server must not linger. */
  secret_password_clear (get_session_schema (), cancellable, on_old_secret_cleared,
                         g_steal_pointer (&task), NULL);
}

gboolean
generia_session_store_save_finish (GeneriaSessionStore  *self,
                                   GAsyncResult         *result,
                                   GError              **error)
{
  g_return_val_if_fail (GENERIA_IS_SESSION_STORE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
on_file_read (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  GeneriaSessionStore *self = GENERIA_SESSION_STORE (object);
  g_autoptr(GTask) task = user_data;
  GeneriaSession *session;
  GError *error = NULL;

  session = g_task_propagate_pointer (G_TASK (result), &error);
  if (error != NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  set_uses_file (self, session != NULL);
  g_task_return_pointer (task, session, g_object_unref);
}

static void
on_secret_looked_up (GObject      *object,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GCancellable *cancellable = g_task_get_cancellable (task);
  GeneriaSessionStore *self = g_task_get_source_object (task);
  g_autoptr(GError) parse_error = NULL;
  GError *error = NULL;
  char *json;
  GeneriaSession *session;

  json = secret_password_lookup_finish (result, &error);

  if (json == NULL)
    {
      if (error != NULL)
        {
          if (return_if_cancelled (task, error))
            return;
          log_keyring_failure (error);
          g_clear_error (&error);
        }
      run_file_task (self, read_file_thread, NULL, cancellable,
                     on_file_read, g_steal_pointer (&task));
      return;
    }

  session = generia_session_new_from_json (json, &parse_error);
  secret_password_free (json);

  if (session == NULL)
    g_debug ("Ignoring the unreadable session in the keyring: %s", parse_error->message);

  set_uses_file (self, FALSE);
  g_task_return_pointer (task, session, g_object_unref);
}

/**
 * generia_session_store_load_async:
 *
 * Looks for a stored session, in the keyring and then in the fallback file.
 */
void
generia_session_store_load_async (GeneriaSessionStore *self,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (GENERIA_IS_SESSION_STORE (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_session_store_load_async);

  secret_password_lookup (get_session_schema (), cancellable, on_secret_looked_up,
                          g_steal_pointer (&task), NULL);
}

/**
 * generia_session_store_load_finish:
 *
 * Returns: (transfer full) (nullable): the stored session; %NULL with @error unset when none is
 *   stored
 */
GeneriaSession *
generia_session_store_load_finish (GeneriaSessionStore  *self,
                                   GAsyncResult         *result,
                                   GError              **error)
{
  g_return_val_if_fail (GENERIA_IS_SESSION_STORE (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_clear_file_done (GObject      *object,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  GeneriaSessionStore *self = GENERIA_SESSION_STORE (object);
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_task_return_error (task, error);
      return;
    }

  set_uses_file (self, FALSE);
  g_task_return_boolean (task, TRUE);
}

static void
on_secret_cleared (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GCancellable *cancellable = g_task_get_cancellable (task);
  GeneriaSessionStore *self = g_task_get_source_object (task);
  GError *error = NULL;

  if (!secret_password_clear_finish (result, &error) && error != NULL)
    {
      if (return_if_cancelled (task, error))
        return;
      log_keyring_failure (error);
      g_clear_error (&error);
    }

  run_file_task (self, write_file_thread, NULL, cancellable,
                 on_clear_file_done, g_steal_pointer (&task));
}

/**
 * generia_session_store_clear_async:
 *
 * Forgets the stored session, in the keyring and in the fallback file.
 */
void
generia_session_store_clear_async (GeneriaSessionStore *self,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (GENERIA_IS_SESSION_STORE (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_session_store_clear_async);

  secret_password_clear (get_session_schema (), cancellable, on_secret_cleared,
                         g_steal_pointer (&task), NULL);
}

gboolean
generia_session_store_clear_finish (GeneriaSessionStore  *self,
                                    GAsyncResult         *result,
                                    GError              **error)
{
  g_return_val_if_fail (GENERIA_IS_SESSION_STORE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
