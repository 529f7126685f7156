/*
 * hf_export.c - writes a Hugging Face model folder (hf_export.h): config.json, one
 * model.safetensors and the source folder's side files, into a temporary folder that is fsynced
 * and renamed into place.
 * Not here: sharded safetensors (one file holds the small models evlm targets), replacing an
 * existing folder (refused: a rename cannot swap a non-empty folder atomically), GGUF.
 */
#include "io/hf_export.h"
#include "core/file.h"
#include "core/status.h"
#include "io/gguf_names.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

evlm_status evlm_hf_temp_dir(const char *base, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s.tmp.XXXXXX", base);
    if (n < 0 || (size_t)n >= cap) return evlm__fail(EVLM_ERR_ARG, "%s: path too long", base);
    if (!mkdtemp(out))
        return evlm__fail(EVLM_ERR_IO, "%s: cannot create a temporary folder: %s", out,
                          strerror(errno));
    chmod(out, 0755); /* mkdtemp's 0700 is for the name race only: a model folder is readable */
    return EVLM_OK;
}

void evlm_hf_remove_dir(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096 + 256];
            if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) < (int)sizeof p) unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static evlm_status sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return evlm__fail(EVLM_ERR_IO, "%s: fsync: %s", path, strerror(errno));
    return EVLM_OK;
}

static evlm_status copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    EVLM_TRY(evlm_read_file(from, (size_t)1 << 30, &data, &len));
    evlm_status st = evlm_write_file_atomic(to, data, len);
    free(data);
    return st;
}

static evlm_status fill(const evlm_dir *src, const char *tmp, const char *config_json,
                        const evlm_tensor *tensors, size_t n) {
    char path[4096], from[4096];
    EVLM_TRY(evlm_path_join(path, sizeof path, tmp, "config.json"));
    EVLM_TRY(evlm_write_file_atomic(path, config_json, strlen(config_json)));
    for (size_t i = 0; i < evlm_hf_n_side_files; i++) {
        const char *name = evlm_hf_side_files[i];
        if (!strcmp(name, "config.json")) continue;
        EVLM_TRY(evlm_path_join(path, sizeof path, tmp, name));
        if (!src->get) {
            EVLM_TRY(evlm_path_join(from, sizeof from, src->path, name));
            if (!evlm_file_exists(from)) continue;
            EVLM_TRY(copy_file(from, path));
            continue;
        }
        if (!evlm_dir_has(src, name)) continue; /* an embedded file (a GGUF evlm wrote) */
        char *data;
        size_t len;
        EVLM_TRY(evlm_dir_read(src, name, (size_t)1 << 30, &data, &len));
        evlm_status st = evlm_write_file_atomic(path, data, len);
        free(data);
        EVLM_TRY(st);
    }
    EVLM_TRY(evlm_path_join(path, sizeof path, tmp, "model.safetensors"));
    EVLM_TRY(evlm_safetensors_write(path, tensors, n));
    return sync_dir(tmp);
}

evlm_status evlm_hf_export(const char *src_dir, const char *out_dir, const char *config_json,
                           const evlm_tensor *tensors, size_t n) {
    evlm_dir d = evlm_dir_folder(src_dir);
    return evlm_hf_export_from(&d, out_dir, config_json, tensors, n);
}

evlm_status evlm_hf_export_from(const evlm_dir *src, const char *out_dir, const char *config_json,
                                const evlm_tensor *tensors, size_t n) {
    struct stat sb;
    if (lstat(out_dir, &sb) == 0)
        return evlm__fail(EVLM_ERR_ARG,
                          "%s already exists: remove it or choose another output folder", out_dir);
    char tmp[4096];
    EVLM_TRY(evlm_hf_temp_dir(out_dir, tmp, sizeof tmp));
    evlm_status st = fill(src, tmp, config_json, tensors, n);
    if (st == EVLM_OK && rename(tmp, out_dir) != 0)
        st = evlm__fail(EVLM_ERR_IO, "%s: rename from %s: %s", out_dir, tmp, strerror(errno));
    if (st != EVLM_OK) {
        evlm_hf_remove_dir(tmp);
        return st;
    }
    /* the parent folder holds the rename */
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", out_dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        parent[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(parent, sizeof parent, ".");
    return sync_dir(parent);
}
