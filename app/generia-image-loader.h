/* generia-image-loader.h: media URLs as textures, with a shared in-memory cache
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <gdk/gdk.h>

#include "generia-client.h"

G_BEGIN_DECLS

/* The default bound of the cache: the decoded size of its textures, width × height × 4. */
#define GENERIA_IMAGE_LOADER_DEFAULT_MAX_BYTES (64 * 1024 * 1024)

#define GENERIA_TYPE_IMAGE_LOADER (generia_image_loader_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaImageLoader, generia_image_loader, GENERIA, IMAGE_LOADER, GObject)

GeneriaImageLoader *generia_image_loader_new           (GeneriaClient        *client);
gsize               generia_image_loader_get_max_bytes (GeneriaImageLoader   *self);
void                generia_image_loader_set_max_bytes (GeneriaImageLoader   *self,
                                                        gsize                 max_bytes);
GdkTexture         *generia_image_loader_lookup        (GeneriaImageLoader   *self,
                                                        const char           *url);
void                generia_image_loader_load_async    (GeneriaImageLoader   *self,
                                                        const char           *url,
                                                        GCancellable         *cancellable,
                                                        GAsyncReadyCallback   callback,
                                                        gpointer              user_data);
GdkTexture         *generia_image_loader_load_finish   (GeneriaImageLoader   *self,
                                                        GAsyncResult         *result,
                                                        GError              **error);

G_END_DECLS
