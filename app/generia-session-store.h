/* generia-session-store.h: where the session survives a restart
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <gio/gio.h>

#include "generia-session.h"

G_BEGIN_DECLS

#define GENERIA_TYPE_SESSION_STORE (generia_session_store_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaSessionStore, generia_session_store, GENERIA, SESSION_STORE, GObject)

GeneriaSessionStore *generia_session_store_new           (const char           *fallback_path);
const char          *generia_session_store_get_fallback_path (GeneriaSessionStore *self);
gboolean             generia_session_store_get_uses_file (GeneriaSessionStore  *self);
void                 generia_session_store_save_async    (GeneriaSessionStore  *self,
                                                          GeneriaSession       *session,
                                                          GCancellable         *cancellable,
                                                          GAsyncReadyCallback   callback,
                                                          gpointer              user_data);
gboolean             generia_session_store_save_finish   (GeneriaSessionStore  *self,
                                                          GAsyncResult         *result,
                                                          GError              **error);
void                 generia_session_store_load_async    (GeneriaSessionStore  *self,
                                                          GCancellable         *cancellable,
                                                          GAsyncReadyCallback   callback,
                                                          gpointer              user_data);
GeneriaSession      *generia_session_store_load_finish   (GeneriaSessionStore  *self,
                                                          GAsyncResult         *result,
                                                          GError              **error);
void                 generia_session_store_clear_async   (GeneriaSessionStore  *self,
                                                          GCancellable         *cancellable,
                                                          GAsyncReadyCallback   callback,
                                                          gpointer              user_data);
gboolean             generia_session_store_clear_finish  (GeneriaSessionStore  *self,
                                                          GAsyncResult         *result,
                                                          GError              **error);

G_END_DECLS
