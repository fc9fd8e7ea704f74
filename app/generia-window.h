/* generia-window.h: the main window
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include "generia-application.h"

G_BEGIN_DECLS

#define GENERIA_TYPE_WINDOW (generia_window_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaWindow, generia_window, GENERIA, WINDOW, AdwApplicationWindow)

GeneriaWindow *generia_window_new        (GeneriaApplication *application);
void           generia_window_show_toast (GeneriaWindow      *self,
                                          const char         *message);

G_END_DECLS
