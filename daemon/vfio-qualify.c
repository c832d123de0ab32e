/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Qualify: every arc of a device's migration state machine, its interrupts, a save/load round trip, pre-copy. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "engine-internal.h"
#include "log.h"
#include "sim.h"
#include "util.h"
#include "vfio-manager.h"
#include "vfio.h"

#define STREAM_MAX (64u * 1024u * 1024u)
#define READ_TIMEOUT_MS 5000
#define QUIET_MS 200

typedef struct Qualify {
        Device *d;
        struct json_object *checks;
        unsigned passed, failed, warned, skipped;
        uint8_t *saved;        /* a STOP_COPY stream of the device, fed to every RESUMING */
        size_t saved_size;
} Qualify;

static const char *sname(MigState s) {
        return strna(mig_state_to_string(s));
}

static void check(Qualify *q, const char *group, const char *name, const char *result, const char *hint,
                  const char *format, ...) _printf_(6, 7);
static void check(Qualify *q, const char *group, const char *name, const char *result, const char *hint,
                  const char *format, ...) {
        struct json_object *o = json_object_new_object();
        char detail[512] = "";
        va_list ap;

        if (format) {
                va_start(ap, format);
                vsnprintf(detail, sizeof(detail), format, ap);
                va_end(ap);
        }
        if (streq(result, "pass"))
                q->passed++;
        else if (streq(result, "fail"))
                q->failed++;
        else if (streq(result, "warn"))
                q->warned++;
        else
                q->skipped++;
        json_object_object_add(o, "group", json_object_new_string(group));
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "result", json_object_new_string(result));
        json_object_object_add(o, "detail", json_object_new_string(detail));
        if (hint && !streq(result, "pass"))
                json_object_object_add(o, "hint", json_object_new_string(hint));
        json_object_array_add(q->checks, o);
}

static int read_all(int fd, uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size = 0, allocated = 0;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (allocated - size < 65536) {
                        uint8_t *b;
                        if (allocated >= STREAM_MAX)
                                return -EFBIG;
                        allocated = allocated ? allocated * 2 : 65536;
                        b = realloc(buf, allocated);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = read(fd, buf + size, allocated - size);
                if (n < 0 && errno == EAGAIN) {
                        if (poll(&p, 1, READ_TIMEOUT_MS) <= 0)
                                return -ETIMEDOUT;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* What is there now, without waiting: a pre-copy stream has no EOF until the device stops. */
static int read_available(int fd, uint8_t **buf, size_t *size) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        for (;;) {
                uint8_t chunk[4096], *b;
                ssize_t n = read(fd, chunk, sizeof(chunk));

                if (n < 0 && (errno == EAGAIN || errno == ENOMSG))
                        break;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                b = realloc(*buf, *size + (size_t) n);
                if (!b)
                        return -ENOMEM;
                memcpy(b + *size, chunk, (size_t) n);
                *buf = b;
                *size += (size_t) n;
        }
        return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

static int write_all(int fd, const uint8_t *buf, size_t size) {
        while (size > 0) {
                ssize_t n = write(fd, buf, size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                buf += n;
                size -= (size_t) n;
        }
        return 0;
}

/* One arc through migd's backend; a RESUMING fd gets the saved stream, every other fd is dropped. */
static int arc(Qualify *q, MigState to, int *ret_fd) {
        int fd = -1, r;

        r = device_set_state(q->d, to, &fd);
        if (r < 0)
                return r;
        if (to == MIG_STATE_RESUMING && fd >= 0 && q->saved)
                (void) write_all(fd, q->saved, q->saved_size);
        if (ret_fd)
                *ret_fd = fd;
        else if (fd >= 0)
                close(fd);
        return 0;
}

static int walk(Qualify *q, MigState target) {
        MigState path[MIG_PATH_MAX];
        size_t n;
        int r;

        r = device_refresh_state(q->d);
        if (r >= 0 && q->d->state == MIG_STATE_ERROR)
                r = device_reset(q->d);
        if (r < 0)
                return r;
        r = mig_path(q->d->state, target, q->d->info.mig_flags, path, &n);
        if (r < 0 && q->d->state != MIG_STATE_STOP && target != MIG_STATE_STOP) {
                /* Some targets cannot be reached from where the last check left the device (STOP_COPY ->
                 * PRE_COPY): through STOP everything can. */
                r = walk(q, MIG_STATE_STOP);
                if (r >= 0)
                        r = mig_path(q->d->state, target, q->d->info.mig_flags, path, &n);
        }
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = arc(q, path[i], NULL);
        return r;
}

/* STOP -> STOP_COPY, the whole stream, back to STOP. */
static int capture(Qualify *q, uint8_t **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        int r;

        r = walk(q, MIG_STATE_STOP);
        if (r >= 0)
                r = arc(q, MIG_STATE_STOP_COPY, &fd);
        if (r >= 0 && fd < 0)
                r = -EBADF;
        if (r >= 0)
                r = read_all(fd, ret, ret_size);
        if (r >= 0)
                r = arc(q, MIG_STATE_STOP, NULL);
        return r;
}

static bool expects_fd(MigState from, MigState to) {
        return to == MIG_STATE_RESUMING || (mig_state_is_saving(to) && !mig_state_is_saving(from));
}

static void qualify_legal_arc(Qualify *q, MigState from, MigState to) {
        char name[96];
        int fd = -1, r;

        snprintf(name, sizeof(name), "%s -> %s", sname(from), sname(to));
        r = arc(q, to, &fd);
        if (r < 0) {
                (void) device_refresh_state(q->d);
                check(q, "arcs", name, "fail", "The uAPI lists this arc for the device's migration flags; the "
                      "driver's set_state must implement it.", "refused with %s, device now %s", strerror(-r),
                      sname(q->d->state));
                return;
        }
        (void) device_refresh_state(q->d);
        if (q->d->state != to)
                check(q, "arcs", name, "fail", "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE GET must report the state just set.",
                      "accepted, but the device reports %s", sname(q->d->state));
        else if ((fd >= 0) != expects_fd(from, to))
                check(q, "arcs", name, "fail", "A data_fd comes with entering STOP_COPY/PRE_COPY from outside the "
                      "saving group and with entering RESUMING, and only then.", "data_fd %s", fd >= 0 ? "returned"
                      : "missing");
        else
                check(q, "arcs", name, "pass", NULL, "ok%s", fd >= 0 ? ", data_fd" : "");
        if (fd >= 0)
                close(fd);
}

static bool unreachable(const Device *d, MigState from, MigState to) {
        MigState path[MIG_PATH_MAX];
        size_t n;

        return to == MIG_STATE_ERROR || !mig_state_supported(to, d->info.mig_flags) ||
               mig_path(from, to, d->info.mig_flags, path, &n) < 0;
}

/* migd's own gate, then (vfio) what the kernel driver does when asked directly. */
static void qualify_forbidden_arc(Qualify *q, MigState from, MigState to) {
        char name[96];
        int fd = -1, r;

        snprintf(name, sizeof(name), "%s -> %s", sname(from), sname(to));
        r = device_set_state(q->d, to, &fd);
        if (fd >= 0)
                close(fd);
        (void) device_refresh_state(q->d);
        if (r == -EINVAL && q->d->state == from)
                check(q, "forbidden", name, "pass", NULL, "refused with EINVAL, state unchanged");
        else
                check(q, "forbidden", name, "fail", "A forbidden arc must fail with EINVAL and leave the state alone.",
                      "%s, device now %s", r < 0 ? strerror(-r) : "accepted", sname(q->d->state));
        if (!device_is_vfio(q->d) || q->d->state != from)
                return;

        fd = -1;
        r = vfio_device_set_state_raw(q->d, to, &fd);
        if (r >= 0 && to == MIG_STATE_RESUMING && fd >= 0 && q->saved)
                (void) write_all(fd, q->saved, q->saved_size);
        if (fd >= 0)
                close(fd);
        (void) device_refresh_state(q->d);
        if (unreachable(q->d, from, to)) {
                if (r == -EINVAL && q->d->state == from)
                        check(q, "kernel", name, "pass", NULL, "driver refused with EINVAL, state unchanged");
                else
                        check(q, "kernel", name, "fail", "vfio_mig_get_next_state() refuses this target; the driver "
                              "must return -EINVAL and stay.", "%s, device now %s", r < 0 ? strerror(-r) : "accepted",
                              sname(q->d->state));
        } else if (r >= 0 && q->d->state == to)
                check(q, "kernel", name, "pass", NULL, "driver walked the combination arc to %s", sname(to));
        else
                check(q, "kernel", name, "fail", "The uAPI makes drivers take combination arcs one step at a time "
                      "(vfio_mig_get_next_state()).", "%s, device now %s", r < 0 ? strerror(-r) : "accepted",
                      sname(q->d->state));
}

static void qualify_arcs(Qualify *q) {
        for (MigState from = MIG_STATE_STOP; from < _MIG_STATE_V2_MAX; from++) {
                if (!mig_state_supported(from, q->d->info.mig_flags))
                        continue;
                for (MigState to = MIG_STATE_ERROR; to < _MIG_STATE_V2_MAX; to++) {
                        int r;

                        if (to == from)
                                continue;
                        r = walk(q, from);
                        if (r < 0) {
                                char name[96];
                                snprintf(name, sizeof(name), "%s -> %s", sname(from), sname(to));
                                check(q, "arcs", name, "fail", NULL, "cannot reach %s: %s", sname(from), strerror(-r));
                                continue;
                        }
                        if (mig_arc_is_legal(from, to, q->d->info.mig_flags))
                                qualify_legal_arc(q, from, to);
                        else
                                qualify_forbidden_arc(q, from, to);
                }
        }
}

static void qualify_round_trip(Qualify *q) {
        _cleanup_free_ uint8_t *again = NULL;
        size_t size = 0;
        uint64_t reported;
        int r;

        r = walk(q, MIG_STATE_STOP);
        if (r >= 0)
                r = arc(q, MIG_STATE_RESUMING, NULL);
        if (r >= 0)
                r = arc(q, MIG_STATE_STOP, NULL);
        if (r < 0) {
                check(q, "data", "load", "fail", "The device must load the stream it saved (RESUMING -> STOP).",
                      "%s, device now %s", strerror(-r), sname(q->d->state));
                return;
        }
        check(q, "data", "load", "pass", NULL, "%zu bytes loaded on RESUMING -> STOP", q->saved_size);
        r = capture(q, &again, &size);
        if (r < 0)
                check(q, "data", "round trip", "fail", NULL, "saving again failed: %s", strerror(-r));
        else if (size != q->saved_size || memcmp(again, q->saved, size) != 0)
                check(q, "data", "round trip", "fail", "After loading stream A the device should save A again: "
                      "state that does not survive is lost in migration.", "saved %zu bytes, then %zu different bytes",
                      q->saved_size, size);
        else
                check(q, "data", "round trip", "pass", NULL, "save -> load -> save gives the same %zu bytes", size);

        if (!q->d->ops->get_data_size)
                return;
        r = q->d->ops->get_data_size(q->d, &reported);
        if (r == -EOPNOTSUPP)
                check(q, "data", "MIG_DATA_SIZE", "skip", NULL, "not supported by the driver");
        else if (r < 0)
                check(q, "data", "MIG_DATA_SIZE", "fail", NULL, "%s", strerror(-r));
        else
                check(q, "data", "MIG_DATA_SIZE", reported >= q->saved_size ? "pass" : "warn",
                      "MIG_DATA_SIZE should not under-report: migd sizes its target check and progress by it.",
                      "reports %" PRIu64 " bytes, STOP_COPY gave %zu", reported, q->saved_size);
}

static void qualify_precopy(Qualify *q) {
        _cleanup_free_ uint8_t *stream = NULL;
        _cleanup_close_ int fd = -1;
        uint64_t initial = 0, dirty = 0;
        size_t size = 0;
        int r;

        if (!(q->d->info.mig_flags & MIG_FLAG_PRE_COPY)) {
                check(q, "precopy", "PRE_COPY", "skip", NULL, "the device has no pre-copy");
                return;
        }
        r = walk(q, MIG_STATE_RUNNING);
        if (r >= 0)
                r = arc(q, MIG_STATE_PRE_COPY, &fd);
        if (r < 0 || fd < 0) {
                check(q, "precopy", "enter PRE_COPY", "fail", NULL, "%s", r < 0 ? strerror(-r) : "no data_fd");
                return;
        }
        r = q->d->ops->get_precopy_info(q->d, fd, &initial, &dirty);
        check(q, "precopy", "info at start", r >= 0 || r == -ENOMSG ? "pass" : "fail",
              "VFIO_MIG_GET_PRECOPY_INFO must work on the saving fd in PRE_COPY.", "%s: initial %" PRIu64 ", dirty %"
              PRIu64, r >= 0 ? "ok" : strerror(-r), initial, dirty);
        /* The initial data may still be on its way into the fd: read until the device says it was all read. */
        for (uint64_t deadline = now_usec(CLOCK_MONOTONIC) + READ_TIMEOUT_MS * 1000ULL;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };

                initial = dirty = 0;
                r = read_available(fd, &stream, &size);
                if (r >= 0)
                        r = q->d->ops->get_precopy_info(q->d, fd, &initial, &dirty);
                if (r < 0 || initial == 0 || now_usec(CLOCK_MONOTONIC) > deadline)
                        break;
                (void) poll(&p, 1, 50);
        }
        check(q, "precopy", "info after reading", (r >= 0 && initial == 0) || r == -ENOMSG ? "pass" : "fail",
              "initial_bytes counts what is not read yet; it must reach 0 once the initial data was read.",
              "read %zu bytes, then %s: initial %" PRIu64 ", dirty %" PRIu64, size, r >= 0 ? "ok" : strerror(-r),
              initial, dirty);
        r = walk(q, MIG_STATE_STOP_COPY);
        if (r >= 0) {
                _cleanup_free_ uint8_t *rest = NULL;
                size_t n = 0;
                uint8_t *b;

                r = q->d->ops->get_precopy_info(q->d, fd, &initial, &dirty);
                check(q, "precopy", "info in STOP_COPY", r == -EINVAL ? "pass" : "warn",
                      "The uAPI allows VFIO_MIG_GET_PRECOPY_INFO only in PRE_COPY states (EINVAL otherwise).", "%s",
                      r < 0 ? strerror(-r) : "answered");
                r = read_all(fd, &rest, &n);
                if (r >= 0 && (b = realloc(stream, size + n))) {
                        memcpy(b + size, rest, n);
                        stream = b;
                        size += n;
                } else if (r >= 0)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = arc(q, MIG_STATE_STOP, NULL);
        if (r < 0) {
                check(q, "precopy", "pre-copy stream", "fail", NULL, "%s, device now %s", strerror(-r),
                      sname(q->d->state));
                return;
        }
        /* The whole pre-copy stream must load like a stop-copy one. */
        {
                uint8_t *keep = q->saved;
                size_t keep_size = q->saved_size;

                q->saved = stream;
                q->saved_size = size;
                r = arc(q, MIG_STATE_RESUMING, NULL);
                if (r >= 0)
                        r = arc(q, MIG_STATE_STOP, NULL);
                q->saved = keep;
                q->saved_size = keep_size;
        }
        check(q, "precopy", "pre-copy stream loads", r >= 0 ? "pass" : "fail", NULL, "%zu bytes: %s", size,
              r >= 0 ? "ok" : strerror(-r));
}

static uint64_t eventfd_count(int fd, int wait_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t v = 0;

        if (poll(&p, 1, wait_ms) > 0 && read(fd, &v, sizeof(v)) != sizeof(v))
                v = 0;
        return v;
}

/* A device that can be made to interrupt: the sim by its test hook, mtty by its UART (IER with THRI set and
 * an empty FIFO raises the interrupt). Others: -EOPNOTSUPP, and only silence is checked. */
static int raise_irq(Device *d, IrqIndex idx) {
        static const uint8_t off = 0, thri = 0x02;

        if (d->ops == &sim_backend_ops)
                return sim_device_raise_irq(d, idx, 0);
        if (device_is_vfio(d) && streq_ptr(d->info.driver, "mtty")) {
                int r = vfio_device_region_write(d, 0 /* BAR0 */, 1 /* UART_IER */, &off, 1);
                return r < 0 ? r : vfio_device_region_write(d, 0, 1, &thri, 1);
        }
        return -EOPNOTSUPP;
}

static void qualify_irq_index(Qualify *q, IrqIndex idx) {
        uint32_t n = q->d->info.irq_count[idx] < ENGINE_MAX_VECTORS ? q->d->info.irq_count[idx] : ENGINE_MAX_VECTORS;
        const char *iname = irq_index_to_string(idx);
        int fds[ENGINE_MAX_VECTORS];
        char name[64];
        bool can_raise;
        int r;

        for (uint32_t v = 0; v < n; v++)
                fds[v] = -1;
        for (uint32_t v = 0; v < n; v++)
                if ((fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
                        goto done;
        r = walk(q, MIG_STATE_RUNNING);
        if (r >= 0)
                r = device_set_irqs(q->d, idx, 0, n, fds);
        snprintf(name, sizeof(name), "%s SET_IRQS in RUNNING", iname);
        check(q, "interrupts", name, r >= 0 ? "pass" : "fail", NULL, "%u vector%s: %s", n, n == 1 ? "" : "s",
              r >= 0 ? "ok" : strerror(-r));
        if (r < 0)
                goto done;

        can_raise = raise_irq(q->d, idx) >= 0;
        snprintf(name, sizeof(name), "%s fires in RUNNING", iname);
        if (can_raise)
                check(q, "interrupts", name, eventfd_count(fds[0], 1000) > 0 ? "pass" : "fail",
                      "An interrupt raised while RUNNING must signal its eventfd.", "vector 0");
        else
                check(q, "interrupts", name, "skip", NULL, "migd cannot make this device interrupt");

        r = walk(q, MIG_STATE_STOP);
        snprintf(name, sizeof(name), "%s silent while STOP", iname);
        if (r >= 0) {
                uint64_t seen = 0;

                /* The sim is told to raise one; a real device is only watched: nothing may arrive either way. */
                if (q->d->ops == &sim_backend_ops)
                        (void) raise_irq(q->d, idx);
                for (uint32_t v = 0; v < n; v++)
                        seen += eventfd_count(fds[v], v == 0 ? QUIET_MS : 0);
                check(q, "interrupts", name, seen == 0 ? "pass" : "fail",
                      "A device that is not RUNNING must not raise interrupts (the uAPI's STOP); migd's "
                      "on_irq_while_stopped policy flags it in migrations.", "%" PRIu64 " signal%s in %d ms", seen,
                      seen == 1 ? "" : "s", QUIET_MS);
        } else
                check(q, "interrupts", name, "fail", NULL, "cannot reach STOP: %s", strerror(-r));

        r = device_set_irqs(q->d, idx, 0, n, fds);
        snprintf(name, sizeof(name), "%s SET_IRQS in STOP", iname);
        check(q, "interrupts", name, r >= 0 ? "pass" : "fail",
              "The stop-window policy restores interrupts while the device is STOP.", "%s", r >= 0 ? "ok" : strerror(-r));
        r = device_disable_irqs(q->d, idx);
        snprintf(name, sizeof(name), "%s disable", iname);
        check(q, "interrupts", name, r >= 0 ? "pass" : "fail", NULL, "%s", r >= 0 ? "ok" : strerror(-r));
done:
        for (uint32_t v = 0; v < n; v++)
                if (fds[v] >= 0)
                        close(fds[v]);
        (void) walk(q, MIG_STATE_RUNNING);
}

static void qualify_reset(Qualify *q) {
        int r;

        r = walk(q, MIG_STATE_STOP);
        if (r >= 0)
                r = device_reset(q->d);
        if (r < 0)
                check(q, "reset", "VFIO_DEVICE_RESET", "fail", NULL, "%s", strerror(-r));
        else
                check(q, "reset", "VFIO_DEVICE_RESET", q->d->state == MIG_STATE_RUNNING ? "pass" : "fail",
                      "After a reset the device must be RUNNING (the way out of ERROR).", "from STOP, now %s",
                      sname(q->d->state));
}

static struct json_object *summary(Qualify *q) {
        struct json_object *s = json_object_new_object();

        json_object_object_add(s, "passed", json_object_new_int((int) q->passed));
        json_object_object_add(s, "failed", json_object_new_int((int) q->failed));
        json_object_object_add(s, "warnings", json_object_new_int((int) q->warned));
        json_object_object_add(s, "skipped", json_object_new_int((int) q->skipped));
        json_object_object_add(s, "verdict", json_object_new_string(q->failed ? "not qualified" : "qualified"));
        return s;
}

int device_qualify(Manager *m, Device *d, struct json_object **ret) {
        _cleanup_json_ struct json_object *report = json_object_new_object(), *checks = json_object_new_array();
        char flags[MIG_FLAGS_STRING_MAX], ids[16];
        Qualify q = { .d = d, .checks = checks };
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        int r;

        assert(m);
        assert(d);
        assert(ret);

        if (!report || !checks)
                return -ENOMEM;
        log_device(LOG_INFO, d->id, NULL, "Qualifying (every arc, interrupts, data).");
        r = capture(&q, &q.saved, &q.saved_size);
        check(&q, "data", "save", r >= 0 ? "pass" : "fail", "STOP -> STOP_COPY must give a data_fd that reads to EOF.",
              "%s%zu bytes from STOP_COPY", r >= 0 ? "" : strerror(-r), r >= 0 ? q.saved_size : 0);
        if (r >= 0) {
                qualify_arcs(&q);
                qualify_round_trip(&q);
                qualify_precopy(&q);
        }
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                if (d->info.irq_count[idx] > 0)
                        qualify_irq_index(&q, idx);
        qualify_reset(&q);
        (void) walk(&q, MIG_STATE_RUNNING);
        free(q.saved);

        snprintf(ids, sizeof(ids), "%04x:%04x", d->info.vendor_id, d->info.device_id);
        json_object_object_add(report, "device", json_object_new_string(d->id));
        json_object_object_add(report, "backend", json_object_new_string(d->ops->name));
        json_object_object_add(report, "driver", json_object_new_string(strna(d->info.driver)));
        json_object_object_add(report, "ids", json_object_new_string(ids));
        json_object_object_add(report, "mdev_type", d->info.mdev_type ? json_object_new_string(d->info.mdev_type)
                                                                       : NULL);
        json_object_object_add(report, "migration_flags",
                               json_object_new_string(mig_flags_to_string(d->info.mig_flags, flags, sizeof(flags))));
        json_object_object_add(report, "duration_usec", json_object_new_int64((int64_t) (now_usec(CLOCK_MONOTONIC) - start)));
        json_object_object_add(report, "summary", summary(&q));
        json_object_object_add(report, "checks", TAKE_PTR(checks));
        log_device(q.failed ? LOG_WARNING : LOG_INFO, d->id, NULL, "Qualification: %u passed, %u failed, %u warnings.",
                   q.passed, q.failed, q.warned);
        *ret = TAKE_PTR(report);
        return 0;
}
