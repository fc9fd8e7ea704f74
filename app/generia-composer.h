/* generia-composer.h: a new post: a photo and a caption
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_COMPOSER (generia_composer_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaComposer, generia_composer, GENERIA, COMPOSER, AdwWindow)

GeneriaComposer *generia_composer_new      (GtkWindow       *parent);
GFile           *generia_composer_get_file (GeneriaComposer *self);
void             generia_composer_set_file (GeneriaComposer *self,
                                            GFile           *file);

G_END_DECLS
