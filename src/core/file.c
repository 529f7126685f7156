/* file.c - mmap, whole-file reads and atomic writes (see file.h). */
#include "core/file.h"
#include "core/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

evlm_status evlm_map_file(const char *path, evlm_map *out) {
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return evlm__fail(EVLM_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return EVLM_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return evlm__fail(EVLM_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    out->data = p;
    out->size = (size_t)st.st_size;
    return EVLM_OK;
}

void evlm_unmap(evlm_map *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

evlm_status evlm_read_file(const char *path, size_t max_size, char **data, size_t *size) {
    *data = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return evlm__fail(EVLM_ERR_IO, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_size) {
        fclose(f);
        return evlm__fail(EVLM_ERR_FORMAT, "%s: file is %lld bytes, more than the %zu allowed",
                          path, (long long)st.st_size, max_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return evlm__fail(EVLM_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    if (size) *size = n;
    return EVLM_OK;
}

bool evlm_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

evlm_status evlm_path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return evlm__fail(EVLM_ERR_ARG, "path too long: %s/%s", dir, name);
    return EVLM_OK;
}

evlm_status evlm_afile_open(evlm_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return evlm__fail(EVLM_ERR_ARG, "path too long: %s", path);
    strcpy(af->path, path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) return evlm__fail(EVLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        unlink(af->tmp);
        return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    }
    return EVLM_OK;
}

evlm_status evlm_afile_write(evlm_afile *af, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, af->f) != n)
        return evlm__fail(EVLM_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    return EVLM_OK;
}

evlm_status evlm_afile_commit(evlm_afile *af) {
    int bad = fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad || rename(af->tmp, af->path) != 0) {
        int e = errno;
        unlink(af->tmp);
        return evlm__fail(EVLM_ERR_IO, "%s: cannot write: %s", af->path, strerror(e));
    }
    return EVLM_OK;
}

void evlm_afile_abort(evlm_afile *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp[0]) unlink(af->tmp);
}

evlm_status evlm_write_file_atomic(const char *path, const void *data, size_t n) {
    evlm_afile af;
    EVLM_TRY(evlm_afile_open(&af, path));
    evlm_status st = evlm_afile_write(&af, data, n);
    if (st != EVLM_OK) {
        evlm_afile_abort(&af);
        return st;
    }
    return evlm_afile_commit(&af);
}

evlm_status evlm_mkdir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return evlm__fail(EVLM_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
    return EVLM_OK;
}

/* ---- folders of named files ---------------------------------------------------------------- */

evlm_dir evlm_dir_folder(const char *path) {
    evlm_dir d = {path, NULL, NULL};
    return d;
}

evlm_status evlm_dir_name(const evlm_dir *d, const char *name, char *out, size_t cap) {
    return evlm_path_join(out, cap, d->path, name);
}

bool evlm_dir_has(const evlm_dir *d, const char *name) {
    if (d->get) {
        const char *data;
        size_t len;
        bool ok = d->get(d->ctx, name, &data, &len) == EVLM_OK;
        evlm__clear_error();
        return ok;
    }
    char path[4096];
    return evlm_path_join(path, sizeof path, d->path, name) == EVLM_OK && evlm_file_exists(path);
}

evlm_status evlm_dir_read(const evlm_dir *d, const char *name, size_t max_size, char **data,
                          size_t *size) {
    char path[4096];
    EVLM_TRY(evlm_path_join(path, sizeof path, d->path, name));
    if (!d->get) return evlm_read_file(path, max_size, data, size);
    const char *src;
    size_t len;
    EVLM_TRY(d->get(d->ctx, name, &src, &len));
    if (len > max_size)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: larger than %zu bytes", path, max_size);
    char *copy = malloc(len + 1);
    if (!copy) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    memcpy(copy, src, len);
    copy[len] = 0;
    *data = copy;
    *size = len;
    return EVLM_OK;
}
