/* generia-user.h: a person's account as the server describes it
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define GENERIA_TYPE_USER (generia_user_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaUser, generia_user, GENERIA, USER, GObject)

GeneriaUser *generia_user_new_from_json (JsonObject  *object,
                                         GError     **error);
JsonObject  *generia_user_to_json       (GeneriaUser *self);
const char  *generia_user_get_id        (GeneriaUser *self);
const char  *generia_user_get_username  (GeneriaUser *self);
const char  *generia_user_get_email     (GeneriaUser *self);
GDateTime   *generia_user_get_created_at (GeneriaUser *self);

G_END_DECLS
