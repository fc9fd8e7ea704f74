/* generia-server-page.h: the welcome page, where the server address is chosen
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_SERVER_PAGE (generia_server_page_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaServerPage, generia_server_page, GENERIA, SERVER_PAGE, AdwBin)

G_END_DECLS
