/* generia-session.h: a logged-in session with one server
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include "generia-user.h"

G_BEGIN_DECLS

#define GENERIA_TYPE_SESSION (generia_session_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaSession, generia_session, GENERIA, SESSION, GObject)

GeneriaSession *generia_session_new                (const char      *server_url,
                                                    const char      *access_token,
                                                    const char      *refresh_token,
                                                    GeneriaUser     *user);
GeneriaSession *generia_session_new_from_json      (const char      *json,
                                                    GError         **error);
char           *generia_session_to_json            (GeneriaSession  *self);
const char     *generia_session_get_server_url     (GeneriaSession  *self);
const char     *generia_session_get_access_token   (GeneriaSession  *self);
const char     *generia_session_get_refresh_token  (GeneriaSession  *self);
void            generia_session_set_tokens         (GeneriaSession  *self,
                                                    const char      *access_token,
                                                    const char      *refresh_token);
GeneriaUser    *generia_session_get_user           (GeneriaSession  *self);
void            generia_session_set_user           (GeneriaSession  *self,
                                                    GeneriaUser     *user);

G_END_DECLS
