/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The simulated device: a VFIO migration v2 driver model with quirks, a record, and real data fds. */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "sim-stream.h"
#include "sim.h"
#include "util.h"

/* Big enough that a GiB moves in few syscalls, small enough that filling it under the lock stays quick. */
#define SAVER_BUFFER_SIZE (1024u * 1024u)
#define LOADER_BUFFER_SIZE (1024u * 1024u)
#define SOCKET_BUFFER_SIZE (4 * 1024 * 1024)
/* How often an idle pre-copy writer looks for newly dirtied pages. */
#define PRECOPY_IDLE_POLL_MS 10
/* Longer gaps are not worth dirtying for: every page is dirty by then anyway. */
#define DIRTY_ELAPSED_MAX_USEC (UINT64_C(10) * 1000000)
#define STATE_FILE_VERSION 1
#define USEC_PER_SEC UINT64_C(1000000)

typedef struct SimIrqs {
        int *fds;         /* trigger per vector, -1 when none */
        uint8_t *enabled; /* configured; enabled without a trigger only happens by the irq-in-stream quirk */
        uint8_t *pending; /* raised while not running, delivered on the next running state */
} SimIrqs;

typedef struct SimDevice SimDevice;

/* The DMA engine of a saving stream. Everything after the thread's own fields is under SimDevice.lock. */
typedef struct SimSaver {
        SimDevice *sim;
        pthread_t thread;
        bool thread_started;
        int fd;
        int wake_fd;
        atomic_bool cancel;

        bool precopy;
        bool final;
        bool header_done;
        bool trailer_done;
        uint64_t next_page;
        uint64_t dirty_cursor;
        uint8_t *dirty;
        uint64_t n_dirty;
        uint64_t dirty_bytes;
        uint64_t last_dirty_usec;
        uint64_t dirty_budget; /* bytes times microseconds, so slow rates still add up */
        uint64_t dirty_rng;
        uint64_t initial_bytes;
        uint64_t emitted;
        uint64_t sent;
        SimHash hash;
        uint8_t *buf;
        size_t len, pos;
} SimSaver;

/* The DMA engine of a resuming stream; it shares nothing with the device but its flags. */
typedef struct SimLoader {
        pthread_t thread;
        bool thread_started;
        int fd;
        int wake_fd;
        atomic_bool finishing;
        atomic_bool cancel;
        SimParser parser;
        uint64_t bytes;
        int error;
} SimLoader;

struct SimDevice {
        SimConfig config;
        char *record_path;
        char *state_path;
        int record_fd;

        pthread_mutex_t lock;
        MigState state;
        uint8_t regs[SIM_REGISTER_SIZE];
        uint64_t seed;
        uint64_t n_pages;
        uint32_t *gens;
        SimIrqs irqs[_IRQ_INDEX_MAX];
        SimSaver *saver;
        SimLoader *loader;
        struct json_object *record;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void sleep_ms(uint32_t ms) {
        struct timespec ts = {
                .tv_sec = ms / 1000,
                .tv_nsec = (long) (ms % 1000) * 1000000L,
        };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void sim_lock(SimDevice *s) {
        (void) pthread_mutex_lock(&s->lock);
}

static void sim_unlock(SimDevice *s) {
        (void) pthread_mutex_unlock(&s->lock);
}

static void close_and_invalidate(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* ---- configuration ---- */

int sim_config_init(SimConfig *c, const char *name) {
        assert(c);
        assert(name);

        *c = (SimConfig) {
                .vendor_id = 0x1b36,
                .device_id = 0x0101,
                .mig_flags = _MIG_FLAGS_ALL,
                .uapi = 2,
                .state_size = 4096,
                .irq_count = {
                        [IRQ_INDEX_INTX] = 1,
                        [IRQ_INDEX_MSI] = 1,
                        [IRQ_INDEX_MSIX] = 4,
                },
        };
        c->name = strdup(name);
        c->driver = strdup("migd-sim");
        if (!c->name || !c->driver) {
                sim_config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void sim_config_done(SimConfig *c) {
        if (!c)
                return;
        free(c->name);
        free(c->driver);
        free(c->mdev_type);
        *c = (SimConfig) {};
}

static int sim_config_copy(SimConfig *dst, const SimConfig *src) {
        SimConfig c = *src;

        c.name = strdup(src->name);
        c.driver = src->driver ? strdup(src->driver) : NULL;
        c.mdev_type = src->mdev_type ? strdup(src->mdev_type) : NULL;
        if (!c.name || (src->driver && !c.driver) || (src->mdev_type && !c.mdev_type)) {
                sim_config_done(&c);
                return -ENOMEM;
        }
        *dst = c;
        return 0;
}

static const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static int parse_arc(const char *s, size_t len, SimArcQuirk *ret) {
        _cleanup_free_ char *from = NULL, *to = NULL;
        const char *arrow = strstr(s, "->");
        MigState f, t;

        if (!arrow || (size_t) (arrow - s) + 2 > len)
                return -EINVAL;
        from = strndup(s, arrow - s);
        to = strndup(arrow + 2, len - (size_t) (arrow - s) - 2);
        if (!from || !to)
                return -ENOMEM;
        f = mig_state_from_string(from);
        t = mig_state_from_string(to);
        if (f < 0 || t < 0)
                return -EINVAL;
        *ret = (SimArcQuirk) { .from = f, .to = t };
        return 0;
}

static int parse_ms(const char *s, uint32_t *ret) {
        unsigned long long v;
        char *end;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static int parse_quirk_word(SimConfig *c, const char *w) {
        SimArcQuirk q;
        const char *v, *colon;
        int r;

        if (streq(w, "irq-in-stream")) {
                c->irq_in_stream = true;
                return 0;
        }
        if (streq(w, "irq-while-stopped")) {
                c->irq_while_stopped = true;
                return 0;
        }
        v = startswith(w, "fail-arc=");
        if (v) {
                r = parse_arc(v, strlen(v), &q);
                if (r < 0)
                        return r;
                if (c->n_fail_arcs >= SIM_MAX_ARC_QUIRKS)
                        return -E2BIG;
                c->fail_arcs[c->n_fail_arcs++] = q;
                return 0;
        }
        v = startswith(w, "slow-arc=");
        if (v) {
                colon = strrchr(v, ':');
                if (!colon)
                        return -EINVAL;
                r = parse_arc(v, colon - v, &q);
                if (r < 0)
                        return r;
                r = parse_ms(colon + 1, &q.delay_ms);
                if (r < 0)
                        return r;
                if (c->n_slow_arcs >= SIM_MAX_ARC_QUIRKS)
                        return -E2BIG;
                c->slow_arcs[c->n_slow_arcs++] = q;
                return 0;
        }
        return -EINVAL;
}

int sim_config_parse_quirks(SimConfig *c, const char *s, char **ret_bad_word) {
        _cleanup_strv_free_ char **words = NULL;
        SimConfig n;
        int r;

        assert(c);
        assert(s);

        r = strv_split(s, ", \t\n", &words);
        if (r < 0)
                return r;

        /* All or nothing: a bad word late in the list must not leave the earlier ones applied. */
        n = *c;
        for (char **w = words; *w; w++) {
                r = parse_quirk_word(&n, *w);
                if (r == -EINVAL && ret_bad_word) {
                        *ret_bad_word = strdup(*w);
                        if (!*ret_bad_word)
                                return -ENOMEM;
                }
                if (r < 0)
                        return r;
        }
        c->irq_in_stream = n.irq_in_stream;
        c->irq_while_stopped = n.irq_while_stopped;
        memcpy(c->fail_arcs, n.fail_arcs, sizeof(c->fail_arcs));
        c->n_fail_arcs = n.n_fail_arcs;
        memcpy(c->slow_arcs, n.slow_arcs, sizeof(c->slow_arcs));
        c->n_slow_arcs = n.n_slow_arcs;
        return 0;
}

static bool sim_config_valid(const SimConfig *c) {
        if (!c->name || c->name[0] == '\0' || strchr(c->name, '/') || streq(c->name, ".") || streq(c->name, ".."))
                return false;
        if (c->uapi != 1 && c->uapi != 2)
                return false;
        if (!(c->mig_flags & MIG_FLAG_STOP_COPY) || (c->mig_flags & ~(uint32_t) _MIG_FLAGS_ALL))
                return false;
        if (c->state_size > SIM_STATE_SIZE_MAX)
                return false;
        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++)
                if (c->irq_count[i] > SIM_IRQ_VECTORS_MAX)
                        return false;
        return true;
}

/* ---- the record ---- */

static void add_str(struct json_object *o, const char *key, const char *v) {
        if (o)
                json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

static void add_int(struct json_object *o, const char *key, int64_t v) {
        if (o)
                json_object_object_add(o, key, json_object_new_int64(v));
}

static void add_bool(struct json_object *o, const char *key, bool v) {
        if (o)
                json_object_object_add(o, key, json_object_new_boolean(v));
}

static void add_obj(struct json_object *o, const char *key, struct json_object *v) {
        if (o)
                json_object_object_add(o, key, v);
        else
                json_object_put(v);
}

static struct json_object *event_new(SimDevice *s, const char *event) {
        struct json_object *o = json_object_new_object();

        add_int(o, "t_usec", (int64_t) now_usec());
        add_str(o, "event", event);
        add_str(o, "device", s->config.name);
        return o;
}

static void write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        log_debug("sim: cannot append to the record: %m");
                        return;
                }
                p += k;
                n -= (size_t) k;
        }
}

/* Takes o. The line goes out with one write, so a reader never sees half an event of a killed daemon. */
static void event_commit(SimDevice *s, struct json_object *o) {
        if (!o)
                return;
        if (s->record_fd >= 0) {
                _cleanup_free_ char *line = NULL;
                int n;

                n = asprintf(&line, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                if (n > 0)
                        write_all(s->record_fd, line, (size_t) n);
        }
        if (json_object_array_add(s->record, o) < 0)
                json_object_put(o);
}

static struct json_object *vector_ref(IrqIndex i, uint32_t v) {
        struct json_object *o = json_object_new_object();

        add_str(o, "index", irq_index_to_string(i));
        add_int(o, "vector", v);
        return o;
}

static void record_arc(SimDevice *s, const char *event, MigState from, MigState to, int error, const char *reason) {
        struct json_object *o = event_new(s, event);

        add_str(o, "from", mig_state_to_string(from));
        add_str(o, "to", mig_state_to_string(to));
        add_bool(o, "ok", error == 0);
        add_int(o, "errno", -error);
        if (reason)
                add_str(o, "reason", reason);
        add_str(o, "state", mig_state_to_string(s->state));
        event_commit(s, o);
}

static void record_irq(SimDevice *s, const char *event, IrqIndex i, uint32_t v, const char *reason) {
        struct json_object *o = event_new(s, event);

        add_str(o, "index", irq_index_to_string(i));
        add_int(o, "vector", v);
        add_str(o, "state", mig_state_to_string(s->state));
        if (reason)
                add_str(o, "reason", reason);
        event_commit(s, o);
}

/* ---- the state file ---- */

static uint64_t name_seed(const char *name) {
        SimHash h;

        sim_hash_init(&h);
        sim_hash_update(&h, name, strlen(name));
        return sim_hash_final(&h);
}

static int sim_persist(SimDevice *s) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_free_ char *tmp = NULL;
        char hex[SIM_REGISTER_SIZE * 2 + 1], seed[32];
        uint64_t sum = 0, touched = 0;

        if (!s->state_path)
                return 0;

        for (size_t i = 0; i < SIM_REGISTER_SIZE; i++)
                snprintf(hex + 2 * i, 3, "%02x", s->regs[i]);
        snprintf(seed, sizeof(seed), "0x%016" PRIx64, s->seed);
        for (uint64_t p = 0; p < s->n_pages; p++) {
                sum += s->gens[p];
                touched += s->gens[p] != 0;
        }

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        add_int(o, "version", STATE_FILE_VERSION);
        add_str(o, "state", mig_state_to_string(s->state));
        add_str(o, "registers", hex);
        add_str(o, "seed", seed);
        add_int(o, "state_size", (int64_t) s->config.state_size);
        add_int(o, "pages", (int64_t) s->n_pages);
        add_int(o, "generation_sum", (int64_t) sum);
        add_int(o, "pages_dirtied", (int64_t) touched);

        if (asprintf(&tmp, "%s.tmp", s->state_path) < 0)
                return -ENOMEM;
        if (json_object_to_file_ext(tmp, o, JSON_C_TO_STRING_PLAIN) < 0)
                return log_warning_errno(EIO, "sim: cannot write %s", tmp);
        if (rename(tmp, s->state_path) < 0)
                return log_warning_errno(errno, "sim: cannot rename %s: %m", tmp);
        return 0;
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

static int parse_registers(const char *hex, uint8_t regs[static SIM_REGISTER_SIZE]) {
        uint8_t r[SIM_REGISTER_SIZE];

        if (!hex || strlen(hex) != 2 * SIM_REGISTER_SIZE)
                return -EBADMSG;
        for (size_t i = 0; i < SIM_REGISTER_SIZE; i++) {
                int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                r[i] = (uint8_t) (hi << 4 | lo);
        }
        memcpy(regs, r, sizeof(r));
        return 0;
}

/* A real device keeps its state while migd is dead; so does this one. Returns 1 when restored. */
static int sim_load_state_file(SimDevice *s) {
        _cleanup_json_ struct json_object *o = NULL;
        struct json_object *v;
        uint8_t regs[SIM_REGISTER_SIZE];
        unsigned long long seed;
        const char *seed_str;
        MigState state;
        char *end;
        int r;

        if (access(s->state_path, F_OK) < 0)
                return errno == ENOENT ? 0 : -errno;

        o = json_object_from_file(s->state_path);
        if (!o || !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        if (!json_object_object_get_ex(o, "state", &v))
                return -EBADMSG;
        state = mig_state_from_string(json_object_get_string(v));
        if (state < 0)
                return -EBADMSG;
        if (!json_object_object_get_ex(o, "registers", &v))
                return -EBADMSG;
        r = parse_registers(json_object_get_string(v), regs);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(o, "seed", &v))
                return -EBADMSG;
        seed_str = json_object_get_string(v);
        errno = 0;
        seed = seed_str ? strtoull(seed_str, &end, 16) : 0;
        if (!seed_str || errno != 0 || *end != '\0')
                return -EBADMSG;

        s->state = state;
        memcpy(s->regs, regs, sizeof(regs));
        s->seed = seed;
        return 1;
}

/* ---- interrupts ---- */

static int irqs_alloc(SimIrqs *q, uint32_t n) {
        q->fds = malloc((n + 1) * sizeof(int));
        q->enabled = calloc(n + 1, 1);
        q->pending = calloc(n + 1, 1);
        if (!q->fds || !q->enabled || !q->pending)
                return -ENOMEM;
        for (uint32_t v = 0; v <= n; v++)
                q->fds[v] = -1;
        return 0;
}

static void irqs_clear(SimIrqs *q, uint32_t n) {
        if (!q->fds)
                return;
        for (uint32_t v = 0; v < n; v++) {
                close_and_invalidate(&q->fds[v]);
                q->enabled[v] = 0;
                q->pending[v] = 0;
        }
}

static void irqs_free(SimIrqs *q, uint32_t n) {
        irqs_clear(q, n);
        free(q->fds);
        free(q->enabled);
        free(q->pending);
        *q = (SimIrqs) {};
}

static bool irq_valid(SimDevice *s, IrqIndex i, uint32_t v) {
        return i >= 0 && i < _IRQ_INDEX_MAX && v < s->config.irq_count[i];
}

static void irq_deliver(SimDevice *s, IrqIndex i, uint32_t v, bool deferred) {
        SimIrqs *q = &s->irqs[i];
        struct json_object *o;

        if (q->fds[v] < 0) {
                /* Enabled without a trigger: the stream re-applied a configuration whose eventfds stayed behind. */
                record_irq(s, "irq_lost", i, v, q->enabled[v] ? "overwritten_by_stream" : "no_trigger");
                return;
        }
        if (eventfd_write(q->fds[v], 1) < 0) {
                record_irq(s, "irq_lost", i, v, "eventfd_write_failed");
                return;
        }

        o = event_new(s, "irq_delivered");
        add_str(o, "index", irq_index_to_string(i));
        add_int(o, "vector", v);
        add_str(o, "state", mig_state_to_string(s->state));
        add_bool(o, "deferred", deferred);
        event_commit(s, o);
}

static void irqs_flush_pending(SimDevice *s) {
        for (IrqIndex i = 0; i < _IRQ_INDEX_MAX; i++)
                for (uint32_t v = 0; v < s->config.irq_count[i]; v++)
                        if (s->irqs[i].pending[v]) {
                                s->irqs[i].pending[v] = 0;
                                irq_deliver(s, i, v, true);
                        }
}

/* irq-in-stream: the loaded configuration replaces the one set during RESUMING, and its triggers, being fds
 * of the source host, cannot come along. */
static void irqs_apply_stream(SimDevice *s, const SimIrqConfig *c) {
        struct json_object *o = event_new(s, "irqs_overwritten_by_stream");
        struct json_object *lost = json_object_new_array(), *stream = json_object_new_array();

        for (IrqIndex i = 0; i < _IRQ_INDEX_MAX; i++) {
                SimIrqs *q = &s->irqs[i];
                struct json_object *entry = json_object_new_object(), *enabled = json_object_new_array();

                for (uint32_t v = 0; v < s->config.irq_count[i]; v++) {
                        if (q->fds[v] >= 0) {
                                close_and_invalidate(&q->fds[v]);
                                if (lost)
                                        json_object_array_add(lost, vector_ref(i, v));
                        }
                        q->enabled[v] = v < c->count[i] && c->enabled[i][v];
                }
                for (uint32_t v = 0; v < c->count[i]; v++)
                        if (c->enabled[i][v] && enabled)
                                json_object_array_add(enabled, json_object_new_int64(v));
                add_str(entry, "index", irq_index_to_string(i));
                add_int(entry, "count", c->count[i]);
                add_obj(entry, "enabled", enabled);
                if (stream)
                        json_object_array_add(stream, entry);
                else
                        json_object_put(entry);
        }
        add_obj(o, "lost", lost);
        add_obj(o, "stream", stream);
        event_commit(s, o);
}

/* ---- the saving stream ---- */

static void saver_free(SimSaver *w) {
        if (!w)
                return;
        close_and_invalidate(&w->fd);
        close_and_invalidate(&w->wake_fd);
        free(w->dirty);
        free(w->buf);
        free(w);
}

static void saver_freep(SimSaver **w) {
        saver_free(*w);
}

static void saver_emit(SimSaver *w, size_t n) {
        sim_hash_update(&w->hash, w->buf + w->len, n);
        w->len += n;
        w->emitted += n;
}

static void saver_put_state(SimDevice *s, SimSaver *w) {
        sim_stream_put_record(w->buf + w->len, SIM_TAG_REGS, SIM_REGISTER_SIZE, 0, 0);
        memcpy(w->buf + w->len + SIM_RECORD_HEADER_SIZE, s->regs, SIM_REGISTER_SIZE);
        saver_emit(w, SIM_RECORD_HEADER_SIZE + SIM_REGISTER_SIZE);

        if (s->config.irq_in_stream) {
                SimIrqConfig c = {};
                size_t n = sim_irq_config_size(s->config.irq_count);

                for (size_t i = 0; i < _IRQ_INDEX_MAX; i++) {
                        c.count[i] = s->config.irq_count[i];
                        c.enabled[i] = s->irqs[i].enabled;
                }
                sim_stream_put_record(w->buf + w->len, SIM_TAG_IRQS, (uint32_t) n, 0, 0);
                sim_stream_put_irqs(w->buf + w->len + SIM_RECORD_HEADER_SIZE, &c);
                saver_emit(w, SIM_RECORD_HEADER_SIZE + n);
        }
}

static void saver_put_page(SimDevice *s, SimSaver *w, uint64_t index) {
        size_t len = sim_page_length(s->config.state_size, index);

        sim_stream_put_record(w->buf + w->len, SIM_TAG_PAGE, (uint32_t) len, index, s->gens[index]);
        sim_page_fill(s->seed, index, s->gens[index], w->buf + w->len + SIM_RECORD_HEADER_SIZE, len);
        saver_emit(w, SIM_RECORD_HEADER_SIZE + len);
}

static uint64_t saver_take_dirty(SimDevice *s, SimSaver *w) {
        assert(w->n_dirty > 0);

        for (;; w->dirty_cursor++) {
                if (w->dirty_cursor >= s->n_pages)
                        w->dirty_cursor = 0;
                if (w->dirty[w->dirty_cursor])
                        break;
        }
        w->dirty[w->dirty_cursor] = 0;
        w->n_dirty--;
        w->dirty_bytes -= SIM_RECORD_HEADER_SIZE + sim_page_length(s->config.state_size, w->dirty_cursor);
        return w->dirty_cursor++;
}

/* The guest keeps writing while PRE_COPY runs; the clock decides how much it wrote. */
static void saver_advance_dirty(SimDevice *s, SimSaver *w) {
        const uint64_t page_budget = (uint64_t) SIM_PAGE_SIZE * USEC_PER_SEC;
        uint64_t now, elapsed, n;

        if (!w->precopy || w->final || s->config.dirty_rate == 0 || s->n_pages == 0)
                return;

        now = now_usec();
        elapsed = now - w->last_dirty_usec;
        w->last_dirty_usec = now;
        if (elapsed > DIRTY_ELAPSED_MAX_USEC)
                elapsed = DIRTY_ELAPSED_MAX_USEC;
        if (s->config.dirty_rate > UINT64_MAX / DIRTY_ELAPSED_MAX_USEC / 2)
                n = s->n_pages;
        else {
                w->dirty_budget += s->config.dirty_rate * elapsed;
                n = w->dirty_budget / page_budget;
                w->dirty_budget %= page_budget;
        }
        if (n > s->n_pages)
                n = s->n_pages;

        for (uint64_t k = 0; k < n; k++) {
                uint64_t x = w->dirty_rng, p;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w->dirty_rng = x;
                p = x % s->n_pages;

                s->gens[p]++;
                /* A page not sent yet goes out once, with its newest generation. */
                if (p >= w->next_page || w->dirty[p])
                        continue;
                w->dirty[p] = 1;
                w->n_dirty++;
                w->dirty_bytes += SIM_RECORD_HEADER_SIZE + sim_page_length(s->config.state_size, p);
        }
}

/* Fills the buffer with what goes next. False when there is nothing to send now. */
static bool saver_fill(SimDevice *s, SimSaver *w) {
        size_t tail = 2 * SIM_RECORD_HEADER_SIZE + SIM_REGISTER_SIZE +
                      sim_stream_irqs_record_size(s->config.irq_in_stream, s->config.irq_count);

        w->len = w->pos = 0;
        if (!w->header_done) {
                uint32_t flags = (s->config.irq_in_stream ? SIM_STREAM_FLAG_IRQS : 0) |
                                 (w->precopy ? SIM_STREAM_FLAG_PRECOPY : 0);

                sim_stream_put_header(w->buf, flags, s->config.state_size, s->seed);
                saver_emit(w, SIM_HEADER_SIZE);
                saver_put_state(s, w);
                w->header_done = true;
        }
        while (SAVER_BUFFER_SIZE - w->len >= SIM_RECORD_HEADER_SIZE + SIM_PAGE_SIZE) {
                if (w->next_page < s->n_pages)
                        saver_put_page(s, w, w->next_page++);
                else if (w->n_dirty > 0)
                        saver_put_page(s, w, saver_take_dirty(s, w));
                else
                        break;
        }
        if (w->final && !w->trailer_done && w->next_page == s->n_pages && w->n_dirty == 0 &&
            SAVER_BUFFER_SIZE - w->len >= tail) {
                /* The guest ran during pre-copy: what it wrote to registers since the header must win. */
                if (w->precopy)
                        saver_put_state(s, w);
                sim_stream_put_record(w->buf + w->len, SIM_TAG_TRLR, 0, w->emitted, sim_hash_final(&w->hash));
                w->len += SIM_RECORD_HEADER_SIZE;
                w->emitted += SIM_RECORD_HEADER_SIZE;
                w->trailer_done = true;
        }
        return w->len > 0;
}

/* Called with the lock held; sleeps without it. */
static void saver_wait(SimDevice *s, SimSaver *w, bool for_output, int timeout_ms) {
        struct pollfd p[2] = {
                { .fd = w->wake_fd, .events = POLLIN },
                { .fd = w->fd, .events = POLLOUT },
        };
        eventfd_t v;

        sim_unlock(s);
        if (poll(p, for_output ? 2 : 1, timeout_ms) > 0 && (p[0].revents & POLLIN))
                (void) eventfd_read(w->wake_fd, &v);
        sim_lock(s);
}

static void *saver_thread(void *userdata) {
        SimSaver *w = userdata;
        SimDevice *s = w->sim;
        struct json_object *o;

        sim_lock(s);
        while (!atomic_load(&w->cancel)) {
                ssize_t n;

                if (w->pos == w->len) {
                        saver_advance_dirty(s, w);
                        if (!saver_fill(s, w)) {
                                if (w->trailer_done) {
                                        /* EOF tells the reader the stream is whole. */
                                        (void) shutdown(w->fd, SHUT_WR);
                                        o = event_new(s, "save_complete");
                                        add_int(o, "bytes", (int64_t) w->emitted);
                                        add_bool(o, "precopy", w->precopy);
                                        event_commit(s, o);
                                        break;
                                }
                                saver_wait(s, w, false, PRECOPY_IDLE_POLL_MS);
                                continue;
                        }
                }

                /* Non-blocking under the lock, so that sent bytes and the socket queue always agree. */
                n = send(w->fd, w->buf + w->pos, w->len - w->pos, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n >= 0) {
                        w->pos += (size_t) n;
                        w->sent += (uint64_t) n;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN) {
                        saver_wait(s, w, true, -1);
                        continue;
                }
                o = event_new(s, "save_aborted");
                add_int(o, "bytes", (int64_t) w->sent);
                add_int(o, "errno", errno);
                event_commit(s, o);
                break;
        }
        sim_unlock(s);
        return NULL;
}

static void socket_tune(int fd) {
        int size = SOCKET_BUFFER_SIZE;

        /* Best effort: the kernel caps it at its maximum, which only costs speed. */
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static int make_pair(int *ret_device_fd, int *ret_peer_fd, int *ret_wake_fd) {
        _cleanup_close_ int wake = -1;
        int pair[2];

        wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake < 0)
                return -errno;
        /* A stream socket rather than a pipe: a peer that goes away gives EPIPE/EOF, never SIGPIPE. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
                return -errno;
        socket_tune(pair[0]);
        socket_tune(pair[1]);
        *ret_device_fd = pair[0];
        *ret_peer_fd = pair[1];
        *ret_wake_fd = TAKE_FD(wake);
        return 0;
}

static int saver_start(SimDevice *s, bool precopy, int *ret_fd) {
        _cleanup_(saver_freep) SimSaver *w = NULL;
        _cleanup_close_ int peer = -1;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->fd = w->wake_fd = -1;
        w->sim = s;
        w->precopy = precopy;
        w->final = !precopy;
        w->buf = malloc(SAVER_BUFFER_SIZE);
        w->dirty = calloc(s->n_pages + 1, 1);
        if (!w->buf || !w->dirty)
                return -ENOMEM;
        r = make_pair(&w->fd, &peer, &w->wake_fd);
        if (r < 0)
                return r;
        sim_hash_init(&w->hash);
        w->initial_bytes = sim_stream_initial_size(s->config.state_size, s->config.irq_in_stream,
                                                   s->config.irq_count);
        w->last_dirty_usec = now_usec();
        w->dirty_rng = (s->seed ^ w->last_dirty_usec) | 1;

        sim_lock(s);
        assert(!s->saver);
        r = pthread_create(&w->thread, NULL, saver_thread, w);
        if (r != 0) {
                sim_unlock(s);
                return -r;
        }
        w->thread_started = true;
        s->saver = TAKE_PTR(w);
        sim_unlock(s);

        *ret_fd = TAKE_FD(peer);
        return 0;
}

static void saver_finalize(SimDevice *s) {
        sim_lock(s);
        if (s->saver) {
                s->saver->final = true;
                (void) eventfd_write(s->saver->wake_fd, 1);
        }
        sim_unlock(s);
}

/* Must be called without the lock: the thread needs it to notice. */
static void saver_stop(SimDevice *s) {
        SimSaver *w;

        sim_lock(s);
        w = TAKE_PTR(s->saver);
        sim_unlock(s);
        if (!w)
                return;
        atomic_store(&w->cancel, true);
        (void) eventfd_write(w->wake_fd, 1);
        if (w->thread_started)
                (void) pthread_join(w->thread, NULL);
        saver_free(w);
}

/* ---- the resuming stream ---- */

static void loader_free(SimLoader *l) {
        if (!l)
                return;
        close_and_invalidate(&l->fd);
        close_and_invalidate(&l->wake_fd);
        sim_parser_done(&l->parser);
        free(l);
}

static void loader_freep(SimLoader **l) {
        loader_free(*l);
}

static void *loader_thread(void *userdata) {
        SimLoader *l = userdata;
        _cleanup_free_ uint8_t *buf = malloc(LOADER_BUFFER_SIZE);

        if (!buf) {
                l->error = -ENOMEM;
                return NULL;
        }
        while (!atomic_load(&l->cancel)) {
                struct pollfd p[2] = {
                        { .fd = l->fd, .events = POLLIN },
                        { .fd = l->wake_fd, .events = POLLIN },
                };
                ssize_t n;

                n = recv(l->fd, buf, LOADER_BUFFER_SIZE, MSG_DONTWAIT);
                if (n > 0) {
                        sim_parser_feed(&l->parser, buf, (size_t) n);
                        l->bytes += (uint64_t) n;
                        continue;
                }
                if (n == 0)
                        break; /* the writer closed its end: everything it wrote is in */
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN) {
                        l->error = -errno;
                        break;
                }
                /* The caller wrote everything before asking for the arc, so an empty socket now is the end. */
                if (atomic_load(&l->finishing))
                        break;
                (void) poll(p, 2, -1);
        }
        return NULL;
}

static int loader_start(SimDevice *s, int *ret_fd) {
        _cleanup_(loader_freep) SimLoader *l = NULL;
        _cleanup_close_ int peer = -1;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->fd = l->wake_fd = -1;
        r = sim_parser_init(&l->parser, s->config.state_size);
        if (r < 0)
                return r;
        r = make_pair(&l->fd, &peer, &l->wake_fd);
        if (r < 0)
                return r;
        r = pthread_create(&l->thread, NULL, loader_thread, l);
        if (r != 0)
                return -r;
        l->thread_started = true;

        sim_lock(s);
        assert(!s->loader);
        s->loader = TAKE_PTR(l);
        sim_unlock(s);

        *ret_fd = TAKE_FD(peer);
        return 0;
}

/* Drains what was written, stops the thread and hands the loader over; NULL when no stream is open. */
static SimLoader *loader_take(SimDevice *s, bool cancel) {
        SimLoader *l;

        sim_lock(s);
        l = TAKE_PTR(s->loader);
        sim_unlock(s);
        if (!l)
                return NULL;
        atomic_store(cancel ? &l->cancel : &l->finishing, true);
        (void) eventfd_write(l->wake_fd, 1);
        if (l->thread_started)
                (void) pthread_join(l->thread, NULL);
        l->thread_started = false;
        return l;
}

static void loader_stop(SimDevice *s) {
        loader_free(loader_take(s, true));
}

static void sim_apply_load(SimDevice *s, SimLoader *l) {
        SimParser *p = &l->parser;
        struct json_object *o;
        bool irqs = p->have_irqs && s->config.irq_in_stream;

        memcpy(s->regs, p->regs, SIM_REGISTER_SIZE);
        s->seed = p->seed;
        memcpy(s->gens, p->gens, s->n_pages * sizeof(uint32_t));

        o = event_new(s, "load_applied");
        add_int(o, "bytes", (int64_t) l->bytes);
        add_int(o, "page_records", (int64_t) p->n_page_records);
        add_bool(o, "irqs_in_stream", p->have_irqs);
        add_bool(o, "irqs_applied", irqs);
        event_commit(s, o);

        if (irqs)
                irqs_apply_stream(s, &p->irqs);
}

/* RESUMING -> STOP (or v1 RESUMING_RUNNING -> RUNNING): the device takes the data in, or fails with -EIO. */
static int sim_load(SimDevice *s) {
        _cleanup_(loader_freep) SimLoader *l = NULL;
        const char *reason = NULL;
        struct json_object *o;

        l = loader_take(s, false);
        if (!l)
                reason = "no resuming stream";
        else if (l->error < 0)
                reason = "read error";
        else
                (void) sim_parser_finish(&l->parser, &reason);

        sim_lock(s);
        if (reason) {
                o = event_new(s, "load_failed");
                add_int(o, "bytes", l ? (int64_t) l->bytes : 0);
                add_str(o, "reason", reason);
                event_commit(s, o);
        } else
                sim_apply_load(s, l);
        sim_unlock(s);
        return reason ? -EIO : 0;
}

/* ---- the backend ---- */

static SimDevice *sim_from_device(Device *d) {
        assert(d);
        assert(d->backend_data);
        return d->backend_data;
}

static bool sim_arc_is_legal(SimDevice *s, MigState from, MigState to) {
        if (s->config.uapi == 1 &&
            ((from == MIG_STATE_RESUMING && to == MIG_STATE_V1_RESUMING_RUNNING) ||
             (from == MIG_STATE_V1_RESUMING_RUNNING && to == MIG_STATE_RUNNING)))
                return true;
        return mig_arc_is_legal(from, to, s->config.mig_flags);
}

static const SimArcQuirk *find_arc_quirk(const SimArcQuirk *q, unsigned n, MigState from, MigState to) {
        for (unsigned i = 0; i < n; i++)
                if (q[i].from == from && q[i].to == to)
                        return &q[i];
        return NULL;
}

static bool arc_loads(MigState from, MigState to) {
        return (from == MIG_STATE_RESUMING && to == MIG_STATE_STOP) ||
               (from == MIG_STATE_V1_RESUMING_RUNNING && to == MIG_STATE_RUNNING);
}

static int sim_arc_streams(SimDevice *s, MigState from, MigState to, int *ret_fd) {
        if (mig_state_is_saving(to) && !mig_state_is_saving(from))
                return saver_start(s, to != MIG_STATE_STOP_COPY, ret_fd);
        /* PRE_COPY -> PRE_COPY_P2P / STOP_COPY keep the one stream going, as VFIO does. */
        if (mig_state_is_saving(from) && to == MIG_STATE_STOP_COPY)
                saver_finalize(s);
        else if (mig_state_is_saving(from) && !mig_state_is_saving(to))
                saver_stop(s);
        else if (to == MIG_STATE_RESUMING)
                return loader_start(s, ret_fd);
        return 0;
}

static int sim_fail_arc(SimDevice *s, MigState from, MigState to, int error, const char *reason) {
        saver_stop(s);
        loader_stop(s);

        sim_lock(s);
        s->state = MIG_STATE_ERROR;
        record_arc(s, "arc", from, to, error, reason);
        (void) sim_persist(s);
        sim_unlock(s);
        return error;
}

static int sim_set_state(Device *d, MigState to, int *ret_data_fd) {
        SimDevice *s = sim_from_device(d);
        _cleanup_close_ int fd = -1;
        const SimArcQuirk *slow;
        MigState from;
        bool fails;
        int r;

        sim_lock(s);
        from = s->state;
        if (!sim_arc_is_legal(s, from, to)) {
                record_arc(s, "arc_refused", from, to, -EINVAL,
                           from == MIG_STATE_ERROR ? "device in ERROR" : "illegal arc");
                sim_unlock(s);
                return -EINVAL;
        }
        slow = find_arc_quirk(s->config.slow_arcs, s->config.n_slow_arcs, from, to);
        fails = find_arc_quirk(s->config.fail_arcs, s->config.n_fail_arcs, from, to);
        sim_unlock(s);

        if (slow)
                sleep_ms(slow->delay_ms);
        if (fails)
                return sim_fail_arc(s, from, to, -EIO, "injected failure");

        if (arc_loads(from, to)) {
                r = sim_load(s);
                if (r < 0)
                        return sim_fail_arc(s, from, to, r, "load failed");
        } else {
                r = sim_arc_streams(s, from, to, &fd);
                if (r < 0) {
                        /* Out of resources is no device failure: the state stays. */
                        sim_lock(s);
                        record_arc(s, "arc", from, to, r, "cannot set up the data stream");
                        sim_unlock(s);
                        return r;
                }
        }

        sim_lock(s);
        s->state = to;
        record_arc(s, "arc", from, to, 0, NULL);
        if (mig_state_is_running(to) && !mig_state_is_running(from))
                irqs_flush_pending(s);
        (void) sim_persist(s);
        sim_unlock(s);

        if (ret_data_fd)
                *ret_data_fd = TAKE_FD(fd);
        return 0;
}

static int sim_open(Device *d) {
        assert(d);
        return 0;
}

static void sim_free(SimDevice *s) {
        if (!s)
                return;
        saver_stop(s);
        loader_stop(s);
        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++)
                irqs_free(&s->irqs[i], s->config.irq_count[i]);
        free(s->gens);
        json_object_put(s->record);
        close_and_invalidate(&s->record_fd);
        free(s->record_path);
        free(s->state_path);
        sim_config_done(&s->config);
        (void) pthread_mutex_destroy(&s->lock);
        free(s);
}

static void sim_freep(SimDevice **s) {
        sim_free(*s);
}

static void sim_close(Device *d) {
        assert(d);
        sim_free(d->backend_data);
        d->backend_data = NULL;
}

static int sim_get_info(Device *d, DeviceInfo *ret) {
        SimDevice *s = sim_from_device(d);
        DeviceInfo i = {
                .vendor_id = s->config.vendor_id,
                .device_id = s->config.device_id,
                .mig_flags = s->config.mig_flags,
                .uapi = s->config.uapi,
                .state_size = s->config.state_size,
        };

        assert(ret);

        memcpy(i.irq_count, s->config.irq_count, sizeof(i.irq_count));
        i.driver = strdup(s->config.driver ?: "migd-sim");
        i.mdev_type = s->config.mdev_type ? strdup(s->config.mdev_type) : NULL;
        if (!i.driver || (s->config.mdev_type && !i.mdev_type)) {
                device_info_done(&i);
                return -ENOMEM;
        }
        *ret = i;
        return 0;
}

static int sim_get_state(Device *d, MigState *ret) {
        SimDevice *s = sim_from_device(d);

        assert(ret);

        sim_lock(s);
        *ret = s->state;
        sim_unlock(s);
        return 0;
}

static int sim_get_precopy_info(Device *d, int data_fd, uint64_t *ret_initial_bytes, uint64_t *ret_dirty_bytes) {
        SimDevice *s = sim_from_device(d);
        uint64_t read_bytes, initial, dirty, done;
        SimSaver *w;
        int queued, r = 0;

        assert(ret_initial_bytes);
        assert(ret_dirty_bytes);

        sim_lock(s);
        w = s->saver;
        if (s->state != MIG_STATE_PRE_COPY && s->state != MIG_STATE_PRE_COPY_P2P)
                r = -EINVAL;
        else if (!w)
                r = -EBADF; /* the stream's fd died with a previous daemon */
        /* The socket queue tells what the consumer has not read yet; the lock keeps it in step with sent. */
        else if (ioctl(data_fd, FIONREAD, &queued) < 0)
                r = -errno;
        if (r < 0) {
                sim_unlock(s);
                return r;
        }
        saver_advance_dirty(s, w);
        read_bytes = w->sent > (uint64_t) queued ? w->sent - (uint64_t) queued : 0;
        initial = w->initial_bytes > read_bytes ? w->initial_bytes - read_bytes : 0;
        done = read_bytes > w->initial_bytes ? read_bytes : w->initial_bytes;
        dirty = (w->emitted > done ? w->emitted - done : 0) + w->dirty_bytes;
        sim_unlock(s);

        if (initial == 0 && dirty == 0)
                return -ENOMSG;
        *ret_initial_bytes = initial;
        *ret_dirty_bytes = dirty;
        return 0;
}

static int sim_get_data_size(Device *d, uint64_t *ret_bytes) {
        SimDevice *s = sim_from_device(d);

        assert(ret_bytes);

        *ret_bytes = sim_stream_initial_size(s->config.state_size, s->config.irq_in_stream, s->config.irq_count) +
                     SIM_RECORD_HEADER_SIZE;
        return 0;
}

static struct json_object *vector_list(const uint8_t *set, uint32_t start, uint32_t count, bool want) {
        struct json_object *a = json_object_new_array();

        for (uint32_t k = 0; a && k < count; k++)
                if (!!set[k] == want)
                        json_object_array_add(a, json_object_new_int64(start + k));
        return a;
}

static int sim_set_irqs(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds) {
        SimDevice *s = sim_from_device(d);
        _cleanup_free_ int *dups = NULL;
        _cleanup_free_ uint8_t *has = NULL;
        struct json_object *o;
        SimIrqs *q;

        if (index < 0 || index >= _IRQ_INDEX_MAX || count == 0 || start >= s->config.irq_count[index] ||
            count > s->config.irq_count[index] - start)
                return -EINVAL;
        assert(eventfds);

        /* Like the kernel, keep our own references: the caller may close its fds right away. */
        dups = malloc(count * sizeof(int));
        has = calloc(count, 1);
        if (!dups || !has)
                return -ENOMEM;
        for (uint32_t k = 0; k < count; k++) {
                dups[k] = eventfds[k] >= 0 ? fcntl(eventfds[k], F_DUPFD_CLOEXEC, 3) : -1;
                if (eventfds[k] >= 0 && dups[k] < 0) {
                        int r = -errno;

                        while (k > 0)
                                close_and_invalidate(&dups[--k]);
                        return r;
                }
                has[k] = dups[k] >= 0;
        }

        sim_lock(s);
        q = &s->irqs[index];
        for (uint32_t k = 0; k < count; k++) {
                close_and_invalidate(&q->fds[start + k]);
                q->fds[start + k] = dups[k];
                q->enabled[start + k] = has[k];
        }
        o = event_new(s, "set_irqs");
        add_str(o, "index", irq_index_to_string(index));
        add_int(o, "start", start);
        add_int(o, "count", count);
        add_obj(o, "triggers", vector_list(has, start, count, true));
        add_obj(o, "disabled", vector_list(has, start, count, false));
        add_str(o, "state", mig_state_to_string(s->state));
        event_commit(s, o);
        sim_unlock(s);
        return 0;
}

static int sim_disable_irqs(Device *d, IrqIndex index) {
        SimDevice *s = sim_from_device(d);
        _cleanup_free_ uint8_t *had = NULL;
        struct json_object *o;
        uint32_t n;

        if (index < 0 || index >= _IRQ_INDEX_MAX)
                return -EINVAL;
        n = s->config.irq_count[index];
        had = calloc(n + 1, 1);
        if (!had)
                return -ENOMEM;

        sim_lock(s);
        for (uint32_t v = 0; v < n; v++)
                had[v] = s->irqs[index].fds[v] >= 0;
        irqs_clear(&s->irqs[index], n);
        o = event_new(s, "disable_irqs");
        add_str(o, "index", irq_index_to_string(index));
        add_obj(o, "cleared", vector_list(had, 0, n, true));
        add_str(o, "state", mig_state_to_string(s->state));
        event_commit(s, o);
        sim_unlock(s);
        return 0;
}

/* VFIO_DEVICE_RESET: the only way out of ERROR. Streams end and every interrupt is off. */
static int sim_reset(Device *d) {
        SimDevice *s = sim_from_device(d);
        struct json_object *o;

        saver_stop(s);
        loader_stop(s);

        sim_lock(s);
        o = event_new(s, "reset");
        add_str(o, "from", mig_state_to_string(s->state));
        s->state = MIG_STATE_RUNNING;
        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++)
                irqs_clear(&s->irqs[i], s->config.irq_count[i]);
        event_commit(s, o);
        (void) sim_persist(s);
        sim_unlock(s);
        return 0;
}

const BackendOps sim_backend_ops = {
        .name = "sim",
        .open = sim_open,
        .close = sim_close,
        .get_info = sim_get_info,
        .get_state = sim_get_state,
        .set_state = sim_set_state,
        .get_precopy_info = sim_get_precopy_info,
        .get_data_size = sim_get_data_size,
        .set_irqs = sim_set_irqs,
        .disable_irqs = sim_disable_irqs,
        .reset = sim_reset,
};

static int sim_setup_files(SimDevice *s, const char *record_dir) {
        int r;

        if (asprintf(&s->record_path, "%s/%s.record.jsonl", record_dir, s->config.name) < 0) {
                s->record_path = NULL;
                return -ENOMEM;
        }
        if (asprintf(&s->state_path, "%s/%s.state", record_dir, s->config.name) < 0) {
                s->state_path = NULL;
                return -ENOMEM;
        }
        if (mkdir(record_dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        r = sim_load_state_file(s);
        if (r < 0)
                return r;
        s->record_fd = open(s->record_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->record_fd < 0)
                return -errno;
        return r;
}

int sim_device_new(const SimConfig *c, sd_event *event, const char *record_dir, Device **ret) {
        _cleanup_(sim_freep) SimDevice *s = NULL;
        _cleanup_(device_freep) Device *d = NULL;
        struct json_object *o;
        bool restored = false;
        int r;

        assert(c);
        assert(ret);

        if (!sim_config_valid(c))
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->record_fd = -1;
        r = pthread_mutex_init(&s->lock, NULL);
        if (r != 0) {
                free(TAKE_PTR(s));
                return -r;
        }
        r = sim_config_copy(&s->config, c);
        if (r < 0)
                return r;
        s->n_pages = sim_page_count(c->state_size);
        s->gens = calloc(s->n_pages + 1, sizeof(uint32_t));
        s->record = json_object_new_array();
        if (!s->gens || !s->record)
                return -ENOMEM;
        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++) {
                r = irqs_alloc(&s->irqs[i], c->irq_count[i]);
                if (r < 0)
                        return r;
        }
        s->seed = name_seed(c->name);
        s->state = MIG_STATE_RUNNING;

        if (record_dir) {
                r = sim_setup_files(s, record_dir);
                if (r < 0)
                        return r;
                restored = r > 0;
        }

        o = event_new(s, restored ? "restored" : "created");
        add_str(o, "state", mig_state_to_string(s->state));
        add_int(o, "state_size", (int64_t) c->state_size);
        event_commit(s, o);
        r = sim_persist(s);
        if (r < 0)
                return r;

        r = device_new(c->name, &sim_backend_ops, s, event, &d);
        if (r < 0)
                return r;
        TAKE_PTR(s); /* d owns it now; ops->close frees it */
        r = device_open(d);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(d);
        return 0;
}

int sim_device_raise_irq(Device *d, IrqIndex index, uint32_t vector) {
        SimDevice *s = sim_from_device(d);

        if (!irq_valid(s, index, vector))
                return -EINVAL;

        sim_lock(s);
        record_irq(s, "irq_raised", index, vector, NULL);
        if (mig_state_is_running(s->state))
                irq_deliver(s, index, vector, false);
        else if (s->config.irq_while_stopped && s->irqs[index].fds[vector] >= 0) {
                /* The uAPI violation this quirk exists for: migd has to notice it. */
                if (eventfd_write(s->irqs[index].fds[vector], 1) < 0)
                        record_irq(s, "irq_lost", index, vector, "eventfd_write_failed");
                else
                        record_irq(s, "irq_while_stopped", index, vector, NULL);
        } else if (s->config.irq_while_stopped)
                irq_deliver(s, index, vector, false);
        else {
                s->irqs[index].pending[vector] = 1;
                record_irq(s, "irq_pending", index, vector, NULL);
        }
        sim_unlock(s);
        return 0;
}

int sim_device_write_register(Device *d, uint32_t offset, uint8_t value) {
        SimDevice *s = sim_from_device(d);
        struct json_object *o;

        if (offset >= SIM_REGISTER_SIZE)
                return -EINVAL;

        sim_lock(s);
        o = event_new(s, "register_write");
        add_int(o, "offset", offset);
        add_int(o, "value", value);
        add_int(o, "old", s->regs[offset]);
        s->regs[offset] = value;
        event_commit(s, o);
        (void) sim_persist(s);
        sim_unlock(s);
        return 0;
}

int sim_device_read_register(Device *d, uint32_t offset, uint8_t *ret) {
        SimDevice *s = sim_from_device(d);

        assert(ret);

        if (offset >= SIM_REGISTER_SIZE)
                return -EINVAL;
        sim_lock(s);
        *ret = s->regs[offset];
        sim_unlock(s);
        return 0;
}

struct json_object *sim_device_get_record(Device *d) {
        SimDevice *s = sim_from_device(d);
        struct json_object *copy = NULL;

        sim_lock(s);
        if (json_object_deep_copy(s->record, &copy, NULL) < 0)
                copy = NULL;
        sim_unlock(s);
        return copy;
}
