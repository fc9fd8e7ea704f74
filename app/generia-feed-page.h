/* generia-feed-page.h: the node's global feed
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_FEED_PAGE (generia_feed_page_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaFeedPage, generia_feed_page, GENERIA, FEED_PAGE, AdwBin)

GListModel *generia_feed_page_get_posts (GeneriaFeedPage *self);
void        generia_feed_page_refresh   (GeneriaFeedPage *self);

G_END_DECLS
