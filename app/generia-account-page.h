/* generia-account-page.h: who is logged in
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

#include "generia-session.h"

G_BEGIN_DECLS

#define GENERIA_TYPE_ACCOUNT_PAGE (generia_account_page_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaAccountPage, generia_account_page, GENERIA, ACCOUNT_PAGE, AdwBin)

GeneriaSession *generia_account_page_get_session (GeneriaAccountPage *self);
void            generia_account_page_set_session (GeneriaAccountPage *self,
                                                  GeneriaSession     *session);

G_END_DECLS
