/* generia-login-page.h: logging in with an e-mail address or username
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_LOGIN_PAGE (generia_login_page_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaLoginPage, generia_login_page, GENERIA, LOGIN_PAGE, AdwBin)

G_END_DECLS
