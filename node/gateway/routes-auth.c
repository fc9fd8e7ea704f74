/* routes-auth.c - the /api/v1/auth routes: register, login, me, refresh, logout (API v1).
 *
 * Each route validates the JSON shape (types, presence) and leaves the rules about values
 * (username syntax, password length, ...) to the auth service, which owns them; its status and
 * reason come back through gn_gateway_call (errors.c), so both layers speak one error
 * vocabulary.
 *
 * Register and login take an optional "client_refreshes": true from clients that call
 * /auth/refresh (ours do): they get short-lived access tokens.  API v1's web client sends no
 * such field and never refreshes, so without it the access token is long-lived (24 h by
 * default); logout still ends either kind within seconds (lib/revocations.c). */
#include "gateway.h"

#include <string.h>

#include "auth.pb-c.h"

/* Credentials and tokens are small (a password is at most 1 KiB): 8 KiB leaves room and
 * refuses junk before the auth service, and its password hashing, sees it. */
#define AUTH_MAX_BODY (8 * 1024)

static void
add_user_members (JsonBuilder *builder, const Generia__Auth__V1__User *user)
{
  char created[32];
  json_builder_set_member_name (builder, "id");
  json_builder_add_string_value (builder, user->id);
  json_builder_set_member_name (builder, "username");
  json_builder_add_string_value (builder, user->username);
  json_builder_set_member_name (builder, "email");
  json_builder_add_string_value (builder, user->email);
  json_builder_set_member_name (builder, "created_at");
  json_builder_add_string_value (builder, gn_gateway_format_time (user->created_at_us, created));
  json_builder_set_member_name (builder, "display_name");
  json_builder_add_string_value (builder, user->display_name);
  json_builder_set_member_name (builder, "bio");
  json_builder_add_string_value (builder, user->bio);
  json_builder_set_member_name (builder, "avatar_media_id");
  if (user->avatar_media_id[0] != '\0')
    json_builder_add_string_value (builder, user->avatar_media_id);
  else
    json_builder_add_null_value (builder);
}

static void
respond_session (gn_http_request *request, int status, const Generia__Auth__V1__Session *session,
                 gboolean with_user)
{
  char expires[32], refresh_expires[32];
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "token");
  json_builder_add_string_value (builder, session->access_token);
  json_builder_set_member_name (builder, "refresh_token");
  json_builder_add_string_value (builder, session->refresh_token);
  json_builder_set_member_name (builder, "expires_at");
  json_builder_add_string_value (builder,
                                 gn_gateway_format_time (session->access_expires_at_us, expires));
  json_builder_set_member_name (builder, "refresh_expires_at");
  json_builder_add_string_value (
      builder, gn_gateway_format_time (session->refresh_expires_at_us, refresh_expires));
  if (with_user && session->user != NULL) {
    json_builder_set_member_name (builder, "user");
    json_builder_begin_object (builder);
    add_user_members (builder, session->user);
    json_builder_end_object (builder);
  }
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, status, builder);
}

static gboolean
call_auth (gn_http_request *request, gn_gateway_context *context, const char *method,
           const ProtobufCMessage *req, ProtobufCMessage **response)
{
  return gn_gateway_call (request, context, GN_SERVICE_AUTH,
                          &generia__auth__v1__auth_service__descriptor, method, req, response);
}

static const char *
user_agent (gn_http_request *request)
{
  const char *agent = gn_http_header (request, "User-Agent");
  /* Only a label in the session list: one that is not text is dropped, not refused. */
  return agent != NULL && gn_gateway_text_ok (agent, 1024) ? agent : "";
}

/* The optional boolean "client_refreshes"; answers 400 and sets *failed when it is not one. */
static gboolean
client_refreshes_member (gn_http_request *request, JsonObject *body, gboolean *failed)
{
  JsonNode *node = json_object_get_member (body, "client_refreshes");
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return FALSE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN) {
    if (!*failed)
      gn_http_respond_error (request, 400, "invalid_request", "client_refreshes must be a boolean");
    *failed = TRUE;
    return FALSE;
  }
  return json_node_get_boolean (node);
}

static void
handle_register (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  Generia__Auth__V1__RegisterRequest req = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  const char *username = gn_gateway_string_member (request, body, "username", &failed);
  const char *email = gn_gateway_string_member (request, body, "email", &failed);
  const char *password = gn_gateway_string_member (request, body, "password", &failed);
  req.client_refreshes = client_refreshes_member (request, body, &failed);
  if (failed)
    return;
  if (username == NULL || email == NULL || password == NULL) {
    gn_http_respond_error (request, 400, "invalid_request",
                           "username, email and password are required");
    return;
  }
  req.username = (char *)username;
  req.email = (char *)email;
  req.password = (char *)password;
  req.client_name = (char *)user_agent (request);

  ProtobufCMessage *response = NULL;
  if (call_auth (request, data, "Register", &req.base, &response))
    respond_session (request, 201, (Generia__Auth__V1__Session *)response, TRUE);
}

static void
handle_login (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  Generia__Auth__V1__LoginRequest req = GENERIA__AUTH__V1__LOGIN_REQUEST__INIT;
  const char *identifier = gn_gateway_string_member (request, body, "email_or_username", &failed);
  const char *password = gn_gateway_string_member (request, body, "password", &failed);
  req.client_refreshes = client_refreshes_member (request, body, &failed);
  if (failed)
    return;
  if (identifier == NULL || password == NULL) {
    gn_http_respond_error (request, 400, "invalid_request",
                           "email_or_username and password are required");
    return;
  }
  req.email_or_username = (char *)identifier;
  req.password = (char *)password;
  req.client_name = (char *)user_agent (request);

  ProtobufCMessage *response = NULL;
  if (call_auth (request, data, "Login", &req.base, &response))
    respond_session (request, 200, (Generia__Auth__V1__Session *)response, TRUE);
}

static void
handle_me (gn_http_request *request, void *data)
{
  Generia__Auth__V1__GetUserInfoRequest req = GENERIA__AUTH__V1__GET_USER_INFO_REQUEST__INIT;
  req.user_id = (char *)request->user_id;
  ProtobufCMessage *response = NULL;
  if (!call_auth (request, data, "GetUserInfo", &req.base, &response))
    return;
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  add_user_members (builder, (Generia__Auth__V1__User *)response);
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, 200, builder);
}

/* Reads {"refresh_token": "..."}; answers 400 and returns NULL when it is missing. */
static const char *
refresh_token_member (gn_http_request *request, JsonObject *body)
{
  gboolean failed = FALSE;
  const char *token = gn_gateway_string_member (request, body, "refresh_token", &failed);
  if (!failed && (token == NULL || token[0] == '\0'))
    gn_http_respond_error (request, 400, "invalid_request", "refresh_token is required");
  return failed ? NULL : token;
}

static void
handle_refresh (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  const char *token = refresh_token_member (request, body);
  if (token == NULL || token[0] == '\0')
    return;
  Generia__Auth__V1__RefreshTokenRequest req = GENERIA__AUTH__V1__REFRESH_TOKEN_REQUEST__INIT;
  req.refresh_token = (char *)token;
  ProtobufCMessage *response = NULL;
  if (call_auth (request, data, "RefreshToken", &req.base, &response))
    respond_session (request, 200, (Generia__Auth__V1__Session *)response, FALSE);
}

static void
handle_logout (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  const char *token = refresh_token_member (request, body);
  if (token == NULL || token[0] == '\0')
    return;
  Generia__Auth__V1__LogoutRequest req = GENERIA__AUTH__V1__LOGOUT_REQUEST__INIT;
  req.refresh_token = (char *)token;
  ProtobufCMessage *response = NULL;
  if (!call_auth (request, data, "Logout", &req.base, &response))
    return;
  static const char body_ok[] = "{\"success\":true}";
  gn_http_respond_json (request, 200, body_ok, sizeof body_ok - 1);
}

void
gn_gateway_add_auth_routes (gn_router *router, gn_gateway_context *context)
{
  struct {
    const char *method, *pattern;
    gn_http_handler handler;
    unsigned flags;
  } routes[] = {
    { "POST", "/api/v1/auth/register", handle_register, 0 },
    { "POST", "/api/v1/auth/login", handle_login, 0 },
    { "GET", "/api/v1/auth/me", handle_me, GN_ROUTE_AUTH_REQUIRED },
    { "POST", "/api/v1/auth/refresh", handle_refresh, 0 },
    { "POST", "/api/v1/auth/logout", handle_logout, 0 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (routes); i++) {
    gn_route *route = gn_router_add (router, routes[i].method, routes[i].pattern, routes[i].handler,
                                     context, routes[i].flags);
    route->max_body = AUTH_MAX_BODY;
  }
}
