/* video.c - videos through GStreamer: check, measure, and take a poster frame.
 *
 * One pipeline does it all: uridecodebin ! videoconvert ! videoflip (video-direction auto,
 * so a phone's rotation tag is honoured) ! videoscale ! RGB with square pixels ! appsink.
 *
 * 1. PAUSED: the demuxer exposes its streams and the first video frame is decoded (the
 *    preroll).  The first raw video pad feeds the chain; audio and any other stream go to a
 *    non-async fakesink, which holds one buffer and so neither stalls nor decodes the rest.
 *    When decodebin has exposed every stream without a decodable video one (an audio-only
 *    MP4/WebM, or a codec no installed decoder takes), the preroll could never finish: the
 *    no-more-pads handler posts a message and the wait ends at once, GN_MEDIA_ERROR_INVALID.
 *    So does any decoder or demuxer error.
 * 2. The duration is queried from the prerolled pipeline: missing -> INVALID, longer than
 *    max_video_ms -> GN_MEDIA_ERROR_TOO_LARGE.
 * 3. A flushing, accurate seek to min(1 s, duration / 2) prerolls again, and the appsink's
 *    preroll sample is the poster: one GOP decoded, never the whole video.  Every wait is
 *    bounded (POSTER_TIMEOUT) and reads the bus.
 * 4. The frame is encoded as a high-quality JPEG master and goes through the photo path
 *    (gn_media_derive_variants) for the medium and thumbnail variants and the blurhash.
 *    The original variant is the uploaded file itself: its type, frame size, and SHA-256.
 *
 * GstDiscoverer is not used: in its synchronous mode an error posted while the pipeline is
 * still starting was sometimes lost (GStreamer 1.22), turning a broken upload into a 10 s
 * timeout; and the poster pipeline knows everything it would have said.
 *
 * Everything is per call, so workers can process in parallel. */
#include "video.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <gst/app/gstappsink.h>
#include <gst/video/video.h>

#include "image.h"

#define POSTER_TIMEOUT (10 * GST_SECOND)
#define POSTER_AT (1 * GST_SECOND)
#define MASTER_QUALITY 92

/* --- the pipeline --------------------------------------------------------------------- */

typedef struct {
  GstElement *pipeline;
  GstElement *video_in; /* videoconvert, where the first decoded video stream goes */
  gint video_linked;    /* atomic: set from a streaming thread */
} poster_pipeline;

static void
on_pad_added (GstElement *decodebin, GstPad *pad, gpointer data)
{
  poster_pipeline *poster = data;
  GstCaps *caps = gst_pad_get_current_caps (pad);
  if (caps == NULL)
    caps = gst_pad_query_caps (pad, NULL);
  const char *media = gst_structure_get_name (gst_caps_get_structure (caps, 0));
  GstPad *video_sink = gst_element_get_static_pad (poster->video_in, "sink");

  if (g_str_has_prefix (media, "video/x-raw") && !gst_pad_is_linked (video_sink)
      && gst_pad_link (pad, video_sink) == GST_PAD_LINK_OK) {
    g_atomic_int_set (&poster->video_linked, 1);
  } else {
    /* Audio or a second video stream: consumed and ignored, so it cannot block the preroll
     * (a fakesink that is not async holds one buffer and lets the state change finish). */
    GstElement *drain = gst_element_factory_make ("fakesink", NULL);
    g_object_set (drain, "sync", FALSE, "async", FALSE, NULL);
    gst_bin_add (GST_BIN (poster->pipeline), drain);
    gst_element_sync_state_with_parent (drain);
    GstPad *drain_pad = gst_element_get_static_pad (drain, "sink");
    gst_pad_link (pad, drain_pad);
    gst_object_unref (drain_pad);
  }
  gst_object_unref (video_sink);
  gst_caps_unref (caps);
}

/* libav decoders default to one frame-decoding thread per core plus one, each holding its
 * own 1080p frames (~150 MB for the first frame of a 1080p H.264 on 2 cores); one poster
 * frame does not need them. */
static void
on_element_added (GstBin *bin, GstBin *sub_bin, GstElement *element, gpointer data)
{
  if (g_object_class_find_property (G_OBJECT_GET_CLASS (element), "max-threads") != NULL)
    g_object_set (element, "max-threads", 1, NULL);
}

/* Every stream is known: without a decodable video stream the preroll would never finish. */
static void
on_no_more_pads (GstElement *decodebin, gpointer data)
{
  poster_pipeline *poster = data;
  if (!g_atomic_int_get (&poster->video_linked))
    gst_element_post_message (
        poster->pipeline,
        gst_message_new_application (GST_OBJECT (decodebin), gst_structure_new_empty ("no-video")));
}

/* Waits for the pending state change to finish; FALSE with the reason. */
static gboolean
wait_for_preroll (GstElement *pipeline, const char *content_type, GError **error)
{
  GstBus *bus = gst_element_get_bus (pipeline);
  gboolean ok = FALSE;
  GstMessage *message = gst_bus_timed_pop_filtered (
      bus, POSTER_TIMEOUT,
      GST_MESSAGE_ASYNC_DONE | GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_APPLICATION);
  if (message == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID,
                 "no frame of the %s file decoded in time", content_type);
  } else if (GST_MESSAGE_TYPE (message) == GST_MESSAGE_ERROR) {
    GError *gst_error = NULL;
    gst_message_parse_error (message, &gst_error, NULL);
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID, "the %s file does not decode: %s",
                 content_type, gst_error->message);
    g_error_free (gst_error);
  } else if (GST_MESSAGE_TYPE (message) == GST_MESSAGE_APPLICATION) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID,
                 "the %s file has no video stream that can be decoded", content_type);
  } else if (GST_MESSAGE_TYPE (message) == GST_MESSAGE_EOS) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID,
                 "the %s file has no decodable frame", content_type);
  } else {
    ok = TRUE;
  }
  if (message != NULL)
    gst_message_unref (message);
  gst_object_unref (bus);
  return ok;
}

/* Packs the sample's RGB rows (GStreamer pads them to 4 bytes) into a VipsImage. */
static VipsImage *
image_of_sample (GstSample *sample)
{
  GstVideoInfo info;
  GstVideoFrame frame;
  if (!gst_video_info_from_caps (&info, gst_sample_get_caps (sample))
      || !gst_video_frame_map (&frame, &info, gst_sample_get_buffer (sample), GST_MAP_READ))
    return NULL;
  int width = GST_VIDEO_FRAME_WIDTH (&frame), height = GST_VIDEO_FRAME_HEIGHT (&frame);
  int stride = GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
  const guint8 *pixels = GST_VIDEO_FRAME_PLANE_DATA (&frame, 0);
  size_t row = (size_t)width * 3;
  guint8 *packed = g_malloc (row * height);
  for (int y = 0; y < height; y++)
    memcpy (packed + row * y, pixels + (size_t)stride * y, row);
  gst_video_frame_unmap (&frame);

  VipsImage *image
      = vips_image_new_from_memory_copy (packed, row * height, width, height, 3, VIPS_FORMAT_UCHAR);
  g_free (packed);
  image->Type = VIPS_INTERPRETATION_sRGB;
  return image;
}

/* Checks the duration and frame size against limits, then returns the poster frame. */
static VipsImage *
measure_and_grab (const char *uri, const char *content_type, const gn_media_limits *limits,
                  int64_t *duration_ms, GError **error)
{
  poster_pipeline poster = { NULL, NULL, 0 };
  GstElement *decode = gst_element_factory_make ("uridecodebin", NULL);
  GstElement *convert = gst_element_factory_make ("videoconvert", NULL);
  GstElement *flip = gst_element_factory_make ("videoflip", NULL);
  GstElement *scale = gst_element_factory_make ("videoscale", NULL);
  GstElement *filter = gst_element_factory_make ("capsfilter", NULL);
  GstElement *sink = gst_element_factory_make ("appsink", NULL);
  VipsImage *image = NULL;

  if (decode == NULL || convert == NULL || flip == NULL || scale == NULL || filter == NULL
      || sink == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED,
                 "a GStreamer element is missing (plugins base and good are needed)");
    GstElement *made[] = { decode, convert, flip, scale, filter, sink };
    for (size_t i = 0; i < G_N_ELEMENTS (made); i++)
      if (made[i] != NULL)
        gst_object_unref (gst_object_ref_sink (made[i]));
    return NULL;
  }

  poster.pipeline = gst_pipeline_new (NULL);
  poster.video_in = convert;
  g_object_set (decode, "uri", uri, NULL);
  gst_util_set_object_arg (G_OBJECT (flip), "video-direction", "auto");
  GstCaps *rgb = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING, "RGB",
                                      "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
  g_object_set (filter, "caps", rgb, NULL);
  gst_caps_unref (rgb);
  g_object_set (sink, "sync", FALSE, "max-buffers", 1, NULL);
  gst_bin_add_many (GST_BIN (poster.pipeline), decode, convert, flip, scale, filter, sink, NULL);
  if (!gst_element_link_many (convert, flip, scale, filter, sink, NULL)) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "cannot link the poster pipeline");
    goto done;
  }
  g_signal_connect (decode, "pad-added", G_CALLBACK (on_pad_added), &poster);
  g_signal_connect (decode, "no-more-pads", G_CALLBACK (on_no_more_pads), &poster);
  g_signal_connect (poster.pipeline, "deep-element-added", G_CALLBACK (on_element_added), NULL);

  GstStateChangeReturn change = gst_element_set_state (poster.pipeline, GST_STATE_PAUSED);
  if (change == GST_STATE_CHANGE_FAILURE) {
    /* The reason is on the bus. */
    if (wait_for_preroll (poster.pipeline, content_type, error))
      g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID, "the %s file does not open",
                   content_type);
    goto done;
  }
  if (change == GST_STATE_CHANGE_ASYNC && !wait_for_preroll (poster.pipeline, content_type, error))
    goto done;

  gint64 duration = 0;
  if (!gst_element_query_duration (poster.pipeline, GST_FORMAT_TIME, &duration) || duration <= 0) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID,
                 "the %s file does not say how long it is", content_type);
    goto done;
  }
  *duration_ms = duration / GST_MSECOND;
  if (*duration_ms > limits->max_video_ms) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_TOO_LARGE,
                 "video is %" G_GINT64_FORMAT " s long; the limit is %" G_GINT64_FORMAT " s",
                 (*duration_ms + 999) / 1000, limits->max_video_ms / 1000);
    goto done;
  }

  GstClockTime position = MIN (POSTER_AT, (GstClockTime)duration / 2);
  if (!gst_element_seek_simple (poster.pipeline, GST_FORMAT_TIME,
                                GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE, position)) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID, "the %s file cannot be seeked",
                 content_type);
    goto done;
  }
  if (!wait_for_preroll (poster.pipeline, content_type, error))
    goto done;
  GstSample *sample = gst_app_sink_try_pull_preroll (GST_APP_SINK (sink), POSTER_TIMEOUT);
  if (sample == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID,
                 "no frame of the %s file could be decoded", content_type);
    goto done;
  }
  image = image_of_sample (sample);
  gst_sample_unref (sample);
  if (image == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "the poster frame cannot be read");
  } else if ((int64_t)image->Xsize * image->Ysize > limits->max_pixels) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_TOO_LARGE,
                 "video frames are %d x %d pixels; the limit is %g megapixels", image->Xsize,
                 image->Ysize, (double)limits->max_pixels / 1e6);
    g_clear_object (&image);
  }

done:
  gst_element_set_state (poster.pipeline, GST_STATE_NULL);
  gst_object_unref (poster.pipeline);
  return image;
}

/* --- the original: the upload itself ---------------------------------------------------- */

static gboolean
describe_upload (const char *input, gn_media_variant *variant, GError **error)
{
  int fd = open (input, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "open %s: %s", input,
                 g_strerror (errno));
    return FALSE;
  }
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree guint8 *chunk = g_malloc (256 * 1024);
  int64_t size = 0;
  for (;;) {
    ssize_t n = read (fd, chunk, 256 * 1024);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "read %s: %s", input,
                   g_strerror (errno));
      close (fd);
      return FALSE;
    }
    if (n == 0)
      break;
    g_checksum_update (checksum, chunk, n);
    size += n;
  }
  close (fd);
  variant->size = size;
  g_strlcpy (variant->sha256, g_checksum_get_string (checksum), sizeof variant->sha256);
  variant->path = g_strdup (input);
  return TRUE;
}

gboolean
gn_media_video_process (const char *input, const gn_media_type *type, const gn_media_limits *limits,
                        const char *out_dir, gn_media_result *result, GError **error)
{
  GError *uri_error = NULL;
  g_autofree char *uri = gst_filename_to_uri (input, &uri_error);
  if (uri == NULL) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "%s", uri_error->message);
    g_error_free (uri_error);
    return FALSE;
  }

  VipsImage *poster
      = measure_and_grab (uri, type->content_type, limits, &result->duration_ms, error);
  if (poster == NULL)
    return FALSE;
  /* The frame as shown: rotation and pixel aspect applied. */
  result->width = poster->Xsize;
  result->height = poster->Ysize;

  void *master = NULL;
  size_t master_len = 0;
  gboolean ok = gn_media_encode_jpeg (poster, MASTER_QUALITY, FALSE, &master, &master_len,
                                      GN_MEDIA_ERROR_FAILED, error);
  g_object_unref (poster);
  if (!ok)
    return FALSE;

  gn_media_variant *original = &result->variants[GN_MEDIA_VARIANT_ORIGINAL];
  g_strlcpy (original->name, "original", sizeof original->name);
  g_strlcpy (original->content_type, type->content_type, sizeof original->content_type);
  original->width = result->width;
  original->height = result->height;
  ok = describe_upload (input, original, error)
       && gn_media_derive_variants (master, master_len, limits, out_dir, result, error);
  g_free (master);
  return ok;
}
