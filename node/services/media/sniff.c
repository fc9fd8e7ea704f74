/* sniff.c - what an uploaded file is, decided by libmagic from its first bytes.
 *
 * The file's name and the client's Content-Type are never consulted: a text file called
 * x.jpg is text/plain and is refused by name ("text/plain is not a supported image or video
 * type").  libmagic reports a MIME type; the accepted ones are mapped to the type the rest of
 * the pipeline works with:
 *
 *   image/jpeg image/png image/webp image/gif      as they are
 *   image/heic image/heif                          HEIF stills (libmagic 5.44: brand heic/heix
 *                                                  -> image/heic, mif1/heim/heis -> image/heif);
 *                                                  image/avif, image/heic-sequence and
 *                                                  image/heif-sequence are refused
 *   video/mp4                                      ISO BMFF brands isom, iso2-6, mp41, mp42,
 *                                                  avc1, dash
 *   video/3gpp -> video/mp4                        some Android phones label their MP4
 *                                                  recordings 3gp4/3gp5/3gp6; the container is
 *                                                  the same ISO BMFF, and browsers play it when
 *                                                  served as video/mp4 (Firefox does not know
 *                                                  video/3gpp at all).  Whether its video
 *                                                  stream decodes is video.c's check.
 *   video/webm                                     Matroska with the "webm" DocType
 *
 * Refused on purpose: video/quicktime (iPhone .mov: clients convert before upload),
 * video/x-matroska (generic Matroska may carry any codec), video/x-m4v, audio/x-m4a.
 *
 * Only the first SNIFF_BYTES are read: every accepted format identifies itself in its first
 * few hundred bytes, and a bounded read keeps libmagic's work bounded too.  Decompression
 * inside libmagic is off (MAGIC_NO_CHECK_COMPRESS): a gzip bomb is just application/gzip.
 *
 * A magic_t is not thread-safe and loading the database costs a few milliseconds, so each
 * thread opens one on first use and keeps it (GPrivate closes it when the thread ends). */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <magic.h>

#define SNIFF_BYTES (64 * 1024)

static void
close_magic (gpointer cookie)
{
  magic_close (cookie);
}

static GPrivate thread_magic = G_PRIVATE_INIT (close_magic);

static magic_t
magic_for_this_thread (GError **error)
{
  magic_t cookie = g_private_get (&thread_magic);
  if (cookie != NULL)
    return cookie;
  cookie = magic_open (MAGIC_MIME_TYPE | MAGIC_ERROR | MAGIC_NO_CHECK_COMPRESS);
  if (cookie == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "magic_open: %s",
                 g_strerror (errno));
    return NULL;
  }
  if (magic_load (cookie, NULL) != 0) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "magic_load: %s",
                 magic_error (cookie));
    magic_close (cookie);
    return NULL;
  }
  g_private_set (&thread_magic, cookie);
  return cookie;
}

typedef struct {
  const char *reported; /* by libmagic */
  const char *accepted; /* what we call it */
  gn_media_kind kind;
} accepted_type;

static const accepted_type accepted_types[] = {
  { "image/jpeg", "image/jpeg", GN_MEDIA_KIND_IMAGE },
  { "image/png", "image/png", GN_MEDIA_KIND_IMAGE },
  { "image/webp", "image/webp", GN_MEDIA_KIND_IMAGE },
  { "image/gif", "image/gif", GN_MEDIA_KIND_IMAGE },
  { "image/heic", "image/heic", GN_MEDIA_KIND_IMAGE },
  { "image/heif", "image/heif", GN_MEDIA_KIND_IMAGE },
  { "video/mp4", "video/mp4", GN_MEDIA_KIND_VIDEO },
  { "video/3gpp", "video/mp4", GN_MEDIA_KIND_VIDEO },
  { "video/webm", "video/webm", GN_MEDIA_KIND_VIDEO },
};

gboolean
gn_media_sniff (const char *path, gn_media_type *type, GError **error)
{
  g_return_val_if_fail (path != NULL && type != NULL, FALSE);
  memset (type, 0, sizeof *type);

  magic_t cookie = magic_for_this_thread (error);
  if (cookie == NULL)
    return FALSE;

  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "open %s: %s", path,
                 g_strerror (errno));
    return FALSE;
  }
  g_autofree unsigned char *head = g_malloc (SNIFF_BYTES);
  size_t filled = 0;
  while (filled < SNIFF_BYTES) {
    ssize_t n = read (fd, head + filled, SNIFF_BYTES - filled);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "read %s: %s", path,
                   g_strerror (errno));
      close (fd);
      return FALSE;
    }
    if (n == 0)
      break;
    filled += (size_t)n;
  }
  close (fd);

  if (filled == 0) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED,
                 "the file is empty, not an image or video");
    return FALSE;
  }

  /* With MAGIC_ERROR libmagic fails on some malformed headers (a box offset pointing outside
   * the file, found by tests/fuzz/fuzz-sniff): that is the upload's fault, not ours. */
  const char *mime = magic_buffer (cookie, head, filled);
  if (mime == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID,
                 "the file's header is malformed (%s)", magic_error (cookie));
    return FALSE;
  }
  for (size_t i = 0; i < G_N_ELEMENTS (accepted_types); i++) {
    if (strcmp (mime, accepted_types[i].reported) == 0) {
      type->kind = accepted_types[i].kind;
      g_strlcpy (type->content_type, accepted_types[i].accepted, sizeof type->content_type);
      return TRUE;
    }
  }
  g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED,
               "%s is not a supported image or video type", mime);
  return FALSE;
}
