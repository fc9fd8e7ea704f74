/* storage-s3.c - the S3 storage backend (see storage.h): object "a/b.jpg" is
 * <endpoint>/<bucket>/<prefix>a/b.jpg, addressed path-style so any S3-compatible server works
 * without DNS names per bucket.
 *
 * Requests.  libcurl signs every request with AWS Signature Version 4 (CURLOPT_AWS_SIGV4).
 * S3 requires x-amz-content-sha256 in the signed headers, and libcurl does not compute it, so
 * a PUT hashes its source file first and then streams the file as the body: objects are never
 * held in memory, whatever their size.  GET streams the body into a temp file beside the
 * destination that is renamed into place only when the whole object arrived; HEAD gives stat
 * (Content-Length, Last-Modified); DELETE of a missing key counts as success, like S3's own.
 * The URL path is exactly the canonical URI SigV4 signs (each byte outside RFC 3986's
 * unreserved set percent-encoded once, '/' kept), so the server computes the same signature.
 *
 * Errors.  A transfer failure (connection refused, timeout) is reported with curl's words; an
 * HTTP error with its status and the <Code> and <Message> of S3's XML error body, read with
 * GMarkup.  A 404 on a GET or HEAD of an object is G_IO_ERROR_NOT_FOUND unless the body says
 * the bucket itself is missing (NoSuchBucket).  HEAD answers have no body, so a HEAD error is
 * explained from the status alone.
 *
 * Threads.  A CURL easy handle must not be used by two threads at once, so each thread keeps
 * one (a GPrivate, cleaned up when the thread ends) and resets it between requests; the handle
 * keeps its connections, so a worker thread reuses its keep-alive connection to the server.
 * Connecting gives up after 5 s, and a transfer slower than 1 KiB/s for 30 s is abandoned. */
#include "storage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>
#include <gio/gio.h>

#include "storage-private.h"

#define CONNECT_TIMEOUT_MS 5000
#define LOW_SPEED_BYTES_PER_S 1024
#define LOW_SPEED_SECONDS 30
#define PREFIX_MAX_BYTES 256
#define ERROR_BODY_MAX_BYTES (16 * 1024)
#define HASH_BUFFER_BYTES (64 * 1024)
/* SHA-256 of the empty body of GET, HEAD and DELETE. */
#define EMPTY_PAYLOAD_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct {
  gn_storage base;
  char *endpoint; /* without a trailing '/' */
  char *bucket;
  char *bucket_url; /* <endpoint>/<bucket> */
  char *sigv4;      /* "aws:amz:<region>:s3" */
  char *access_key;
  char *secret_key;
  char *prefix; /* percent-encoded, may be "" */
} s3_storage;

typedef struct {
  CURL *curl;
  const char *method;
  char *url;
  const char *target; /* "<bucket>/<key>" or the bucket, for messages */

  FILE *upload; /* PUT body */
  int download_fd;
  const char *download_path;
  int download_errno;  /* a failed write to download_fd */
  GString *error_body; /* the body of a non-2xx answer, capped */

  long status;
  curl_off_t content_length;
  curl_off_t last_modified; /* seconds since the epoch, -1 if unknown */
  char curl_error[CURL_ERROR_SIZE];
} s3_request;

static void
thread_curl_free (gpointer curl)
{
  curl_easy_cleanup (curl);
}

static GPrivate thread_curl = G_PRIVATE_INIT (thread_curl_free);

static CURL *
thread_handle (GError **error)
{
  CURL *curl = g_private_get (&thread_curl);
  if (curl != NULL) {
    curl_easy_reset (curl);
    return curl;
  }
  curl = curl_easy_init ();
  if (curl == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot create a curl handle");
    return NULL;
  }
  g_private_set (&thread_curl, curl);
  return curl;
}

/* Percent-encodes every byte but RFC 3986's unreserved ones and '/', as SigV4 does for S3. */
static void
append_encoded_path (GString *out, const char *path)
{
  for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
    if (g_ascii_isalnum (*p) || strchr ("-._~/", *p) != NULL)
      g_string_append_c (out, (char)*p);
    else
      g_string_append_printf (out, "%%%02X", *p);
  }
}

static char *
object_url (s3_storage *s3, const char *key)
{
  GString *url = g_string_new (s3->bucket_url);
  g_string_append_c (url, '/');
  g_string_append (url, s3->prefix);
  append_encoded_path (url, key);
  return g_string_free (url, FALSE);
}

static size_t
on_body (char *data, size_t size, size_t count, void *user_data)
{
  s3_request *request = user_data;
  size_t length = size * count;
  long status = 0;

  curl_easy_getinfo (request->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status / 100 == 2) {
    if (request->download_fd < 0)
      return length;
    for (size_t done = 0; done < length;) {
      ssize_t written = write (request->download_fd, data + done, length - done);
      if (written < 0) {
        if (errno == EINTR)
          continue;
        request->download_errno = errno;
        return CURL_WRITEFUNC_ERROR;
      }
      done += (size_t)written;
    }
    return length;
  }
  if (request->error_body->len < ERROR_BODY_MAX_BYTES)
    g_string_append_len (request->error_body, data,
                         (gssize)MIN (length, ERROR_BODY_MAX_BYTES - request->error_body->len));
  return length;
}

/* A retry on a reused connection that the server closed rewinds the body. */
static int
on_seek (void *user_data, curl_off_t offset, int origin)
{
  FILE *file = user_data;
  return fseeko (file, (off_t)offset, origin) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

static void
request_init (s3_request *request, CURL *curl, const char *method, char *url, const char *target)
{
  *request = (s3_request){
    .curl = curl,
    .method = method,
    .url = url,
    .target = target,
    .download_fd = -1,
    .error_body = g_string_new (NULL),
    .last_modified = -1,
  };
}

static void
request_clear (s3_request *request)
{
  g_free (request->url);
  g_string_free (request->error_body, TRUE);
}

/* Runs the request.  FALSE only when no HTTP answer arrived (or the download could not be
 * written); an HTTP error status is for the caller to judge. */
static gboolean
request_perform (s3_storage *s3, s3_request *request, const char *payload_sha256,
                 const char *content_type, curl_off_t upload_size, GError **error)
{
  CURL *curl = request->curl;
  struct curl_slist *headers = NULL;
  g_autofree char *sha_header = g_strdup_printf ("x-amz-content-sha256: %s", payload_sha256);
  g_autofree char *type_header = NULL;

  headers = curl_slist_append (headers, sha_header);
  if (content_type != NULL) {
    type_header = g_strdup_printf ("Content-Type: %s", content_type);
    headers = curl_slist_append (headers, type_header);
  }

  curl_easy_setopt (curl, CURLOPT_URL, request->url);
  curl_easy_setopt (curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
  curl_easy_setopt (curl, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES_PER_S);
  curl_easy_setopt (curl, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_SECONDS);
  curl_easy_setopt (curl, CURLOPT_USERAGENT, "generia-node/" PACKAGE_VERSION);
  curl_easy_setopt (curl, CURLOPT_AWS_SIGV4, s3->sigv4);
  curl_easy_setopt (curl, CURLOPT_USERNAME, s3->access_key);
  curl_easy_setopt (curl, CURLOPT_PASSWORD, s3->secret_key);
  curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, request->curl_error);
  curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt (curl, CURLOPT_WRITEDATA, request);
  curl_easy_setopt (curl, CURLOPT_FILETIME, 1L);

  if (strcmp (request->method, "HEAD") == 0) {
    curl_easy_setopt (curl, CURLOPT_NOBODY, 1L);
  } else if (strcmp (request->method, "PUT") == 0) {
    curl_easy_setopt (curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt (curl, CURLOPT_READDATA, request->upload);
    curl_easy_setopt (curl, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt (curl, CURLOPT_SEEKDATA, request->upload);
    curl_easy_setopt (curl, CURLOPT_INFILESIZE_LARGE, upload_size);
  } else if (strcmp (request->method, "DELETE") == 0) {
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, "DELETE");
  }

  CURLcode code = curl_easy_perform (curl);
  curl_slist_free_all (headers);
  /* The handle outlives this frame in the thread's GPrivate; drop pointers into it. */
  curl_easy_setopt (curl, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, NULL);

  if (request->download_errno != 0) {
    gn_storage_set_errno_error (error, request->download_errno, "cannot write",
                                request->download_path);
    return FALSE;
  }
  if (code != CURLE_OK) {
    /* The error buffer has the details ("Failed to connect to ... port ..."), when set. */
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "S3 %s %s: %s", request->method,
                 request->url,
                 request->curl_error[0] != '\0' ? request->curl_error : curl_easy_strerror (code));
    return FALSE;
  }
  curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &request->status);
  curl_easy_getinfo (curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &request->content_length);
  curl_easy_getinfo (curl, CURLINFO_FILETIME_T, &request->last_modified);
  return TRUE;
}

/* What S3's error document says: <Error><Code>..</Code><Message>..</Message>...</Error>. */
typedef struct {
  const char *element; /* the element being read, if it is one we want */
  GString *code;
  GString *message;
} error_document;

static void
on_error_start (GMarkupParseContext *context, const char *element, const char **names,
                const char **values, gpointer user_data, GError **error)
{
  error_document *doc = user_data;
  doc->element = NULL;
  if (strcmp (element, "Code") == 0 || strcmp (element, "Message") == 0)
    doc->element = g_intern_string (element);
}

static void
on_error_end (GMarkupParseContext *context, const char *element, gpointer user_data, GError **error)
{
  ((error_document *)user_data)->element = NULL;
}

static void
on_error_text (GMarkupParseContext *context, const char *text, gsize length, gpointer user_data,
               GError **error)
{
  error_document *doc = user_data;
  if (doc->element == NULL)
    return;
  GString *into = strcmp (doc->element, "Code") == 0 ? doc->code : doc->message;
  if (into->len < 512)
    g_string_append_len (into, text, (gssize)MIN (length, 512 - into->len));
}

static const GMarkupParser error_document_parser = {
  .start_element = on_error_start,
  .end_element = on_error_end,
  .text = on_error_text,
};

/* Fills `code` (possibly empty) and `detail` from an error body. */
static void
read_error_body (GString *body, GString *code, GString *detail)
{
  error_document doc = { .code = code, .message = detail };
  GMarkupParseContext *context
      = g_markup_parse_context_new (&error_document_parser, G_MARKUP_IGNORE_QUALIFIED, &doc, NULL);
  gboolean parsed = body->len > 0 && g_utf8_validate (body->str, (gssize)body->len, NULL)
                    && g_markup_parse_context_parse (context, body->str, (gssize)body->len, NULL)
                    && g_markup_parse_context_end_parse (context, NULL);
  g_markup_parse_context_free (context);
  if (parsed && code->len > 0)
    return;

  /* Not S3's XML (a proxy's HTML page, say): its first printable bytes. */
  g_string_truncate (code, 0);
  g_string_truncate (detail, 0);
  for (gsize i = 0; i < body->len && detail->len < 200; i++)
    g_string_append_c (detail, g_ascii_isprint (body->str[i]) ? body->str[i] : ' ');
}

static const char *
status_hint (long status)
{
  switch (status) {
    case 400:
      return "the request was refused as malformed";
    case 403:
      return "access denied: check storage.s3_access_key, storage.s3_secret_key, the region "
             "and the server's clock";
    case 404:
      return "not found";
    case 503:
      return "the server is busy or unavailable";
    default:
      return "the request failed";
  }
}

static void
set_http_error (GError **error, gint error_code, s3_request *request)
{
  g_autoptr (GString) code = g_string_new (NULL);
  g_autoptr (GString) detail = g_string_new (NULL);

  read_error_body (request->error_body, code, detail);
  g_set_error (
      error, G_IO_ERROR, error_code, "S3 %s %s: HTTP %ld %s%s%s%s", request->method,
      request->target, request->status, code->len > 0 ? code->str : "", code->len > 0 ? " (" : "",
      detail->len > 0 ? detail->str : status_hint (request->status), code->len > 0 ? ")" : "");
}

static gboolean
error_code_is (s3_request *request, const char *code)
{
  g_autoptr (GString) found = g_string_new (NULL);
  g_autoptr (GString) detail = g_string_new (NULL);
  read_error_body (request->error_body, found, detail);
  return strcmp (found->str, code) == 0;
}

/* An HTTP 404 about an object: NOT_FOUND, unless it is the bucket that is missing. */
static void
set_object_error (GError **error, s3_request *request)
{
  gboolean missing_object = request->status == 404 && !error_code_is (request, "NoSuchBucket");
  set_http_error (error, missing_object ? G_IO_ERROR_NOT_FOUND : G_IO_ERROR_FAILED, request);
}

static gboolean
hash_file (FILE *file, const char *path, char **sha256_hex, curl_off_t *size, GError **error)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree guchar *buffer = g_malloc (HASH_BUFFER_BYTES);
  curl_off_t total = 0;
  size_t got;

  while ((got = fread (buffer, 1, HASH_BUFFER_BYTES, file)) > 0) {
    g_checksum_update (checksum, buffer, (gssize)got);
    total += (curl_off_t)got;
  }
  if (ferror (file) || fseeko (file, 0, SEEK_SET) != 0) {
    gn_storage_set_errno_error (error, errno, "cannot read", path);
    return FALSE;
  }
  *sha256_hex = g_strdup (g_checksum_get_string (checksum));
  *size = total;
  return TRUE;
}

static gboolean
s3_put_file (gn_storage *storage, const char *key, const char *path, const char *content_type,
             GError **error)
{
  s3_storage *s3 = (s3_storage *)storage;
  g_autofree char *target = g_strconcat (s3->bucket, "/", key, NULL);
  g_autofree char *sha256_hex = NULL;
  curl_off_t size = 0;
  struct stat st;
  s3_request request;
  gboolean ok = FALSE;

  for (const char *c = content_type; *c != '\0'; c++) {
    if (!g_ascii_isprint (*c)) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "the content type of %s is not printable ASCII", key);
      return FALSE;
    }
  }
  CURL *curl = thread_handle (error);
  if (curl == NULL)
    return FALSE;
  FILE *file = fopen (path, "rbe");
  if (file == NULL) {
    gn_storage_set_errno_error (error, errno, "cannot read", path);
    return FALSE;
  }
  if (fstat (fileno (file), &st) != 0 || !S_ISREG (st.st_mode)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot read %s: not a regular file", path);
    fclose (file);
    return FALSE;
  }
  if (!hash_file (file, path, &sha256_hex, &size, error)) {
    fclose (file);
    return FALSE;
  }

  request_init (&request, curl, "PUT", object_url (s3, key), target);
  request.upload = file;
  if (!request_perform (s3, &request, sha256_hex, content_type, size, error))
    goto done;
  if (request.status != 200) {
    set_http_error (error, G_IO_ERROR_FAILED, &request);
    goto done;
  }
  ok = TRUE;
done:
  request_clear (&request);
  fclose (file);
  return ok;
}

static void
stat_from (s3_request *request, curl_off_t size, gn_storage_stat *stat)
{
  if (stat == NULL)
    return;
  stat->size = size;
  stat->mtime_us = request->last_modified >= 0 ? request->last_modified * G_USEC_PER_SEC : 0;
}

static gboolean
s3_get_to_file (gn_storage *storage, const char *key, const char *path, gn_storage_stat *stat,
                GError **error)
{
  s3_storage *s3 = (s3_storage *)storage;
  g_autofree char *target = g_strconcat (s3->bucket, "/", key, NULL);
  g_autofree char *temp_path = NULL;
  s3_request request;

  CURL *curl = thread_handle (error);
  if (curl == NULL)
    return FALSE;
  int fd = gn_storage_temp_open (path, &temp_path, error);
  if (fd < 0)
    return FALSE;

  request_init (&request, curl, "GET", object_url (s3, key), target);
  request.download_fd = fd;
  request.download_path = temp_path;
  if (!request_perform (s3, &request, EMPTY_PAYLOAD_SHA256, NULL, 0, error))
    goto fail;
  if (request.status != 200) {
    set_object_error (error, &request);
    goto fail;
  }
  curl_off_t received = 0;
  curl_easy_getinfo (curl, CURLINFO_SIZE_DOWNLOAD_T, &received);
  stat_from (&request, received, stat);
  request_clear (&request);
  return gn_storage_temp_commit (fd, temp_path, path, error);

fail:
  request_clear (&request);
  gn_storage_temp_discard (fd, temp_path);
  return FALSE;
}

static gboolean
s3_stat (gn_storage *storage, const char *key, gn_storage_stat *stat, GError **error)
{
  s3_storage *s3 = (s3_storage *)storage;
  g_autofree char *target = g_strconcat (s3->bucket, "/", key, NULL);
  s3_request request;
  gboolean ok = FALSE;

  CURL *curl = thread_handle (error);
  if (curl == NULL)
    return FALSE;
  request_init (&request, curl, "HEAD", object_url (s3, key), target);
  if (!request_perform (s3, &request, EMPTY_PAYLOAD_SHA256, NULL, 0, error))
    goto done;
  if (request.status != 200) {
    set_object_error (error, &request);
    goto done;
  }
  stat_from (&request, request.content_length >= 0 ? request.content_length : 0, stat);
  ok = TRUE;
done:
  request_clear (&request);
  return ok;
}

static gboolean
s3_remove (gn_storage *storage, const char *key, GError **error)
{
  s3_storage *s3 = (s3_storage *)storage;
  g_autofree char *target = g_strconcat (s3->bucket, "/", key, NULL);
  s3_request request;
  gboolean ok = FALSE;

  CURL *curl = thread_handle (error);
  if (curl == NULL)
    return FALSE;
  request_init (&request, curl, "DELETE", object_url (s3, key), target);
  if (!request_perform (s3, &request, EMPTY_PAYLOAD_SHA256, NULL, 0, error))
    goto done;
  ok = request.status == 200 || request.status == 204
       || (request.status == 404 && !error_code_is (&request, "NoSuchBucket"));
  if (!ok)
    set_http_error (error, G_IO_ERROR_FAILED, &request);
done:
  request_clear (&request);
  return ok;
}

static gboolean
s3_check (gn_storage *storage, GError **error)
{
  s3_storage *s3 = (s3_storage *)storage;
  s3_request request;
  gboolean ok = FALSE;

  CURL *curl = thread_handle (error);
  if (curl == NULL)
    return FALSE;
  request_init (&request, curl, "HEAD", g_strdup (s3->bucket_url), s3->bucket);
  if (!request_perform (s3, &request, EMPTY_PAYLOAD_SHA256, NULL, 0, error))
    goto done;
  if (request.status == 404)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "S3 bucket %s does not exist at %s",
                 s3->bucket, s3->endpoint);
  else if (request.status != 200)
    set_http_error (error, G_IO_ERROR_FAILED, &request);
  else
    ok = TRUE;
done:
  request_clear (&request);
  return ok;
}

static void
s3_free (gn_storage *storage)
{
  s3_storage *s3 = (s3_storage *)storage;
  g_free (s3->endpoint);
  g_free (s3->bucket);
  g_free (s3->bucket_url);
  g_free (s3->sigv4);
  g_free (s3->access_key);
  if (s3->secret_key != NULL)
    explicit_bzero (s3->secret_key, strlen (s3->secret_key));
  g_free (s3->secret_key);
  g_free (s3->prefix);
  g_free (s3);
}

static const gn_storage_ops s3_ops = {
  .name = "s3",
  .put_file = s3_put_file,
  .get_to_file = s3_get_to_file,
  .stat = s3_stat,
  .remove = s3_remove,
  .local_path = NULL,
  .check = s3_check,
  .free = s3_free,
};

static gboolean
invalid_option (GError **error, const char *name, const char *value, const char *why)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "S3 %s \"%s\" %s", name,
               value != NULL ? value : "", why);
  return FALSE;
}

/* A bucket name as S3 allows it: 3-63 of [a-z0-9.-], starting and ending alphanumeric. */
static gboolean
bucket_is_valid (const char *bucket)
{
  size_t length = strlen (bucket);
  if (length < 3 || length > 63 || !g_ascii_isalnum (bucket[0])
      || !g_ascii_isalnum (bucket[length - 1]))
    return FALSE;
  for (const char *c = bucket; *c != '\0'; c++)
    if (!(g_ascii_islower (*c) || g_ascii_isdigit (*c) || *c == '.' || *c == '-'))
      return FALSE;
  return TRUE;
}

/* A prefix is a folder-like path: printable, no leading '/', no empty, "." or ".." segment
 * (URL parsers resolve those, which would change what is signed). */
static gboolean
prefix_is_valid (const char *prefix)
{
  size_t length = strlen (prefix);
  if (length == 0)
    return TRUE;
  if (length > PREFIX_MAX_BYTES || prefix[0] == '/')
    return FALSE;
  g_auto (GStrv) segments = g_strsplit (prefix, "/", -1);
  guint count = g_strv_length (segments);
  for (guint i = 0; i < count; i++) {
    gboolean last = i + 1 == count;
    if ((segments[i][0] == '\0' && !last) || strcmp (segments[i], ".") == 0
        || strcmp (segments[i], "..") == 0)
      return FALSE;
  }
  for (const char *c = prefix; *c != '\0'; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f)
      return FALSE;
  return TRUE;
}

static gboolean
check_options (const gn_s3_options *options, GError **error)
{
  const char *endpoint = options->endpoint;
  if (endpoint == NULL
      || !(g_str_has_prefix (endpoint, "http://") || g_str_has_prefix (endpoint, "https://")))
    return invalid_option (error, "endpoint", endpoint, "is not an http:// or https:// URL");
  if (strchr (endpoint + strlen ("http://"), '?') != NULL
      || strchr (endpoint + strlen ("http://"), '#') != NULL)
    return invalid_option (error, "endpoint", endpoint, "must not have a query or fragment");
  if (options->bucket == NULL || !bucket_is_valid (options->bucket))
    return invalid_option (error, "bucket", options->bucket,
                           "is not a bucket name (3 to 63 of [a-z0-9.-])");
  if (options->region != NULL && (options->region[0] == '\0' || strchr (options->region, ':')))
    return invalid_option (error, "region", options->region, "is not a region name");
  if (options->access_key == NULL || options->access_key[0] == '\0'
      || strchr (options->access_key, ':') != NULL)
    return invalid_option (error, "access key", options->access_key, "is empty or has a ':'");
  if (options->secret_key == NULL || options->secret_key[0] == '\0') {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "the S3 secret key is empty");
    return FALSE;
  }
  if (options->prefix != NULL && !prefix_is_valid (options->prefix))
    return invalid_option (error, "prefix", options->prefix,
                           "is not a key prefix (printable, no leading '/', no empty, \".\" or "
                           "\"..\" segment, at most 256 bytes)");
  return TRUE;
}

gn_storage *
gn_storage_s3_new (const gn_s3_options *options, GError **error)
{
  static gsize curl_ready = 0;

  g_return_val_if_fail (options != NULL, NULL);
  if (!check_options (options, error))
    return NULL;

  /* curl_global_init is not thread-safe; storages are made at startup, but g_once makes
   * sure of it. */
  if (g_once_init_enter (&curl_ready)) {
    CURLcode code = curl_global_init (CURL_GLOBAL_ALL);
    g_once_init_leave (&curl_ready, code == CURLE_OK ? 1 : 2);
  }
  if (curl_ready != 1) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot initialise libcurl");
    return NULL;
  }

  s3_storage *s3 = g_new0 (s3_storage, 1);
  s3->base.ops = &s3_ops;
  s3->endpoint = g_strdup (options->endpoint);
  while (g_str_has_suffix (s3->endpoint, "/"))
    s3->endpoint[strlen (s3->endpoint) - 1] = '\0';
  s3->bucket = g_strdup (options->bucket);
  s3->bucket_url = g_strconcat (s3->endpoint, "/", s3->bucket, NULL);
  s3->sigv4
      = g_strdup_printf ("aws:amz:%s:s3", options->region != NULL ? options->region : "us-east-1");
  s3->access_key = g_strdup (options->access_key);
  s3->secret_key = g_strdup (options->secret_key);
  GString *prefix = g_string_new (NULL);
  append_encoded_path (prefix, options->prefix != NULL ? options->prefix : "");
  s3->prefix = g_string_free (prefix, FALSE);
  return &s3->base;
}
