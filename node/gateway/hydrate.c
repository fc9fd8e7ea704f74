/* hydrate.c - posts and media as API v1 JSON (see hydrate.h).
 *
 * The post object keeps the original API's fields (id, user_id, username, caption, media_url,
 * created_at, likes_count, comments_count, user_liked) and adds media (every item of a
 * carousel with its variants, size and blurhash), hashtags, mentions and updated_at.
 * media_url is the first item's "medium" variant: an image the original web client can put in
 * an <img>, for videos their poster frame.  Likes and comments arrive with the interaction
 * service; until it exists there are none to count.
 *
 * The CDN signs paths; the base in front of them is cdn.public_url when a host put a web
 * server or a commercial CDN in front of its media, else the base URL the client reached the
 * gateway with, since the gateway serves the media on its own port too. */
#include "hydrate.h"

#include <string.h>

#include "auth.pb-c.h"
#include "cdn.pb-c.h"
#include "errors.h"

GHashTable *
gn_gateway_sign_media (gn_http_request *request, gn_gateway_context *context,
                       Generia__Media__V1__Media **media, size_t n)
{
  GHashTable *urls = g_hash_table_new (g_str_hash, g_str_equal);
  GPtrArray *keys = g_ptr_array_new ();
  for (size_t i = 0; i < n; i++)
    for (size_t v = 0; v < media[i]->n_variants; v++)
      g_ptr_array_add (keys, media[i]->variants[v]->storage_key);
  if (keys->len == 0) {
    g_ptr_array_free (keys, TRUE);
    return urls;
  }

  Generia__Cdn__V1__GetSignedURLRequest req = GENERIA__CDN__V1__GET_SIGNED_URLREQUEST__INIT;
  req.storage_keys = (char **)keys->pdata;
  req.n_storage_keys = keys->len;
  ProtobufCMessage *response = NULL;
  gboolean ok = gn_gateway_call (request, context, GN_SERVICE_CDN,
                                 &generia__cdn__v1__cdnservice__descriptor, "GetSignedURL",
                                 &req.base, &response);
  g_ptr_array_free (keys, TRUE);
  if (!ok) {
    g_hash_table_unref (urls);
    return NULL;
  }
  Generia__Cdn__V1__GetSignedURLResponse *signed_urls = (void *)response;
  const char *base = gn_gateway_media_base_url (request, context);
  for (size_t i = 0; i < signed_urls->n_urls; i++)
    g_hash_table_insert (urls, signed_urls->urls[i]->storage_key,
                         gn_arena_printf (request->arena, "%s%s", base, signed_urls->urls[i]->url));
  return urls;
}

static const char *
kind_name (Generia__Media__V1__MediaKind kind)
{
  return kind == GENERIA__MEDIA__V1__MEDIA_KIND__MEDIA_KIND_VIDEO ? "video" : "image";
}

static const char *
variant_url (const Generia__Media__V1__Media *media, const char *name, GHashTable *urls)
{
  for (size_t v = 0; v < media->n_variants; v++)
    if (strcmp (media->variants[v]->name, name) == 0)
      return g_hash_table_lookup (urls, media->variants[v]->storage_key);
  return NULL;
}

void
gn_gateway_add_media_members (JsonBuilder *builder, const Generia__Media__V1__Media *media,
                              GHashTable *urls)
{
  json_builder_set_member_name (builder, "media_id");
  json_builder_add_string_value (builder, media->id);
  json_builder_set_member_name (builder, "user_id");
  json_builder_add_string_value (builder, media->user_id);
  json_builder_set_member_name (builder, "type");
  json_builder_add_string_value (builder, kind_name (media->kind));
  json_builder_set_member_name (builder, "content_type");
  json_builder_add_string_value (builder, media->content_type);
  json_builder_set_member_name (builder, "width");
  json_builder_add_int_value (builder, media->width);
  json_builder_set_member_name (builder, "height");
  json_builder_add_int_value (builder, media->height);
  json_builder_set_member_name (builder, "duration_ms");
  json_builder_add_int_value (builder, media->duration_ms);
  json_builder_set_member_name (builder, "blurhash");
  json_builder_add_string_value (builder, media->blurhash);
  json_builder_set_member_name (builder, "variants");
  json_builder_begin_object (builder);
  for (size_t v = 0; v < media->n_variants; v++) {
    const char *url = g_hash_table_lookup (urls, media->variants[v]->storage_key);
    json_builder_set_member_name (builder, media->variants[v]->name);
    if (url != NULL)
      json_builder_add_string_value (builder, url);
    else
      json_builder_add_null_value (builder);
  }
  json_builder_end_object (builder);
}

typedef struct {
  Generia__Auth__V1__GetUsersByIdsResponse *users;
  Generia__Media__V1__GetMediaByIdsResponse *media;
  GHashTable *urls;
} page_parts;

/* The three batched calls of a page: users and media at once, then the URLs of the media. */
static gboolean
fetch_page_parts (gn_http_request *request, gn_gateway_context *context,
                  Generia__Post__V1__Post **posts, size_t n, page_parts *parts)
{
  GPtrArray *user_ids = g_ptr_array_new ();
  GPtrArray *media_ids = g_ptr_array_new ();
  for (size_t i = 0; i < n; i++) {
    g_ptr_array_add (user_ids, posts[i]->user_id);
    for (size_t m = 0; m < posts[i]->n_media_ids; m++)
      g_ptr_array_add (media_ids, posts[i]->media_ids[m]);
  }

  gn_rpc_call_options options;
  gn_gateway_call_options (request, &options);
  Generia__Auth__V1__GetUsersByIdsRequest users_req
      = GENERIA__AUTH__V1__GET_USERS_BY_IDS_REQUEST__INIT;
  users_req.user_ids = (char **)user_ids->pdata;
  users_req.n_user_ids = user_ids->len;
  Generia__Media__V1__GetMediaByIdsRequest media_req
      = GENERIA__MEDIA__V1__GET_MEDIA_BY_IDS_REQUEST__INIT;
  media_req.media_ids = (char **)media_ids->pdata;
  media_req.n_media_ids = media_ids->len;
  gn_rpc_pending *users_call = gn_rpc_unary_start (context->clients[GN_SERVICE_AUTH],
                                                   &generia__auth__v1__auth_service__descriptor,
                                                   "GetUsersByIds", &users_req.base, &options);
  gn_rpc_pending *media_call = gn_rpc_unary_start (context->clients[GN_SERVICE_MEDIA],
                                                   &generia__media__v1__media_service__descriptor,
                                                   "GetMediaByIds", &media_req.base, &options);

  ProtobufCMessage *users = NULL, *media = NULL;
  gn_rpc_status users_status, media_status;
  gn_rpc_unary_finish (users_call, &users, request->arena, &users_status);
  gn_rpc_unary_finish (media_call, &media, request->arena, &media_status);
  g_ptr_array_free (user_ids, TRUE);
  g_ptr_array_free (media_ids, TRUE);
  if (users_status.code != GRPC_STATUS_OK) {
    gn_gateway_respond_rpc_error (request, &users_status, "auth");
    return FALSE;
  }
  if (media_status.code != GRPC_STATUS_OK) {
    gn_gateway_respond_rpc_error (request, &media_status, "media");
    return FALSE;
  }
  parts->users = (void *)users;
  parts->media = (void *)media;
  parts->urls
      = gn_gateway_sign_media (request, context, parts->media->media, parts->media->n_media);
  return parts->urls != NULL;
}

static const char *
username_of (const page_parts *parts, const char *user_id)
{
  for (size_t i = 0; i < parts->users->n_users; i++)
    if (strcmp (parts->users->users[i]->id, user_id) == 0)
      return parts->users->users[i]->username;
  return NULL;
}

static const Generia__Media__V1__Media *
media_of (const page_parts *parts, const char *media_id)
{
  for (size_t i = 0; i < parts->media->n_media; i++)
    if (strcmp (parts->media->media[i]->id, media_id) == 0)
      return parts->media->media[i];
  return NULL;
}

static void
add_string_array (JsonBuilder *builder, const char *name, char **values, size_t n)
{
  json_builder_set_member_name (builder, name);
  json_builder_begin_array (builder);
  for (size_t i = 0; i < n; i++)
    json_builder_add_string_value (builder, values[i]);
  json_builder_end_array (builder);
}

static void
add_post_object (JsonBuilder *builder, const Generia__Post__V1__Post *post, const page_parts *parts)
{
  char created[32], updated[32];
  const char *username = username_of (parts, post->user_id);
  const char *media_url = NULL;

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "id");
  json_builder_add_string_value (builder, post->id);
  json_builder_set_member_name (builder, "user_id");
  json_builder_add_string_value (builder, post->user_id);
  json_builder_set_member_name (builder, "username");
  if (username != NULL)
    json_builder_add_string_value (builder, username);
  else
    json_builder_add_null_value (builder);
  json_builder_set_member_name (builder, "caption");
  json_builder_add_string_value (builder, post->caption);

  json_builder_set_member_name (builder, "media");
  json_builder_begin_array (builder);
  for (size_t m = 0; m < post->n_media_ids; m++) {
    const Generia__Media__V1__Media *media = media_of (parts, post->media_ids[m]);
    if (media == NULL)
      continue;
    if (media_url == NULL)
      media_url = variant_url (media, "medium", parts->urls);
    json_builder_begin_object (builder);
    gn_gateway_add_media_members (builder, media, parts->urls);
    json_builder_end_object (builder);
  }
  json_builder_end_array (builder);

  json_builder_set_member_name (builder, "media_url");
  if (media_url != NULL)
    json_builder_add_string_value (builder, media_url);
  else
    json_builder_add_null_value (builder);
  json_builder_set_member_name (builder, "created_at");
  json_builder_add_string_value (builder, gn_gateway_format_time (post->created_at_us, created));
  json_builder_set_member_name (builder, "updated_at");
  json_builder_add_string_value (builder, gn_gateway_format_time (post->updated_at_us, updated));
  json_builder_set_member_name (builder, "likes_count");
  json_builder_add_int_value (builder, 0);
  json_builder_set_member_name (builder, "comments_count");
  json_builder_add_int_value (builder, 0);
  json_builder_set_member_name (builder, "user_liked");
  json_builder_add_boolean_value (builder, FALSE);
  add_string_array (builder, "hashtags", post->hashtags, post->n_hashtags);
  add_string_array (builder, "mentions", post->mentions, post->n_mentions);
  json_builder_end_object (builder);
}

gboolean
gn_gateway_add_posts (gn_http_request *request, gn_gateway_context *context, JsonBuilder *builder,
                      Generia__Post__V1__Post **posts, size_t n)
{
  page_parts parts = { 0 };
  if (n > 0 && !fetch_page_parts (request, context, posts, n, &parts))
    return FALSE;
  json_builder_begin_array (builder);
  for (size_t i = 0; i < n; i++)
    add_post_object (builder, posts[i], &parts);
  json_builder_end_array (builder);
  g_clear_pointer (&parts.urls, g_hash_table_unref);
  return TRUE;
}

void
gn_gateway_respond_post (gn_http_request *request, gn_gateway_context *context, int status,
                         Generia__Post__V1__Post *post)
{
  page_parts parts = { 0 };
  if (!fetch_page_parts (request, context, &post, 1, &parts))
    return;
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  add_post_object (builder, post, &parts);
  g_hash_table_unref (parts.urls);
  gn_gateway_respond_builder (request, status, builder);
}
