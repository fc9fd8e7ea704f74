/* fuzz-video.c - the video half of the media pipeline on an upload: gn_media_sniff, then
 * gn_media_process for what sniffs as an video (other inputs stop after the sniff, as the
 * media service refuses them).
 *
 * Limits are small so that each run stays short (the pixel limit is checked from the header
 * before decoding, as in production); outputs go to a scratch folder and are removed after
 * every run.  Checked: success gives three variants whose files exist, failure an error of
 * the media domain other than GN_MEDIA_ERROR_FAILED (which would mean our side broke). */
#include "fuzz.h"

#include <glib/gstdio.h>

#include "media/process.h"

static char *dir;
static char *path;
static gn_media_limits limits;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  GError *error = NULL;
  if (!gn_media_init (&error)) {
    g_printerr ("%s\n", error->message);
    abort ();
  }
  dir = g_dir_make_tmp ("fuzz-video-XXXXXX", NULL);
  path = g_build_filename (dir, "upload", NULL);
  gn_media_limits_init (&limits);
  /* Short videos and small frames only; a broken file can still hold a run for up to the
   * pipeline's own 10 s preroll timeout, which tools/fuzz's -timeout allows for. */
  limits.max_video_ms = 3000;
  limits.original_max_side = 512;
  limits.medium_side = 256;
  limits.thumbnail_side = 64;
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  gn_media_type type;
  gn_media_result result;
  GError *error = NULL;

  fuzz_write_file (path, data, size);
  if (!gn_media_sniff (path, &type, &error)) {
    g_clear_error (&error);
    return 0;
  }
  if (type.kind != GN_MEDIA_KIND_VIDEO)
    return 0;
  if (gn_media_process (path, &type, &limits, dir, &result, &error)) {
    for (int i = 0; i < GN_MEDIA_VARIANTS; i++) {
      FUZZ_ASSERT (result.variants[i].path != NULL);
      FUZZ_ASSERT (g_file_test (result.variants[i].path, G_FILE_TEST_IS_REGULAR));
      FUZZ_ASSERT (result.variants[i].width > 0 && result.variants[i].height > 0);
      if (strcmp (result.variants[i].path, path) != 0)
        g_unlink (result.variants[i].path);
    }
    gn_media_result_clear (&result);
  } else {
    FUZZ_ASSERT (error != NULL && error->domain == GN_MEDIA_ERROR);
    if (error->code == GN_MEDIA_ERROR_FAILED)
      g_printerr ("media error: %s\n", error->message);
    FUZZ_ASSERT (error->code != GN_MEDIA_ERROR_FAILED);
    g_error_free (error);
  }
  return 0;
}
