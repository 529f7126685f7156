/*
 * file.h - whole-file reads, read-only mmaps and atomic writes.
 *
 * Atomic writers: evlm_afile_open() creates "PATH.tmp.XXXXXX" in the same folder; commit
 * fsyncs and renames it over PATH; abort (or any failure) unlinks it, so an interrupted
 * writer never leaves a half-written PATH behind.
 */
#ifndef EVLM_CORE_FILE_H
#define EVLM_CORE_FILE_H

#include "evlm.h"

#include <stdio.h>

typedef struct evlm_map {
    void *data;
    size_t size;
} evlm_map;

/* Maps a whole file read-only (an empty file gives data = NULL, size = 0). */
evlm_status evlm_map_file(const char *path, evlm_map *out);
void evlm_unmap(evlm_map *m);

/* Reads a whole file into a malloc'd, NUL-terminated buffer; max_size bounds it. */
evlm_status evlm_read_file(const char *path, size_t max_size, char **data, size_t *size);

bool evlm_file_exists(const char *path);
/* dir + "/" + name into out (bounded); error if it does not fit. */
evlm_status evlm_path_join(char *out, size_t cap, const char *dir, const char *name);

typedef struct evlm_afile {
    FILE *f;
    char path[4096];
    char tmp[4096 + 16];
} evlm_afile;

evlm_status evlm_afile_open(evlm_afile *af, const char *path);
evlm_status evlm_afile_write(evlm_afile *af, const void *data, size_t n);
evlm_status evlm_afile_commit(evlm_afile *af);
void evlm_afile_abort(evlm_afile *af);
/* Writes data to path atomically in one go. */
evlm_status evlm_write_file_atomic(const char *path, const void *data, size_t n);
/* mkdir -p of one level (ok if it exists). */
evlm_status evlm_mkdir(const char *path);

#endif
