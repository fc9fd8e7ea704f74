/* fuzz-video.c - the video half of the media pipeline on an upload (see fuzz-media.h). */
#include "fuzz.h"
#include "fuzz-media.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_media_setup ("video");
  /* Short videos only; a broken file can still hold a run for up to the pipeline's own 10 s
   * preroll timeout, which tools/fuzz's -timeout allows for. */
  fuzz_media_limits.max_video_ms = 3000;
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_media_run (data, size, GN_MEDIA_KIND_VIDEO);
  return 0;
}
