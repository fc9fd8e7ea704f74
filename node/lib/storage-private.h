/* storage-private.h - what storage-fs.c and storage-s3.c share (not for callers of storage.h).
 *
 * Both backends produce local files the same way: write into a temp file beside the
 * destination, fsync it, rename(2) it over the destination and fsync the folder, so a reader
 * of the destination sees the old file or the whole new one, and a crash or an error leaves no
 * partial file under the destination's name.  Temp files are named ".<name>.tmp-XXXXXX". */
#pragma once

#include <glib.h>

/* Opens a new temp file (0600) beside `dest_path`; the caller owns *temp_path. */
int gn_storage_temp_open (const char *dest_path, char **temp_path, GError **error);
/* fsyncs and closes `fd`, renames `temp_path` to `dest_path` and fsyncs the folder.  On
 * failure the temp file is removed.  Either way `fd` is closed. */
gboolean gn_storage_temp_commit (int fd, const char *temp_path, const char *dest_path,
                                 GError **error);
/* Closes `fd` and removes the temp file (after a failed write). */
void gn_storage_temp_discard (int fd, const char *temp_path);
/* Sets G_IO_ERROR_FAILED with "<what> <path>: <strerror>" (storage.h keeps NOT_FOUND for a
 * missing object, which callers report themselves). */
void gn_storage_set_errno_error (GError **error, int saved_errno, const char *what,
                                 const char *path);
