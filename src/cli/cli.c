/* cli.c - argument helpers, file reading / writing and the shared model options (see cli.h). */
#include "cli.h"
#include "evlm_npu.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cli_cmd = "";

_Noreturn void cli_die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "evlm%s%s: ", *cli_cmd ? " " : "", cli_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void cli_check(evlm_status st) {
    if (st != EVLM_OK) cli_die("%s", *evlm_last_error() ? evlm_last_error() : evlm_status_str(st));
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) cli_die("option %s needs a value", argv[*i]);
    return argv[++*i];
}

int cli_int(int argc, char **argv, int *i, int lo, int hi) {
    const char *opt = argv[*i], *v = cli_value(argc, argv, i);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        cli_die("option %s needs an integer in [%d, %d], got '%s'", opt, lo, hi, v);
    return (int)x;
}

bool cli_calib_opt(const char **text, const char **jsonl, int *tokens, int *items, int argc,
                   char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--calib")) {
        const char *v = cli_value(argc, argv, i);
        size_t n = strlen(v);
        if (n > 6 && !strcmp(v + n - 6, ".jsonl"))
            *jsonl = v;
        else
            *text = v;
    } else if (!strcmp(a, "--calib-tokens")) {
        *tokens = cli_int(argc, argv, i, 2, 1 << 24);
    } else if (!strcmp(a, "--calib-items")) {
        *items = cli_int(argc, argv, i, 1, 1 << 20);
    } else {
        return false;
    }
    return true;
}

double cli_double(int argc, char **argv, int *i, double lo, double hi) {
    const char *opt = argv[*i], *v = cli_value(argc, argv, i);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
        cli_die("option %s needs a number in [%g, %g], got '%s'", opt, lo, hi, v);
    return x;
}

char *cli_read_stdin(size_t *len) {
    const size_t max = (size_t)1 << 30;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) cli_die("out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= max) cli_die("standard input is larger than 1 GiB");
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) cli_die("out of memory");
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) cli_die("cannot read standard input");
    buf[n] = 0;
    *len = n;
    return buf;
}

char *cli_read_file(const char *path, size_t max_size, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) cli_die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) cli_die("%s: not a regular file", path);
    if ((unsigned long long)st.st_size > max_size)
        cli_die("%s: file is %lld bytes, more than the %zu allowed", path, (long long)st.st_size,
                max_size);
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) cli_die("%s: out of memory", path);
    if (n && fread(buf, 1, n, f) != n) cli_die("%s: short read", path);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

void cli_write_file_atomic(const char *path, const void *data, size_t n) {
    char tmp[4096 + 16];
    if (strlen(path) >= 4096) cli_die("path too long: %s", path);
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) cli_die("%s: cannot create: %s", path, strerror(errno));
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        cli_die("%s: %s", path, strerror(e));
    }
    if (n && fwrite(data, 1, n, f) != n) {
        int e = errno;
        fclose(f);
        unlink(tmp);
        cli_die("%s: write failed: %s", path, strerror(e));
    }
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        cli_die("%s: cannot write: %s", path, strerror(e));
    }
}

/* --sim DIR: the export whose numerics every context of this command simulates */
static const char *g_sim_dir;

void cli_apply_sim(evlm_context *ctx) {
    if (g_sim_dir) cli_check(evlm_npu_sim(ctx, g_sim_dir));
}

void cli_set_sim(const char *dir) {
    g_sim_dir = dir;
}

evlm_status cli_prompt_new(evlm_model *m, evlm_context *ctx, const char *text, bool add_special,
                           const evlm_image_input *images, int n_images, evlm_prompt **out) {
    if (g_sim_dir && ctx && n_images > 0) /* the images through the export's vision numerics */
        return evlm_npu_sim_prompt_new(ctx, text, add_special, images, n_images, out);
    return evlm_prompt_new(m, text, add_special, images, n_images, out);
}

bool cli_model_opt(cli_model_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--sim"))
        g_sim_dir = o->sim = cli_value(argc, argv, i);
    else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
        o->model = cli_value(argc, argv, i);
    else if (!strcmp(a, "--mmproj"))
        o->mmproj = cli_value(argc, argv, i);
    else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
        o->prompt = cli_value(argc, argv, i);
    else if (!strcmp(a, "--raw"))
        o->raw = true;
    else if (!strcmp(a, "--image")) {
        if (o->n_images >= 16) cli_die("at most 16 images");
        o->images[o->n_images++] = cli_value(argc, argv, i);
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
        o->threads = cli_int(argc, argv, i, 1, 512);
    else if (!strcmp(a, "-c") || !strcmp(a, "--ctx"))
        o->n_ctx = cli_int(argc, argv, i, 1, 1 << 20);
    else if (!strcmp(a, "--kv")) {
        const char *v = cli_value(argc, argv, i);
        if (!strcmp(v, "f32"))
            o->kv = EVLM_KV_F32;
        else if (!strcmp(v, "f16"))
            o->kv = EVLM_KV_F16;
        else if (!strcmp(v, "int8"))
            o->kv = EVLM_KV_INT8;
        else
            cli_die("--kv takes f32, f16 or int8, not '%s'", v);
    } else if (!strcmp(a, "--act")) {
        const char *v = cli_value(argc, argv, i);
        if (!strcmp(v, "int8"))
            o->f32_act = false;
        else if (!strcmp(v, "f32"))
            o->f32_act = true;
        else
            cli_die("--act takes int8 or f32, not '%s'", v);
    } else if (!strcmp(a, "--head")) {
        const char *v = cli_value(argc, argv, i);
        if (!strcmp(v, "int8"))
            o->float_head = false;
        else if (!strcmp(v, "float"))
            o->float_head = true;
        else
            cli_die("--head takes int8 or float, not '%s'", v);
    } else if (!strcmp(a, "--image-splitting")) {
        const char *v = cli_value(argc, argv, i);
        if (!strcmp(v, "on"))
            o->split = EVLM_SPLIT_ON;
        else if (!strcmp(v, "off"))
            o->split = EVLM_SPLIT_OFF;
        else
            cli_die("--image-splitting takes on or off, not '%s'", v);
    } else
        return false;
    return true;
}

bool cli_lookahead_opt(evlm_lookahead_params *la, bool *la_auto, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--prompt-lookup")) {
        la->prompt_lookup = cli_int(argc, argv, i, 0, 64);
        return true;
    }
    if (strcmp(a, "--lookahead")) return false;
    const char *v = cli_value(argc, argv, i);
    if (!strcmp(v, "auto")) {
        *la_auto = true;
        return true;
    }
    int w, n, g;
    char tail;
    if (sscanf(v, "%d,%d,%d%c", &w, &n, &g, &tail) != 3 || w < 0 || w > 64 || n < 2 || n > 16 ||
        g < 0 || g > 64 || (w == 0 && g == 0))
        cli_die("--lookahead needs W,N,G with 0 <= W <= 64, 2 <= N <= 16, 0 <= G <= 64, W or G > 0 "
                "(or 'auto'), got '%s'",
                v);
    la->window = w;
    la->ngram = n;
    la->guesses = g;
    *la_auto = false;
    return true;
}

void cli_lookahead_resolve(evlm_lookahead_params *la, bool la_auto, const evlm_model *m) {
    if (!la_auto) return;
    evlm_lookahead_params a = evlm_lookahead_auto(m);
    la->window = a.window;
    la->ngram = a.ngram;
    la->guesses = a.guesses;
    if (!la->prompt_lookup) la->prompt_lookup = a.prompt_lookup;
}

evlm_context_params cli_context_params(const cli_model_opts *o, int n_ctx) {
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = o->n_ctx ? o->n_ctx : n_ctx;
    cp.kv = o->kv;
    return cp;
}

int cli_lookahead_room(const evlm_lookahead_params *la) {
    if (!la->window && !la->guesses && !la->prompt_lookup) return 0;
    return 1 + (la->window || la->guesses ? (la->ngram - 1) * (la->window + la->guesses) : 0) +
           2 * la->prompt_lookup;
}

evlm_model *cli_load_model(const cli_model_opts *o) {
    if (!o->model) cli_die("no model given (-m DIR)");
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = o->threads;
    mp.f32_act = o->f32_act;
    mp.float_head = o->float_head;
    mp.image_splitting = o->split;
    mp.mmproj = o->mmproj;
    evlm_model *m;
    cli_check(evlm_model_load(o->model, &mp, &m));
    return m;
}

evlm_prompt *cli_prompt(evlm_model *m, const cli_model_opts *o) {
    if (!o->prompt) cli_die("no prompt given (-p TEXT)");
    evlm_image_input imgs[16];
    memset(imgs, 0, sizeof imgs);
    for (int i = 0; i < o->n_images; i++) imgs[i].path = o->images[i];
    evlm_prompt *p;
    evlm_context *sc = NULL; /* --sim with images: a small context carrying the simulation */
    if (g_sim_dir && o->n_images > 0) {
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = cp.n_batch = 16;
        cli_check(evlm_context_new(m, &cp, &sc));
        cli_apply_sim(sc);
    }
    if (o->raw) {
        cli_check(cli_prompt_new(m, sc, o->prompt, true, imgs, o->n_images, &p));
    } else {
        char *text;
        evlm_status st = evlm_chat_prompt(m, o->prompt, o->n_images, &text);
        /* no chat template the library can use: the text can still go in as written */
        if (st == EVLM_ERR_UNSUPPORTED) cli_die("%s; use --raw", evlm_last_error());
        cli_check(st);
        /* the template already holds the special tokens it wants (HF: add_special_tokens=False) */
        cli_check(cli_prompt_new(m, sc, text, false, imgs, o->n_images, &p));
        free(text);
    }
    evlm_context_free(sc);
    return p;
}
