/* test_core.c - core utilities: half conversions, growable buffers, atomic writes, JSON getters. */
#include "core/buf.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "core/tensor.h"
#include "test.h"

#include <unistd.h>

static void test_half(void) {
    /* every f16 bit pattern round-trips through f32 (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = evlm_f16_to_f32((uint16_t)h);
        uint16_t back = evlm_f32_to_f16(f);
        if (isnan(f) ? !isnan(evlm_f16_to_f32(back)) : back != h) bad++;
    }
    CHECKF(bad == 0, "%d f16 patterns do not round-trip", bad);
    CHECK(evlm_f16_to_f32(0x3c00) == 1.0f);
    CHECK(evlm_f32_to_f16(65520.0f) == 0x7c00);           /* overflow rounds to inf */
    CHECK(evlm_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* tie to even */
    CHECK(evlm_f32_to_f16(5.9604645e-8f) == 0x0001);      /* smallest subnormal */
    CHECK(evlm_bf16_to_f32(evlm_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(evlm_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80); /* tie to even */
    CHECK(evlm_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
}

static void test_buf(void) {
    evlm_str s = {0};
    CHECK_OK(evlm_str_appendz(&s, "ab"));
    CHECK_OK(evlm_str_appendf(&s, "%d-%s", 12, "x"));
    CHECK(s.len == 6 && strcmp(s.data, "ab12-x") == 0);
    evlm_str_free(&s);
    evlm_ids v = {0};
    for (int i = 0; i < 1000; i++) CHECK_OK(evlm_ids_push(&v, i));
    CHECK(v.len == 1000 && v.data[999] == 999);
    evlm_ids_free(&v);
}

static void test_atomic(void) {
    char dir[] = "/tmp/evlm_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    CHECK_OK(evlm_write_file_atomic(path, "hello", 5));
    char *data;
    size_t n;
    CHECK_OK(evlm_read_file(path, 100, &data, &n));
    CHECK(n == 5 && memcmp(data, "hello", 5) == 0);
    free(data);
    /* an aborted writer leaves the old file and no temporary */
    evlm_afile af;
    CHECK_OK(evlm_afile_open(&af, path));
    CHECK_OK(evlm_afile_write(&af, "partial", 7));
    evlm_afile_abort(&af);
    CHECK_OK(evlm_read_file(path, 100, &data, &n));
    CHECK(n == 5);
    free(data);
    CHECK(evlm_read_file(path, 2, &data, &n) == EVLM_ERR_FORMAT); /* size bound */
    CHECK(strstr(evlm_last_error(), "out.bin") != NULL);
    unlink(path);
    CHECK(rmdir(dir) == 0); /* no temporaries left behind */
}

static void test_json(void) {
    cJSON *j;
    const char *txt = "{\"a\": 3, \"b\": 2.5, \"c\": \"s\", \"d\": true, \"e\": null}";
    CHECK_OK(evlm_json_parse("x.json", txt, strlen(txt), &j));
    int64_t a = 0;
    double b = 0;
    const char *c = NULL;
    bool d = false;
    CHECK_OK(evlm_json_int("x.json", j, "a", 0, 10, &a));
    CHECK(a == 3);
    CHECK(evlm_json_int("x.json", j, "a", 4, 10, &a) == EVLM_ERR_FORMAT);
    CHECK(strstr(evlm_last_error(), "\"a\"") && strstr(evlm_last_error(), "x.json"));
    CHECK(evlm_json_int("x.json", j, "b", 0, 10, &a) == EVLM_ERR_FORMAT);
    CHECK_OK(evlm_json_num("x.json", j, "b", &b));
    CHECK(b == 2.5);
    CHECK_OK(evlm_json_str("x.json", j, "c", &c));
    CHECK(c && strcmp(c, "s") == 0);
    CHECK_OK(evlm_json_bool("x.json", j, "d", &d));
    CHECK(d);
    a = 42;
    CHECK_OK(evlm_json_int("x.json", j, "e", 0, 10, &a)); /* null = absent */
    CHECK(a == 42);
    cJSON_Delete(j);
    CHECK(evlm_json_parse("bad.json", "{\"a\": ", 6, &j) == EVLM_ERR_FORMAT);
    CHECK(strstr(evlm_last_error(), "bad.json") != NULL);
}

int main(void) {
    test_half();
    test_buf();
    test_atomic();
    test_json();
    return test_done();
}
