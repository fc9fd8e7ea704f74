/* generia-session.c: a logged-in session with one server
 *
 * What the app must remember to stay logged in: the server it talks to, the short-lived access
 * token, the rotating refresh token, and the user they belong to (cached, so that the account
 * page can show who is logged in while the server is unreachable). The client replaces the
 * tokens when it refreshes them; the application watches "notify" and stores the session again.
 *
 * The JSON form is what the session store keeps, in the keyring or in the fallback file:
 * {"server_url", "access_token", "refresh_token", "user": {id, username, email, created_at}}.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include "generia-client.h"
#include "generia-session.h"

struct _GeneriaSession
{
  GObject      parent_instance;

  char        *server_url;
  char        *access_token;
  char        *refresh_token;
  GeneriaUser *user;
};

G_DEFINE_FINAL_TYPE (GeneriaSession, generia_session, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_SERVER_URL,
  PROP_ACCESS_TOKEN,
  PROP_REFRESH_TOKEN,
  PROP_USER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
generia_session_finalize (GObject *object)
{
  GeneriaSession *self = (GeneriaSession *)object;

  g_clear_pointer (&self->server_url, g_free);
  g_clear_pointer (&self->access_token, g_free);
  g_clear_pointer (&self->refresh_token, g_free);
  g_clear_object (&self->user);

  G_OBJECT_CLASS (generia_session_parent_class)->finalize (object);
}

static void
generia_session_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  GeneriaSession *self = GENERIA_SESSION (object);

  switch (prop_id)
    {
    case PROP_SERVER_URL:
      g_value_set_string (value, self->server_url);
      break;

    case PROP_ACCESS_TOKEN:
      g_value_set_string (value, self->access_token);
      break;

    case PROP_REFRESH_TOKEN:
      g_value_set_string (value, self->refresh_token);
      break;

    case PROP_USER:
      g_value_set_object (value, self->user);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_session_class_init (GeneriaSessionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = generia_session_finalize;
  object_class->get_property = generia_session_get_property;

  properties[PROP_SERVER_URL] =
    g_param_spec_string ("server-url", NULL, NULL, NULL,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_ACCESS_TOKEN] =
    g_param_spec_string ("access-token", NULL, NULL, NULL,
                         (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));
  properties[PROP_REFRESH_TOKEN] =
    g_param_spec_string ("refresh-token", NULL, NULL, NULL,
                         (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));
  properties[PROP_USER] =
    g_param_spec_object ("user", NULL, NULL, GENERIA_TYPE_USER,
                         (G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
generia_session_init (GeneriaSession *self)
{
}

GeneriaSession *
generia_session_new (const char  *server_url,
                     const char  *access_token,
                     const char  *refresh_token,
                     GeneriaUser *user)
{
  GeneriaSession *self;

  g_return_val_if_fail (server_url != NULL, NULL);
  g_return_val_if_fail (access_token != NULL, NULL);
  g_return_val_if_fail (refresh_token != NULL, NULL);
  g_return_val_if_fail (GENERIA_IS_USER (user), NULL);

  self = g_object_new (GENERIA_TYPE_SESSION, NULL);
  self->server_url = g_strdup (server_url);
  self->access_token = g_strdup (access_token);
  self->refresh_token = g_strdup (refresh_token);
  self->user = g_object_ref (user);

  return self;
}

static const char *
get_string_member (JsonObject *object,
                   const char *member)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;

  return json_node_get_string (node);
}

/**
 * generia_session_new_from_json:
 * @json: a session as generia_session_to_json() wrote it
 *
 * Returns: (transfer full): the session, or %NULL with @error set
 */
GeneriaSession *
generia_session_new_from_json (const char  *json,
                               GError     **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GeneriaUser) user = NULL;
  JsonObject *object;
  JsonObject *user_object;
  const char *server_url;
  const char *access_token;
  const char *refresh_token;

  g_return_val_if_fail (json != NULL, NULL);

  if (!json_parser_load_from_data (parser, json, -1, error))
    return NULL;

  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    goto malformed;

  object = json_node_get_object (json_parser_get_root (parser));
  server_url = get_string_member (object, "server_url");
  access_token = get_string_member (object, "access_token");
  refresh_token = get_string_member (object, "refresh_token");

  if (server_url == NULL || access_token == NULL || refresh_token == NULL ||
      !json_object_has_member (object, "user") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (object, "user")))
    goto malformed;

  user_object = json_object_get_object_member (object, "user");
  if (!(user = generia_user_new_from_json (user_object, error)))
    return NULL;

  return generia_session_new (server_url, access_token, refresh_token, user);

malformed:
  g_set_error_literal (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                       "The stored session is not a session object");
  return NULL;
}

/**
 * generia_session_to_json:
 *
 * Returns: (transfer full): the session as a JSON text
 */
char *
generia_session_to_json (GeneriaSession *self)
{
  g_autoptr(JsonObject) object = json_object_new ();
  g_autoptr(JsonNode) root = json_node_new (JSON_NODE_OBJECT);

  g_return_val_if_fail (GENERIA_IS_SESSION (self), NULL);

  json_object_set_string_member (object, "server_url", self->server_url);
  json_object_set_string_member (object, "access_token", self->access_token);
  json_object_set_string_member (object, "refresh_token", self->refresh_token);
  json_object_set_object_member (object, "user", generia_user_to_json (self->user));
  json_node_set_object (root, object);

  return json_to_string (root, FALSE);
}

const char *
generia_session_get_server_url (GeneriaSession *self)
{
  g_return_val_if_fail (GENERIA_IS_SESSION (self), NULL);

  return self->server_url;
}

const char *
generia_session_get_access_token (GeneriaSession *self)
{
  g_return_val_if_fail (GENERIA_IS_SESSION (self), NULL);

  return self->access_token;
}

const char *
generia_session_get_refresh_token (GeneriaSession *self)
{
  g_return_val_if_fail (GENERIA_IS_SESSION (self), NULL);

  return self->refresh_token;
}

static gboolean
replace_string (char       **field,
                const char  *value)
{
  if (g_strcmp0 (*field, value) == 0)
    return FALSE;

  g_free (*field);
  *field = g_strdup (value);
  return TRUE;
}

/**
 * generia_session_set_tokens:
 *
 * Replaces both tokens after a refresh (refresh tokens rotate: the old one no longer works).
 */
void
generia_session_set_tokens (GeneriaSession *self,
                            const char     *access_token,
                            const char     *refresh_token)
{
  g_return_if_fail (GENERIA_IS_SESSION (self));
  g_return_if_fail (access_token != NULL);
  g_return_if_fail (refresh_token != NULL);

  g_object_freeze_notify (G_OBJECT (self));
  if (replace_string (&self->access_token, access_token))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ACCESS_TOKEN]);
  if (replace_string (&self->refresh_token, refresh_token))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REFRESH_TOKEN]);
  g_object_thaw_notify (G_OBJECT (self));
}

/**
 * generia_session_get_user:
 *
 * Returns: (transfer none): the logged-in user, as last seen by the server
 */
GeneriaUser *
generia_session_get_user (GeneriaSession *self)
{
  g_return_val_if_fail (GENERIA_IS_SESSION (self), NULL);

  return self->user;
}

void
generia_session_set_user (GeneriaSession *self,
                          GeneriaUser    *user)
{
  g_return_if_fail (GENERIA_IS_SESSION (self));
  g_return_if_fail (GENERIA_IS_USER (user));

  if (g_set_object (&self->user, user))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_USER]);
}
