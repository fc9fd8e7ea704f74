/* video.h - the GStreamer half of the media pipeline (internal; process.h is the interface). */
#pragma once

#include "process.h"

/* Checks the video against limits, grabs the poster frame and fills the result: the original
 * variant is `input` itself, medium and thumbnail are JPEGs of the poster in out_dir. */
gboolean gn_media_video_process (const char *input, const gn_media_type *type,
                                 const gn_media_limits *limits, const char *out_dir,
                                 gn_media_result *result, GError **error);
