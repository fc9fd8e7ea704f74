/* fuzz-media.h - what the image and video harnesses share: the media pipeline on an upload,
 * gn_media_sniff, then gn_media_process for what sniffs as the harness's kind (other inputs
 * stop after the sniff, as the media service refuses them).
 *
 * Limits are small so that each run stays short; outputs go to a scratch folder and are
 * removed after every run.  Checked: success gives three variants whose files exist, failure
 * an error of the media domain other than GN_MEDIA_ERROR_FAILED (which would mean our side
 * broke).  Include after fuzz.h, in one harness file. */
#pragma once

#include <glib/gstdio.h>

#include "media/process.h"

static char *fuzz_media_dir;
static char *fuzz_media_path;
static gn_media_limits fuzz_media_limits;

/* gn_media_init, the scratch folder and small output sizes; the caller narrows the rest. */
static void
fuzz_media_setup (const char *name)
{
  GError *error = NULL;
  if (!gn_media_init (&error)) {
    g_printerr ("%s\n", error->message);
    abort ();
  }
  g_autofree char *template = g_strdup_printf ("fuzz-%s-XXXXXX", name);
  fuzz_media_dir = g_dir_make_tmp (template, NULL);
  fuzz_media_path = g_build_filename (fuzz_media_dir, "upload", NULL);
  gn_media_limits_init (&fuzz_media_limits);
  fuzz_media_limits.original_max_side = 512;
  fuzz_media_limits.medium_side = 256;
  fuzz_media_limits.thumbnail_side = 64;
}

static void
fuzz_media_run (const uint8_t *data, size_t size, gn_media_kind kind)
{
  gn_media_type type;
  gn_media_result result;
  GError *error = NULL;

  fuzz_write_file (fuzz_media_path, data, size);
  if (!gn_media_sniff (fuzz_media_path, &type, &error)) {
    g_clear_error (&error);
    return;
  }
  if (type.kind != kind)
    return;
  if (gn_media_process (fuzz_media_path, &type, &fuzz_media_limits, fuzz_media_dir, &result,
                        &error)) {
    for (int i = 0; i < GN_MEDIA_VARIANTS; i++) {
      FUZZ_ASSERT (result.variants[i].path != NULL);
      FUZZ_ASSERT (g_file_test (result.variants[i].path, G_FILE_TEST_IS_REGULAR));
      FUZZ_ASSERT (result.variants[i].width > 0 && result.variants[i].height > 0);
      if (strcmp (result.variants[i].path, fuzz_media_path) != 0)
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
}
