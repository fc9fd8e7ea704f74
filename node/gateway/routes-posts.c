/* routes-posts.c - posts and feeds of API v1: create, read, edit, delete, the global feed and a
 * user's posts.
 *
 * Feeds page with a cursor (stable while people post) or, for API v1's original web client and
 * its "Load More" button, with an offset.  A page is hydrated with one batched call per service
 * (hydrate.c). */
#include "gateway.h"

#include <string.h>

#include "hydrate.h"
#include "post.pb-c.h"

#define DEFAULT_PAGE 20
#define MAX_PAGE 100

static gboolean
call_post (gn_http_request *request, gn_gateway_context *context, const char *method,
           const ProtobufCMessage *req, ProtobufCMessage **response)
{
  return gn_gateway_call (request, context, GN_SERVICE_POST,
                          &generia__post__v1__post_service__descriptor, method, req, response);
}

/* ?limit=&offset=&cursor= into a PageRequest; answers 400 and returns FALSE when malformed. */
static gboolean
read_page (gn_http_request *request, Generia__Common__V1__PageRequest *page)
{
  gboolean failed = FALSE;
  const char *limit = gn_gateway_query (request, "limit", &failed);
  const char *offset = gn_gateway_query (request, "offset", &failed);
  const char *cursor = gn_gateway_query (request, "cursor", &failed);
  guint64 number;

  if (failed)
    return FALSE;
  page->limit = DEFAULT_PAGE;
  if (limit != NULL && limit[0] != '\0') {
    if (!g_ascii_string_to_unsigned (limit, 10, 1, MAX_PAGE, &number, NULL)) {
      gn_http_respond_error (request, 400, "invalid_request",
                             "limit must be a whole number from 1 to %d", MAX_PAGE);
      return FALSE;
    }
    page->limit = (int32_t)number;
  }
  if (offset != NULL && offset[0] != '\0') {
    if (!g_ascii_string_to_unsigned (offset, 10, 0, G_MAXINT32, &number, NULL)) {
      gn_http_respond_error (request, 400, "invalid_request",
                             "offset must be a whole number of 0 or more");
      return FALSE;
    }
    page->offset = (int32_t)number;
  }
  if (cursor != NULL && cursor[0] != '\0')
    page->cursor = (char *)cursor;
  return TRUE;
}

static void
respond_page (gn_http_request *request, gn_gateway_context *context,
              const Generia__Post__V1__PostPage *page, gboolean with_total)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "posts");
  if (!gn_gateway_add_posts (request, context, builder, page->posts, page->n_posts))
    return;
  json_builder_set_member_name (builder, "next_cursor");
  if (page->next_cursor[0] != '\0')
    json_builder_add_string_value (builder, page->next_cursor);
  else
    json_builder_add_null_value (builder);
  json_builder_set_member_name (builder, "has_more");
  json_builder_add_boolean_value (builder, page->has_more);
  if (with_total) {
    json_builder_set_member_name (builder, "total");
    json_builder_add_int_value (builder, page->total);
  }
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, 200, builder);
}

static void
handle_create (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  const char *caption = gn_gateway_string_member (request, body, "caption", &failed);
  const char *media_id = gn_gateway_string_member (request, body, "media_id", &failed);
  if (failed)
    return;

  /* API v1 sends one media_id; carousels send media_ids, in order. */
  GPtrArray *ids = g_ptr_array_new ();
  JsonNode *list = json_object_get_member (body, "media_ids");
  if (list != NULL && JSON_NODE_HOLDS_ARRAY (list)) {
    JsonArray *array = json_node_get_array (list);
    for (guint i = 0; i < json_array_get_length (array); i++) {
      JsonNode *item = json_array_get_element (array, i);
      if (!JSON_NODE_HOLDS_VALUE (item) || json_node_get_value_type (item) != G_TYPE_STRING) {
        g_ptr_array_free (ids, TRUE);
        gn_http_respond_error (request, 400, "invalid_request", "media_ids must be strings");
        return;
      }
      g_ptr_array_add (ids, (char *)json_node_get_string (item));
    }
  } else if (list != NULL && !JSON_NODE_HOLDS_NULL (list)) {
    g_ptr_array_free (ids, TRUE);
    gn_http_respond_error (request, 400, "invalid_request", "media_ids must be an array");
    return;
  }
  if (media_id != NULL && media_id[0] != '\0')
    g_ptr_array_insert (ids, 0, (char *)media_id);
  if (ids->len == 0) {
    g_ptr_array_free (ids, TRUE);
    gn_http_respond_error (request, 400, "invalid_request",
                           "media_id is required: upload the photo or video first");
    return;
  }

  Generia__Post__V1__CreatePostRequest req = GENERIA__POST__V1__CREATE_POST_REQUEST__INIT;
  req.caption = (char *)(caption != NULL ? caption : "");
  req.media_ids = (char **)ids->pdata;
  req.n_media_ids = ids->len;
  ProtobufCMessage *response = NULL;
  gboolean ok = call_post (request, data, "CreatePost", &req.base, &response);
  g_ptr_array_free (ids, TRUE);
  if (!ok)
    return;
  Generia__Post__V1__CreatePostResponse *created = (void *)response;
  char when[32];
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "id");
  json_builder_add_string_value (builder, created->post_id);
  json_builder_set_member_name (builder, "created_at");
  json_builder_add_string_value (builder, gn_gateway_format_time (created->created_at_us, when));
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, 201, builder);
}

static void
handle_get (gn_http_request *request, void *data)
{
  Generia__Post__V1__GetPostRequest req = GENERIA__POST__V1__GET_POST_REQUEST__INIT;
  req.post_id = (char *)gn_http_param (request, "id");
  ProtobufCMessage *response = NULL;
  if (call_post (request, data, "GetPost", &req.base, &response))
    gn_gateway_respond_post (request, data, 200, (Generia__Post__V1__Post *)response);
}

static void
handle_edit (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  const char *caption = gn_gateway_string_member (request, body, "caption", &failed);
  if (failed)
    return;
  if (caption == NULL) {
    gn_http_respond_error (request, 400, "invalid_request", "caption is required");
    return;
  }
  Generia__Post__V1__EditCaptionRequest req = GENERIA__POST__V1__EDIT_CAPTION_REQUEST__INIT;
  req.post_id = (char *)gn_http_param (request, "id");
  req.caption = (char *)caption;
  ProtobufCMessage *response = NULL;
  if (call_post (request, data, "EditCaption", &req.base, &response))
    gn_gateway_respond_post (request, data, 200, (Generia__Post__V1__Post *)response);
}

static void
handle_delete (gn_http_request *request, void *data)
{
  Generia__Post__V1__DeletePostRequest req = GENERIA__POST__V1__DELETE_POST_REQUEST__INIT;
  req.post_id = (char *)gn_http_param (request, "id");
  ProtobufCMessage *response = NULL;
  if (!call_post (request, data, "DeletePost", &req.base, &response))
    return;
  static const char body[] = "{\"success\":true}";
  gn_http_respond_json (request, 200, body, sizeof body - 1);
}

static void
handle_feed (gn_http_request *request, void *data)
{
  Generia__Common__V1__PageRequest page = GENERIA__COMMON__V1__PAGE_REQUEST__INIT;
  if (!read_page (request, &page))
    return;
  Generia__Post__V1__GetGlobalFeedRequest req = GENERIA__POST__V1__GET_GLOBAL_FEED_REQUEST__INIT;
  req.page = &page;
  ProtobufCMessage *response = NULL;
  if (call_post (request, data, "GetGlobalFeed", &req.base, &response))
    respond_page (request, data, (Generia__Post__V1__PostPage *)response, FALSE);
}

static void
handle_user_posts (gn_http_request *request, void *data)
{
  Generia__Common__V1__PageRequest page = GENERIA__COMMON__V1__PAGE_REQUEST__INIT;
  if (!read_page (request, &page))
    return;
  Generia__Post__V1__GetUserPostsRequest req = GENERIA__POST__V1__GET_USER_POSTS_REQUEST__INIT;
  req.user_id = (char *)gn_http_param (request, "user_id");
  req.page = &page;
  ProtobufCMessage *response = NULL;
  if (call_post (request, data, "GetUserPosts", &req.base, &response))
    respond_page (request, data, (Generia__Post__V1__PostPage *)response, TRUE);
}

void
gn_gateway_add_post_routes (gn_router *router, gn_gateway_context *context)
{
  gn_route *routes[] = {
    gn_router_add (router, "POST", "/api/v1/posts", handle_create, context, GN_ROUTE_AUTH_REQUIRED),
    gn_router_add (router, "GET", "/api/v1/posts/{id}", handle_get, context,
                   GN_ROUTE_AUTH_OPTIONAL),
    gn_router_add (router, "PATCH", "/api/v1/posts/{id}", handle_edit, context,
                   GN_ROUTE_AUTH_REQUIRED),
    gn_router_add (router, "DELETE", "/api/v1/posts/{id}", handle_delete, context,
                   GN_ROUTE_AUTH_REQUIRED),
    gn_router_add (router, "GET", "/api/v1/feed", handle_feed, context, GN_ROUTE_AUTH_OPTIONAL),
    gn_router_add (router, "GET", "/api/v1/users/{user_id}/posts", handle_user_posts, context,
                   GN_ROUTE_AUTH_OPTIONAL),
  };
  for (size_t i = 0; i < G_N_ELEMENTS (routes); i++)
    routes[i]->max_body = GN_GATEWAY_JSON_MAX_BODY;
}
