/* generia-client.h: the REST API of a Generia node, as async methods
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#pragma once

#include <gio/gio.h>

#include "generia-post.h"
#include "generia-session.h"
#include "generia-user.h"

G_BEGIN_DECLS

#define GENERIA_CLIENT_ERROR (generia_client_error_quark ())

/* The most characters (not bytes) a post's caption may have. */
#define GENERIA_CLIENT_CAPTION_MAX_CHARS 2200

/**
 * GeneriaClientError:
 * @GENERIA_CLIENT_ERROR_UNREACHABLE: no connection to the server (refused, no route, timeout)
 * @GENERIA_CLIENT_ERROR_INVALID: the request was refused as bad input (400, 415, 422), or the
 *   app's own checks refused it before sending
 * @GENERIA_CLIENT_ERROR_UNAUTHORIZED: wrong password, or no valid token (401)
 * @GENERIA_CLIENT_ERROR_FORBIDDEN: 403
 * @GENERIA_CLIENT_ERROR_NOT_FOUND: unknown user or object (404)
 * @GENERIA_CLIENT_ERROR_CONFLICT: a name or address already taken (409)
 * @GENERIA_CLIENT_ERROR_TOO_LARGE: 413
 * @GENERIA_CLIENT_ERROR_RATE_LIMITED: 429
 * @GENERIA_CLIENT_ERROR_UNAVAILABLE: one of the node's services is down (503)
 * @GENERIA_CLIENT_ERROR_SERVER: any other error status
 * @GENERIA_CLIENT_ERROR_BAD_RESPONSE: an answer that is not what the REST API promises
 */
typedef enum
{
  GENERIA_CLIENT_ERROR_UNREACHABLE,
  GENERIA_CLIENT_ERROR_INVALID,
  GENERIA_CLIENT_ERROR_UNAUTHORIZED,
  GENERIA_CLIENT_ERROR_FORBIDDEN,
  GENERIA_CLIENT_ERROR_NOT_FOUND,
  GENERIA_CLIENT_ERROR_CONFLICT,
  GENERIA_CLIENT_ERROR_TOO_LARGE,
  GENERIA_CLIENT_ERROR_RATE_LIMITED,
  GENERIA_CLIENT_ERROR_UNAVAILABLE,
  GENERIA_CLIENT_ERROR_SERVER,
  GENERIA_CLIENT_ERROR_BAD_RESPONSE,
} GeneriaClientError;

GQuark      generia_client_error_quark             (void);
const char *generia_client_error_get_reason        (const GError  *error);
GError     *generia_client_error_new_from_response (guint          status,
                                                    const char    *content_type,
                                                    GBytes        *body);

gboolean    generia_client_check_server_url        (const char    *server_url,
                                                    GError       **error);
gboolean    generia_client_check_username          (const char    *username,
                                                    GError       **error);
gboolean    generia_client_check_email             (const char    *email,
                                                    GError       **error);
gboolean    generia_client_check_password          (const char    *password,
                                                    GError       **error);

#define GENERIA_TYPE_CLIENT (generia_client_get_type ())

G_DECLARE_FINAL_TYPE (GeneriaClient, generia_client, GENERIA, CLIENT, GObject)

GeneriaClient  *generia_client_new             (const char           *server_url);
const char     *generia_client_get_server_url  (GeneriaClient        *self);
void            generia_client_set_server_url  (GeneriaClient        *self,
                                                const char           *server_url);
GeneriaSession *generia_client_get_session     (GeneriaClient        *self);
void            generia_client_set_session     (GeneriaClient        *self,
                                                GeneriaSession       *session);
void            generia_client_register_async  (GeneriaClient        *self,
                                                const char           *username,
                                                const char           *email,
                                                const char           *password,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
GeneriaSession *generia_client_register_finish (GeneriaClient        *self,
                                                GAsyncResult         *result,
                                                GError              **error);
void            generia_client_login_async     (GeneriaClient        *self,
                                                const char           *email_or_username,
                                                const char           *password,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
GeneriaSession *generia_client_login_finish    (GeneriaClient        *self,
                                                GAsyncResult         *result,
                                                GError              **error);
void            generia_client_me_async        (GeneriaClient        *self,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
GeneriaUser    *generia_client_me_finish       (GeneriaClient        *self,
                                                GAsyncResult         *result,
                                                GError              **error);
void            generia_client_refresh_async   (GeneriaClient        *self,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
gboolean        generia_client_refresh_finish  (GeneriaClient        *self,
                                                GAsyncResult         *result,
                                                GError              **error);
void            generia_client_logout_async    (GeneriaClient        *self,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
gboolean        generia_client_logout_finish   (GeneriaClient        *self,
                                                GAsyncResult         *result,
                                                GError              **error);
void            generia_client_feed_async      (GeneriaClient        *self,
                                                const char           *cursor,
                                                guint                 limit,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
GPtrArray      *generia_client_feed_finish     (GeneriaClient        *self,
                                                GAsyncResult         *result,
                                                char                **next_cursor,
                                                GError              **error);
void            generia_client_upload_media_async  (GeneriaClient        *self,
                                                    GBytes               *bytes,
                                                    const char           *filename,
                                                    const char           *content_type,
                                                    GCancellable         *cancellable,
                                                    GAsyncReadyCallback   callback,
                                                    gpointer              user_data);
char           *generia_client_upload_media_finish (GeneriaClient        *self,
                                                    GAsyncResult         *result,
                                                    GError              **error);
void            generia_client_create_post_async   (GeneriaClient        *self,
                                                    const char           *caption,
                                                    const char           *media_id,
                                                    GCancellable         *cancellable,
                                                    GAsyncReadyCallback   callback,
                                                    gpointer              user_data);
char           *generia_client_create_post_finish  (GeneriaClient        *self,
                                                    GAsyncResult         *result,
                                                    GError              **error);
void            generia_client_download_async      (GeneriaClient        *self,
                                                    const char           *url,
                                                    GCancellable         *cancellable,
                                                    GAsyncReadyCallback   callback,
                                                    gpointer              user_data);
GBytes         *generia_client_download_finish     (GeneriaClient        *self,
                                                    GAsyncResult         *result,
                                                    GError              **error);

G_END_DECLS
