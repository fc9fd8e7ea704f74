/* routes-media.c - media of API v1: the presigned flow (upload-url, PUT, confirm), the direct
 * multipart upload, the base64 JSON upload, and reading a media item.
 *
 * Every way in becomes one client-streaming MediaService.Upload call: an UploadStart, then the
 * bytes in 1 MiB chunks read from where the HTTP layer put the body (a spool file for anything
 * large, so an upload never sits in memory whole).  The media service decides everything about
 * the upload (type, limits, variants); the gateway only moves bytes and shapes JSON.
 * The PUT carries no bearer token: the signature in its URL authorises it, checked by the media
 * service.  It is checked before the body is read: the route's precheck asks
 * MediaService.CheckUploadURL once the headers are in, so a forged, expired or used URL costs
 * the sender one round trip and the node no disk, and the body limit becomes the size the URL
 * was signed for (413 as soon as the body passes it).  A body shorter than declared is taken:
 * the media service decides from the bytes what it got, as for every other way in.
 *
 * URLs in answers are made absolute here, from the base URL the client used to reach the
 * gateway (gateway.public_url, or the request's Host / trusted proxy headers): services hand
 * out paths, so a phone on the LAN and a browser behind a reverse proxy each get URLs that
 * work from where they are. */
#include "gateway.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "hydrate.h"
#include "log.h"
#include "media.pb-c.h"

#define CHUNK_BYTES (1024 * 1024)
/* Receiving, checking and making the variants of a large video takes a while. */
#define UPLOAD_TIMEOUT_MS (5 * 60 * 1000)
#define BASE64_MAX_FILE (16 * 1024 * 1024)

/* Sends bytes as data chunks of at most CHUNK_BYTES. */
static gboolean
send_data (gn_rpc_stream *stream, const uint8_t *data, size_t len)
{
  while (len > 0) {
    size_t n = MIN (len, (size_t)CHUNK_BYTES);
    Generia__Media__V1__UploadChunk chunk = GENERIA__MEDIA__V1__UPLOAD_CHUNK__INIT;
    chunk.part_case = GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_DATA;
    chunk.data.data = (uint8_t *)data;
    chunk.data.len = n;
    if (!gn_rpc_stream_send (stream, &chunk.base))
      return FALSE;
    data += n;
    len -= n;
  }
  return TRUE;
}

typedef enum {
  SOURCE_RAW,    /* the body (memory or spool file) is the file */
  SOURCE_BASE64, /* `text` holds the file in base64 */
} source_kind;

typedef struct {
  source_kind kind;
  const char *text; /* SOURCE_BASE64 */
  size_t text_len;
} upload_source;

/* Feeds the body to the stream; FALSE when the stream failed (the status tells why) or the
 * spool file could not be read (*local_failure set). */
static gboolean
send_body (gn_http_request *request, gn_rpc_stream *stream, const upload_source *source,
           gboolean *local_failure)
{
  if (source->kind == SOURCE_BASE64) {
    /* 4 input characters make 3 bytes: decode a slice at a time into a bounded buffer. */
    g_autofree uint8_t *buffer = g_malloc (CHUNK_BYTES);
    int decode_state = 0;
    guint save = 0;
    const size_t slice = (CHUNK_BYTES / 3) * 4;
    for (size_t done = 0; done < source->text_len; done += slice) {
      size_t n = MIN (slice, source->text_len - done);
      gsize out = g_base64_decode_step (source->text + done, n, buffer, &decode_state, &save);
      if (!send_data (stream, buffer, out))
        return FALSE;
    }
    return TRUE;
  }
  if (request->spool_path == NULL)
    return send_data (stream, (const uint8_t *)request->body, request->body_len);

  int fd = open (request->spool_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    gn_error ("cannot read the spooled upload %s: %s", request->spool_path, g_strerror (errno));
    *local_failure = TRUE;
    return FALSE;
  }
  g_autofree uint8_t *buffer = g_malloc (CHUNK_BYTES);
  gboolean ok = TRUE;
  for (;;) {
    ssize_t n = read (fd, buffer, CHUNK_BYTES);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      gn_error ("cannot read the spooled upload %s: %s", request->spool_path, g_strerror (errno));
      *local_failure = TRUE;
      ok = FALSE;
      break;
    }
    if (n == 0 || !(ok = send_data (stream, buffer, (size_t)n)))
      break;
  }
  close (fd);
  return ok;
}

/* Streams the upload to the media service.  Returns the stored media, or NULL after answering
 * the request with the error. */
static Generia__Media__V1__Media *
upload (gn_http_request *request, gn_gateway_context *context,
        Generia__Media__V1__UploadStart *start, const upload_source *source)
{
  gn_rpc_call_options options;
  gn_gateway_call_options (request, &options);
  options.timeout_ms = UPLOAD_TIMEOUT_MS;
  gn_rpc_stream *stream
      = gn_rpc_stream_open (context->clients[GN_SERVICE_MEDIA],
                            &generia__media__v1__media_service__descriptor, "Upload", &options);
  Generia__Media__V1__UploadChunk first = GENERIA__MEDIA__V1__UPLOAD_CHUNK__INIT;
  first.part_case = GENERIA__MEDIA__V1__UPLOAD_CHUNK__PART_START;
  first.start = start;
  gboolean local_failure = FALSE;
  if (gn_rpc_stream_send (stream, &first.base))
    send_body (request, stream, source, &local_failure);
  if (local_failure) {
    gn_rpc_stream_cancel (stream);
    gn_http_respond_error (request, 500, "internal_error", "Internal error");
    return NULL;
  }
  ProtobufCMessage *response = NULL;
  gn_rpc_status status;
  gn_rpc_stream_finish (stream, &response, request->arena, &status);
  if (status.code != GRPC_STATUS_OK) {
    gn_gateway_respond_rpc_error (request, &status, "media");
    return NULL;
  }
  return (Generia__Media__V1__Media *)response;
}

/* {media_id, ..., variants: {name: signed URL}} plus `extra` members. */
static void
respond_media (gn_http_request *request, gn_gateway_context *context, int status,
               Generia__Media__V1__Media *media, const char *state)
{
  g_autoptr (GHashTable) urls = gn_gateway_sign_media (request, context, &media, 1);
  if (urls == NULL)
    return;
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  gn_gateway_add_media_members (builder, media, urls);
  json_builder_set_member_name (builder, "status");
  json_builder_add_string_value (builder, state);
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, status, builder);
}

static gboolean
call_media (gn_http_request *request, gn_gateway_context *context, const char *method,
            const ProtobufCMessage *req, ProtobufCMessage **response)
{
  return gn_gateway_call (request, context, GN_SERVICE_MEDIA,
                          &generia__media__v1__media_service__descriptor, method, req, response);
}

static void
handle_upload_url (gn_http_request *request, void *data)
{
  gn_gateway_context *context = data;
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  const char *filename = gn_gateway_string_member (request, body, "filename", &failed);
  const char *content_type = gn_gateway_string_member (request, body, "content_type", &failed);
  if (failed)
    return;
  JsonNode *size = json_object_get_member (body, "size");
  if (size == NULL || !JSON_NODE_HOLDS_VALUE (size)
      || json_node_get_value_type (size) != G_TYPE_INT64) {
    gn_http_respond_error (request, 400, "invalid_request",
                           "size (the file's size in bytes) is required");
    return;
  }
  Generia__Media__V1__CreateUploadURLRequest req
      = GENERIA__MEDIA__V1__CREATE_UPLOAD_URLREQUEST__INIT;
  req.filename = (char *)(filename != NULL ? filename : "");
  req.content_type = (char *)(content_type != NULL ? content_type : "");
  req.size = json_node_get_int (size);
  ProtobufCMessage *response = NULL;
  if (!call_media (request, context, "CreateUploadURL", &req.base, &response))
    return;
  Generia__Media__V1__CreateUploadURLResponse *url = (void *)response;
  char expires[32];
  const char *absolute
      = gn_arena_printf (request->arena, "%s%s", gn_http_base_url (request), url->upload_path);
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "media_id");
  json_builder_add_string_value (builder, url->media_id);
  json_builder_set_member_name (builder, "upload_url");
  json_builder_add_string_value (builder, absolute);
  json_builder_set_member_name (builder, "upload_method");
  json_builder_add_string_value (builder, "PUT");
  json_builder_set_member_name (builder, "expires_at");
  json_builder_add_string_value (builder, gn_gateway_format_time (url->expires_at_us, expires));
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, 200, builder);
}

/* An upload URL's query numbers: canonical decimal, at most 18 digits (no sign, no leading
 * zero, nothing else), so every value has one spelling and fits an int64. */
static gboolean
parse_url_number (const char *text, int64_t *out)
{
  size_t len = text != NULL ? strlen (text) : 0;

  if (len == 0 || len > 18 || (text[0] == '0' && len > 1))
    return FALSE;
  for (size_t i = 0; i < len; i++)
    if (!g_ascii_isdigit (text[i]))
      return FALSE;
  *out = g_ascii_strtoll (text, NULL, 10);
  return TRUE;
}

/* The UploadStart of a presigned PUT from its URL; FALSE after answering 403 when the URL is
 * not one we sign. */
static gboolean
presigned_start (gn_http_request *request, Generia__Media__V1__UploadStart *start)
{
  const char *signature = gn_http_query (request, "signature");

  if (signature == NULL || strlen (signature) > 64
      || !parse_url_number (gn_http_query (request, "expires"), &start->expires)
      || !parse_url_number (gn_http_query (request, "size"), &start->size)) {
    gn_http_respond_error (request, 403, "invalid_signature",
                           "this upload URL is not signed: ask for one with "
                           "POST /api/v1/media/upload-url");
    return FALSE;
  }
  start->media_id = (char *)gn_http_param (request, "media_id");
  start->signature = (char *)signature;
  return TRUE;
}

/* Before the body: the URL must be valid now, and the body no larger than it was signed for. */
static bool
precheck_put_content (gn_http_request *request, void *data)
{
  Generia__Media__V1__UploadStart start = GENERIA__MEDIA__V1__UPLOAD_START__INIT;
  Generia__Media__V1__CheckUploadURLRequest req = GENERIA__MEDIA__V1__CHECK_UPLOAD_URLREQUEST__INIT;
  ProtobufCMessage *response = NULL;

  if (!presigned_start (request, &start))
    return false;
  req.media_id = start.media_id;
  req.expires = start.expires;
  req.size = start.size;
  req.signature = start.signature;
  if (!call_media (request, data, "CheckUploadURL", &req.base, &response))
    return false;
  gn_http_set_body_limit (request,
                          (size_t)((Generia__Media__V1__CheckUploadURLResponse *)response)->size);
  return true;
}

static void
handle_put_content (gn_http_request *request, void *data)
{
  Generia__Media__V1__UploadStart start = GENERIA__MEDIA__V1__UPLOAD_START__INIT;

  if (!presigned_start (request, &start))
    return;
  if (request->body_len == 0) {
    gn_http_respond_error (request, 400, "empty_upload", "the upload is empty");
    return;
  }
  const char *type = gn_http_header (request, "Content-Type");
  if (type != NULL && !gn_gateway_text_ok (type, GN_GATEWAY_CONTENT_TYPE_MAX)) {
    gn_http_respond_error (request, 400, "invalid_content_type",
                           "Content-Type must be UTF-8 text of at most %d bytes",
                           GN_GATEWAY_CONTENT_TYPE_MAX);
    return;
  }
  start.content_type = (char *)(type != NULL ? type : "");
  upload_source source = { .kind = SOURCE_RAW };
  Generia__Media__V1__Media *media = upload (request, data, &start, &source);
  if (media != NULL)
    respond_media (request, data, 200, media, "uploaded");
}

static void
handle_confirm (gn_http_request *request, void *data)
{
  JsonObject *body;
  g_autoptr (JsonParser) parser = gn_gateway_parse_object (request, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  const char *media_id = gn_gateway_string_member (request, body, "media_id", &failed);
  if (failed)
    return;
  if (media_id == NULL) {
    gn_http_respond_error (request, 400, "invalid_request", "media_id is required");
    return;
  }
  Generia__Media__V1__ConfirmUploadRequest req = GENERIA__MEDIA__V1__CONFIRM_UPLOAD_REQUEST__INIT;
  req.media_id = (char *)media_id;
  ProtobufCMessage *response = NULL;
  if (call_media (request, data, "ConfirmUpload", &req.base, &response))
    respond_media (request, data, 200, (Generia__Media__V1__Media *)response, "confirmed");
}

static void
handle_multipart (gn_http_request *request, void *data)
{
  if (request->upload_filename == NULL) {
    gn_http_respond_error (request, 400, "invalid_request",
                           "the form has no \"file\" part with the photo or video");
    return;
  }
  if (request->body_len == 0) {
    gn_http_respond_error (request, 400, "empty_upload", "the uploaded file is empty");
    return;
  }
  Generia__Media__V1__UploadStart start = GENERIA__MEDIA__V1__UPLOAD_START__INIT;
  start.filename = (char *)request->upload_filename;
  start.content_type = (char *)request->upload_content_type;
  upload_source source = { .kind = SOURCE_RAW };
  Generia__Media__V1__Media *media = upload (request, data, &start, &source);
  if (media != NULL)
    respond_media (request, data, 201, media, "confirmed");
}

/* Base64 as the alphabet allows, with whitespace; a "data:...;base64," prefix is accepted. */
static const char *
base64_payload (const char *text, size_t *len)
{
  if (g_str_has_prefix (text, "data:")) {
    const char *comma = strchr (text, ',');
    if (comma == NULL)
      return NULL;
    text = comma + 1;
  }
  for (const char *p = text; *p != '\0'; p++)
    if (!(g_ascii_isalnum (*p) || *p == '+' || *p == '/' || *p == '=' || g_ascii_isspace (*p)))
      return NULL;
  *len = strlen (text);
  return text;
}

static void
handle_base64 (gn_http_request *request, void *data)
{
  const char *type = gn_http_header (request, "Content-Type");
  if (type == NULL || !g_str_has_prefix (type, "application/json")) {
    gn_http_respond_error (request, 415, "unsupported_media_type", "The request body must be JSON");
    return;
  }
  g_autoptr (GMappedFile) mapped = NULL;
  const char *text = request->body;
  size_t text_len = request->body_len;
  if (request->spool_path != NULL) {
    g_autoptr (GError) error = NULL;
    mapped = g_mapped_file_new (request->spool_path, FALSE, &error);
    if (mapped == NULL) {
      gn_error ("cannot read the spooled body %s: %s", request->spool_path, error->message);
      gn_http_respond_error (request, 500, "internal_error", "Internal error");
      return;
    }
    text = g_mapped_file_get_contents (mapped);
    text_len = g_mapped_file_get_length (mapped);
  }
  if (text == NULL || text_len == 0) {
    gn_http_respond_error (request, 400, "invalid_request",
                           "the body must be a JSON object with media_data");
    return;
  }
  /* media_data is one long string; everything else is as small as in any JSON body. */
  gn_json_limits limits = { .max_string_bytes = text_len };
  JsonObject *body;
  g_autoptr (JsonParser) parser
      = gn_gateway_parse_object_text (request, text, text_len, &limits, &body);
  if (parser == NULL)
    return;
  gboolean failed = FALSE;
  const char *media_data = gn_gateway_string_member (request, body, "media_data", &failed);
  const char *content_type = gn_gateway_string_member (request, body, "content_type", &failed);
  const char *filename = gn_gateway_string_member (request, body, "filename", &failed);
  if (failed)
    return;
  size_t len = 0;
  const char *payload = media_data != NULL ? base64_payload (media_data, &len) : NULL;
  if (payload == NULL || len == 0) {
    gn_http_respond_error (request, 400, "invalid_request",
                           "media_data must hold the file in base64");
    return;
  }
  Generia__Media__V1__UploadStart start = GENERIA__MEDIA__V1__UPLOAD_START__INIT;
  start.filename = (char *)(filename != NULL ? filename : "");
  start.content_type = (char *)(content_type != NULL ? content_type : "");
  upload_source source = { .kind = SOURCE_BASE64, .text = payload, .text_len = len };
  Generia__Media__V1__Media *media = upload (request, data, &start, &source);
  if (media != NULL)
    respond_media (request, data, 201, media, "confirmed");
}

static void
handle_get (gn_http_request *request, void *data)
{
  Generia__Media__V1__GetMediaRequest req = GENERIA__MEDIA__V1__GET_MEDIA_REQUEST__INIT;
  req.media_id = (char *)gn_http_param (request, "media_id");
  ProtobufCMessage *response = NULL;
  if (!call_media (request, data, "GetMedia", &req.base, &response))
    return;
  Generia__Media__V1__Media *media = (void *)response;
  respond_media (request, data, 200, media, media->confirmed ? "confirmed" : "uploaded");
}

void
gn_gateway_add_media_routes (gn_router *router, gn_gateway_context *context)
{
  size_t max_file = context->config->media_max_upload_bytes;
  gn_route *route;

  route = gn_router_add (router, "POST", "/api/v1/media/upload-url", handle_upload_url, context,
                         GN_ROUTE_AUTH_REQUIRED);
  route->max_body = GN_GATEWAY_JSON_MAX_BODY;
  route = gn_router_add (router, "POST", "/api/v1/media/confirm", handle_confirm, context,
                         GN_ROUTE_AUTH_REQUIRED);
  route->max_body = GN_GATEWAY_JSON_MAX_BODY;
  route = gn_router_add (router, "GET", "/api/v1/media/{media_id}", handle_get, context,
                         GN_ROUTE_AUTH_OPTIONAL);
  route->max_body = GN_GATEWAY_JSON_MAX_BODY;
  route = gn_router_add (router, "PUT", "/api/v1/media/{media_id}/content", handle_put_content,
                         context, GN_ROUTE_RAW_BODY);
  route->max_body = max_file;
  route->precheck = precheck_put_content;
  /* Multipart framing adds a little around the file. */
  route = gn_router_add (router, "POST", "/api/v1/media/upload", handle_multipart, context,
                         GN_ROUTE_AUTH_REQUIRED | GN_ROUTE_MULTIPART);
  route->max_body = max_file + 64 * 1024;
  /* Base64 takes 4 characters for 3 bytes.  The body is spooled like any other, but the JSON
   * parser holds the media_data string in memory while it is decoded in slices, so this form
   * (kept for API v1's clients) takes files up to BASE64_MAX_FILE; larger ones use the
   * presigned or multipart ways, which never hold a file in memory. */
  route = gn_router_add (router, "POST", "/api/v1/media", handle_base64, context,
                         GN_ROUTE_AUTH_REQUIRED | GN_ROUTE_RAW_BODY);
  route->max_body = MIN (max_file, (size_t)BASE64_MAX_FILE) / 3 * 4 + 64 * 1024;
}
