/* generia-application.h: the app: settings, the client, the stored session
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <adwaita.h>

#include "generia-client.h"
#include "generia-image-loader.h"
#include "generia-session-store.h"

G_BEGIN_DECLS

#define GENERIA_TYPE_APPLICATION    (generia_application_get_type ())
#define GENERIA_APPLICATION_DEFAULT (GENERIA_APPLICATION (g_application_get_default ()))

G_DECLARE_FINAL_TYPE (GeneriaApplication, generia_application, GENERIA, APPLICATION, AdwApplication)

GeneriaApplication  *generia_application_new               (void);
GSettings           *generia_application_get_settings      (GeneriaApplication   *self);
GeneriaClient       *generia_application_get_client        (GeneriaApplication   *self);
GeneriaImageLoader  *generia_application_get_image_loader  (GeneriaApplication   *self);
GeneriaSessionStore *generia_application_get_session_store (GeneriaApplication   *self);
GeneriaSession      *generia_application_get_session       (GeneriaApplication   *self);
void                 generia_application_log_in_async      (GeneriaApplication   *self,
                                                            const char           *email_or_username,
                                                            const char           *password,
                                                            GCancellable         *cancellable,
                                                            GAsyncReadyCallback   callback,
                                                            gpointer              user_data);
gboolean             generia_application_log_in_finish     (GeneriaApplication   *self,
                                                            GAsyncResult         *result,
                                                            GError              **error);
void                 generia_application_register_async    (GeneriaApplication   *self,
                                                            const char           *username,
                                                            const char           *email,
                                                            const char           *password,
                                                            GCancellable         *cancellable,
                                                            GAsyncReadyCallback   callback,
                                                            gpointer              user_data);
gboolean             generia_application_register_finish   (GeneriaApplication   *self,
                                                            GAsyncResult         *result,
                                                            GError              **error);

G_END_DECLS
