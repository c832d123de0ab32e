/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of the sim backend: arcs, data streams over real fds, interrupts, quirks, record and state file. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim-stream.h"
#include "sim.h"

static const uint32_t flag_sets[] = {
        MIG_FLAG_STOP_COPY,
        MIG_FLAG_STOP_COPY | MIG_FLAG_P2P,
        MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY,
        _MIG_FLAGS_ALL,
};

static Device *sim_new_full(const char *name, uint32_t flags, uint64_t state_size, const char *quirks,
                            const char *record_dir) {
        SimConfig c;
        Device *d = NULL;
        char *bad = NULL;

        g_assert_cmpint(sim_config_init(&c, name), ==, 0);
        c.mig_flags = flags;
        c.state_size = state_size;
        if (quirks)
                g_assert_cmpint(sim_config_parse_quirks(&c, quirks, &bad), ==, 0);
        g_assert_null(bad);
        g_assert_cmpint(sim_device_new(&c, NULL, record_dir, &d), ==, 0);
        sim_config_done(&c);
        g_assert_nonnull(d);
        return d;
}

static Device *sim_new(const char *name, uint32_t flags, uint64_t state_size, const char *quirks) {
        return sim_new_full(name, flags, state_size, quirks, NULL);
}

static MigState backend_state(Device *d) {
        MigState s = _MIG_STATE_INVALID;

        g_assert_cmpint(d->ops->get_state(d, &s), ==, 0);
        return s;
}

static void walk(Device *d, MigState target) {
        int fd = -1;

        g_assert_cmpint(device_walk_to(d, target, &fd), ==, 0);
        g_assert_cmpint(backend_state(d), ==, target);
        if (fd >= 0)
                close(fd);
}

/* Reads until EOF, as the consumer of a saving data fd does. */
static GByteArray *read_stream(int fd) {
        GByteArray *a = g_byte_array_new();
        guint8 *buf = g_malloc(1 << 20);

        for (;;) {
                ssize_t n = read(fd, buf, 1 << 20);

                if (n < 0 && errno == EINTR)
                        continue;
                g_assert_cmpint(n, >=, 0);
                if (n == 0)
                        break;
                g_byte_array_append(a, buf, (guint) n);
        }
        g_free(buf);
        return a;
}

static void read_exact(int fd, GByteArray *a, size_t n) {
        guint8 *buf = g_malloc(n + 1);
        size_t have = 0;

        while (have < n) {
                ssize_t k = read(fd, buf + have, n - have);

                if (k < 0 && errno == EINTR)
                        continue;
                g_assert_cmpint(k, >, 0);
                have += (size_t) k;
        }
        g_byte_array_append(a, buf, (guint) n);
        g_free(buf);
}

static void write_stream(int fd, const guint8 *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                g_assert_cmpint(k, >, 0);
                p += k;
                n -= (size_t) k;
        }
}

/* The source side of a stop-copy migration: RUNNING ... STOP -> STOP_COPY, the whole stream, -> STOP. */
static GByteArray *save(Device *src) {
        GByteArray *a;
        int fd = -1;

        walk(src, MIG_STATE_STOP);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP_COPY, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        a = read_stream(fd);
        close(fd);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP, NULL), ==, 0);
        return a;
}

static int begin_resume(Device *dst) {
        int fd = -1;

        walk(dst, MIG_STATE_STOP);
        g_assert_cmpint(device_set_state(dst, MIG_STATE_RESUMING, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        return fd;
}

/* The destination side: RESUMING, write everything, then RESUMING -> STOP; returns that arc's result. */
static int load(Device *dst, const guint8 *p, size_t n, bool close_first) {
        int fd = begin_resume(dst), r;

        write_stream(fd, p, n);
        if (close_first)
                close(fd);
        r = device_set_state(dst, MIG_STATE_STOP, NULL);
        if (!close_first)
                close(fd);
        return r;
}

static struct json_object *last_event(Device *d, const char *event, struct json_object **ret_record) {
        struct json_object *rec = sim_device_get_record(d), *found = NULL;

        g_assert_nonnull(rec);
        for (size_t i = 0; i < json_object_array_length(rec); i++) {
                struct json_object *o = json_object_array_get_idx(rec, i), *e;

                g_assert_true(json_object_object_get_ex(o, "event", &e));
                if (g_str_equal(json_object_get_string(e), event))
                        found = o;
        }
        *ret_record = rec;
        return found;
}

static unsigned count_events(Device *d, const char *event, const char *reason) {
        struct json_object *rec = sim_device_get_record(d), *e, *r;
        unsigned n = 0;

        for (size_t i = 0; i < json_object_array_length(rec); i++) {
                struct json_object *o = json_object_array_get_idx(rec, i);

                if (!json_object_object_get_ex(o, "event", &e) || !g_str_equal(json_object_get_string(e), event))
                        continue;
                if (reason && (!json_object_object_get_ex(o, "reason", &r) ||
                               !g_str_equal(json_object_get_string(r), reason)))
                        continue;
                n++;
        }
        json_object_put(rec);
        return n;
}

static const char *get_str(struct json_object *o, const char *key) {
        struct json_object *v;

        g_assert_true(json_object_object_get_ex(o, key, &v));
        return json_object_get_string(v);
}

static int64_t get_int(struct json_object *o, const char *key) {
        struct json_object *v;

        g_assert_true(json_object_object_get_ex(o, key, &v));
        return json_object_get_int64(v);
}

/* Eventfd count: 0 when it did not fire. */
static uint64_t efd_take(int fd) {
        eventfd_t v = 0;

        if (eventfd_read(fd, &v) < 0) {
                g_assert_cmpint(errno, ==, EAGAIN);
                return 0;
        }
        return v;
}

static void test_config_defaults(void) {
        DeviceInfo info = {};
        SimConfig c;
        Device *d;

        g_assert_cmpint(sim_config_init(&c, "dflt"), ==, 0);
        g_assert_cmpstr(c.name, ==, "dflt");
        g_assert_cmpstr(c.driver, ==, "migd-sim");
        g_assert_cmphex(c.vendor_id, ==, 0x1b36);
        g_assert_cmphex(c.device_id, ==, 0x0101);
        g_assert_null(c.mdev_type);
        g_assert_cmphex(c.mig_flags, ==, _MIG_FLAGS_ALL);
        g_assert_cmpuint(c.uapi, ==, 2);
        g_assert_cmpuint(c.state_size, ==, 4096);
        g_assert_cmpuint(c.dirty_rate, ==, 0);
        g_assert_cmpuint(c.irq_count[IRQ_INDEX_INTX], ==, 1);
        g_assert_cmpuint(c.irq_count[IRQ_INDEX_MSI], ==, 1);
        g_assert_cmpuint(c.irq_count[IRQ_INDEX_MSIX], ==, 4);
        g_assert_false(c.irq_in_stream);
        g_assert_false(c.irq_while_stopped);
        g_assert_cmpuint(c.n_fail_arcs, ==, 0);
        g_assert_cmpuint(c.n_slow_arcs, ==, 0);
        c.mdev_type = g_strdup("mtty-2");

        g_assert_cmpint(sim_device_new(&c, NULL, NULL, &d), ==, 0);
        g_assert_cmpint(d->ops->get_info(d, &info), ==, 0);
        g_assert_cmpstr(info.driver, ==, "migd-sim");
        g_assert_cmpstr(info.mdev_type, ==, "mtty-2");
        g_assert_cmphex(info.vendor_id, ==, 0x1b36);
        g_assert_cmphex(info.device_id, ==, 0x0101);
        g_assert_cmphex(info.mig_flags, ==, _MIG_FLAGS_ALL);
        g_assert_cmpuint(info.uapi, ==, 2);
        g_assert_cmpuint(info.irq_count[IRQ_INDEX_MSIX], ==, 4);
        g_assert_cmpuint(info.state_size, ==, 4096);
        device_info_done(&info);

        /* A freshly opened device runs and has no interrupt configured. */
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_RUNNING);
        g_assert_cmpint(d->state, ==, MIG_STATE_RUNNING);
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 0), ==, 0);
        g_assert_cmpuint(count_events(d, "irq_lost", "no_trigger"), ==, 1);
        device_free(d);
        sim_config_done(&c);
}

static void test_config_invalid(void) {
        SimConfig c;
        Device *d = NULL;

        g_assert_cmpint(sim_config_init(&c, "a/b"), ==, 0);
        g_assert_cmpint(sim_device_new(&c, NULL, NULL, &d), ==, -EINVAL);
        free(c.name);
        c.name = g_strdup("ok");
        c.mig_flags = MIG_FLAG_P2P;
        g_assert_cmpint(sim_device_new(&c, NULL, NULL, &d), ==, -EINVAL);
        c.mig_flags = MIG_FLAG_STOP_COPY;
        c.uapi = 3;
        g_assert_cmpint(sim_device_new(&c, NULL, NULL, &d), ==, -EINVAL);
        g_assert_null(d);
        sim_config_done(&c);
}

static void test_quirks_parse(void) {
        SimConfig c;
        char *bad = NULL;
        static const char *const bad_words[] = {
                "bogus",
                "fail-arc=RUNNING->NOPE",
                "fail-arc=RUNNING",
                "slow-arc=STOP->RUNNING",
                "slow-arc=STOP->RUNNING:abc",
                "slow-arc=STOP->RUNNING:-5",
                "slow-arc=STOP->RUNNING:99999999999",
                "irq-in-streams",
        };

        g_assert_cmpint(sim_config_init(&c, "q"), ==, 0);
        g_assert_cmpint(sim_config_parse_quirks(&c, "", &bad), ==, 0);
        g_assert_cmpint(sim_config_parse_quirks(&c,
                                                "irq-in-stream,irq-while-stopped,fail-arc=RESUMING->STOP,"
                                                "slow-arc=stop->running:50",
                                                &bad),
                        ==, 0);
        g_assert_null(bad);
        g_assert_true(c.irq_in_stream);
        g_assert_true(c.irq_while_stopped);
        g_assert_cmpuint(c.n_fail_arcs, ==, 1);
        g_assert_cmpint(c.fail_arcs[0].from, ==, MIG_STATE_RESUMING);
        g_assert_cmpint(c.fail_arcs[0].to, ==, MIG_STATE_STOP);
        g_assert_cmpuint(c.n_slow_arcs, ==, 1);
        g_assert_cmpint(c.slow_arcs[0].from, ==, MIG_STATE_STOP);
        g_assert_cmpint(c.slow_arcs[0].to, ==, MIG_STATE_RUNNING);
        g_assert_cmpuint(c.slow_arcs[0].delay_ms, ==, 50);

        for (size_t i = 0; i < G_N_ELEMENTS(bad_words); i++) {
                g_autofree char *s = g_strdup_printf("irq-in-stream,fail-arc=STOP->STOP_COPY,%s", bad_words[i]);

                g_assert_cmpint(sim_config_parse_quirks(&c, s, &bad), ==, -EINVAL);
                g_assert_cmpstr(bad, ==, bad_words[i]);
                g_clear_pointer(&bad, free);
                /* Nothing of a rejected list is applied. */
                g_assert_cmpuint(c.n_fail_arcs, ==, 1);
        }
        g_assert_cmpint(sim_config_parse_quirks(&c, "bogus", NULL), ==, -EINVAL);
        sim_config_done(&c);
}

/* A valid stream for a device of state_size 0, made by a second sim device. */
static GByteArray *empty_stream(void) {
        Device *src = sim_new("feeder", MIG_FLAG_STOP_COPY, 0, NULL);
        GByteArray *a = save(src);

        device_free(src);
        return a;
}

static void test_arcs_all_pairs(void) {
        GByteArray *stream = empty_stream();

        for (size_t f = 0; f < G_N_ELEMENTS(flag_sets); f++)
                for (MigState from = MIG_STATE_STOP; from < _MIG_STATE_V2_MAX; from++) {
                        if (!mig_state_supported(from, flag_sets[f]))
                                continue;
                        for (MigState to = 0; to < _MIG_STATE_MAX; to++) {
                                bool legal = mig_arc_is_legal(from, to, flag_sets[f]);
                                Device *d = sim_new("arcs", flag_sets[f], 0, NULL);
                                int fd = -1, r;

                                g_assert_cmpint(device_walk_to(d, from, &fd), ==, 0);
                                if (from == MIG_STATE_RESUMING)
                                        write_stream(fd, stream->data, stream->len);
                                r = device_set_state(d, to, NULL);
                                if (legal) {
                                        g_assert_cmpint(r, ==, 0);
                                        g_assert_cmpint(backend_state(d), ==, to);
                                } else {
                                        g_assert_cmpint(r, ==, -EINVAL);
                                        g_assert_cmpint(backend_state(d), ==, from);
                                        g_assert_cmpint(d->state, ==, from);
                                        g_assert_cmpuint(count_events(d, "arc_refused", "illegal arc"), ==, 1);
                                }
                                if (fd >= 0)
                                        close(fd);
                                device_free(d);
                        }
                }
        g_byte_array_unref(stream);
}

static int try_arc(uint32_t flags, MigState from, MigState to) {
        Device *d = sim_new("spot", flags, 0, NULL);
        int r;

        walk(d, from);
        r = device_set_state(d, to, NULL);
        device_free(d);
        return r;
}

static void test_arcs_spot(void) {
        for (size_t f = 0; f < G_N_ELEMENTS(flag_sets); f++) {
                g_assert_cmpint(try_arc(flag_sets[f], MIG_STATE_RUNNING, MIG_STATE_RESUMING), ==, -EINVAL);
                g_assert_cmpint(try_arc(flag_sets[f], MIG_STATE_RUNNING, MIG_STATE_STOP_COPY), ==, -EINVAL);
                g_assert_cmpint(try_arc(flag_sets[f], MIG_STATE_STOP, MIG_STATE_V1_RESUMING_RUNNING), ==, -EINVAL);
                g_assert_cmpint(try_arc(flag_sets[f], MIG_STATE_RUNNING, MIG_STATE_ERROR), ==, -EINVAL);
        }
        g_assert_cmpint(try_arc(MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, MIG_STATE_RUNNING, MIG_STATE_STOP), ==, -EINVAL);
        g_assert_cmpint(try_arc(_MIG_FLAGS_ALL, MIG_STATE_RUNNING, MIG_STATE_STOP), ==, -EINVAL);
        g_assert_cmpint(try_arc(MIG_FLAG_STOP_COPY, MIG_STATE_RUNNING, MIG_STATE_STOP), ==, 0);
        g_assert_cmpint(try_arc(MIG_FLAG_STOP_COPY, MIG_STATE_STOP, MIG_STATE_RUNNING), ==, 0);
        g_assert_cmpint(try_arc(MIG_FLAG_STOP_COPY, MIG_STATE_RUNNING, MIG_STATE_RUNNING_P2P), ==, -EINVAL);
        g_assert_cmpint(try_arc(MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY, MIG_STATE_PRE_COPY, MIG_STATE_STOP_COPY),
                        ==, 0);
        g_assert_cmpint(try_arc(_MIG_FLAGS_ALL, MIG_STATE_PRE_COPY, MIG_STATE_STOP_COPY), ==, -EINVAL);
        g_assert_cmpint(try_arc(_MIG_FLAGS_ALL, MIG_STATE_PRE_COPY_P2P, MIG_STATE_STOP_COPY), ==, 0);
        g_assert_cmpint(try_arc(_MIG_FLAGS_ALL, MIG_STATE_STOP_COPY, MIG_STATE_PRE_COPY), ==, -EINVAL);
        g_assert_cmpint(try_arc(_MIG_FLAGS_ALL, MIG_STATE_STOP, MIG_STATE_STOP), ==, -EINVAL);
}

static void test_arcs_v1(void) {
        GByteArray *stream = empty_stream();
        SimConfig c;
        Device *d, *v2;
        int fd;

        g_assert_cmpint(sim_config_init(&c, "v1"), ==, 0);
        c.uapi = 1;
        c.mig_flags = MIG_FLAG_STOP_COPY;
        c.state_size = 0;
        g_assert_cmpint(sim_device_new(&c, NULL, NULL, &d), ==, 0);
        sim_config_done(&c);
        g_assert_cmpuint(d->info.uapi, ==, 1);

        fd = begin_resume(d);
        g_assert_cmpint(sim_device_write_register(d, 3, 0x77), ==, 0);
        /* Post-copy: the device runs while the data still arrives. */
        g_assert_cmpint(device_set_state(d, MIG_STATE_V1_RESUMING_RUNNING, NULL), ==, 0);
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_V1_RESUMING_RUNNING);
        g_assert_cmpint(device_set_state(d, MIG_STATE_STOP, NULL), ==, -EINVAL);
        write_stream(fd, stream->data, stream->len);
        close(fd);
        g_assert_cmpint(device_set_state(d, MIG_STATE_RUNNING, NULL), ==, 0);
        g_assert_cmpuint(count_events(d, "load_applied", NULL), ==, 1);
        device_free(d);

        v2 = sim_new("v2", MIG_FLAG_STOP_COPY, 0, NULL);
        fd = begin_resume(v2);
        g_assert_cmpint(device_set_state(v2, MIG_STATE_V1_RESUMING_RUNNING, NULL), ==, -EINVAL);
        g_assert_cmpint(backend_state(v2), ==, MIG_STATE_RESUMING);
        close(fd);
        device_free(v2);
        g_byte_array_unref(stream);
}

static void test_fail_arc(void) {
        Device *d = sim_new("fail", _MIG_FLAGS_ALL, 4096, "fail-arc=STOP->STOP_COPY");
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct json_object *rec, *o;
        int fd = -1;

        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 0, 1, &efd), ==, 0);
        walk(d, MIG_STATE_STOP);
        g_assert_cmpint(device_set_state(d, MIG_STATE_STOP_COPY, &fd), ==, -EIO);
        g_assert_cmpint(fd, ==, -1);
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_ERROR);
        g_assert_cmpint(d->state, ==, MIG_STATE_ERROR);
        o = last_event(d, "arc", &rec);
        g_assert_cmpstr(get_str(o, "from"), ==, "STOP");
        g_assert_cmpstr(get_str(o, "to"), ==, "STOP_COPY");
        g_assert_cmpint(get_int(o, "errno"), ==, EIO);
        g_assert_cmpstr(get_str(o, "state"), ==, "ERROR");
        json_object_put(rec);

        for (MigState to = 0; to < _MIG_STATE_MAX; to++) {
                g_assert_cmpint(device_set_state(d, to, NULL), ==, -EINVAL);
                g_assert_cmpint(backend_state(d), ==, MIG_STATE_ERROR);
        }
        g_assert_cmpuint(count_events(d, "arc_refused", "device in ERROR"), ==, _MIG_STATE_MAX);

        g_assert_cmpint(d->ops->reset(d), ==, 0);
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_RUNNING);
        g_assert_cmpint(device_refresh_state(d), ==, 0);
        /* Reset turned every interrupt off. */
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 0), ==, 0);
        g_assert_cmpuint(efd_take(efd), ==, 0);
        g_assert_cmpuint(count_events(d, "irq_lost", "no_trigger"), ==, 1);
        g_assert_cmpuint(count_events(d, "reset", NULL), ==, 1);
        /* And the device works again, except for the injected arc. */
        walk(d, MIG_STATE_STOP);
        walk(d, MIG_STATE_RUNNING);
        close(efd);
        device_free(d);
}

static void roundtrip(uint64_t state_size) {
        Device *src = sim_new("src", _MIG_FLAGS_ALL, state_size, NULL);
        Device *dst = sim_new("dst", _MIG_FLAGS_ALL, state_size, NULL);
        struct json_object *rec, *o;
        uint64_t expected;
        GByteArray *a;
        uint8_t v;

        g_assert_cmpint(sim_device_write_register(src, 0, 0x5a), ==, 0);
        g_assert_cmpint(sim_device_write_register(src, 3, 0x03), ==, 0);
        g_assert_cmpint(sim_device_write_register(src, 255, 0xff), ==, 0);
        g_assert_cmpint(sim_device_write_register(src, 256, 1), ==, -EINVAL);
        g_assert_cmpint(src->ops->get_data_size(src, &expected), ==, 0);

        a = save(src);
        g_assert_cmpuint(a->len, ==, expected);
        g_assert_cmpuint(a->len, ==,
                         SIM_HEADER_SIZE + 2 * SIM_RECORD_HEADER_SIZE + SIM_REGISTER_SIZE +
                                 sim_page_count(state_size) * SIM_RECORD_HEADER_SIZE + state_size);
        g_assert_cmpmem(a->data, 8, SIM_STREAM_MAGIC, 8);
        g_assert_cmpuint(count_events(src, "save_complete", NULL), ==, 1);

        g_assert_cmpint(load(dst, a->data, a->len, false), ==, 0);
        g_assert_cmpint(backend_state(dst), ==, MIG_STATE_STOP);
        g_assert_cmpint(sim_device_read_register(dst, 0, &v), ==, 0);
        g_assert_cmphex(v, ==, 0x5a);
        g_assert_cmpint(sim_device_read_register(dst, 3, &v), ==, 0);
        g_assert_cmphex(v, ==, 0x03);
        g_assert_cmpint(sim_device_read_register(dst, 255, &v), ==, 0);
        g_assert_cmphex(v, ==, 0xff);
        g_assert_cmpint(sim_device_read_register(dst, 1, &v), ==, 0);
        g_assert_cmphex(v, ==, 0);
        o = last_event(dst, "load_applied", &rec);
        g_assert_nonnull(o);
        g_assert_cmpint(get_int(o, "bytes"), ==, a->len);
        g_assert_cmpint(get_int(o, "page_records"), ==, sim_page_count(state_size));
        json_object_put(rec);
        walk(dst, MIG_STATE_RUNNING);

        /* The destination now saves the very stream it loaded. */
        {
                GByteArray *b = save(dst);

                g_assert_cmpuint(b->len, ==, a->len);
                g_assert_true(memcmp(b->data, a->data, a->len) == 0);
                g_byte_array_unref(b);
        }
        g_byte_array_unref(a);
        device_free(src);
        device_free(dst);
}

static void test_stream_0(void) {
        roundtrip(0);
}

static void test_stream_4096(void) {
        roundtrip(4096);
}

static void test_stream_8m(void) {
        roundtrip(8u << 20);
}

static void test_stream_odd(void) {
        roundtrip(3 * 4096 + 123);
}

static void expect_load_failure(const guint8 *p, size_t n, uint64_t state_size, const char *reason,
                                bool close_first) {
        Device *dst = sim_new("bad", _MIG_FLAGS_ALL, state_size, NULL);
        struct json_object *rec, *o;
        uint8_t v;

        g_assert_cmpint(load(dst, p, n, close_first), ==, -EIO);
        g_assert_cmpint(backend_state(dst), ==, MIG_STATE_ERROR);
        g_assert_cmpint(dst->state, ==, MIG_STATE_ERROR);
        /* Nothing of the stream was applied. */
        g_assert_cmpint(sim_device_read_register(dst, 7, &v), ==, 0);
        g_assert_cmphex(v, ==, 0);
        g_assert_cmpuint(count_events(dst, "load_applied", NULL), ==, 0);
        o = last_event(dst, "load_failed", &rec);
        g_assert_nonnull(o);
        g_assert_cmpstr(get_str(o, "reason"), ==, reason);
        g_assert_cmpint(get_int(o, "bytes"), ==, n);
        json_object_put(rec);
        g_assert_cmpint(device_set_state(dst, MIG_STATE_STOP, NULL), ==, -EINVAL);
        g_assert_cmpint(dst->ops->reset(dst), ==, 0);
        g_assert_cmpint(backend_state(dst), ==, MIG_STATE_RUNNING);
        device_free(dst);
}

static void test_stream_bad(void) {
        const uint64_t size = 64 * 1024;
        Device *src = sim_new("src", _MIG_FLAGS_ALL, size, NULL);
        GByteArray *a;

        g_assert_cmpint(sim_device_write_register(src, 7, 0x42), ==, 0);
        a = save(src);

        /* The intact stream loads, also with the writer's end closed before the arc. */
        {
                Device *dst = sim_new("good", _MIG_FLAGS_ALL, size, NULL);
                uint8_t v;

                g_assert_cmpint(load(dst, a->data, a->len, true), ==, 0);
                g_assert_cmpint(sim_device_read_register(dst, 7, &v), ==, 0);
                g_assert_cmphex(v, ==, 0x42);
                device_free(dst);
        }

        /* One flipped payload byte. */
        a->data[a->len / 2] ^= 0x01;
        expect_load_failure(a->data, a->len, size, "checksum mismatch", false);
        a->data[a->len / 2] ^= 0x01;
        /* One flipped register byte. */
        a->data[SIM_HEADER_SIZE + SIM_RECORD_HEADER_SIZE + 7] ^= 0x80;
        expect_load_failure(a->data, a->len, size, "checksum mismatch", true);
        a->data[SIM_HEADER_SIZE + SIM_RECORD_HEADER_SIZE + 7] ^= 0x80;

        expect_load_failure(a->data, a->len - 1, size, "truncated stream", false);
        expect_load_failure(a->data, a->len / 3, size, "truncated stream", true);
        expect_load_failure(a->data, 0, size, "truncated stream", false);
        expect_load_failure(a->data, a->len, size * 2, "state_size mismatch", false);
        a->data[0] ^= 0xff;
        expect_load_failure(a->data, a->len, size, "bad magic", false);
        a->data[0] ^= 0xff;
        {
                GByteArray *b = g_byte_array_new();

                g_byte_array_append(b, a->data, a->len);
                g_byte_array_append(b, (const guint8 *) "x", 1);
                expect_load_failure(b->data, b->len, size, "data after the trailer", false);
                g_byte_array_unref(b);
        }
        g_byte_array_unref(a);
        device_free(src);
}

static void test_stream_no_reader(void) {
        Device *src = sim_new("src", _MIG_FLAGS_ALL, 8u << 20, NULL);
        int fd = -1;

        /* The consumer goes away mid-stream: EPIPE in the device, no SIGPIPE in the process. */
        walk(src, MIG_STATE_STOP);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP_COPY, &fd), ==, 0);
        close(fd);
        for (int i = 0; i < 200 && count_events(src, "save_aborted", NULL) == 0; i++)
                g_usleep(10 * 1000);
        g_assert_cmpuint(count_events(src, "save_aborted", NULL), ==, 1);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP, NULL), ==, 0);

        /* Abandoning an unread stream by an arc is fine too. */
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP_COPY, &fd), ==, 0);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP, NULL), ==, 0);
        close(fd);
        device_free(src);
}

static void test_irq_running(void) {
        Device *d = sim_new("irq", _MIG_FLAGS_ALL, 0, NULL);
        int efd[4], dead[4];

        for (int i = 0; i < 4; i++)
                efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 0, 4, efd), ==, 0);
        /* The device keeps its own references. */
        for (int i = 0; i < 4; i++)
                dead[i] = dup(efd[i]);
        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 0, 4, dead), ==, 0);
        for (int i = 0; i < 4; i++)
                close(dead[i]);

        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 2), ==, 0);
        g_assert_cmpuint(efd_take(efd[2]), ==, 1);
        g_assert_cmpuint(efd_take(efd[0]), ==, 0);
        g_assert_cmpuint(count_events(d, "irq_delivered", NULL), ==, 1);

        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 4), ==, -EINVAL);
        g_assert_cmpint(sim_device_raise_irq(d, _IRQ_INDEX_MAX, 0), ==, -EINVAL);
        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 3, 2, efd), ==, -EINVAL);
        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 4, 1, efd), ==, -EINVAL);
        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, UINT32_MAX, 2, efd), ==, -EINVAL);
        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSI, 0, 2, efd), ==, -EINVAL);
        g_assert_cmpint(d->ops->set_irqs(d, _IRQ_INDEX_MAX, 0, 1, efd), ==, -EINVAL);

        /* An fd of -1 disables one vector. */
        {
                int off = -1;

                g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 1, 1, &off), ==, 0);
                g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 1), ==, 0);
                g_assert_cmpuint(efd_take(efd[1]), ==, 0);
                g_assert_cmpuint(count_events(d, "irq_lost", "no_trigger"), ==, 1);
        }
        g_assert_cmpint(d->ops->disable_irqs(d, IRQ_INDEX_MSIX), ==, 0);
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 2), ==, 0);
        g_assert_cmpuint(efd_take(efd[2]), ==, 0);
        g_assert_cmpuint(count_events(d, "irq_lost", "no_trigger"), ==, 2);
        g_assert_cmpuint(count_events(d, "disable_irqs", NULL), ==, 1);

        for (int i = 0; i < 4; i++)
                close(efd[i]);
        device_free(d);
}

static void test_irq_held_while_stopped(void) {
        Device *d = sim_new("held", _MIG_FLAGS_ALL, 0, NULL);
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct json_object *rec, *o;

        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSI, 0, 1, &efd), ==, 0);
        walk(d, MIG_STATE_STOP);
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSI, 0), ==, 0);
        g_assert_cmpuint(efd_take(efd), ==, 0);
        g_assert_cmpuint(count_events(d, "irq_pending", NULL), ==, 1);
        /* Raised again while pending: still one interrupt, like a pending bit. */
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSI, 0), ==, 0);

        g_assert_cmpint(device_set_state(d, MIG_STATE_RUNNING_P2P, NULL), ==, 0);
        g_assert_cmpuint(efd_take(efd), ==, 1);
        o = last_event(d, "irq_delivered", &rec);
        g_assert_nonnull(o);
        g_assert_true(json_object_get_boolean(json_object_object_get(o, "deferred")));
        g_assert_cmpstr(get_str(o, "state"), ==, "RUNNING_P2P");
        json_object_put(rec);
        walk(d, MIG_STATE_RUNNING);
        g_assert_cmpuint(efd_take(efd), ==, 0);

        /* Pending at stop, trigger gone by the time it runs: lost. */
        walk(d, MIG_STATE_STOP);
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSI, 0), ==, 0);
        g_assert_cmpint(d->ops->disable_irqs(d, IRQ_INDEX_MSI), ==, 0);
        walk(d, MIG_STATE_RUNNING);
        g_assert_cmpuint(efd_take(efd), ==, 0);
        g_assert_cmpuint(count_events(d, "irq_while_stopped", NULL), ==, 0);
        close(efd);
        device_free(d);
}

static void test_irq_while_stopped_quirk(void) {
        Device *d = sim_new("wstop", _MIG_FLAGS_ALL, 0, "irq-while-stopped");
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct json_object *rec, *o;

        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_INTX, 0, 1, &efd), ==, 0);
        walk(d, MIG_STATE_STOP);
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_INTX, 0), ==, 0);
        g_assert_cmpuint(efd_take(efd), ==, 1);
        o = last_event(d, "irq_while_stopped", &rec);
        g_assert_nonnull(o);
        g_assert_cmpstr(get_str(o, "index"), ==, "intx");
        g_assert_cmpint(get_int(o, "vector"), ==, 0);
        g_assert_cmpstr(get_str(o, "state"), ==, "STOP");
        json_object_put(rec);
        walk(d, MIG_STATE_RUNNING);
        g_assert_cmpuint(efd_take(efd), ==, 0);
        close(efd);
        device_free(d);
}

/* The interrupt restore scenario: returns how many MSI-X vectors fired once on the destination. */
static unsigned irq_restore(bool quirk, bool during_resuming, unsigned *ret_lost) {
        const char *q = quirk ? "irq-in-stream" : NULL;
        Device *src = sim_new("src", _MIG_FLAGS_ALL, 8192, q), *dst = sim_new("dst", _MIG_FLAGS_ALL, 8192, q);
        int sefd[4], defd[4], fd;
        unsigned fired = 0;
        GByteArray *a;

        for (int i = 0; i < 4; i++) {
                sefd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                defd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        }
        g_assert_cmpint(src->ops->set_irqs(src, IRQ_INDEX_MSIX, 0, 4, sefd), ==, 0);
        a = save(src);

        fd = begin_resume(dst);
        if (during_resuming)
                g_assert_cmpint(dst->ops->set_irqs(dst, IRQ_INDEX_MSIX, 0, 4, defd), ==, 0);
        write_stream(fd, a->data, a->len);
        g_assert_cmpint(device_set_state(dst, MIG_STATE_STOP, NULL), ==, 0);
        close(fd);
        if (!during_resuming)
                g_assert_cmpint(dst->ops->set_irqs(dst, IRQ_INDEX_MSIX, 0, 4, defd), ==, 0);
        walk(dst, MIG_STATE_RUNNING);

        for (uint32_t v = 0; v < 4; v++) {
                uint64_t n;

                g_assert_cmpint(sim_device_raise_irq(dst, IRQ_INDEX_MSIX, v), ==, 0);
                n = efd_take(defd[v]);
                g_assert_cmpuint(n, <=, 1);
                fired += (unsigned) n;
        }
        *ret_lost = count_events(dst, "irq_lost", "overwritten_by_stream");
        g_assert_cmpuint(count_events(dst, "irqs_overwritten_by_stream", NULL), ==, quirk ? 1 : 0);

        if (quirk) {
                struct json_object *rec, *o = last_event(dst, "irqs_overwritten_by_stream", &rec), *lost, *stream;

                g_assert_true(json_object_object_get_ex(o, "lost", &lost));
                g_assert_cmpuint(json_object_array_length(lost), ==, during_resuming ? 4 : 0);
                g_assert_true(json_object_object_get_ex(o, "stream", &stream));
                g_assert_cmpuint(json_object_array_length(stream), ==, _IRQ_INDEX_MAX);
                o = json_object_array_get_idx(stream, IRQ_INDEX_MSIX);
                g_assert_cmpstr(get_str(o, "index"), ==, "msix");
                g_assert_cmpint(get_int(o, "count"), ==, 4);
                g_assert_cmpuint(json_object_array_length(json_object_object_get(o, "enabled")), ==, 4);
                json_object_put(rec);
        }
        for (int i = 0; i < 4; i++) {
                close(sefd[i]);
                close(defd[i]);
        }
        g_byte_array_unref(a);
        device_free(src);
        device_free(dst);
        return fired;
}

static void test_irq_in_stream_during_resuming_loses_vectors(void) {
        unsigned lost;

        g_assert_cmpuint(irq_restore(true, true, &lost), ==, 0);
        g_assert_cmpuint(lost, ==, 4);
}

static void test_irq_in_stream_stop_window_keeps_vectors(void) {
        unsigned lost;

        g_assert_cmpuint(irq_restore(true, false, &lost), ==, 4);
        g_assert_cmpuint(lost, ==, 0);
}

static void test_irq_without_quirk_keeps_vectors(void) {
        unsigned lost;

        g_assert_cmpuint(irq_restore(false, true, &lost), ==, 4);
        g_assert_cmpuint(lost, ==, 0);
        g_assert_cmpuint(irq_restore(false, false, &lost), ==, 4);
        g_assert_cmpuint(lost, ==, 0);
}

static int precopy_info(Device *d, int fd, uint64_t *initial, uint64_t *dirty) {
        return d->ops->get_precopy_info(d, fd, initial, dirty);
}

static void test_precopy_dirty(void) {
        const uint64_t size = 64 * 1024, initial_size = SIM_HEADER_SIZE + SIM_RECORD_HEADER_SIZE +
                                                         SIM_REGISTER_SIZE + 16 * SIM_RECORD_HEADER_SIZE + size;
        SimConfig c;
        Device *src, *dst;
        GByteArray *a = g_byte_array_new(), *rest;
        uint64_t initial = 0, dirty = 0;
        int fd = -1, r = 0;
        uint8_t v;

        g_assert_cmpint(sim_config_init(&c, "pre"), ==, 0);
        c.state_size = size;
        c.dirty_rate = 2 * 1024 * 1024; /* 512 pages a second */
        g_assert_cmpint(sim_device_new(&c, NULL, NULL, &src), ==, 0);
        sim_config_done(&c);
        dst = sim_new("dst", _MIG_FLAGS_ALL, size, NULL);

        g_assert_cmpint(precopy_info(src, 0, &initial, &dirty), ==, -EINVAL);
        g_assert_cmpint(device_set_state(src, MIG_STATE_PRE_COPY, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(precopy_info(src, fd, &initial, &dirty), ==, 0);
        g_assert_cmpuint(initial, ==, initial_size);

        read_exact(fd, a, initial_size);
        g_assert_cmpint(sim_device_write_register(src, 9, 0x99), ==, 0);
        for (int i = 0; i < 300; i++) {
                r = precopy_info(src, fd, &initial, &dirty);
                if (r == 0 && dirty > 0)
                        break;
                g_usleep(10 * 1000);
        }
        g_assert_cmpint(r, ==, 0);
        g_assert_cmpuint(initial, ==, 0);
        g_assert_cmpuint(dirty, >, 0);
        g_assert_cmpuint(dirty % (SIM_RECORD_HEADER_SIZE + SIM_PAGE_SIZE), ==, 0);

        /* PRE_COPY -> PRE_COPY_P2P -> STOP_COPY keep the stream: no new fd. */
        {
                int none = 42;

                g_assert_cmpint(device_set_state(src, MIG_STATE_PRE_COPY_P2P, &none), ==, 0);
                g_assert_cmpint(none, ==, -1);
                none = 42;
                g_assert_cmpint(device_set_state(src, MIG_STATE_STOP_COPY, &none), ==, 0);
                g_assert_cmpint(none, ==, -1);
        }
        rest = read_stream(fd);
        close(fd);
        g_byte_array_append(a, rest->data, rest->len);
        g_assert_cmpuint(rest->len, >=, SIM_RECORD_HEADER_SIZE + SIM_PAGE_SIZE);
        g_byte_array_unref(rest);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP, NULL), ==, 0);

        g_assert_cmpint(load(dst, a->data, a->len, false), ==, 0);
        /* Written after the initial data went out: carried by the final register block. */
        g_assert_cmpint(sim_device_read_register(dst, 9, &v), ==, 0);
        g_assert_cmphex(v, ==, 0x99);
        {
                struct json_object *rec, *o = last_event(dst, "load_applied", &rec);

                g_assert_cmpint(get_int(o, "page_records"), >, 16);
                json_object_put(rec);
        }
        g_byte_array_unref(a);
        device_free(src);
        device_free(dst);
}

static void test_precopy_quiet(void) {
        Device *src = sim_new("quiet", _MIG_FLAGS_ALL, 4096, NULL);
        GByteArray *a = g_byte_array_new();
        uint64_t initial = 1, dirty = 1;
        int fd = -1;

        g_assert_cmpint(device_set_state(src, MIG_STATE_PRE_COPY, &fd), ==, 0);
        g_assert_cmpint(precopy_info(src, fd, &initial, &dirty), ==, 0);
        g_assert_cmpuint(dirty, ==, 0);
        read_exact(fd, a, initial);
        /* Nothing pending and nothing to read: a non-blocking read would see EAGAIN. */
        g_assert_cmpint(precopy_info(src, fd, &initial, &dirty), ==, -ENOMSG);
        {
                struct pollfd p = { .fd = fd, .events = POLLIN };

                g_assert_cmpint(poll(&p, 1, 50), ==, 0);
        }
        /* Back to RUNNING ends the stream. */
        g_assert_cmpint(device_set_state(src, MIG_STATE_RUNNING, NULL), ==, 0);
        close(fd);
        g_byte_array_unref(a);
        device_free(src);
}

static char *make_tmpdir(void) {
        GError *e = NULL;
        char *dir = g_dir_make_tmp("test-sim-XXXXXX", &e);

        g_assert_no_error(e);
        return dir;
}

static void rm_tmpdir(char *dir) {
        GDir *d = g_dir_open(dir, 0, NULL);
        const char *n;

        while ((n = g_dir_read_name(d))) {
                g_autofree char *p = g_build_filename(dir, n, NULL);

                g_assert_cmpint(unlink(p), ==, 0);
        }
        g_dir_close(d);
        g_assert_cmpint(rmdir(dir), ==, 0);
        g_free(dir);
}

static void test_record_file(void) {
        char *dir = make_tmpdir();
        g_autofree char *path = g_build_filename(dir, "rec.record.jsonl", NULL);
        g_autofree char *contents = NULL;
        Device *d = sim_new_full("rec", _MIG_FLAGS_ALL, 4096, NULL, dir);
        int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct json_object *mem;
        char **lines;
        int64_t last = 0;
        size_t n = 0;

        g_assert_cmpint(d->ops->set_irqs(d, IRQ_INDEX_MSIX, 1, 1, &efd), ==, 0);
        g_assert_cmpint(sim_device_write_register(d, 1, 2), ==, 0);
        walk(d, MIG_STATE_STOP);
        g_assert_cmpint(device_set_state(d, MIG_STATE_RUNNING, NULL), ==, -EINVAL);
        g_assert_cmpint(sim_device_raise_irq(d, IRQ_INDEX_MSIX, 1), ==, 0);
        walk(d, MIG_STATE_RUNNING);
        g_assert_cmpuint(efd_take(efd), ==, 1);

        g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
        lines = g_strsplit(contents, "\n", -1);
        mem = sim_device_get_record(d);
        for (char **l = lines; *l && **l; l++, n++) {
                struct json_object *o = json_tokener_parse(*l), *m = json_object_array_get_idx(mem, n);
                int64_t t = get_int(o, "t_usec");

                g_assert_nonnull(o);
                g_assert_cmpint(t, >=, last);
                last = t;
                g_assert_cmpstr(get_str(o, "device"), ==, "rec");
                g_assert_cmpstr(get_str(o, "event"), ==, get_str(m, "event"));
                json_object_put(o);
        }
        g_assert_cmpuint(n, ==, json_object_array_length(mem));
        g_assert_cmpstr(get_str(json_object_array_get_idx(mem, 0), "event"), ==, "created");
        json_object_put(mem);
        g_strfreev(lines);
        g_assert_cmpuint(count_events(d, "set_irqs", NULL), ==, 1);
        g_assert_cmpuint(count_events(d, "register_write", NULL), ==, 1);
        g_assert_cmpuint(count_events(d, "arc_refused", NULL), ==, 1);
        g_assert_cmpuint(count_events(d, "irq_pending", NULL), ==, 1);
        g_assert_cmpuint(count_events(d, "irq_delivered", NULL), ==, 1);
        close(efd);
        device_free(d);
        rm_tmpdir(dir);
}

static void test_state_file_survives_kill(void) {
        char *dir = make_tmpdir();
        Device *d;
        pid_t pid;
        int status;
        uint8_t v;

        /* A daemon that gets SIGKILLed with its device stopped: the device stays as it was. */
        pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
                Device *child = sim_new_full("keep", _MIG_FLAGS_ALL, 4096, NULL, dir);

                sim_device_write_register(child, 0x10, 0xab);
                device_walk_to(child, MIG_STATE_STOP, NULL);
                raise(SIGKILL);
                _exit(1);
        }
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFSIGNALED(status));

        d = sim_new_full("keep", _MIG_FLAGS_ALL, 4096, NULL, dir);
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_STOP);
        g_assert_cmpint(d->state, ==, MIG_STATE_STOP);
        g_assert_cmpint(sim_device_read_register(d, 0x10, &v), ==, 0);
        g_assert_cmphex(v, ==, 0xab);
        g_assert_cmpuint(count_events(d, "restored", NULL), ==, 1);
        walk(d, MIG_STATE_RUNNING);
        device_free(d);

        /* The record file holds the dead daemon's events and the new ones. */
        {
                g_autofree char *path = g_build_filename(dir, "keep.record.jsonl", NULL);
                g_autofree char *contents = NULL;

                g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
                g_assert_nonnull(strstr(contents, "\"event\":\"created\""));
                g_assert_nonnull(strstr(contents, "\"event\":\"restored\""));
                g_assert_nonnull(strstr(contents, "\"event\":\"register_write\""));
        }

        d = sim_new_full("keep", _MIG_FLAGS_ALL, 4096, NULL, dir);
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_RUNNING);
        device_free(d);
        rm_tmpdir(dir);
}

static void test_slow_arc(void) {
        Device *d = sim_new("slow", _MIG_FLAGS_ALL, 0, "slow-arc=RUNNING->RUNNING_P2P:120");
        int64_t t0, t1;

        t0 = g_get_monotonic_time();
        g_assert_cmpint(device_set_state(d, MIG_STATE_RUNNING_P2P, NULL), ==, 0);
        t1 = g_get_monotonic_time();
        g_assert_cmpint(t1 - t0, >=, 120 * 1000);
        g_assert_cmpint(backend_state(d), ==, MIG_STATE_RUNNING_P2P);
        device_free(d);
}

static void test_big_stream(void) {
        /* 1 GiB through the fds: only with MIGD_SIM_BIG_TEST=1, as a throughput check. */
        Device *src, *dst;
        int sfd = -1, dfd;
        guint8 *buf;
        int64_t t0;

        if (!g_getenv("MIGD_SIM_BIG_TEST")) {
                g_test_skip("set MIGD_SIM_BIG_TEST=1");
                return;
        }
        src = sim_new("bigsrc", _MIG_FLAGS_ALL, UINT64_C(1) << 30, NULL);
        dst = sim_new("bigdst", _MIG_FLAGS_ALL, UINT64_C(1) << 30, NULL);
        t0 = g_get_monotonic_time();
        walk(src, MIG_STATE_STOP);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP_COPY, &sfd), ==, 0);
        dfd = begin_resume(dst);
        buf = g_malloc(1 << 20);
        for (;;) {
                ssize_t n = read(sfd, buf, 1 << 20);

                g_assert_cmpint(n, >=, 0);
                if (n == 0)
                        break;
                write_stream(dfd, buf, (size_t) n);
        }
        g_free(buf);
        g_assert_cmpint(device_set_state(dst, MIG_STATE_STOP, NULL), ==, 0);
        g_test_message("1 GiB in %.2f s", (g_get_monotonic_time() - t0) / 1e6);
        close(sfd);
        close(dfd);
        device_free(src);
        device_free(dst);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/sim/config/defaults", test_config_defaults);
        g_test_add_func("/sim/config/invalid", test_config_invalid);
        g_test_add_func("/sim/quirks/parse", test_quirks_parse);
        g_test_add_func("/sim/arcs/all-pairs", test_arcs_all_pairs);
        g_test_add_func("/sim/arcs/spot-checks", test_arcs_spot);
        g_test_add_func("/sim/arcs/v1-resuming-running", test_arcs_v1);
        g_test_add_func("/sim/arcs/fail-arc-error-reset", test_fail_arc);
        g_test_add_func("/sim/arcs/slow-arc", test_slow_arc);
        g_test_add_func("/sim/stream/roundtrip-0", test_stream_0);
        g_test_add_func("/sim/stream/roundtrip-4096", test_stream_4096);
        g_test_add_func("/sim/stream/roundtrip-8MiB", test_stream_8m);
        g_test_add_func("/sim/stream/roundtrip-partial-page", test_stream_odd);
        g_test_add_func("/sim/stream/corrupt-and-truncated", test_stream_bad);
        g_test_add_func("/sim/stream/reader-gone", test_stream_no_reader);
        g_test_add_func("/sim/stream/1GiB", test_big_stream);
        g_test_add_func("/sim/precopy/dirty-pages", test_precopy_dirty);
        g_test_add_func("/sim/precopy/nothing-pending", test_precopy_quiet);
        g_test_add_func("/sim/irq/delivered-while-running", test_irq_running);
        g_test_add_func("/sim/irq/held-while-stopped", test_irq_held_while_stopped);
        g_test_add_func("/sim/irq/irq-while-stopped-quirk", test_irq_while_stopped_quirk);
        g_test_add_func("/sim/irq-in-stream/during-resuming-loses-vectors",
                        test_irq_in_stream_during_resuming_loses_vectors);
        g_test_add_func("/sim/irq-in-stream/stop-window-keeps-vectors", test_irq_in_stream_stop_window_keeps_vectors);
        g_test_add_func("/sim/irq-in-stream/without-quirk-both-orders-keep", test_irq_without_quirk_keeps_vectors);
        g_test_add_func("/sim/record/json-lines", test_record_file);
        g_test_add_func("/sim/record/state-file-survives-kill", test_state_file_survives_kill);

        return g_test_run();
}
