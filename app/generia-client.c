/* generia-client.c: the REST API of a Generia node, as async methods
 *
 * One GeneriaClient wraps one SoupSession (connection reuse, timeouts) and turns every endpoint
 * the app uses into a GTask-based _async/_finish pair. Requests always carry
 * "Accept: application/problem+json", so that the node answers errors with RFC 9457 problem
 * details ({type, title, status, detail, code}) instead of the plain text the original web client
 * needs. generia_client_error_new_from_response() turns such an answer into a GError of the
 * GENERIA_CLIENT_ERROR domain: the HTTP status picks the error code, the problem's stable "code"
 * word ("username_taken") is kept as the error's reason (an extended GError), and the message is
 * a translated sentence for the reasons the app knows, otherwise the server's own detail.
 * Transport failures (refused, no route, DNS, timeout) become GENERIA_CLIENT_ERROR_UNREACHABLE
 * with a message that names the server, because that is what the person can act on.
 *
 * register and login use the client's "server-url" and return a new GeneriaSession; me, refresh,
 * logout, feed, upload_media and create_post use the client's "session" and that session's own
 * server. register and login send "client_refreshes": true, so the node issues short-lived access
 * tokens (without it, it assumes a client that never refreshes, like the original web client, and
 * issues tokens that live a day). Refresh tokens rotate and the node revokes a whole login when an
 * old one is presented twice, so at most one refresh is in flight: later callers wait for its
 * result. Requests made
 * with the session refresh once and retry when the access token has expired. Media uploads are
 * multipart forms; download fetches a signed media URL, which needs no credentials.
 *
 * The client also checks input the way the server does (username, e-mail, password), so that a
 * typo is reported at once and in the person's language.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include <glib/gi18n.h>
#include <libsoup/soup.h>

#include "generia-client.h"

typedef struct
{
  char *reason;
} GeneriaClientErrorPrivate;

static void
generia_client_error_private_init (GeneriaClientErrorPrivate *priv)
{
  priv->reason = NULL;
}

static void
generia_client_error_private_copy (const GeneriaClientErrorPrivate *src,
                                   GeneriaClientErrorPrivate       *dest)
{
  dest->reason = g_strdup (src->reason);
}

static void
generia_client_error_private_clear (GeneriaClientErrorPrivate *priv)
{
  g_clear_pointer (&priv->reason, g_free);
}

G_DEFINE_EXTENDED_ERROR (GeneriaClientError, generia_client_error)

struct _GeneriaClient
{
  GObject         parent_instance;

  SoupSession    *soup;
  char           *server_url;
  GeneriaSession *session;

  /* GTasks waiting for the refresh in flight; NULL when none is */
  GPtrArray      *refresh_waiters;
};

G_DEFINE_FINAL_TYPE (GeneriaClient, generia_client, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_SERVER_URL,
  PROP_SESSION,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* Reasons (the problem's "code") the app explains in the person's own language. */
static const struct
{
  const char *reason;
  const char *message;
} known_reasons[] = {
  { "username_taken", N_("That username is already taken.") },
  { "email_taken", N_("An account with that e-mail address already exists.") },
  { "wrong_password", N_("Wrong password.") },
  { "user_not_found", N_("No account has that e-mail address or username.") },
  { "invalid_username", N_("Usernames have 3 to 30 characters: letters, digits, “_” and “.”.") },
  { "invalid_email", N_("That doesn't look like an e-mail address.") },
  { "weak_password", N_("Passwords need at least 8 characters.") },
  { "unsupported_media_type", N_("That file is not a photo or video Generia supports.") },
};

static GeneriaClientError
error_code_for_status (guint status)
{
  switch (status)
    {
    case SOUP_STATUS_BAD_REQUEST:
    case SOUP_STATUS_UNSUPPORTED_MEDIA_TYPE:
    case SOUP_STATUS_UNPROCESSABLE_ENTITY:
      return GENERIA_CLIENT_ERROR_INVALID;

    case SOUP_STATUS_UNAUTHORIZED:
      return GENERIA_CLIENT_ERROR_UNAUTHORIZED;

    case SOUP_STATUS_FORBIDDEN:
      return GENERIA_CLIENT_ERROR_FORBIDDEN;

    case SOUP_STATUS_NOT_FOUND:
      return GENERIA_CLIENT_ERROR_NOT_FOUND;

    case SOUP_STATUS_CONFLICT:
      return GENERIA_CLIENT_ERROR_CONFLICT;

    case SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE:
      return GENERIA_CLIENT_ERROR_TOO_LARGE;

    case 429: /* Too Many Requests: libsoup 3.2 has no name for it */
      return GENERIA_CLIENT_ERROR_RATE_LIMITED;

    case SOUP_STATUS_SERVICE_UNAVAILABLE:
      return GENERIA_CLIENT_ERROR_UNAVAILABLE;

    default:
      return GENERIA_CLIENT_ERROR_SERVER;
    }
}

static char *
dup_string_member (JsonObject *object,
                   const char *member)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;

  return g_strstrip (g_strdup (json_node_get_string (node)));
}

static char *
generic_message_for_code (GeneriaClientError code,
                          guint              status)
{
  switch (code)
    {
    case GENERIA_CLIENT_ERROR_UNAUTHORIZED:
      return g_strdup (_("The server refused the login."));

    case GENERIA_CLIENT_ERROR_RATE_LIMITED:
      return g_strdup (_("Too many attempts. Wait a moment and try again."));

    case GENERIA_CLIENT_ERROR_UNAVAILABLE:
      return g_strdup (_("The server is starting or one of its services is down. Try again soon."));

    default:
      /* Translators: %u is an HTTP status code such as 500 */
      return g_strdup_printf (_("The server answered with error %u."), status);
    }
}

/**
 * generia_client_error_new_from_response:
 * @status: the HTTP status of an unsuccessful answer
 * @content_type: (nullable): its Content-Type, without parameters
 * @body: (nullable): its body: problem+json, or the plain text other servers send
 *
 * Returns: (transfer full): a %GENERIA_CLIENT_ERROR whose message can be shown to people
 */
GError *
generia_client_error_new_from_response (guint       status,
                                        const char *content_type,
                                        GBytes     *body)
{
  g_autofree char *reason = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *message = NULL;
  GeneriaClientError code = error_code_for_status (status);
  GeneriaClientErrorPrivate *priv;
  GError *error;
  gsize size = 0;
  const char *data = body != NULL ? g_bytes_get_data (body, &size) : NULL;

  if (size > 0 && content_type != NULL && g_str_has_suffix (content_type, "json"))
    {
      g_autoptr(JsonParser) parser = json_parser_new ();

      if (json_parser_load_from_data (parser, data, size, NULL) &&
          JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        {
          JsonObject *problem = json_node_get_object (json_parser_get_root (parser));

          reason = dup_string_member (problem, "code");
          detail = dup_string_member (problem, "detail");
          if (detail == NULL || detail[0] == '\0')
            {
              g_free (detail);
              detail = dup_string_member (problem, "title");
            }
        }
    }
  else if (size > 0 && (content_type == NULL || g_str_has_prefix (content_type, "text/plain")))
    {
      detail = g_strstrip (g_utf8_make_valid (data, size));
    }

  for (guint i = 0; reason != NULL && i < G_N_ELEMENTS (known_reasons); i++)
    {
      if (g_str_equal (reason, known_reasons[i].reason))
        message = g_strdup (_(known_reasons[i].message));
    }

  if (message == NULL && detail != NULL && detail[0] != '\0')
    message = g_steal_pointer (&detail);
  if (message == NULL)
    message = generic_message_for_code (code, status);

  error = g_error_new_literal (GENERIA_CLIENT_ERROR, code, message);
  priv = generia_client_error_get_private (error);
  priv->reason = g_steal_pointer (&reason);

  return error;
}

/**
 * generia_client_error_get_reason:
 * @error: a %GENERIA_CLIENT_ERROR
 *
 * Returns: (nullable): the stable machine-readable word the server gave, e.g. "username_taken"
 */
const char *
generia_client_error_get_reason (const GError *error)
{
  GeneriaClientErrorPrivate *priv;

  g_return_val_if_fail (error != NULL, NULL);

  if (error->domain != GENERIA_CLIENT_ERROR)
    return NULL;

  priv = generia_client_error_get_private (error);
  return priv->reason;
}

static gboolean
set_invalid (GError     **error,
             const char  *message)
{
  g_set_error_literal (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID, message);
  return FALSE;
}

/**
 * generia_client_check_server_url:
 *
 * Returns: %TRUE when @server_url is an http:// or https:// address with a host
 */
gboolean
generia_client_check_server_url (const char  *server_url,
                                 GError     **error)
{
  g_autoptr(GUri) uri = NULL;
  const char *scheme;

  if (server_url != NULL)
    uri = g_uri_parse (server_url, G_URI_FLAGS_NONE, NULL);

  if (uri == NULL || (scheme = g_uri_get_scheme (uri)) == NULL ||
      (g_ascii_strcasecmp (scheme, "http") != 0 && g_ascii_strcasecmp (scheme, "https") != 0) ||
      g_uri_get_host (uri) == NULL || g_uri_get_host (uri)[0] == '\0')
    return set_invalid (error, _("Enter a server address that starts with http:// or https://."));

  return TRUE;
}

/**
 * generia_client_check_username:
 * @username: a username, already lowercased
 *
 * Returns: %TRUE when the server would accept @username: 3 to 30 of [a-z0-9_.]
 */
gboolean
generia_client_check_username (const char  *username,
                               GError     **error)
{
  gsize length = username != NULL ? strlen (username) : 0;

  if (length < 3 || length > 30)
    return set_invalid (error, _("Usernames have 3 to 30 characters: letters, digits, “_” and “.”."));

  for (gsize i = 0; i < length; i++)
    {
      char c = username[i];

      if (!(g_ascii_islower (c) || g_ascii_isdigit (c) || c == '_' || c == '.'))
        return set_invalid (error, _("Usernames have 3 to 30 characters: letters, digits, “_” and “.”."));
    }

  return TRUE;
}

/**
 * generia_client_check_email:
 *
 * Returns: %TRUE when @email looks like name@host.domain
 */
gboolean
generia_client_check_email (const char  *email,
                            GError     **error)
{
  const char *at = email != NULL ? strchr (email, '@') : NULL;
  const char *dot = at != NULL ? strrchr (at, '.') : NULL;

  if (at == NULL || at == email || dot == NULL || dot == at + 1 || dot[1] == '\0' ||
      strchr (at + 1, '@') != NULL || strpbrk (email, " \t\r\n") != NULL)
    return set_invalid (error, _("That doesn't look like an e-mail address."));

  return TRUE;
}

/**
 * generia_client_check_password:
 *
 * Returns: %TRUE when @password has at least 8 characters
 */
gboolean
generia_client_check_password (const char  *password,
                               GError     **error)
{
  if (password == NULL || !g_utf8_validate (password, -1, NULL) || g_utf8_strlen (password, -1) < 8)
    return set_invalid (error, _("Passwords need at least 8 characters."));

  return TRUE;
}

static void
generia_client_dispose (GObject *object)
{
  GeneriaClient *self = (GeneriaClient *)object;

  g_assert (self->refresh_waiters == NULL);

  g_clear_object (&self->session);
  g_clear_object (&self->soup);

  G_OBJECT_CLASS (generia_client_parent_class)->dispose (object);
}

static void
generia_client_finalize (GObject *object)
{
  GeneriaClient *self = (GeneriaClient *)object;

  g_clear_pointer (&self->server_url, g_free);

  G_OBJECT_CLASS (generia_client_parent_class)->finalize (object);
}

static void
generia_client_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  GeneriaClient *self = GENERIA_CLIENT (object);

  switch (prop_id)
    {
    case PROP_SERVER_URL:
      g_value_set_string (value, self->server_url);
      break;

    case PROP_SESSION:
      g_value_set_object (value, self->session);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_client_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  GeneriaClient *self = GENERIA_CLIENT (object);

  switch (prop_id)
    {
    case PROP_SERVER_URL:
      generia_client_set_server_url (self, g_value_get_string (value));
      break;

    case PROP_SESSION:
      generia_client_set_session (self, g_value_get_object (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_client_class_init (GeneriaClientClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = generia_client_dispose;
  object_class->finalize = generia_client_finalize;
  object_class->get_property = generia_client_get_property;
  object_class->set_property = generia_client_set_property;

  properties[PROP_SERVER_URL] =
    g_param_spec_string ("server-url", NULL, NULL, NULL,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));
  properties[PROP_SESSION] =
    g_param_spec_object ("session", NULL, NULL, GENERIA_TYPE_SESSION,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
generia_client_init (GeneriaClient *self)
{
  self->soup = soup_session_new_with_options ("user-agent", "Generia/" PACKAGE_VERSION " ",
                                              "timeout", 30,
                                              NULL);
}

GeneriaClient *
generia_client_new (const char *server_url)
{
  return g_object_new (GENERIA_TYPE_CLIENT, "server-url", server_url, NULL);
}

const char *
generia_client_get_server_url (GeneriaClient *self)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);

  return self->server_url;
}

/**
 * generia_client_set_server_url:
 * @server_url: (nullable): the node register and login talk to
 */
void
generia_client_set_server_url (GeneriaClient *self,
                               const char    *server_url)
{
  g_autofree char *stripped = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));

  if (server_url != NULL)
    stripped = g_strstrip (g_strdup (server_url));

  if (g_strcmp0 (stripped, self->server_url) == 0)
    return;

  g_free (self->server_url);
  self->server_url = g_steal_pointer (&stripped);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SERVER_URL]);
}

/**
 * generia_client_get_session:
 *
 * Returns: (transfer none) (nullable): the session me, refresh and logout use
 */
GeneriaSession *
generia_client_get_session (GeneriaClient *self)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);

  return self->session;
}

void
generia_client_set_session (GeneriaClient  *self,
                            GeneriaSession *session)
{
  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (session == NULL || GENERIA_IS_SESSION (session));

  if (g_set_object (&self->session, session))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SESSION]);
}

typedef struct
{
  SoupMessage *message;
  char        *server_url;
} Request;

static void
request_free (Request *request)
{
  g_clear_object (&request->message);
  g_clear_pointer (&request->server_url, g_free);
  g_free (request);
}

static GError *
error_for_transport (GError     *error,
                     const char *server_url)
{
  g_autoptr(GError) cause = error;

  if (g_error_matches (cause, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return g_steal_pointer (&cause);

  g_debug ("Request to %s failed: %s", server_url, cause->message);

  if (cause->domain == SOUP_SESSION_ERROR)
    return g_error_new (GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                        /* Translators: %s is a server address such as http://localhost:8080 */
                        _("The server at %s did not answer like a Generia node."), server_url);

  if (cause->domain == G_TLS_ERROR)
    return g_error_new (GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNREACHABLE,
                        /* Translators: %s is a server address such as https://example.org */
                        _("Can't make a secure connection to the server at %s."), server_url);

  return g_error_new (GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNREACHABLE,
                      /* Translators: %s is a server address such as http://localhost:8080 */
                      _("Can't reach the server at %s. Is it running?"), server_url);
}

static void
on_request_sent (GObject      *object,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(JsonParser) parser = NULL;
  GError *error = NULL;
  Request *request = g_task_get_task_data (task);
  guint status;

  if (!(body = soup_session_send_and_read_finish (SOUP_SESSION (object), result, &error)))
    {
      g_task_return_error (task, error_for_transport (error, request->server_url));
      return;
    }

  status = soup_message_get_status (request->message);

  if (!SOUP_STATUS_IS_SUCCESSFUL (status))
    {
      SoupMessageHeaders *headers = soup_message_get_response_headers (request->message);
      const char *content_type = soup_message_headers_get_content_type (headers, NULL);

      g_task_return_error (task,
                           generia_client_error_new_from_response (status, content_type, body));
      return;
    }

  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, g_bytes_get_data (body, NULL), g_bytes_get_size (body), NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                               _("The server at %s did not answer like a Generia node."),
                               request->server_url);
      return;
    }

  g_task_return_pointer (task,
                         json_object_ref (json_node_get_object (json_parser_get_root (parser))),
                         (GDestroyNotify)json_object_unref);
}

/* Sends one request to @server_url + @path with an optional JSON @body or a @multipart form
 * (which makes it a POST), and an optional bearer token; the result is the JSON object of a
 * successful answer. */
static void
send_message_async (GeneriaClient       *self,
                    const char          *server_url,
                    const char          *method,
                    const char          *path,
                    JsonObject          *body,
                    SoupMultipart       *multipart,
                    const char          *access_token,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GUri) uri = NULL;
  g_autofree char *base = NULL;
  g_autofree char *url = NULL;
  SoupMessageHeaders *headers;
  Request *request;
  GError *error = NULL;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, send_message_async);

  if (!generia_client_check_server_url (server_url, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  base = g_strdup (server_url);
  while (g_str_has_suffix (base, "/"))
    base[strlen (base) - 1] = '\0';
  url = g_strconcat (base, path, NULL);
  uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, &error);
  if (uri == NULL)
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID,
                               "%s", error->message);
      g_clear_error (&error);
      return;
    }

  request = g_new0 (Request, 1);
  request->server_url = g_steal_pointer (&base);
  if (multipart != NULL)
    {
      g_autofree char *uri_string = g_uri_to_string (uri);

      request->message = soup_message_new_from_multipart (uri_string, multipart);
    }
  else
    {
      request->message = soup_message_new_from_uri (method, uri);
    }
  g_task_set_task_data (task, request, (GDestroyNotify)request_free);

  headers = soup_message_get_request_headers (request->message);
  soup_message_headers_replace (headers, "Accept", "application/problem+json");
  if (access_token != NULL)
    {
      g_autofree char *authorization = g_strconcat ("Bearer ", access_token, NULL);

      soup_message_headers_replace (headers, "Authorization", authorization);
    }

  if (body != NULL)
    {
      g_autoptr(JsonNode) node = json_node_init_object (json_node_alloc (), body);
      g_autoptr(GBytes) bytes = NULL;
      gsize length;
      char *text = json_to_string (node, FALSE);

      length = strlen (text);
      bytes = g_bytes_new_take (text, length);
      soup_message_set_request_body_from_bytes (request->message, "application/json", bytes);
    }

  soup_session_send_and_read_async (self->soup, request->message, G_PRIORITY_DEFAULT,
                                    cancellable, on_request_sent, g_steal_pointer (&task));
}

static void
send_request_async (GeneriaClient       *self,
                    const char          *server_url,
                    const char          *method,
                    const char          *path,
                    JsonObject          *body,
                    const char          *access_token,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  send_message_async (self, server_url, method, path, body, NULL, access_token, cancellable,
                      callback, user_data);
}

static JsonObject *
send_request_finish (GeneriaClient  *self,
                     GAsyncResult   *result,
                     GError        **error)
{
  g_assert (g_task_is_valid (result, self));

  return g_task_propagate_pointer (G_TASK (result), error);
}

static GeneriaSession *
session_from_auth_answer (const char  *server_url,
                          JsonObject  *answer,
                          GError     **error)
{
  g_autoptr(GeneriaUser) user = NULL;
  g_autofree char *token = dup_string_member (answer, "token");
  g_autofree char *refresh_token = dup_string_member (answer, "refresh_token");
  JsonNode *user_node = json_object_get_member (answer, "user");

  if (token == NULL || refresh_token == NULL || user_node == NULL ||
      !JSON_NODE_HOLDS_OBJECT (user_node))
    {
      g_set_error (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                   _("The server at %s did not answer like a Generia node."), server_url);
      return NULL;
    }

  if (!(user = generia_user_new_from_json (json_node_get_object (user_node), error)))
    return NULL;

  return generia_session_new (server_url, token, refresh_token, user);
}

static void
on_auth_answer (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonObject) answer = NULL;
  GeneriaSession *session;
  GError *error = NULL;
  const char *server_url = g_task_get_task_data (task);

  if (!(answer = send_request_finish (GENERIA_CLIENT (object), result, &error)) ||
      !(session = session_from_auth_answer (server_url, answer, &error)))
    {
      g_task_return_error (task, error);
      return;
    }

  g_task_return_pointer (task, session, g_object_unref);
}

/**
 * generia_client_register_async:
 * @username: the wished username; surrounding space is dropped and it is lowercased
 *
 * Creates an account on the client's server and logs in to it.
 */
void
generia_client_register_async (GeneriaClient       *self,
                               const char          *username,
                               const char          *email,
                               const char          *password,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(JsonObject) body = NULL;
  g_autofree char *stripped_username = NULL;
  g_autofree char *lower_username = NULL;
  g_autofree char *stripped_email = NULL;
  GError *error = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (username != NULL);
  g_return_if_fail (email != NULL);
  g_return_if_fail (password != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_register_async);
  g_task_set_task_data (task, g_strdup (self->server_url), g_free);

  stripped_username = g_strstrip (g_strdup (username));
  lower_username = g_utf8_strdown (stripped_username, -1);
  stripped_email = g_strstrip (g_strdup (email));

  if (!generia_client_check_server_url (self->server_url, &error) ||
      !generia_client_check_username (lower_username, &error) ||
      !generia_client_check_email (stripped_email, &error) ||
      !generia_client_check_password (password, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  body = json_object_new ();
  json_object_set_string_member (body, "username", lower_username);
  json_object_set_string_member (body, "email", stripped_email);
  json_object_set_string_member (body, "password", password);
  json_object_set_boolean_member (body, "client_refreshes", TRUE);

  send_request_async (self, self->server_url, "POST", "/api/v1/auth/register", body, NULL,
                      cancellable, on_auth_answer, g_steal_pointer (&task));
}

/**
 * generia_client_register_finish:
 *
 * Returns: (transfer full): the new account's session, or %NULL with @error set
 */
GeneriaSession *
generia_client_register_finish (GeneriaClient  *self,
                                GAsyncResult   *result,
                                GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * generia_client_login_async:
 * @email_or_username: what the person typed; surrounding space is dropped
 *
 * Logs in to the client's server.
 */
void
generia_client_login_async (GeneriaClient       *self,
                            const char          *email_or_username,
                            const char          *password,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(JsonObject) body = NULL;
  g_autofree char *identifier = NULL;
  GError *error = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (email_or_username != NULL);
  g_return_if_fail (password != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_login_async);
  g_task_set_task_data (task, g_strdup (self->server_url), g_free);

  identifier = g_strstrip (g_strdup (email_or_username));

  if (!generia_client_check_server_url (self->server_url, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  if (identifier[0] == '\0')
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID,
                               _("Enter your e-mail address or username."));
      return;
    }

  if (password[0] == '\0')
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID,
                               _("Enter your password."));
      return;
    }

  body = json_object_new ();
  json_object_set_string_member (body, "email_or_username", identifier);
  json_object_set_string_member (body, "password", password);
  json_object_set_boolean_member (body, "client_refreshes", TRUE);

  send_request_async (self, self->server_url, "POST", "/api/v1/auth/login", body, NULL,
                      cancellable, on_auth_answer, g_steal_pointer (&task));
}

/**
 * generia_client_login_finish:
 *
 * Returns: (transfer full): the new session, or %NULL with @error set
 */
GeneriaSession *
generia_client_login_finish (GeneriaClient  *self,
                             GAsyncResult   *result,
                             GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static gboolean
check_logged_in (GeneriaClient *self,
                 GTask         *task)
{
  if (self->session != NULL)
    return TRUE;

  g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED,
                           _("You are not logged in."));
  return FALSE;
}

static void
complete_refresh (GeneriaClient *self,
                  const GError  *error)
{
  g_autoptr(GPtrArray) waiters = g_steal_pointer (&self->refresh_waiters);

  for (guint i = 0; i < waiters->len; i++)
    {
      GTask *waiter = g_ptr_array_index (waiters, i);

      if (error != NULL)
        g_task_return_error (waiter, g_error_copy (error));
      else
        g_task_return_boolean (waiter, TRUE);
    }
}

static void
on_refresh_answer (GObject      *object,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  GeneriaClient *self = GENERIA_CLIENT (object);
  g_autoptr(GeneriaSession) session = user_data;
  g_autoptr(JsonObject) answer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *token = NULL;
  g_autofree char *refresh_token = NULL;

  if (!(answer = send_request_finish (self, result, &error)))
    {
      if (g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED))
        {
          g_autoptr(GError) expired = NULL;

          expired = g_error_new_literal (GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED,
                                         _("Your session has expired. Please log in again."));
          generia_client_error_get_private (expired)->reason =
            g_strdup (generia_client_error_get_reason (error));
          g_clear_error (&error);
          error = g_steal_pointer (&expired);
        }
      complete_refresh (self, error);
      return;
    }

  token = dup_string_member (answer, "token");
  refresh_token = dup_string_member (answer, "refresh_token");
  if (token == NULL || refresh_token == NULL)
    {
      error = g_error_new (GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                           _("The server at %s did not answer like a Generia node."),
                           generia_session_get_server_url (session));
      complete_refresh (self, error);
      return;
    }

  generia_session_set_tokens (session, token, refresh_token);
  complete_refresh (self, NULL);
}

/* Joins the refresh in flight, or starts one for the client's session. Refresh tokens rotate,
 * so two refreshes with the same token would look like a stolen token to the node. */
static void
refresh_session (GeneriaClient *self,
                 GTask         *task)
{
  g_autoptr(JsonObject) body = NULL;
  GeneriaSession *session = self->session;

  g_assert (session != NULL);

  if (self->refresh_waiters != NULL)
    {
      g_ptr_array_add (self->refresh_waiters, task);
      return;
    }

  self->refresh_waiters = g_ptr_array_new_with_free_func (g_object_unref);
  g_ptr_array_add (self->refresh_waiters, task);

  body = json_object_new ();
  json_object_set_string_member (body, "refresh_token",
                                 generia_session_get_refresh_token (session));

  /* Not cancellable: the node rotates the token even if we stop listening, and the new one
   * must not be lost. */
  send_request_async (self, generia_session_get_server_url (session), "POST",
                      "/api/v1/auth/refresh", body, NULL, NULL,
                      on_refresh_answer, g_object_ref (session));
}

/**
 * generia_client_refresh_async:
 *
 * Trades the session's refresh token for new tokens, which replace the old ones in the session.
 */
void
generia_client_refresh_async (GeneriaClient       *self,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_refresh_async);

  if (check_logged_in (self, task))
    refresh_session (self, g_steal_pointer (&task));
}

gboolean
generia_client_refresh_finish (GeneriaClient  *self,
                               GAsyncResult   *result,
                               GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* A request made with the client's session. The access token is short-lived, so an answer of
 * 401 refreshes the session once and repeats the request, if the session is still the
 * client's. A multipart form is kept (not the message), because a message cannot be sent
 * twice. */
typedef struct
{
  GeneriaSession *session;
  char           *method;
  char           *path;
  JsonObject     *body;
  SoupMultipart  *multipart;
  gboolean        refreshed;
} AuthorizedRequest;

static void
authorized_request_free (AuthorizedRequest *state)
{
  g_clear_object (&state->session);
  g_clear_pointer (&state->method, g_free);
  g_clear_pointer (&state->path, g_free);
  g_clear_pointer (&state->body, json_object_unref);
  g_clear_pointer (&state->multipart, soup_multipart_free);
  g_free (state);
}

static void send_authorized_attempt (GTask *task);

static void
on_authorized_refreshed (GObject      *object,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;

  if (!generia_client_refresh_finish (GENERIA_CLIENT (object), result, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  send_authorized_attempt (g_steal_pointer (&task));
}

static void
on_authorized_answer (GObject      *object,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  GeneriaClient *self = GENERIA_CLIENT (object);
  g_autoptr(GTask) task = user_data;
  AuthorizedRequest *state = g_task_get_task_data (task);
  JsonObject *answer;
  GError *error = NULL;

  if ((answer = send_request_finish (self, result, &error)))
    {
      g_task_return_pointer (task, answer, (GDestroyNotify)json_object_unref);
      return;
    }

  if (g_error_matches (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_UNAUTHORIZED) &&
      !state->refreshed && state->session == self->session)
    {
      GCancellable *cancellable = g_task_get_cancellable (task);

      g_clear_error (&error);
      state->refreshed = TRUE;
      generia_client_refresh_async (self, cancellable, on_authorized_refreshed,
                                    g_steal_pointer (&task));
      return;
    }

  g_task_return_error (task, error);
}

static void
send_authorized_attempt (GTask *task)
{
  GeneriaClient *self = g_task_get_source_object (task);
  AuthorizedRequest *state = g_task_get_task_data (task);

  send_message_async (self, generia_session_get_server_url (state->session), state->method,
                      state->path, state->body, state->multipart,
                      generia_session_get_access_token (state->session),
                      g_task_get_cancellable (task), on_authorized_answer, task);
}

/* Like send_request_async() with the client's session; takes @multipart. */
static void
send_authorized_async (GeneriaClient       *self,
                       const char          *method,
                       const char          *path,
                       JsonObject          *body,
                       SoupMultipart       *multipart,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  AuthorizedRequest *state;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, send_authorized_async);

  if (!check_logged_in (self, task))
    {
      g_clear_pointer (&multipart, soup_multipart_free);
      return;
    }

  state = g_new0 (AuthorizedRequest, 1);
  state->session = g_object_ref (self->session);
  state->method = g_strdup (method);
  state->path = g_strdup (path);
  state->body = body != NULL ? json_object_ref (body) : NULL;
  state->multipart = multipart;
  g_task_set_task_data (task, state, (GDestroyNotify)authorized_request_free);

  send_authorized_attempt (g_steal_pointer (&task));
}

static JsonObject *
send_authorized_finish (GeneriaClient  *self,
                        GAsyncResult   *result,
                        GError        **error)
{
  g_assert (g_task_is_valid (result, self));

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_me_answer (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonObject) answer = NULL;
  GeneriaUser *user;
  GError *error = NULL;

  if ((answer = send_authorized_finish (GENERIA_CLIENT (object), result, &error)) &&
      (user = generia_user_new_from_json (answer, &error)))
    g_task_return_pointer (task, user, g_object_unref);
  else
    g_task_return_error (task, error);
}

/**
 * generia_client_me_async:
 *
 * Fetches the logged-in user. When the access token has expired, the session is refreshed
 * once and the request repeated.
 */
void
generia_client_me_async (GeneriaClient       *self,
                         GCancellable        *cancellable,
                         GAsyncReadyCallback  callback,
                         gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_me_async);

  send_authorized_async (self, "GET", "/api/v1/auth/me", NULL, NULL, cancellable,
                         on_me_answer, g_steal_pointer (&task));
}

/**
 * generia_client_me_finish:
 *
 * Returns: (transfer full): the logged-in user, or %NULL with @error set
 */
GeneriaUser *
generia_client_me_finish (GeneriaClient  *self,
                          GAsyncResult   *result,
                          GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_logout_answer (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonObject) answer = NULL;
  GError *error = NULL;

  if (!(answer = send_request_finish (GENERIA_CLIENT (object), result, &error)))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

/**
 * generia_client_logout_async:
 *
 * Asks the node to revoke the session's refresh-token family. The session itself is left to
 * the caller to forget.
 */
void
generia_client_logout_async (GeneriaClient       *self,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(JsonObject) body = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_logout_async);

  if (!check_logged_in (self, task))
    return;

  body = json_object_new ();
  json_object_set_string_member (body, "refresh_token",
                                 generia_session_get_refresh_token (self->session));

  send_request_async (self, generia_session_get_server_url (self->session), "POST",
                      "/api/v1/auth/logout", body,
                      generia_session_get_access_token (self->session),
                      cancellable, on_logout_answer, g_steal_pointer (&task));
}

gboolean
generia_client_logout_finish (GeneriaClient  *self,
                              GAsyncResult   *result,
                              GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

typedef struct
{
  GPtrArray *posts;
  char      *next_cursor;
} FeedPage;

static void
feed_page_free (FeedPage *page)
{
  g_clear_pointer (&page->posts, g_ptr_array_unref);
  g_clear_pointer (&page->next_cursor, g_free);
  g_free (page);
}

static FeedPage *
feed_page_from_answer (JsonObject  *answer,
                       GError     **error)
{
  g_autoptr(GPtrArray) posts = g_ptr_array_new_with_free_func (g_object_unref);
  JsonNode *list = json_object_get_member (answer, "posts");
  JsonNode *has_more = json_object_get_member (answer, "has_more");
  FeedPage *page;

  if (list == NULL || !JSON_NODE_HOLDS_ARRAY (list))
    {
      g_set_error_literal (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                           _("The server sent a feed the app does not understand."));
      return NULL;
    }

  for (guint i = 0; i < json_array_get_length (json_node_get_array (list)); i++)
    {
      JsonNode *item = json_array_get_element (json_node_get_array (list), i);
      GeneriaPost *post;

      if (!JSON_NODE_HOLDS_OBJECT (item))
        {
          g_set_error_literal (error, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                               _("The server sent a feed the app does not understand."));
          return NULL;
        }

      if (!(post = generia_post_new_from_json (json_node_get_object (item), error)))
        return NULL;

      g_ptr_array_add (posts, post);
    }

  page = g_new0 (FeedPage, 1);
  page->posts = g_steal_pointer (&posts);
  if (has_more != NULL && JSON_NODE_HOLDS_VALUE (has_more) &&
      json_node_get_value_type (has_more) == G_TYPE_BOOLEAN && json_node_get_boolean (has_more))
    page->next_cursor = dup_string_member (answer, "next_cursor");

  return page;
}

static void
on_feed_answer (GObject      *object,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonObject) answer = NULL;
  FeedPage *page;
  GError *error = NULL;

  if ((answer = send_authorized_finish (GENERIA_CLIENT (object), result, &error)) &&
      (page = feed_page_from_answer (answer, &error)))
    g_task_return_pointer (task, page, (GDestroyNotify)feed_page_free);
  else
    g_task_return_error (task, error);
}

/**
 * generia_client_feed_async:
 * @cursor: (nullable): where to go on, from the previous page's @next_cursor; %NULL for the
 *   newest posts
 * @limit: how many posts at most, 1 to 100
 *
 * Fetches one page of the node's global feed, newest first.
 */
void
generia_client_feed_async (GeneriaClient       *self,
                           const char          *cursor,
                           guint                limit,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autofree char *path = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (limit > 0);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_feed_async);

  if (cursor != NULL)
    {
      g_autofree char *escaped = g_uri_escape_string (cursor, NULL, FALSE);

      path = g_strdup_printf ("/api/v1/feed?limit=%u&cursor=%s", limit, escaped);
    }
  else
    {
      path = g_strdup_printf ("/api/v1/feed?limit=%u", limit);
    }

  send_authorized_async (self, "GET", path, NULL, NULL, cancellable, on_feed_answer,
                         g_steal_pointer (&task));
}

/**
 * generia_client_feed_finish:
 * @next_cursor: (out) (optional) (nullable): where the next page starts, or %NULL when this
 *   was the last page
 *
 * Returns: (transfer container) (element-type GeneriaPost): the page's posts, or %NULL with
 *   @error set
 */
GPtrArray *
generia_client_feed_finish (GeneriaClient  *self,
                            GAsyncResult   *result,
                            char          **next_cursor,
                            GError        **error)
{
  FeedPage *page;
  GPtrArray *posts;

  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  if (!(page = g_task_propagate_pointer (G_TASK (result), error)))
    return NULL;

  posts = g_steal_pointer (&page->posts);
  if (next_cursor != NULL)
    *next_cursor = g_steal_pointer (&page->next_cursor);
  feed_page_free (page);

  return posts;
}

static void
on_id_answer (GObject      *object,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(JsonObject) answer = NULL;
  const char *member = g_task_get_task_data (task);
  GError *error = NULL;
  char *id;

  if (!(answer = send_authorized_finish (GENERIA_CLIENT (object), result, &error)))
    {
      g_task_return_error (task, error);
      return;
    }

  if (!(id = dup_string_member (answer, member)))
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                               _("The server sent an answer the app does not understand."));
      return;
    }

  g_task_return_pointer (task, id, g_free);
}

/**
 * generia_client_upload_media_async:
 * @bytes: the file's contents
 * @filename: the file's name, without folders
 * @content_type: its MIME type, e.g. "image/jpeg"
 *
 * Uploads a photo or video as a multipart form, for a post to use. The node checks the
 * contents itself and refuses what it does not support with %GENERIA_CLIENT_ERROR_INVALID.
 */
void
generia_client_upload_media_async (GeneriaClient       *self,
                                   GBytes              *bytes,
                                   const char          *filename,
                                   const char          *content_type,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  SoupMultipart *multipart;

  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (bytes != NULL);
  g_return_if_fail (filename != NULL);
  g_return_if_fail (content_type != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_upload_media_async);
  g_task_set_task_data (task, (gpointer)"media_id", NULL);

  multipart = soup_multipart_new (SOUP_FORM_MIME_TYPE_MULTIPART);
  soup_multipart_append_form_file (multipart, "file", filename, content_type, bytes);

  send_authorized_async (self, "POST", "/api/v1/media/upload", NULL, multipart, cancellable,
                         on_id_answer, g_steal_pointer (&task));
}

/**
 * generia_client_upload_media_finish:
 *
 * Returns: (transfer full): the new media's id, or %NULL with @error set
 */
char *
generia_client_upload_media_finish (GeneriaClient  *self,
                                    GAsyncResult   *result,
                                    GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * generia_client_create_post_async:
 * @caption: the caption, with its hashtags and mentions
 * @media_id: an upload of the logged-in user that no post uses yet
 *
 * Publishes a post with one photo or video.
 */
void
generia_client_create_post_async (GeneriaClient       *self,
                                  const char          *caption,
                                  const char          *media_id,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(JsonObject) body = NULL;

  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (caption != NULL);
  g_return_if_fail (media_id != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_create_post_async);
  g_task_set_task_data (task, (gpointer)"id", NULL);

  if (g_utf8_strlen (caption, -1) > GENERIA_CLIENT_CAPTION_MAX_CHARS)
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_INVALID,
                               /* Translators: %d is the most characters a caption may have */
                               _("Captions have at most %d characters."),
                               GENERIA_CLIENT_CAPTION_MAX_CHARS);
      return;
    }

  body = json_object_new ();
  json_object_set_string_member (body, "caption", caption);
  json_object_set_string_member (body, "media_id", media_id);

  send_authorized_async (self, "POST", "/api/v1/posts", body, NULL, cancellable,
                         on_id_answer, g_steal_pointer (&task));
}

/**
 * generia_client_create_post_finish:
 *
 * Returns: (transfer full): the new post's id, or %NULL with @error set
 */
char *
generia_client_create_post_finish (GeneriaClient  *self,
                                   GAsyncResult   *result,
                                   GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_download_sent (GObject      *object,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GBytes) body = NULL;
  SoupMessage *message = g_task_get_task_data (task);
  GError *error = NULL;
  guint status;

  if (!(body = soup_session_send_and_read_finish (SOUP_SESSION (object), result, &error)))
    {
      g_autofree char *server = g_uri_to_string_partial (soup_message_get_uri (message),
                                                         G_URI_HIDE_USERINFO |
                                                         G_URI_HIDE_QUERY |
                                                         G_URI_HIDE_FRAGMENT);

      g_task_return_error (task, error_for_transport (error, server));
      return;
    }

  status = soup_message_get_status (message);
  if (!SOUP_STATUS_IS_SUCCESSFUL (status))
    {
      SoupMessageHeaders *headers = soup_message_get_response_headers (message);

      g_task_return_error (task,
                           generia_client_error_new_from_response (status,
                                                                   soup_message_headers_get_content_type (headers, NULL),
                                                                   body));
      return;
    }

  g_task_return_pointer (task, g_steal_pointer (&body), (GDestroyNotify)g_bytes_unref);
}

/**
 * generia_client_download_async:
 * @url: an address that needs no credentials, such as a post's signed media URL
 *
 * Fetches @url with the client's connections, e.g. to show an image.
 */
void
generia_client_download_async (GeneriaClient       *self,
                               const char          *url,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  SoupMessage *message;

  g_return_if_fail (GENERIA_IS_CLIENT (self));
  g_return_if_fail (url != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_client_download_async);

  if (!(message = soup_message_new ("GET", url)))
    {
      g_task_return_new_error (task, GENERIA_CLIENT_ERROR, GENERIA_CLIENT_ERROR_BAD_RESPONSE,
                               _("The server sent an answer the app does not understand."));
      return;
    }
  g_task_set_task_data (task, message, g_object_unref);

  soup_session_send_and_read_async (self->soup, message, G_PRIORITY_DEFAULT, cancellable,
                                    on_download_sent, g_steal_pointer (&task));
}

/**
 * generia_client_download_finish:
 *
 * Returns: (transfer full): the body, or %NULL with @error set
 */
GBytes *
generia_client_download_finish (GeneriaClient  *self,
                                GAsyncResult   *result,
                                GError        **error)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
