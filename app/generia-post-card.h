/* generia-post-card.h: one post in the feed
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

#include "generia-post.h"

G_BEGIN_DECLS

#define GENERIA_TYPE_POST_CARD (generia_post_card_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaPostCard, generia_post_card, GENERIA, POST_CARD, AdwBin)

GtkWidget   *generia_post_card_new      (void);
GeneriaPost *generia_post_card_get_post (GeneriaPostCard *self);
void         generia_post_card_set_post (GeneriaPostCard *self,
                                         GeneriaPost     *post);

G_END_DECLS
