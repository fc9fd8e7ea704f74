/* generia-post.h: one post of a feed, as the server describes it
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_POST (generia_post_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaPost, generia_post, GENERIA, POST, GObject)

GeneriaPost *generia_post_new_from_json   (JsonObject   *object,
                                           GError      **error);
const char  *generia_post_get_id          (GeneriaPost  *self);
const char  *generia_post_get_user_id     (GeneriaPost  *self);
const char  *generia_post_get_username    (GeneriaPost  *self);
const char  *generia_post_get_caption     (GeneriaPost  *self);
const char  *generia_post_get_media_url   (GeneriaPost  *self);
GDateTime   *generia_post_get_created_at  (GeneriaPost  *self);
int          generia_post_get_width       (GeneriaPost  *self);
int          generia_post_get_height      (GeneriaPost  *self);
guint        generia_post_get_n_media     (GeneriaPost  *self);

G_END_DECLS
