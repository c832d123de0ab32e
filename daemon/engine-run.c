/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's workers: one thread per migration executes the plan's steps, talks to the peer, keeps the journal. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "bus-errors.h"
#include "engine-internal.h"
#include "journal.h"
#include "log.h"
#include "util.h"

#define COPY_BUFFER_SIZE (1024u * 1024u)
#define PROGRESS_INTERVAL_USEC 100000u
#define PRECOPY_MAX_ROUNDS 64

uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

Run *run_free(Run *r) {
        if (!r)
                return NULL;
        peer_conn_free(r->conn);
        if (r->accepted_fd >= 0)
                close(r->accepted_fd);
        if (r->data_fd >= 0)
                close(r->data_fd);
        peer_tls_done(&r->tls);
        policy_free(r->policy);
        plan_free(r->plan);
        json_object_put(r->options);
        json_object_put(r->journal);
        json_object_put(r->timeline);
        free(r->id);
        free(r->device_id);
        free(r->peer_host);
        free(r->local_name);
        free(r);
        return NULL;
}

void run_freep(Run **r) {
        run_free(*r);
}

static uint64_t phase_timeout(Run *r, MigPhase phase) {
        return (uint64_t) r->policy->timeout_ms[phase] * 1000u;
}

static void post_simple(Run *r, const char *kind, const char *key, struct json_object *value) {
        struct json_object *u = json_object_new_object();

        json_object_object_add(u, "kind", json_object_new_string(kind));
        json_object_object_add(u, "migration", json_object_new_string(r->id));
        json_object_object_add(u, "device", json_object_new_string(r->device_id));
        if (key)
                json_object_object_add(u, key, value);
        engine_post(r->engine, u);
}

struct json_object *run_event_new(Run *r, const char *kind) {
        struct json_object *ev = json_object_new_object();

        json_object_object_add(ev, "host", json_object_new_string(r->local_name));
        json_object_object_add(ev, "role", json_object_new_string(plan_role_to_string(r->role)));
        json_object_object_add(ev, "t_usec", json_object_new_int64((int64_t) now_usec(CLOCK_MONOTONIC)));
        json_object_object_add(ev, "rt_usec", json_object_new_int64((int64_t) now_usec(CLOCK_REALTIME)));
        json_object_object_add(ev, "event", json_object_new_string(kind));
        return ev;
}

/* The main loop gets its own copy: json-c reference counts are not shared safely between threads. */
void run_emit(Run *r, struct json_object *event) {
        struct json_object *copy = NULL;

        if (json_object_deep_copy(event, &copy, NULL) < 0)
                copy = NULL;
        if (r->timeline)
                json_object_array_add(r->timeline, event);
        else
                json_object_put(event);
        if (copy)
                post_simple(r, "timeline", "event", copy);
}

void run_journal_init(Run *r) {
        struct json_object *irqs = json_object_new_object();

        json_object_put(r->journal);
        r->journal = json_object_new_object();
        json_object_object_add(r->journal, "migration", json_object_new_string(r->id));
        json_object_object_add(r->journal, "role", json_object_new_string(plan_role_to_string(r->role)));
        json_object_object_add(r->journal, "device", json_object_new_string(r->device_id));
        json_object_object_add(r->journal, "peer_host", json_object_new_string(strna(r->peer_host)));
        json_object_object_add(r->journal, "peer_port", json_object_new_int(r->peer_port));
        json_object_object_add(r->journal, "policy", json_object_new_string(r->policy ? r->policy->name : ""));
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                json_object_object_add(irqs, irq_index_to_string(idx), json_object_new_int((int) r->irq_count[idx]));
        json_object_object_add(r->journal, "interrupts", irqs);
        json_object_object_add(r->journal, "decision", json_object_new_string("none"));
}

/* Test hook (docs/safety.md): MIGD_TEST_PAUSE="source:load=2000,destination:commit=500" holds a worker for that
 * many milliseconds as it enters the phase, so the fault suite can kill a daemon in any phase it names. */
static void run_test_pause(Run *r, MigPhase phase) {
        const char *spec = getenv("MIGD_TEST_PAUSE");
        char key[64];
        const char *at;

        if (!spec)
                return;
        snprintf(key, sizeof(key), "%s:%s=", plan_role_to_string(r->role), mig_phase_to_string(phase));
        at = strstr(spec, key);
        if (at && (at == spec || at[-1] == ','))
                usleep((useconds_t) strtoul(at + strlen(key), NULL, 10) * 1000u);
}

static void run_phase(Run *r, MigPhase phase) {
        struct json_object *ev = run_event_new(r, "phase");

        json_object_object_add(ev, "phase", json_object_new_string(mig_phase_to_string(phase)));
        run_emit(r, ev);
        post_simple(r, "phase", "phase", json_object_new_string(mig_phase_to_string(phase)));
        log_full(LOG_INFO, 0, MIGD_MESSAGE_MIGRATION_PHASE, r->device_id, r->id, "Phase %s (%s).",
                 mig_phase_to_string(phase), plan_role_to_string(r->role));
        run_test_pause(r, phase);
}

static int run_fail_as(Run *r, const char *error_name, int error, const char *format, ...) _printf_(4, 5);
/* A failure without a name of its own: the Migration's ErrorName will be MigrationFailed. */
#define run_fail(r, error, ...) run_fail_as((r), NULL, (error), __VA_ARGS__)

/* Keeps the first failure: later ones are usually its consequences. error_name is what programs see as the
 * Migration's ErrorName (migctl's exit code comes from it). */
static int run_fail_as(Run *r, const char *error_name, int error, const char *format, ...) {
        va_list ap;

        if (r->error[0] == '\0') {
                va_start(ap, format);
                vsnprintf(r->error, sizeof(r->error), format, ap);
                va_end(ap);
                r->error_name = error_name;
        }
        return error < 0 ? error : -EIO;
}

/* The peer's error code (an error message's "code") as one of our names; anything else is generic. */
static const char *error_name_for_code(const char *code) {
        static const struct {
                const char *code, *name;
        } map[] = {
                { "PolicyViolation", MIGD_ERROR_POLICY_VIOLATION },
                { "NoSuchPolicy", MIGD_ERROR_NO_SUCH_POLICY },
                { "NoSuchDevice", MIGD_ERROR_NO_SUCH_DEVICE },
                { "Busy", MIGD_ERROR_BUSY },
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq_ptr(code, map[i].code))
                        return map[i].name;
        return NULL;
}

static void run_progress(Run *r, bool force) {
        uint64_t now = now_usec(CLOCK_MONOTONIC), elapsed, rate = 0, eta = 0;
        struct json_object *u;

        if (!force && now - r->last_progress_usec < PROGRESS_INTERVAL_USEC)
                return;
        r->last_progress_usec = now;
        elapsed = r->transfer_start_usec ? now - r->transfer_start_usec : 0;
        if (elapsed > 0)
                rate = r->bytes_done * 1000000u / elapsed;
        if (rate > 0 && r->bytes_total > r->bytes_done)
                eta = (r->bytes_total - r->bytes_done) / rate;
        u = json_object_new_object();
        json_object_object_add(u, "bytes_total", json_object_new_int64((int64_t) r->bytes_total));
        json_object_object_add(u, "bytes_transferred", json_object_new_int64((int64_t) r->bytes_done));
        json_object_object_add(u, "rate", json_object_new_int64((int64_t) rate));
        json_object_object_add(u, "eta_seconds", json_object_new_int64((int64_t) eta));
        post_simple(r, "progress", "progress", u);
}

static int run_journal_save(Run *r, const char *decision) {
        int q;

        json_object_object_add(r->journal, "decision", json_object_new_string(decision));
        q = journal_save(r->engine->journal_dir, r->id, r->journal);
        if (q < 0)
                return run_fail(r, q, "cannot write the journal in %s: %s", r->engine->journal_dir, strerror(-q));
        return 0;
}

static void run_journal_phase(Run *r, MigPhase phase) {
        json_object_object_add(r->journal, "phase", json_object_new_string(mig_phase_to_string(phase)));
}

/* One arc through the backend, with its timeline event; a refused arc names the arc and the errno. */
static int run_arc(Run *r, MigState to) {
        MigState from = r->device->state;
        struct json_object *ev;
        int fd = -1, q;

        q = device_set_state(r->device, to, &fd);
        ev = run_event_new(r, "arc");
        json_object_object_add(ev, "from", json_object_new_string(mig_state_to_string(from)));
        json_object_object_add(ev, "to", json_object_new_string(mig_state_to_string(to)));
        json_object_object_add(ev, "bits", mig_state_to_bits(to) ? json_object_new_string(mig_state_to_bits(to)) : NULL);
        json_object_object_add(ev, "ok", json_object_new_boolean(q >= 0));
        if (q < 0)
                json_object_object_add(ev, "errno", json_object_new_string(strerror(-q)));
        run_emit(r, ev);
        if (q < 0)
                return run_fail(r, q, "device %s: arc %s -> %s failed: %s", r->device_id, mig_state_to_string(from),
                                mig_state_to_string(to), strerror(-q));
        if (fd >= 0) {
                if (r->data_fd >= 0)
                        close(r->data_fd);
                r->data_fd = fd;
        }
        if (r->role == PLAN_ROLE_SOURCE && !r->stop_rt_usec && mig_state_is_running(from) &&
            !mig_state_is_running(to))
                r->stop_rt_usec = now_usec(CLOCK_REALTIME);
        /* Downtime ends when the committed device runs, not when prepare walks a fresh target through P2P. */
        if (r->role == PLAN_ROLE_DESTINATION && atomic_load(&r->past_commit) && mig_state_is_running(to) &&
            !r->run_rt_usec)
                r->run_rt_usec = now_usec(CLOCK_REALTIME);
        return 0;
}

static int run_walk(Run *r, MigState target) {
        MigState path[MIG_PATH_MAX];
        size_t n;
        int q;

        q = mig_path(r->device->state, target, r->device->info.mig_flags, path, &n);
        if (q < 0)
                return run_fail(r, q, "device %s: no path from %s to %s", r->device_id,
                                mig_state_to_string(r->device->state), mig_state_to_string(target));
        for (size_t i = 0; i < n; i++) {
                q = run_arc(r, path[i]);
                if (q < 0)
                        return q;
        }
        return 0;
}

static int read_some(int fd, void *buf, size_t n, int timeout_ms, size_t *ret_read, bool *ret_eof) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t k;

        *ret_read = 0;
        *ret_eof = false;
        if (poll(&p, 1, timeout_ms) < 0)
                return errno == EINTR ? 0 : -errno;
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
                return 0;
        k = read(fd, buf, n);
        if (k < 0)
                return errno == EAGAIN || errno == EINTR || errno == ENOMSG ? 0 : -errno;
        if (k == 0)
                *ret_eof = true;
        *ret_read = (size_t) k;
        return 0;
}

/* Source: sends what the device's saving stream has now (pre-copy) or until its end (stop-copy). */
static int run_send_stream(Run *r, bool until_eof, uint64_t timeout_usec) {
        _cleanup_free_ uint8_t *buf = malloc(COPY_BUFFER_SIZE);
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        int q;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t n;
                bool eof;

                if (atomic_load(&r->cancel))
                        return run_fail(r, -ECANCELED, "cancelled");
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        return run_fail(r, -ETIMEDOUT, "reading the device's data timed out");
                q = read_some(r->data_fd, buf, COPY_BUFFER_SIZE, until_eof ? 1000 : 0, &n, &eof);
                if (q < 0)
                        return run_fail(r, q, "reading the device's data: %s", strerror(-q));
                if (eof)
                        return 0;
                if (n == 0) {
                        if (!until_eof)
                                return 0;
                        continue;
                }
                q = peer_stream_write(r->conn, buf, n, phase_timeout(r, MIG_PHASE_STOP_COPY));
                if (q < 0)
                        return run_fail(r, q, "sending data to %s: %s", r->peer_host,
                                        peer_conn_last_error(r->conn) ?: strerror(-q));
                r->bytes_done += n;
                if (r->bytes_done > r->bytes_total)
                        r->bytes_total = r->bytes_done;
                run_progress(r, false);
        }
}

static int set_fd_nonblocking(int fd, bool nonblock) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0)
                return -errno;
        flags = nonblock ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        return fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

/* Pre-copy rounds: stop when the device says nothing is left but what the downtime limit can carry. */
static int run_source_precopy(Run *r) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + phase_timeout(r, MIG_PHASE_PRECOPY);
        struct json_object *msg;
        int q;

        q = set_fd_nonblocking(r->data_fd, true);
        if (q < 0)
                return run_fail(r, q, "data fd: %s", strerror(-q));
        for (unsigned round = 0; round < PRECOPY_MAX_ROUNDS; round++) {
                uint64_t initial = 0, dirty = 0, rate, elapsed;

                q = run_send_stream(r, false, phase_timeout(r, MIG_PHASE_PRECOPY));
                if (q < 0)
                        return q;
                q = r->device->ops->get_precopy_info(r->device, r->data_fd, &initial, &dirty);
                if (q < 0 && q != -ENOMSG && q != -EOPNOTSUPP)
                        return run_fail(r, q, "device %s: precopy info: %s", r->device_id, strerror(-q));
                elapsed = now_usec(CLOCK_MONOTONIC) - r->transfer_start_usec;
                rate = elapsed > 0 ? r->bytes_done * 1000000u / elapsed : 0;
                if (r->bytes_done + initial + dirty > r->bytes_total)
                        r->bytes_total = r->bytes_done + initial + dirty;
                /* Converged: what is left fits in the downtime limit at the rate seen so far. */
                if (initial == 0 && (rate == 0 || dirty * 1000u / (rate ? rate : 1) <= r->policy->downtime_limit_ms))
                        break;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        break;
                if (initial == 0 && dirty == 0)
                        break;
                usleep(10000);
        }
        q = set_fd_nonblocking(r->data_fd, false);
        if (q < 0)
                return run_fail(r, q, "data fd: %s", strerror(-q));
        msg = json_object_new_object();
        json_object_object_add(msg, "type", json_object_new_string("precopy-done"));
        q = peer_send(r->conn, msg, phase_timeout(r, MIG_PHASE_PRECOPY));
        json_object_put(msg);
        if (q < 0)
                return run_fail(r, q, "telling %s that pre-copy ended: %s", r->peer_host, strerror(-q));
        return 0;
}

static struct json_object *message_new(Run *r, const char *type) {
        struct json_object *m = json_object_new_object();

        json_object_object_add(m, "type", json_object_new_string(type));
        json_object_object_add(m, "migration", json_object_new_string(r->id));
        return m;
}

static int run_send(Run *r, struct json_object *msg, MigPhase phase) {
        _cleanup_json_ struct json_object *owned = msg;
        int q;

        q = peer_send(r->conn, owned, phase_timeout(r, phase));
        if (q < 0)
                return run_fail(r, q, "sending \"%s\" to %s: %s",
                                json_object_get_string(json_object_object_get(owned, "type")), r->peer_host,
                                peer_conn_last_error(r->conn) ?: strerror(-q));
        return 0;
}

static const char *msg_type(struct json_object *m) {
        return json_object_get_string(json_object_object_get(m, "type"));
}

static const char *msg_string(struct json_object *m, const char *key) {
        return json_object_get_string(json_object_object_get(m, key));
}

/* Waits for one message of the expected type; error, rollback and cancel from the peer become failures. */
static int run_expect(Run *r, const char *type, MigPhase phase, struct json_object **ret) {
        _cleanup_json_ struct json_object *m = NULL;
        _cleanup_free_ char *why = NULL;
        int q;

        q = peer_recv(r->conn, phase_timeout(r, phase), &m, &why);
        if (q == -ECANCELED || atomic_load(&r->cancel))
                return run_fail(r, -ECANCELED, "cancelled");
        if (q < 0)
                return run_fail(r, q, "waiting for \"%s\" from %s: %s", type, r->peer_host, why ?: strerror(-q));
        if (streq(msg_type(m), "error"))
                return run_fail_as(r, error_name_for_code(msg_string(m, "code")), -EREMOTEIO, "%s refused: %s (%s)",
                                   r->peer_host, msg_string(m, "message"), msg_string(m, "code"));
        if (streq(msg_type(m), "rollback") || streq(msg_type(m), "cancel"))
                return run_fail(r, -ECANCELED, "%s rolled back: %s", r->peer_host, msg_string(m, "reason"));
        if (!streq(msg_type(m), type))
                return run_fail(r, -EBADMSG, "expected \"%s\" from %s, got \"%s\"", type, r->peer_host,
                                msg_type(m));
        if (ret)
                *ret = TAKE_PTR(m);
        return 0;
}

/* Source: STOP_COPY data until the device's EOF, then the digest. */
static int run_source_transfer(Run *r) {
        int q;

        run_phase(r, MIG_PHASE_STOP_COPY);
        q = run_send_stream(r, true, phase_timeout(r, MIG_PHASE_STOP_COPY));
        if (q < 0)
                return q;
        q = peer_stream_finish(r->conn, phase_timeout(r, MIG_PHASE_STOP_COPY));
        if (q < 0)
                return run_fail(r, q, "ending the data stream: %s", peer_conn_last_error(r->conn) ?: strerror(-q));
        close(r->data_fd);
        r->data_fd = -1;
        r->bytes_total = r->bytes_done;
        run_progress(r, true);
        return 0;
}

static void on_receive_progress(uint64_t bytes, void *userdata) {
        Run *r = userdata;

        r->bytes_done = bytes;
        if (bytes > r->bytes_total)
                r->bytes_total = bytes;
        run_progress(r, false);
}

static int run_destination_receive(Run *r, const char *until) {
        _cleanup_free_ char *why = NULL;
        int q;

        if (until)
                q = peer_stream_receive_until(r->conn, r->data_fd, until, phase_timeout(r, MIG_PHASE_PRECOPY),
                                              on_receive_progress, r, &why);
        else {
                run_phase(r, MIG_PHASE_LOAD);
                q = peer_stream_receive(r->conn, r->data_fd, phase_timeout(r, MIG_PHASE_LOAD), on_receive_progress,
                                        r, &why);
        }
        if (q == -ECANCELED || atomic_load(&r->cancel))
                return run_fail(r, -ECANCELED, "cancelled");
        if (q == -ECONNABORTED)
                return run_expect(r, "(the stream)", MIG_PHASE_LOAD, NULL); /* the peer's error/rollback, queued */
        if (q < 0)
                return run_fail(r, q, "%s", why ?: strerror(-q));
        /* 1: the whole stream ended (data-end verified) where pre-copy alone was expected. */
        if (q > 0)
                r->stream_complete = true;
        run_progress(r, true);
        return 0;
}

static int run_verify(Run *r) {
        struct json_object *ev;

        /* peer_stream_receive() compared length and SHA-256 before it returned 0; closing the fd ends the
         * device's input so it can parse what it got when RESUMING ends. */
        run_phase(r, MIG_PHASE_VERIFY);
        ev = run_event_new(r, "verify");
        json_object_object_add(ev, "ok", json_object_new_boolean(true));
        json_object_object_add(ev, "bytes", json_object_new_int64((int64_t) r->bytes_done));
        run_emit(r, ev);
        if (r->data_fd >= 0) {
                close(r->data_fd);
                r->data_fd = -1;
        }
        return 0;
}

/* The triggers for n vectors of idx: copies of the eventfds the target's VMM handed (preflight made sure there
 * are n), or new ones. */
static int run_restore_triggers(Run *r, IrqIndex idx, uint32_t n, int *fds) {
        uint32_t handed = r->device->n_restore_fds[idx];
        int q;

        assert(handed == 0 || handed == n);
        for (uint32_t v = 0; v < n; v++) {
                fds[v] = handed > 0 ? fcntl(r->device->restore_fds[idx][v], F_DUPFD_CLOEXEC, 3)
                                    : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[v] < 0) {
                        q = -errno;
                        while (v-- > 0)
                                close(fds[v]);
                        return run_fail(r, q, "device %s: %s for %s: %s", r->device_id,
                                        handed > 0 ? "dup of the VMM's eventfd" : "eventfd", irq_index_to_string(idx),
                                        strerror(-q));
                }
        }
        return 0;
}

/* Destination: triggers for every vector the source had, set on the device and handed to the monitor. */
static int run_set_irqs(Run *r) {
        run_phase(r, MIG_PHASE_IRQ_RESTORE);
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                uint32_t n = r->irq_count[idx];
                bool vmm_owned = r->device->n_restore_fds[idx] > 0;
                int fds[ENGINE_MAX_VECTORS];
                struct json_object *ev, *watch, *fd_list;
                int q;

                if (n == 0)
                        continue;
                if (n > ENGINE_MAX_VECTORS || n > r->device->info.irq_count[idx])
                        return run_fail(r, -EINVAL, "device %s: %u %s vectors to restore, the device has %u",
                                        r->device_id, n, irq_index_to_string(idx), r->device->info.irq_count[idx]);
                q = run_restore_triggers(r, idx, n, fds);
                if (q < 0)
                        return q;
                q = device_set_irqs(r->device, idx, 0, n, fds);
                ev = run_event_new(r, "set_irqs");
                json_object_object_add(ev, "index", json_object_new_string(irq_index_to_string(idx)));
                json_object_object_add(ev, "count", json_object_new_int((int) n));
                json_object_object_add(ev, "triggers", json_object_new_string(vmm_owned ? "vmm" : "migd"));
                json_object_object_add(ev, "state", json_object_new_string(mig_state_to_string(r->device->state)));
                json_object_object_add(ev, "ok", json_object_new_boolean(q >= 0));
                run_emit(r, ev);
                if (q < 0) {
                        for (uint32_t v = 0; v < n; v++)
                                close(fds[v]);
                        return run_fail(r, q, "device %s: SET_IRQS %s (%u vectors) failed: %s", r->device_id,
                                        irq_index_to_string(idx), n, strerror(-q));
                }
                /* The main loop watches the eventfds from here on and takes them over. */
                watch = json_object_new_object();
                fd_list = json_object_new_array();
                for (uint32_t v = 0; v < n; v++)
                        json_object_array_add(fd_list, json_object_new_int(fds[v]));
                json_object_object_add(watch, "index", json_object_new_int(idx));
                json_object_object_add(watch, "fds", fd_list);
                json_object_object_add(watch, "vmm_owned", json_object_new_boolean(vmm_owned));
                post_simple(r, "irq-watch", "irq", watch);
        }
        return 0;
}

static int run_teardown_irqs(Run *r) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                struct json_object *ev;
                int q;

                if (r->device->irq_enabled[idx] == 0)
                        continue;
                q = device_disable_irqs(r->device, idx);
                ev = run_event_new(r, "teardown_irqs");
                json_object_object_add(ev, "index", json_object_new_string(irq_index_to_string(idx)));
                json_object_object_add(ev, "ok", json_object_new_boolean(q >= 0));
                run_emit(r, ev);
                if (q < 0)
                        log_full(LOG_WARNING, q, NULL, r->device_id, r->id,
                                 "Tearing down %s interrupts after the commit failed: %m",
                                 irq_index_to_string(idx));
                post_simple(r, "irq-unwatch", "index", json_object_new_int(idx));
        }
        return 0;
}

/* Asks the destination for its durable decision, reconnecting as needed, until the rollback timeout. */
static const char *run_query_decision(Run *r) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + phase_timeout(r, MIG_PHASE_ROLLBACK);

        while (now_usec(CLOCK_MONOTONIC) < deadline && !atomic_load(&r->cancel)) {
                _cleanup_(peer_conn_freep) PeerConn *c = NULL;
                _cleanup_json_ struct json_object *q = NULL, *answer = NULL;
                const char *decision;

                if (peer_connect(r->peer_host, r->peer_port, &r->tls, r->local_name, 2000000u, &c, NULL) >= 0) {
                        q = json_object_new_object();
                        json_object_object_add(q, "type", json_object_new_string("resolve-query"));
                        json_object_object_add(q, "migration", json_object_new_string(r->id));
                        if (peer_send(c, q, 2000000u) >= 0 && peer_recv(c, 5000000u, &answer, NULL) >= 0 &&
                            streq(msg_type(answer), "resolve-answer")) {
                                decision = msg_string(answer, "decision");
                                if (streq(decision, "commit"))
                                        return "commit";
                                if (streq(decision, "abort"))
                                        return "abort";
                        }
                }
                usleep(500000);
        }
        return "unknown";
}

/* Both sides' commit point: fsync'd in the journal, then past it for Cancel and in the timeline. */
static int run_record_commit(Run *r) {
        struct json_object *ev;
        int q;

        run_journal_phase(r, MIG_PHASE_COMMIT);
        q = run_journal_save(r, "commit");
        if (q < 0)
                return q;
        atomic_store(&r->past_commit, true);
        ev = run_event_new(r, "commit");
        json_object_object_add(ev, "decision", json_object_new_string("commit"));
        run_emit(r, ev);
        post_simple(r, "past-commit", NULL, NULL);
        return 0;
}

/* Source commit point: the decision is durable before the destination hears it. */
static int run_source_commit(Run *r) {
        struct json_object *ev;
        const char *decision;
        int q;

        run_phase(r, MIG_PHASE_COMMIT);
        q = run_expect(r, "loaded", MIG_PHASE_LOAD, NULL);
        if (q < 0)
                return q;
        if (atomic_load(&r->cancel))
                return run_fail(r, -ECANCELED, "cancelled");
        q = run_record_commit(r);
        if (q < 0)
                return q;

        if (run_send(r, message_new(r, "commit"), MIG_PHASE_COMMIT) >= 0 &&
            run_expect(r, "committed", MIG_PHASE_COMMIT, NULL) >= 0)
                return 0;

        /* Past the decision, only the destination's own record can say whether it runs the device. */
        log_full(LOG_WARNING, 0, NULL, r->device_id, r->id, "No confirmation of the commit (%s); asking %s.",
                 r->error, r->peer_host);
        decision = run_query_decision(r);
        ev = run_event_new(r, "resolve");
        json_object_object_add(ev, "decision", json_object_new_string(decision));
        run_emit(r, ev);
        if (streq(decision, "commit")) {
                r->error[0] = '\0';
                return 0;
        }
        if (streq(decision, "abort")) {
                atomic_store(&r->past_commit, false);
                return run_fail(r, -ECONNABORTED, "the destination aborted before it received the commit");
        }
        return -EINPROGRESS; /* in doubt */
}

static int run_destination_commit(Run *r) {
        int q;

        run_phase(r, MIG_PHASE_COMMIT);
        q = run_send(r, message_new(r, "loaded"), MIG_PHASE_COMMIT);
        if (q < 0)
                return q;
        q = run_expect(r, "commit", MIG_PHASE_COMMIT, NULL);
        if (q < 0)
                return q;
        q = run_record_commit(r);
        if (q < 0)
                return q;
        /* The device is ours now whatever happens to the link: a lost "committed" only costs the source a query. */
        (void) run_send(r, message_new(r, "committed"), MIG_PHASE_COMMIT);
        return 0;
}

static int run_steps(Run *r) {
        const Plan *p = r->plan;

        for (size_t i = 1; i < p->n_steps[r->role]; i++) {
                const PlanStep *s = &p->steps[r->role][i];
                int q = 0;

                if (atomic_load(&r->cancel) && !atomic_load(&r->past_commit))
                        return run_fail(r, -ECANCELED, "cancelled");
                if (s->kind == PLAN_STEP_ARC) {
                        q = run_arc(r, s->to);
                        if (q >= 0 && r->role == PLAN_ROLE_DESTINATION && s->to == MIG_STATE_V1_RESUMING_RUNNING)
                                r->run_rt_usec = now_usec(CLOCK_REALTIME);
                } else
                        switch (s->action) {
                        case PLAN_ACTION_OPEN_STREAM:
                                if (r->data_fd < 0)
                                        q = run_fail(r, -EIO, "device %s gave no data fd in %s", r->device_id,
                                                     mig_state_to_string(r->device->state));
                                if (!r->transfer_start_usec)
                                        r->transfer_start_usec = now_usec(CLOCK_MONOTONIC);
                                break;
                        case PLAN_ACTION_TRANSFER_PRECOPY:
                                run_phase(r, MIG_PHASE_PRECOPY);
                                q = r->role == PLAN_ROLE_SOURCE ? run_source_precopy(r)
                                                                : run_destination_receive(r, "precopy-done");
                                break;
                        case PLAN_ACTION_TRANSFER:
                                if (r->role == PLAN_ROLE_SOURCE)
                                        q = run_source_transfer(r);
                                else if (!r->stream_complete)
                                        q = run_destination_receive(r, NULL);
                                break;
                        case PLAN_ACTION_VERIFY:
                                q = run_verify(r);
                                break;
                        case PLAN_ACTION_SET_IRQS:
                                q = run_set_irqs(r);
                                break;
                        case PLAN_ACTION_COMMIT:
                                q = r->role == PLAN_ROLE_SOURCE ? run_source_commit(r) : run_destination_commit(r);
                                if (q >= 0 && r->role == PLAN_ROLE_DESTINATION)
                                        run_phase(r, MIG_PHASE_START);
                                break;
                        case PLAN_ACTION_TEARDOWN_IRQS:
                                run_phase(r, MIG_PHASE_CLEANUP);
                                q = run_teardown_irqs(r);
                                break;
                        case PLAN_ACTION_RELEASE:
                                break;
                        default:
                                assert(false);
                        }
                if (q < 0)
                        return q;
        }
        return 0;
}

/* Both sides: record why, tell the peer (best effort), and end the device's data stream. */
static void run_rollback_begin(Run *r) {
        struct json_object *ev = run_event_new(r, "rollback");

        json_object_object_add(ev, "reason", json_object_new_string(r->error));
        run_emit(r, ev);
        run_phase(r, MIG_PHASE_ROLLBACK);
        if (r->conn) {
                struct json_object *m = message_new(r, "rollback");
                json_object_object_add(m, "reason", json_object_new_string(r->error));
                (void) peer_send(r->conn, m, 1000000u);
                json_object_put(m);
        }
        if (r->data_fd >= 0) {
                close(r->data_fd);
                r->data_fd = -1;
        }
}

/* What the device says now is the truth; from ERROR only a reset leads anywhere (its state is lost). */
static int run_leave_error(Run *r) {
        int q = device_refresh_state(r->device);

        if (q >= 0 && r->device->state == MIG_STATE_ERROR) {
                log_full(LOG_ERR, 0, NULL, r->device_id, r->id, "Device in ERROR during rollback; resetting it.");
                q = device_reset(r->device);
        }
        return q;
}

/* Before the commit point: the source device runs again with the interrupts it never lost. */
static void run_rollback_source(Run *r) {
        int q;

        run_rollback_begin(r);
        q = run_leave_error(r);
        if (q >= 0)
                q = run_walk(r, MIG_STATE_RUNNING);
        /* An arc on the way back can fail too (and leave ERROR): reset and walk once more. */
        if (q < 0 && run_leave_error(r) >= 0)
                q = run_walk(r, MIG_STATE_RUNNING);
        if (q < 0)
                log_full(LOG_ERR, q, NULL, r->device_id, r->id, "Rollback could not run the device again: %m");
}

/* The target goes back to STOP with no interrupts: it never ran, and no VM owns it. */
static void run_rollback_destination(Run *r) {
        int q;

        run_rollback_begin(r);
        if (r->device) {
                q = run_leave_error(r);
                if (q >= 0 && !mig_state_is_running(r->device->state))
                        q = run_walk(r, MIG_STATE_STOP);
                /* RESUMING -> STOP parses what arrived; an incomplete stream fails that arc into ERROR. */
                if (q < 0 && run_leave_error(r) >= 0)
                        q = run_walk(r, MIG_STATE_STOP);
                if (q < 0)
                        log_full(LOG_ERR, q, NULL, r->device_id, r->id, "The target could not be stopped: %m");
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                        if (r->device->irq_enabled[idx]) {
                                (void) device_disable_irqs(r->device, idx);
                                post_simple(r, "irq-unwatch", "index", json_object_new_int(idx));
                        }
        }
        /* No record answers a resolve-query exactly as an abort record would: nothing needs to stay. */
        if (r->journal && !streq_ptr(json_object_get_string(json_object_object_get(r->journal, "decision")), "commit"))
                (void) journal_remove(r->engine->journal_dir, r->id);
}

/* Waits for the main loop to have applied an update that carried efd as "reply_fd". A daemon that shuts down
 * stops its loop first and cancels its workers: they must not wait for it then. */
static int run_wait_for_loop(Run *r, int efd) {
        uint64_t v;

        while (!atomic_load(&r->cancel)) {
                struct pollfd p = { .fd = efd, .events = POLLIN };

                if (poll(&p, 1, 100) > 0)
                        return read(efd, &v, sizeof(v)) == sizeof(v) ? 0 : -EIO;
        }
        return -ECANCELED;
}

static struct json_object *run_done_update(Run *r, const char *result) {
        struct json_object *u = json_object_new_object(), *ev = run_event_new(r, "result");
        uint64_t downtime = r->stop_rt_usec && r->run_rt_usec > r->stop_rt_usec ? r->run_rt_usec - r->stop_rt_usec : 0;

        json_object_object_add(ev, "result", json_object_new_string(result));
        if (r->error[0])
                json_object_object_add(ev, "error", json_object_new_string(r->error));
        if (downtime)
                json_object_object_add(ev, "downtime_usec", json_object_new_int64((int64_t) downtime));
        run_emit(r, ev);
        json_object_object_add(u, "kind", json_object_new_string("done"));
        json_object_object_add(u, "migration", json_object_new_string(r->id));
        json_object_object_add(u, "device", json_object_new_string(r->device_id));
        json_object_object_add(u, "result", json_object_new_string(result));
        json_object_object_add(u, "error", json_object_new_string(r->error));
        json_object_object_add(u, "error_name", json_object_new_string(r->error_name ?: ""));
        json_object_object_add(u, "downtime_usec", json_object_new_int64((int64_t) downtime));
        return u;
}

static void run_post_done(Run *r, const char *result) {
        engine_post_last(r->engine, r, run_done_update(r, result));
}

/* Destination: the result is shown and the device released before the source hears "started", so whoever
 * the source's success returns to can use the device on this host at once. The worker stays for "forget". */
static void run_publish_success(Run *r) {
        struct json_object *u = run_done_update(r, "success");
        int efd = eventfd(0, EFD_CLOEXEC);

        if (efd >= 0)
                json_object_object_add(u, "reply_fd", json_object_new_int(efd));
        engine_post(r->engine, u);
        if (efd >= 0) {
                (void) run_wait_for_loop(r, efd);
                close(efd);
        }
}

static struct json_object *device_to_wire(Run *r) {
        struct json_object *d = json_object_new_object(), *flags = json_object_new_array(), *irqs;
        char buf[MIG_FLAGS_STRING_MAX];
        char vid[8], did[8];
        _cleanup_strv_free_ char **words = NULL;

        json_object_object_add(d, "id", json_object_new_string(r->device_id));
        json_object_object_add(d, "backend", json_object_new_string(r->device->ops->name));
        json_object_object_add(d, "driver", json_object_new_string(strna(r->device->info.driver)));
        snprintf(vid, sizeof(vid), "0x%04x", r->device->info.vendor_id);
        snprintf(did, sizeof(did), "0x%04x", r->device->info.device_id);
        json_object_object_add(d, "vendor_id", json_object_new_string(vid));
        json_object_object_add(d, "device_id", json_object_new_string(did));
        json_object_object_add(d, "mdev_type", r->device->info.mdev_type ?
                               json_object_new_string(r->device->info.mdev_type) : NULL);
        if (strv_split(mig_flags_to_string(r->device->info.mig_flags, buf, sizeof(buf)), ",", &words) >= 0)
                for (char **w = words; *w; w++)
                        json_object_array_add(flags, json_object_new_string(*w));
        json_object_object_add(d, "migration_flags", flags);
        json_object_object_add(d, "uapi", json_object_new_int((int) r->device->info.uapi));
        json_object_object_add(d, "state_size", json_object_new_int64((int64_t) r->device->info.state_size));
        irqs = json_object_new_object();
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                json_object_object_add(irqs, irq_index_to_string(idx),
                                       json_object_new_int((int) r->device->irq_enabled[idx]));
        json_object_object_add(d, "interrupts", irqs);
        return d;
}

/* Cancel() reads r->conn from the main loop: it is only ever set under the engine's lock. A cancel that came
 * while connecting is honoured at once. */
static void run_publish_conn(Run *r, PeerConn *conn) {
        pthread_mutex_lock(&r->engine->lock);
        r->conn = conn;
        if (atomic_load(&r->cancel))
                peer_conn_abort(conn);
        pthread_mutex_unlock(&r->engine->lock);
}

static int run_source_preflight(Run *r) {
        PeerConn *conn = NULL;
        _cleanup_free_ char *why = NULL;
        _cleanup_json_ struct json_object *ok = NULL;
        struct json_object *msg, *target;
        int q;

        run_phase(r, MIG_PHASE_PREFLIGHT);
        q = peer_connect(r->peer_host, r->peer_port, &r->tls, r->local_name, phase_timeout(r, MIG_PHASE_PREFLIGHT),
                         &conn, &why);
        if (q < 0)
                return run_fail_as(r, MIGD_ERROR_PEER_UNREACHABLE, q, "cannot reach %s:%u: %s", r->peer_host,
                                   r->peer_port, why ?: strerror(-q));
        peer_conn_set_silence_timeout(conn, r->silence_usec);
        run_publish_conn(r, conn);
        msg = message_new(r, "preflight");
        json_object_object_add(msg, "device", device_to_wire(r));
        target = json_object_object_get(r->options, "target");
        json_object_object_add(msg, "target", target ? json_object_get(target) : NULL);
        json_object_object_add(msg, "policy", policy_to_json(r->policy));
        json_object_object_add(msg, "plan", plan_to_json(r->plan));
        json_object_object_add(msg, "options", json_object_get(r->options));
        q = run_send(r, msg, MIG_PHASE_PREFLIGHT);
        if (q < 0)
                return q;
        q = run_expect(r, "preflight-ok", MIG_PHASE_PREFLIGHT, &ok);
        if (q < 0)
                return q;

        run_phase(r, MIG_PHASE_PREPARE);
        q = run_send(r, message_new(r, "prepare"), MIG_PHASE_PREPARE);
        if (q < 0)
                return q;
        return run_expect(r, "prepared", MIG_PHASE_PREPARE, NULL);
}

static void run_merge_peer_timeline(Run *r, struct json_object *started) {
        struct json_object *events = json_object_object_get(started, "timeline"), *rt;

        for (size_t i = 0; events && i < json_object_array_length(events); i++)
                run_emit(r, json_object_get(json_object_array_get_idx(events, i)));
        rt = json_object_object_get(started, "running_rt_usec");
        if (rt)
                r->run_rt_usec = (uint64_t) json_object_get_int64(rt);
}

/* The source's record is gone: the destination's committed record has nobody left to answer and may go too.
 * Best effort; a record that stays is only disk space. */
static void run_send_forget(Run *r, PeerConn *conn) {
        struct json_object *m = message_new(r, "forget");

        (void) peer_send(conn, m, 2000000u);
        json_object_put(m);
}

static void run_forget_at_peer(Run *r) {
        _cleanup_(peer_conn_freep) PeerConn *c = NULL;

        if (peer_connect(r->peer_host, r->peer_port, &r->tls, r->local_name, 2000000u, &c, NULL) >= 0)
                run_send_forget(r, c);
}

/* Destination, after "started": the source says it forgot, normally within milliseconds. */
static void run_await_forget(Run *r) {
        _cleanup_json_ struct json_object *m = NULL;

        if (peer_recv(r->conn, 5000000u, &m, NULL) >= 0 && streq(msg_type(m), "forget") &&
            streq(msg_string(m, "migration"), r->id))
                engine_forget(r->engine, r->id);
}

void *run_source_main(void *userdata) {
        Run *r = userdata;
        _cleanup_json_ struct json_object *started = NULL;
        int q;

        q = run_source_preflight(r);
        if (q >= 0) {
                run_journal_phase(r, MIG_PHASE_PREPARE);
                q = run_journal_save(r, "none");
        }
        if (q >= 0)
                q = run_steps(r);
        if (q == -EINPROGRESS) {
                run_post_done(r, "in-doubt");
                return NULL;
        }
        if (q < 0 && !atomic_load(&r->past_commit)) {
                bool cancelled = q == -ECANCELED && atomic_load(&r->cancel);
                log_full(LOG_ERR, 0, MIGD_MESSAGE_MIGRATION_FAILED, r->device_id, r->id, "Migration failed: %s",
                         r->error);
                run_rollback_source(r);
                (void) journal_remove(r->engine->journal_dir, r->id);
                run_post_done(r, cancelled ? "cancelled" : "failed");
                return NULL;
        }
        /* The destination reports when its device runs, with its half of the timeline. */
        if (peer_recv(r->conn, phase_timeout(r, MIG_PHASE_START), &started, NULL) >= 0 &&
            streq(msg_type(started), "started"))
                run_merge_peer_timeline(r, started);
        r->error[0] = '\0';
        (void) journal_remove(r->engine->journal_dir, r->id);
        run_send_forget(r, r->conn);
        log_full(LOG_INFO, 0, MIGD_MESSAGE_MIGRATION_DONE, r->device_id, r->id, "Migration to %s:%u succeeded.",
                 r->peer_host, r->peer_port);
        run_post_done(r, "success");
        return NULL;
}

/* The destination's answer to preflight: its own plan for the target must equal the source's. */
static int run_destination_preflight(Run *r, struct json_object *pre) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_json_ struct json_object *plan_json = NULL;
        struct json_object *dev = json_object_object_get(pre, "device"), *irqs;
        const char *ours, *theirs, *precopy;
        int q;

        /* The caller's overrides apply on both hosts, or the plans could not agree. */
        precopy = msg_string(json_object_object_get(pre, "options"), "precopy");
        if (precopy) {
                Tristate t = tristate_from_string(precopy);
                if (t < 0)
                        return run_fail(r, -EINVAL, "option precopy=\"%s\" is not off, auto or required", precopy);
                r->policy->precopy = t;
        }

        q = plan_build(r->policy, &(MigCaps) { r->device->info.mig_flags, r->device->info.uapi }, &r->plan, &errors);
        if (q < 0)
                return run_fail(r, -EINVAL, "policy %s cannot be planned for %s: %s: %s", r->policy->name,
                                r->device_id, errors.n ? errors.items[0].json_path : "$",
                                errors.n ? errors.items[0].message : "invalid");
        plan_json = plan_to_json(r->plan);
        ours = json_object_to_json_string_ext(plan_json, JSON_C_TO_STRING_PLAIN);
        theirs = json_object_to_json_string_ext(json_object_object_get(pre, "plan"), JSON_C_TO_STRING_PLAIN);
        if (!streq(ours, theirs))
                return run_fail(r, -EINVAL, "the hosts disagree on the plan for policy %s (source: %s, destination: %s)",
                                r->policy->name, theirs, ours);
        irqs = json_object_object_get(dev, "interrupts");
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                r->irq_count[idx] = (uint32_t) json_object_get_int(json_object_object_get(irqs, irq_index_to_string(idx)));
        r->bytes_total = (uint64_t) json_object_get_int64(json_object_object_get(dev, "state_size"));
        return 0;
}

static void run_send_error(Run *r, const char *code) {
        struct json_object *m;

        if (!r->conn)
                return;
        m = json_object_new_object();
        json_object_object_add(m, "type", json_object_new_string("error"));
        json_object_object_add(m, "code", json_object_new_string(code));
        json_object_object_add(m, "message", json_object_new_string(r->error[0] ? r->error : "failed"));
        (void) peer_send(r->conn, m, 1000000u);
        json_object_put(m);
}

/* Main loop work the worker must wait for: choosing and reserving a target happens where devices live. */
static int run_claim_target(Run *r, struct json_object *pre) {
        struct json_object *u = json_object_new_object();
        int efd = eventfd(0, EFD_CLOEXEC);
        int q;

        if (efd < 0) {
                json_object_put(u);
                return -errno;
        }
        json_object_object_add(u, "kind", json_object_new_string("claim"));
        json_object_object_add(u, "migration", json_object_new_string(r->id));
        json_object_object_add(u, "preflight", json_object_new_string(json_object_to_json_string(pre)));
        json_object_object_add(u, "run", json_object_new_int64((int64_t) (intptr_t) r));
        json_object_object_add(u, "reply_fd", json_object_new_int(efd));
        engine_post(r->engine, u);
        q = run_wait_for_loop(r, efd);
        close(efd);
        if (q < 0)
                return q;
        return r->device ? 0 : r->claim_error;
}

void *run_destination_main(void *userdata) {
        _cleanup_json_ struct json_object *timeline_copy = NULL;
        Run *r = userdata;
        _cleanup_json_ struct json_object *pre = NULL, *ok = NULL, *started = NULL;
        _cleanup_free_ char *why = NULL;
        const char *code = "Failed";
        PeerConn *conn = NULL;
        int fd = TAKE_FD(r->accepted_fd), q;

        q = peer_accept(fd, &r->tls, r->local_name, 10000000u, &conn, &why);
        if (q >= 0)
                run_publish_conn(r, conn);
        if (q < 0) {
                log_full(LOG_WARNING, q, NULL, NULL, NULL, "Refused a peer: %s", why ?: strerror(-q));
                engine_post_last(r->engine, r, json_object_new_object()); /* wakes the loop to reap this worker */
                return NULL;
        }
        peer_conn_set_silence_timeout(r->conn, r->silence_usec);
        free(r->peer_host);
        r->peer_host = strdup(peer_conn_remote_name(r->conn));

        q = peer_recv(r->conn, 30000000u, &pre, &why);
        if (q >= 0 && streq(msg_type(pre), "resolve-query")) {
                struct json_object *a = json_object_new_object();
                json_object_object_add(a, "type", json_object_new_string("resolve-answer"));
                json_object_object_add(a, "migration", json_object_new_string(msg_string(pre, "migration")));
                json_object_object_add(a, "decision", json_object_new_string(
                                                              engine_resolve_answer(r->engine, msg_string(pre, "migration"))));
                (void) peer_send(r->conn, a, 2000000u);
                json_object_put(a);
                engine_post_last(r->engine, r, json_object_new_object());
                return NULL;
        }
        if (q >= 0 && streq(msg_type(pre), "forget")) {
                engine_forget(r->engine, msg_string(pre, "migration"));
                engine_post_last(r->engine, r, json_object_new_object());
                return NULL;
        }
        if (q < 0 || !streq(msg_type(pre), "preflight")) {
                log_full(LOG_WARNING, q, NULL, NULL, NULL, "Peer %s sent no preflight: %s", strna(r->peer_host),
                         why ?: (q < 0 ? strerror(-q) : msg_type(pre)));
                engine_post_last(r->engine, r, json_object_new_object());
                return NULL;
        }
        free(r->id);
        r->id = strdup(msg_string(pre, "migration"));
        q = run_claim_target(r, pre);
        if (q < 0) {
                code = q == -EBUSY ? "Busy" : q == -ENOENT ? "NoSuchPolicy" : q == -EINVAL ? "PolicyViolation"
                                                                                         : "NoSuchDevice";
                /* The claim wrote its reason into r->error already, when it had one. */
                if (!r->error[0])
                        snprintf(r->error, sizeof(r->error), "no matching target device");
                r->error_name = error_name_for_code(code);
                goto refuse;
        }
        q = run_destination_preflight(r, pre);
        if (q < 0) {
                code = "PolicyViolation";
                r->error_name = MIGD_ERROR_POLICY_VIOLATION;
                goto refuse;
        }
        run_journal_init(r);
        ok = json_object_new_object();
        json_object_object_add(ok, "type", json_object_new_string("preflight-ok"));
        json_object_object_add(ok, "migration", json_object_new_string(r->id));
        json_object_object_add(ok, "target", json_object_new_string(r->device_id));
        json_object_object_add(ok, "plan", plan_to_json(r->plan));
        q = run_send(r, json_object_get(ok), MIG_PHASE_PREFLIGHT);
        if (q >= 0)
                q = run_expect(r, "prepare", MIG_PHASE_PREPARE, NULL);
        if (q >= 0) {
                run_phase(r, MIG_PHASE_PREPARE);
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX && q >= 0; idx++)
                        if (r->device->irq_enabled[idx]) {
                                (void) device_disable_irqs(r->device, idx);
                                post_simple(r, "irq-unwatch", "index", json_object_new_int(idx));
                        }
                q = run_walk(r, r->plan->steps[PLAN_ROLE_DESTINATION][0].to);
        }
        if (q >= 0) {
                run_journal_phase(r, MIG_PHASE_PREPARE);
                q = run_journal_save(r, "none");
        }
        if (q >= 0)
                q = run_send(r, message_new(r, "prepared"), MIG_PHASE_PREPARE);
        if (q >= 0)
                q = run_steps(r);
        if (q < 0 && !atomic_load(&r->past_commit)) {
                bool cancelled = q == -ECANCELED && atomic_load(&r->cancel);
                log_full(LOG_ERR, 0, MIGD_MESSAGE_MIGRATION_FAILED, r->device_id, r->id, "Migration failed: %s",
                         r->error);
                run_rollback_destination(r);
                run_post_done(r, cancelled ? "cancelled" : "failed");
                return NULL;
        }
        if (q < 0)
                log_full(LOG_WARNING, 0, NULL, r->device_id, r->id, "After the commit: %s", r->error);
        started = message_new(r, "started");
        json_object_object_add(started, "running_rt_usec", json_object_new_int64((int64_t) r->run_rt_usec));
        /* This host's half as it was when the device ran; its result event stays here. */
        if (json_object_deep_copy(r->timeline, &timeline_copy, NULL) == 0)
                json_object_object_add(started, "timeline", TAKE_PTR(timeline_copy));
        r->error[0] = '\0';
        json_object_object_add(r->journal, "done", json_object_new_boolean(true));
        (void) run_journal_save(r, "commit");
        run_publish_success(r);
        (void) peer_send(r->conn, started, 2000000u);
        run_await_forget(r);
        engine_post_last(r->engine, r, json_object_new_object()); /* wakes the loop to reap this worker */
        return NULL;

refuse:
        log_full(LOG_WARNING, 0, MIGD_MESSAGE_MIGRATION_FAILED, r->device_id, r->id, "Refused migration: %s", r->error);
        run_send_error(r, code);
        {
                struct json_object *u = json_object_new_object();
                json_object_object_add(u, "kind", json_object_new_string("refused"));
                json_object_object_add(u, "migration", json_object_new_string(strna(r->id)));
                engine_post_last(r->engine, r, u);
        }
        return NULL;
}

/* Recovery of a source that had decided to commit: ask the destination, then finish either way or stay in doubt. */
void *run_resolve_main(void *userdata) {
        Run *r = userdata;
        const char *decision = run_query_decision(r);
        struct json_object *ev = run_event_new(r, "resolve");

        json_object_object_add(ev, "decision", json_object_new_string(decision));
        run_emit(r, ev);
        if (streq(decision, "commit")) {
                run_teardown_irqs(r);
                (void) journal_remove(r->engine->journal_dir, r->id);
                run_forget_at_peer(r);
                run_post_done(r, "success");
        } else if (streq(decision, "abort")) {
                run_fail(r, -ECONNABORTED, "the destination aborted before it received the commit");
                run_rollback_source(r);
                (void) journal_remove(r->engine->journal_dir, r->id);
                run_post_done(r, "failed");
        } else {
                run_fail(r, -EHOSTUNREACH, "%s:%u cannot say whether it committed; the device stays stopped until "
                         "migctl resolve", r->peer_host, r->peer_port);
                run_post_done(r, "in-doubt");
        }
        return NULL;
}
