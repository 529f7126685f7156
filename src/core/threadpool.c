/* threadpool.c - persistent pthread pool, spin-then-sleep (see threadpool.h). */
#include "core/threadpool.h"
#include "core/status.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPIN_ITERS 20000

struct evlm_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint generation; /* bumped per job */
    atomic_int pending;     /* workers still running the current job */
    atomic_bool quit;
    evlm_task_fn fn;
    void *arg;
};

typedef struct {
    evlm_pool *pool;
    int ith;
} worker_arg;

static void *worker(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    evlm_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->quit)) {
            if (++spins < SPIN_ITERS) continue;
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->quit)) return NULL;
        seen = gen;
        pool->fn(pool->arg, wa.ith, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

evlm_status evlm_pool_new(int n_threads, evlm_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 512)
        return evlm__fail(EVLM_ERR_ARG, "thread count %d is out of range [1, 512]", n_threads);
    evlm_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!pool->threads) {
        free(pool);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            pool->n = i;
            evlm_pool_free(pool);
            return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        }
        wa->pool = pool;
        wa->ith = i;
        if (pthread_create(&pool->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            pool->n = i;
            evlm_pool_free(pool);
            return evlm__fail(EVLM_ERR_NOMEM, "cannot start thread %d", i);
        }
    }
    *out = pool;
    return EVLM_OK;
}

void evlm_pool_free(evlm_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->quit, true);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool);
}

int evlm_pool_size(const evlm_pool *pool) {
    return pool ? pool->n : 1;
}

void evlm_pool_run(evlm_pool *pool, evlm_task_fn fn, void *arg) {
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->n - 1);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->n);
    /* a worker still busy after a long spin is likely waiting for a core (more threads than
     * cores: several contexts decoding at once): give it ours */
    for (int spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0;)
        if (++spins >= SPIN_ITERS) sched_yield();
}

int evlm_physical_cores(void) {
    /* count distinct (physical id, core id) pairs in /proc/cpuinfo */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int n = 0;
    if (f) {
        char line[256];
        int phys = 0, seen_pairs[1024][2], ns = 0;
        while (fgets(line, sizeof line, f)) {
            int v;
            if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
            if (sscanf(line, "core id : %d", &v) == 1) {
                int dup = 0;
                for (int i = 0; i < ns; i++)
                    if (seen_pairs[i][0] == phys && seen_pairs[i][1] == v) dup = 1;
                if (!dup && ns < 1024) {
                    seen_pairs[ns][0] = phys;
                    seen_pairs[ns][1] = v;
                    ns++;
                }
            }
        }
        fclose(f);
        n = ns;
    }
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    return n;
}
