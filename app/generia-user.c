/* generia-user.c: a person's account as the server describes it
 *
 * The user object of the REST API ({id, username, email, created_at, ...}) as an immutable
 * GObject, so that pages can bind to it. It is also written into the stored session, so that the
 * account page can show who is logged in while the server cannot be reached.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include "generia-client.h"
#include "generia-user.h"

struct _GeneriaUser
{
  GObject    parent_instance;

  char      *id;
  char      *username;
  char      *email;
  GDateTime *created_at;
  /* kept as the server wrote it, so that a stored session round-trips exactly */
  char      *created_at_text;
};

G_DEFINE_FINAL_TYPE (GeneriaUser, generia_user, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_ID,
  PROP_USERNAME,
  PROP_EMAIL,
  PROP_CREATED_AT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
generia_user_finalize (GObject *object)
{
  GeneriaUser *self = (GeneriaUser *)object;

  g_clear_pointer (&self->id, g_free);
  g_clear_pointer (&self->username, g_free);
  g_clear_pointer (&self->email, g_free);
  g_clear_pointer (&self->created_at, g_date_time_unref);
  g_clear_pointer (&self->created_at_text, g_free);

  G_OBJECT_CLASS (generia_user_parent_class)->finalize (object);
}

static void
generia_user_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  GeneriaUser *self = GENERIA_USER (object);

  switch (prop_id)
    {
    case PROP_ID:
      g_value_set_string (value, self->id);
      break;

    case PROP_USERNAME:
      g_value_set_string (value, self->username);
      break;

    case PROP_EMAIL:
      g_value_set_string (value, self->email);
      break;

    case PROP_CREATED_AT:
      g_value_set_boxed (value, self->created_at);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_user_class_init (GeneriaUserClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = generia_user_finalize;
  object_class->get_property = generia_user_get_property;

  properties[PROP_ID] =
    g_param_spec_string ("id", NULL, NULL, NULL,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_USERNAME] =
    g_param_spec_string ("username", NULL, NULL, NULL,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_EMAIL] =
    g_param_spec_string ("email", NULL, NULL, NULL,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_CREATED_AT] =
    g_param_spec_boxed ("created-at", NULL, NULL, G_TYPE_DATE_TIME,
                        (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
generia_user_init (GeneriaUser *self)
{
}

static const char *
get_required_string (JsonObject  *object,
                     const char  *member,
                     GError     **error)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    {
      g_set_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                   "The user object has no string member “%s”", member);
      return NULL;
    }

  return json_node_get_string (node);
}

/**
 * generia_user_new_from_json:
 * @object: a user object of the REST API
 *
 * Returns: (transfer full): the user, or %NULL with @error set to
 *   %GENERIA_CLIENT_ERROR_BAD_RESPONSE when a member is missing or malformed
 */
GeneriaUser *
generia_user_new_from_json (JsonObject  *object,
                            GError     **error)
{
  g_autoptr(GeneriaUser) self = NULL;
  const char *id;
  const char *username;
  const char *email;
  const char *created_at;

  g_return_val_if_fail (object != NULL, NULL);

  if (!(id = get_required_string (object, "id", error)) ||
      !(username = get_required_string (object, "username", error)) ||
      !(email = get_required_string (object, "email", error)) ||
      !(created_at = get_required_string (object, "created_at", error)))
    return NULL;

  self = g_object_new (GENERIA_TYPE_USER, NULL);
  self->id = g_strdup (id);
  self->username = g_strdup (username);
  self->email = g_strdup (email);
  self->created_at_text = g_strdup (created_at);
  self->created_at = g_date_time_new_from_iso8601 (created_at, NULL);

  if (self->created_at == NULL)
    {
      g_set_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                   "The user's created_at “%s” is not an RFC 3339 time", created_at);
      return NULL;
    }

  return g_steal_pointer (&self);
}

/**
 * generia_user_to_json:
 *
 * Returns: (transfer full): the user as the REST API writes it
 */
JsonObject *
generia_user_to_json (GeneriaUser *self)
{
  JsonObject *object;

  g_return_val_if_fail (GENERIA_IS_USER (self), NULL);

  object = json_object_new ();
  json_object_set_string_member (object, "id", self->id);
  json_object_set_string_member (object, "username", self->username);
  json_object_set_string_member (object, "email", self->email);
  json_object_set_string_member (object, "created_at", self->created_at_text);
  return object;
}

const char *
generia_user_get_id (GeneriaUser *self)
{
  g_return_val_if_fail (GENERIA_IS_USER (self), NULL);

  return self->id;
}

const char *
generia_user_get_username (GeneriaUser *self)
{
  g_return_val_if_fail (GENERIA_IS_USER (self), NULL);

  return self->username;
}

const char *
generia_user_get_email (GeneriaUser *self)
{
  g_return_val_if_fail (GENERIA_IS_USER (self), NULL);

  return self->email;
}

/**
 * generia_user_get_created_at:
 *
 * Returns: (transfer none): when the account was created
 */
GDateTime *
generia_user_get_created_at (GeneriaUser *self)
{
  g_return_val_if_fail (GENERIA_IS_USER (self), NULL);

  return self->created_at;
}
