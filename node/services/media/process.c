/* process.c - the entry points of process.h: one-time library set-up, dispatch to the image
 * (image.c) or video (video.c) path, and the promise that a failure leaves nothing behind.
 *
 * Set-up (gn_media_init, idempotent, also done by the first gn_media_process):
 *   libvips  operation cache off (each upload is seen once; the cache would only hold
 *            decoded tiles of files already gone), one worker thread per pipeline
 *            (parallelism comes from the rpc workers, and per-thread buffers stay few),
 *            loaders marked untrusted by libvips blocked (we only call the loader of the
 *            sniffed type anyway), its g_warning()s routed to our log at debug level: they
 *            describe broken uploads, which the caller reports.
 *   GStreamer  gst_init.
 *
 * Layout of out_dir: the image paths write <variant>-<sha256>.jpg files there.  Give each
 * upload its own out_dir: on failure gn_media_process deletes the files it wrote. */
#include "process.h"

#include <string.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <vips/vips.h>

#include "image.h"
#include "log.h"
#include "video.h"

#define VIPS_THREADS 1

G_DEFINE_QUARK (gn - media - error - quark, gn_media_error)

void
gn_media_limits_init (gn_media_limits *limits)
{
  limits->max_pixels = 100 * 1000 * 1000;
  limits->max_video_ms = 120 * 1000;
  limits->original_max_side = 4096;
  limits->medium_side = 1080;
  limits->thumbnail_side = 320;
}

static void
log_vips_message (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  gn_debug ("libvips: %s", message);
}

static gsize init_done;
static char *init_failure; /* why set-up failed, for every later caller */

gboolean
gn_media_init (GError **error)
{
  if (g_once_init_enter (&init_done)) {
    GError *gst_error = NULL;
    if (VIPS_INIT ("generia-node") != 0) {
      init_failure = g_strdup_printf ("libvips: %s", vips_error_buffer ());
      vips_error_clear ();
    } else if (!gst_init_check (NULL, NULL, &gst_error)) {
      init_failure = g_strdup_printf ("GStreamer: %s", gst_error->message);
      g_error_free (gst_error);
    } else {
      vips_cache_set_max (0);
      vips_concurrency_set (VIPS_THREADS);
      vips_block_untrusted_set (TRUE);
      /* With the fatal flag too: under G_DEBUG=fatal-warnings GLib looks for a handler of
       * "fatal warnings", and would otherwise print and abort in the default one. */
      g_log_set_handler ("VIPS",
                         G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO
                             | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
                         log_vips_message, NULL);
    }
    g_once_init_leave (&init_done, 1);
  }
  if (init_failure != NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "media libraries: %s", init_failure);
    return FALSE;
  }
  return TRUE;
}

/* Deletes what a failed run wrote; a video's original is the caller's input, never ours. */
static void
discard_outputs (const char *input, gn_media_result *result)
{
  for (int i = 0; i < GN_MEDIA_VARIANTS; i++) {
    const char *path = result->variants[i].path;
    if (path != NULL && strcmp (path, input) != 0)
      g_unlink (path);
  }
  gn_media_result_clear (result);
}

gboolean
gn_media_process (const char *input, const gn_media_type *type, const gn_media_limits *limits,
                  const char *out_dir, gn_media_result *result, GError **error)
{
  g_return_val_if_fail (input != NULL && type != NULL && limits != NULL, FALSE);
  g_return_val_if_fail (out_dir != NULL && result != NULL, FALSE);
  memset (result, 0, sizeof *result);
  if (!gn_media_init (error))
    return FALSE;
  result->type = *type;
  /* Warnings of earlier, successful runs would otherwise fill libvips' bounded error buffer
   * and crowd out this run's message. */
  vips_error_clear ();

  gboolean ok;
  switch (type->kind) {
    case GN_MEDIA_KIND_IMAGE:
      ok = gn_media_image_process (input, type, limits, out_dir, result, error);
      break;
    case GN_MEDIA_KIND_VIDEO:
      ok = gn_media_video_process (input, type, limits, out_dir, result, error);
      break;
    default:
      g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED,
                   "%s is not a supported image or video type",
                   type->content_type[0] != '\0' ? type->content_type : "this file");
      return FALSE;
  }
  if (!ok)
    discard_outputs (input, result);
  return ok;
}

void
gn_media_result_clear (gn_media_result *result)
{
  for (int i = 0; i < GN_MEDIA_VARIANTS; i++)
    g_clear_pointer (&result->variants[i].path, g_free);
}
