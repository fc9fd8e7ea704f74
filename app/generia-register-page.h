/* generia-register-page.h: creating an account
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_REGISTER_PAGE (generia_register_page_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaRegisterPage, generia_register_page, GENERIA, REGISTER_PAGE, AdwBin)

G_END_DECLS
