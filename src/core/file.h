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

/* A read-only folder of named files: a directory, or the files a container embeds (a GGUF
 * keeps config.json, tokenizer.json, ... verbatim). Loaders read through it, so a model loads
 * the same way from either. Names are plain file names ("config.json"). */
typedef struct evlm_dir {
    const char *path; /* the folder, or the container file (messages name path/name) */
    /* embedded files: the bytes of name, or EVLM_ERR_IO when absent; NULL for a folder */
    evlm_status (*get)(const void *ctx, const char *name, const char **data, size_t *len);
    const void *ctx;
} evlm_dir;

/* A directory as an evlm_dir (path is borrowed). */
evlm_dir evlm_dir_folder(const char *path);
bool evlm_dir_has(const evlm_dir *d, const char *name);
/* A malloc'd NUL-terminated copy of file name (max_size bounds it); an error naming it. */
evlm_status evlm_dir_read(const evlm_dir *d, const char *name, size_t max_size, char **data,
                          size_t *size);
/* "path/name" for messages (bounded). */
evlm_status evlm_dir_name(const evlm_dir *d, const char *name, char *out, size_t cap);

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
