/* generia-post.c: one post of a feed, as the server describes it
 *
 * The post object of the REST API ({id, user_id, username, caption, media_url, created_at,
 * media: [{width, height, ...}], ...}) as an immutable GObject, so that list items can bind to
 * it. width and height are those of the first media item, so that a card can reserve the
 * image's space before it arrives; n-media tells a carousel from a single photo.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>

#include "generia-post.h"
#include "generia-client.h"

struct _GeneriaPost
{
  GObject    parent_instance;

  char      *id;
  char      *user_id;
  char      *username;
  char      *caption;
  char      *media_url;
  GDateTime *created_at;
  int        width;
  int        height;
  guint      n_media;
};

G_DEFINE_FINAL_TYPE (GeneriaPost, generia_post, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_ID,
  PROP_USER_ID,
  PROP_USERNAME,
  PROP_CAPTION,
  PROP_MEDIA_URL,
  PROP_CREATED_AT,
  PROP_WIDTH,
  PROP_HEIGHT,
  PROP_N_MEDIA,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
generia_post_finalize (GObject *object)
{
  GeneriaPost *self = (GeneriaPost *)object;

  g_clear_pointer (&self->id, g_free);
  g_clear_pointer (&self->user_id, g_free);
  g_clear_pointer (&self->username, g_free);
  g_clear_pointer (&self->caption, g_free);
  g_clear_pointer (&self->media_url, g_free);
  g_clear_pointer (&self->created_at, g_date_time_unref);

  G_OBJECT_CLASS (generia_post_parent_class)->finalize (object);
}

static void
generia_post_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  GeneriaPost *self = GENERIA_POST (object);

  switch (prop_id)
    {
    case PROP_ID:
      g_value_set_string (value, self->id);
      break;

    case PROP_USER_ID:
      g_value_set_string (value, self->user_id);
      break;

    case PROP_USERNAME:
      g_value_set_string (value, self->username);
      break;

    case PROP_CAPTION:
      g_value_set_string (value, self->caption);
      break;

    case PROP_MEDIA_URL:
      g_value_set_string (value, self->media_url);
      break;

    case PROP_CREATED_AT:
      g_value_set_boxed (value, self->created_at);
      break;

    case PROP_WIDTH:
      g_value_set_int (value, self->width);
      break;

    case PROP_HEIGHT:
      g_value_set_int (value, self->height);
      break;

    case PROP_N_MEDIA:
      g_value_set_uint (value, self->n_media);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_post_class_init (GeneriaPostClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = generia_post_finalize;
  object_class->get_property = generia_post_get_property;

  properties[PROP_ID] =
    g_param_spec_string ("id", NULL, NULL, NULL, (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_USER_ID] =
    g_param_spec_string ("user-id", NULL, NULL, NULL, (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_USERNAME] =
    g_param_spec_string ("username", NULL, NULL, NULL, (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_CAPTION] =
    g_param_spec_string ("caption", NULL, NULL, NULL, (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_MEDIA_URL] =
    g_param_spec_string ("media-url", NULL, NULL, NULL, (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_CREATED_AT] =
    g_param_spec_boxed ("created-at", NULL, NULL, G_TYPE_DATE_TIME,
                        (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_WIDTH] =
    g_param_spec_int ("width", NULL, NULL, 0, G_MAXINT, 0,
                      (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_HEIGHT] =
    g_param_spec_int ("height", NULL, NULL, 0, G_MAXINT, 0,
                      (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  properties[PROP_N_MEDIA] =
    g_param_spec_uint ("n-media", NULL, NULL, 0, G_MAXUINT, 0,
                       (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
generia_post_init (GeneriaPost *self)
{
}

static char *
dup_string_member (JsonObject *object,
                   const char *member)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;

  return g_strdup (json_node_get_string (node));
}

static int
int_member (JsonObject *object,
            const char *member)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return 0;

  return (int)CLAMP (json_node_get_int (node), 0, G_MAXINT);
}

/**
 * generia_post_new_from_json:
 * @object: a post object of the REST API
 *
 * Returns: (transfer full): the post, or %NULL with @error set when @object lacks the id,
 *   author or creation time every post has
 */
GeneriaPost *
generia_post_new_from_json (JsonObject  *object,
                            GError     **error)
{
  g_autoptr(GeneriaPost) self = g_object_new (GENERIA_TYPE_POST, NULL);
  g_autofree char *created_at = NULL;
  JsonNode *media;

  g_return_val_if_fail (object != NULL, NULL);

  self->id = dup_string_member (object, "id");
  self->user_id = dup_string_member (object, "user_id");
  self->username = dup_string_member (object, "username");
  self->caption = dup_string_member (object, "caption");
  self->media_url = dup_string_member (object, "media_url");
  created_at = dup_string_member (object, "created_at");
  if (created_at != NULL)
    self->created_at = g_date_time_new_from_iso8601 (created_at, NULL);

  if (self->id == NULL || self->username == NULL || self->created_at == NULL)
    {
      g_set_error_literal (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                           _("The server sent a post the app does not understand."));
      return NULL;
    }

  if (self->caption == NULL)
    self->caption = g_strdup ("");

  media = json_object_get_member (object, "media");
  if (media != NULL && JSON_NODE_HOLDS_ARRAY (media))
    {
      JsonArray *items = json_node_get_array (media);

      self->n_media = json_array_get_length (items);
      if (self->n_media > 0 && JSON_NODE_HOLDS_OBJECT (json_array_get_element (items, 0)))
        {
          JsonObject *first = json_array_get_object_element (items, 0);

          self->width = int_member (first, "width");
          self->height = int_member (first, "height");
        }
    }

  return g_steal_pointer (&self);
}

const char *
generia_post_get_id (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), NULL);

  return self->id;
}

/**
 * generia_post_get_user_id:
 *
 * Returns: (nullable): the author's id
 */
const char *
generia_post_get_user_id (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), NULL);

  return self->user_id;
}

const char *
generia_post_get_username (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), NULL);

  return self->username;
}

/**
 * generia_post_get_caption:
 *
 * Returns: the caption, hashtags included; "" when there is none
 */
const char *
generia_post_get_caption (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), NULL);

  return self->caption;
}

/**
 * generia_post_get_media_url:
 *
 * Returns: (nullable): a signed address of the first item's image, which needs no credentials
 */
const char *
generia_post_get_media_url (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), NULL);

  return self->media_url;
}

GDateTime *
generia_post_get_created_at (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), NULL);

  return self->created_at;
}

/**
 * generia_post_get_width:
 *
 * Returns: the first media item's width in pixels, 0 when unknown
 */
int
generia_post_get_width (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), 0);

  return self->width;
}

/**
 * generia_post_get_height:
 *
 * Returns: the first media item's height in pixels, 0 when unknown
 */
int
generia_post_get_height (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), 0);

  return self->height;
}

/**
 * generia_post_get_n_media:
 *
 * Returns: how many photos or videos the post has; more than one is a carousel
 */
guint
generia_post_get_n_media (GeneriaPost *self)
{
  g_return_val_if_fail (GENERIA_IS_POST (self), 0);

  return self->n_media;
}
