/* hydrate.h - turning service answers into API v1 JSON: posts with their author's name, their
 * media and signed media URLs.
 *
 * A page of posts costs one batched call per service, whatever its length: Auth.GetUsersByIds
 * for the names and Media.GetMediaByIds for the media, both in flight at once, then
 * CDN.GetSignedURL for every variant URL of the page.  Never one call per post. */
#pragma once

#include <json-glib/json-glib.h>

#include "gateway.h"
#include "media.pb-c.h"
#include "post.pb-c.h"

/* Signs every variant of `media` with one CDN call.  Returns storage key -> absolute URL
 * (destroy with g_hash_table_unref), or NULL after answering the request with the error. */
GHashTable *gn_gateway_sign_media (gn_http_request *request, gn_gateway_context *context,
                                   Generia__Media__V1__Media **media, size_t n);

/* Members of a media object: media_id, user_id, type, content_type, width, height,
 * duration_ms, blurhash, variants {original, medium, thumbnail: URL}. */
void gn_gateway_add_media_members (JsonBuilder *builder, const Generia__Media__V1__Media *media,
                                   GHashTable *urls);

/* Adds a JSON array of post objects for `posts` to the builder (after a member name).  Returns
 * FALSE after answering the request with the error. */
gboolean gn_gateway_add_posts (gn_http_request *request, gn_gateway_context *context,
                               JsonBuilder *builder, Generia__Post__V1__Post **posts, size_t n);

/* Answers with one post object. */
void gn_gateway_respond_post (gn_http_request *request, gn_gateway_context *context, int status,
                              Generia__Post__V1__Post *post);
