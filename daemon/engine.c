/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's main-loop half: starts workers, applies what they report to D-Bus, watches interrupts, recovers. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>

#include "bus-errors.h"
#include "bus-migration.h"
#include "engine-internal.h"
#include "journal.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define PROGRESS_EMIT_INTERVAL_USEC 250000u
#define TIMELINE_MAX 20000u
#define SILENCE_USEC 5000000u

static int engine_on_queue(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static const char *jstr(struct json_object *o, const char *key) {
        return json_object_get_string(json_object_object_get(o, key));
}

int engine_new(Manager *m, Engine **ret) {
        _cleanup_(engine_freep) Engine *e = NULL;
        int r;

        assert(m);
        assert(ret);

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->manager = m;
        e->listen_fd = -1;
        e->queue_fd = -1;
        pthread_mutex_init(&e->lock, NULL);
        e->queue = json_object_new_array();
        e->pending_changes = json_object_new_object();
        if (!e->queue || !e->pending_changes)
                return -ENOMEM;
        if (asprintf(&e->journal_dir, "%s/journal", m->config->state_dir) < 0)
                return -ENOMEM;
        e->hostname = strdup(m->config->peer_name ?: m->hostname);
        if (!e->hostname)
                return -ENOMEM;
        e->queue_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (e->queue_fd < 0)
                return -errno;
        r = sd_event_add_io(m->event, &e->queue_source, e->queue_fd, EPOLLIN, engine_on_queue, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

static void engine_join_run(Engine *e, Run *run) {
        if (run->thread_started) {
                pthread_join(run->thread, NULL);
                run->thread_started = false;
        }
}

static void engine_unwatch_all(void);

Engine *engine_free(Engine *e) {
        if (!e)
                return NULL;
        /* The port goes first, so a migd started right after this one can listen while workers wind down. */
        e->listen_source = sd_event_source_disable_unref(e->listen_source);
        if (e->listen_fd >= 0)
                e->listen_fd = (close(e->listen_fd), -1);
        pthread_mutex_lock(&e->lock);
        for (size_t i = 0; i < e->n_runs; i++) {
                atomic_store(&e->runs[i]->cancel, true);
                if (e->runs[i]->conn)
                        peer_conn_abort(e->runs[i]->conn);
        }
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < e->n_runs; i++) {
                engine_join_run(e, e->runs[i]);
                run_free(e->runs[i]);
        }
        free(e->runs);
        engine_unwatch_all();
        sd_event_source_disable_unref(e->listen_source);
        sd_event_source_disable_unref(e->queue_source);
        sd_event_source_disable_unref(e->flush_timer);
        if (e->listen_fd >= 0)
                close(e->listen_fd);
        if (e->queue_fd >= 0)
                close(e->queue_fd);
        json_object_put(e->queue);
        json_object_put(e->pending_changes);
        pthread_mutex_destroy(&e->lock);
        free(e->journal_dir);
        free(e->hostname);
        free(e);
        return NULL;
}

void engine_freep(Engine **e) {
        engine_free(*e);
}

void engine_post(Engine *e, struct json_object *update) {
        uint64_t one = 1;

        pthread_mutex_lock(&e->lock);
        json_object_array_add(e->queue, update);
        pthread_mutex_unlock(&e->lock);
        (void) !write(e->queue_fd, &one, sizeof(one));
}

/* A worker's last update and its finished flag change under one lock: the loop, which notes the finished runs
 * as it takes the queue, never reaps a run whose last update (the one that releases its device) it has not
 * applied yet. */
void engine_post_last(Engine *e, Run *run, struct json_object *update) {
        uint64_t one = 1;

        pthread_mutex_lock(&e->lock);
        json_object_array_add(e->queue, update);
        atomic_store(&run->finished, true);
        pthread_mutex_unlock(&e->lock);
        (void) !write(e->queue_fd, &one, sizeof(one));
}

static Run *engine_find_run(Engine *e, const char *id) {
        for (size_t i = 0; i < e->n_runs; i++)
                if (streq_ptr(e->runs[i]->id, id))
                        return e->runs[i];
        return NULL;
}

bool engine_device_in_use(Engine *e, const char *device_id) {
        for (size_t i = 0; i < e->n_runs; i++)
                if (streq_ptr(e->runs[i]->device_id, device_id) && !atomic_load(&e->runs[i]->finished) &&
                    !e->runs[i]->device_released)
                        return true;
        return false;
}

static int engine_add_run(Engine *e, Run *run) {
        Run **n;

        pthread_mutex_lock(&e->lock);
        n = reallocarray(e->runs, e->n_runs + 1, sizeof(Run *));
        if (n) {
                e->runs = n;
                e->runs[e->n_runs++] = run;
        }
        pthread_mutex_unlock(&e->lock);
        return n ? 0 : -ENOMEM;
}

static void engine_remove_run(Engine *e, Run *run) {
        pthread_mutex_lock(&e->lock);
        for (size_t i = 0; i < e->n_runs; i++)
                if (e->runs[i] == run) {
                        memmove(e->runs + i, e->runs + i + 1, (e->n_runs - i - 1) * sizeof(Run *));
                        e->n_runs--;
                        break;
                }
        pthread_mutex_unlock(&e->lock);
}

/* While a worker owns a device, its state changes reach D-Bus through the queue, never from the worker.
 * d->userdata stays the Manager: D-Bus handlers read it while a migration runs. */
static void on_worker_state_changed(Device *d, MigState old_state, MigState new_state, void *userdata) {
        Engine *e = ((Manager *) userdata)->engine;
        struct json_object *u = json_object_new_object();

        json_object_object_add(u, "kind", json_object_new_string("device-state"));
        json_object_object_add(u, "device", json_object_new_string(d->id));
        json_object_object_add(u, "old", json_object_new_int(old_state));
        json_object_object_add(u, "new", json_object_new_int(new_state));
        engine_post(e, u);
}

/* The owner's hook (sim, vfio and libvirt devices each have theirs) runs on the main loop for a worker's changes. */
static void engine_take_device(Engine *e, Device *d) {
        if (d->on_state_changed != on_worker_state_changed) {
                d->saved_on_state_changed = d->on_state_changed;
                d->on_state_changed = on_worker_state_changed;
        }
        manager_device_set_busy(e->manager, d, true);
}

static void engine_release_device(Engine *e, Device *d, bool busy) {
        if (d->on_state_changed == on_worker_state_changed)
                d->on_state_changed = d->saved_on_state_changed;
        manager_device_set_busy(e->manager, d, busy);
}

static void emit_migration(Engine *e, Migration *mig, const char *const *props) {
        bus_migration_emit_changed_strv(e->manager, mig, (char **) props);
}

static int on_flush_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        static const char *const props[] = { "BytesTotal", "BytesTransferred", "Rate", "EtaSeconds", NULL };
        Engine *e = userdata;

        json_object_object_foreach(e->pending_changes, id, value) {
                Migration *mig = manager_find_migration(e->manager, id);
                (void) value;
                if (mig)
                        emit_migration(e, mig, props);
        }
        json_object_put(e->pending_changes);
        e->pending_changes = json_object_new_object();
        e->last_flush_usec = usec;
        return 0;
}

/* PropertiesChanged for progress at most every PROGRESS_EMIT_INTERVAL_USEC per daemon. */
static void schedule_progress_emit(Engine *e, Migration *mig) {
        uint64_t now;

        json_object_object_add(e->pending_changes, mig->id, json_object_new_boolean(true));
        if (e->flush_timer && sd_event_source_get_enabled(e->flush_timer, NULL) > 0)
                return;
        (void) sd_event_now(e->manager->event, CLOCK_MONOTONIC, &now);
        if (e->flush_timer) {
                (void) sd_event_source_set_time(e->flush_timer, e->last_flush_usec + PROGRESS_EMIT_INTERVAL_USEC);
                (void) sd_event_source_set_enabled(e->flush_timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_add_time(e->manager->event, &e->flush_timer, CLOCK_MONOTONIC,
                                         e->last_flush_usec + PROGRESS_EMIT_INTERVAL_USEC, 0, on_flush_timer, e);
}

static void apply_timeline(Engine *e, Migration *mig, struct json_object *event) {
        if (json_object_array_length(mig->timeline) < TIMELINE_MAX)
                json_object_array_add(mig->timeline, json_object_get(event));
}

static void apply_progress(Engine *e, Migration *mig, struct json_object *p) {
        mig->bytes_total = (uint64_t) json_object_get_int64(json_object_object_get(p, "bytes_total"));
        mig->bytes_transferred = (uint64_t) json_object_get_int64(json_object_object_get(p, "bytes_transferred"));
        mig->rate = (uint64_t) json_object_get_int64(json_object_object_get(p, "rate"));
        mig->eta_seconds = (uint64_t) json_object_get_int64(json_object_object_get(p, "eta_seconds"));
        schedule_progress_emit(e, mig);
}

static void apply_phase(Engine *e, Migration *mig, const char *phase) {
        static const char *const props[] = { "Phase", NULL };

        (void) migration_set_string(&mig->phase, phase);
        emit_migration(e, mig, props);
}

static void trim_history(Engine *e) {
        Manager *m = e->manager;
        size_t finished = 0;

        for (size_t i = 0; i < m->n_migrations; i++)
                finished += m->migrations[i]->result[0] != '\0' && !streq(m->migrations[i]->result, "in-doubt");
        for (size_t i = 0; i < m->n_migrations && finished > ENGINE_HISTORY_MAX;) {
                Migration *mig = m->migrations[i];
                if (mig->result[0] != '\0' && !streq(mig->result, "in-doubt")) {
                        manager_remove_migration(m, mig);
                        finished--;
                } else
                        i++;
        }
}

static void apply_done(Engine *e, Run *run, Migration *mig, struct json_object *u) {
        static const char *const props[] = { "Result", "Error", "ErrorName", "DowntimeUsec", "Phase", "BytesTotal",
                                             "BytesTransferred", "Rate", "EtaSeconds", NULL };
        const char *result = jstr(u, "result");
        bool in_doubt = streq(result, "in-doubt");

        if (mig) {
                migration_set_result(mig, result, jstr(u, "error"), jstr(u, "error_name"));
                mig->downtime_usec = (uint64_t) json_object_get_int64(json_object_object_get(u, "downtime_usec"));
                mig->eta_seconds = 0;
                (void) migration_set_string(&mig->phase, in_doubt ? "commit" : "");
                emit_migration(e, mig, props);
        }
        if (run && run->device) {
                /* The VMM's eventfds are the running device's triggers now, not the next restore's. */
                if (run->role == PLAN_ROLE_DESTINATION && streq(result, "success"))
                        device_drop_restore_fds(run->device);
                engine_release_device(e, run->device, in_doubt);
                run->device_released = true;
        }
        trim_history(e);
        /* A worker that waits to know its device is released before it says so to the source. */
        if (json_object_object_get(u, "reply_fd"))
                (void) !write(json_object_get_int(json_object_object_get(u, "reply_fd")), &(uint64_t) { 1 },
                              sizeof(uint64_t));
}

static void reap_run(Engine *e, Run *run) {
        engine_join_run(e, run);
        engine_remove_run(e, run);
        run_free(run);
}

/* A VMM that handed eventfds for the restore must have handed one per vector the source's guest enabled. */
static bool restore_fds_match(Device *d, struct json_object *source_irqs, char *error, size_t error_size) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                uint32_t want = (uint32_t) json_object_get_int(json_object_object_get(source_irqs, irq_index_to_string(idx)));

                if (d->n_restore_fds[idx] > 0 && d->n_restore_fds[idx] != want) {
                        snprintf(error, error_size, "target %s: its VMM handed %u %s eventfds, the source's guest has %u "
                                 "%s vectors enabled", d->id, d->n_restore_fds[idx], irq_index_to_string(idx), want,
                                 irq_index_to_string(idx));
                        return false;
                }
        }
        return true;
}

/* Picks the destination's target: named, or the first idle device of the same kind (idle: no interrupts
 * configured, so no guest driver uses it). */
static Device *choose_target(Engine *e, struct json_object *pre, char *error, size_t error_size, int *ret_errno) {
        struct json_object *dev = json_object_object_get(pre, "device");
        const char *named = jstr(pre, "target");
        Manager *m = e->manager;

        for (size_t i = 0; i < m->n_devices; i++) {
                Device *d = m->devices[i];
                char vid[8], did[8];
                bool idle = true;

                if (named && !streq(d->id, named))
                        continue;
                /* A VMM that handed its eventfds waits for one particular incoming device: named only. */
                if (!named && device_has_restore_fds(d))
                        continue;
                snprintf(vid, sizeof(vid), "0x%04x", d->info.vendor_id);
                snprintf(did, sizeof(did), "0x%04x", d->info.device_id);
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                        idle = idle && d->irq_enabled[idx] == 0;
                if (!streq_ptr(d->info.driver, jstr(dev, "driver")) || !streq(vid, jstr(dev, "vendor_id")) ||
                    !streq(did, jstr(dev, "device_id"))) {
                        if (named) {
                                snprintf(error, error_size, "target %s is a %s %s:%s device, the source a %s %s:%s",
                                         named, strna(d->info.driver), vid, did, jstr(dev, "driver"),
                                         jstr(dev, "vendor_id"), jstr(dev, "device_id"));
                                *ret_errno = -EINVAL;
                                return NULL;
                        }
                        continue;
                }
                if (!streq(d->ops->name, strna(jstr(dev, "backend"))) ||
                    (uint64_t) json_object_get_int64(json_object_object_get(dev, "state_size")) != d->info.state_size) {
                        if (named) {
                                snprintf(error, error_size,
                                         "target %s (%s backend, %" PRIu64 " bytes of state) cannot hold the source's "
                                         "device (%s backend, %" PRId64 " bytes)", named, d->ops->name,
                                         d->info.state_size, strna(jstr(dev, "backend")),
                                         json_object_get_int64(json_object_object_get(dev, "state_size")));
                                *ret_errno = -EINVAL;
                                return NULL;
                        }
                        continue;
                }
                if (!restore_fds_match(d, json_object_object_get(dev, "interrupts"), error, error_size)) {
                        *ret_errno = -EINVAL;
                        return NULL;
                }
                if (d->busy || engine_device_in_use(e, d->id) || !idle) {
                        if (named) {
                                snprintf(error, error_size, "target %s is %s", named,
                                         idle ? "busy with another migration" : "in use (interrupts configured)");
                                *ret_errno = -EBUSY;
                                return NULL;
                        }
                        continue;
                }
                return d;
        }
        snprintf(error, error_size, named ? "no device %s on %s" : "no idle %s device on %s", named ?: jstr(dev, "driver"),
                 e->hostname);
        *ret_errno = -ENODEV;
        return NULL;
}

static void handle_claim(Engine *e, struct json_object *u) {
        Run *run = (Run *) (intptr_t) json_object_get_int64(json_object_object_get(u, "run"));
        _cleanup_json_ struct json_object *pre = json_tokener_parse(jstr(u, "preflight"));
        _cleanup_(migration_freep) Migration *mig = NULL;
        int reply_fd = json_object_get_int(json_object_object_get(u, "reply_fd"));
        uint64_t one = 1;
        const Policy *p;
        int err = 0;
        Device *d;

        pthread_mutex_lock(&e->lock);
        for (size_t i = 0; i < e->n_runs && run; i++)
                if (e->runs[i] == run)
                        goto found;
        run = NULL;
found:
        pthread_mutex_unlock(&e->lock);
        if (!run || !pre)
                goto reply;

        d = choose_target(e, pre, run->error, sizeof(run->error), &err);
        if (!d)
                goto reply;
        p = policy_set_find(e->manager->policies, jstr(json_object_object_get(pre, "policy"), "name"));
        if (!p) {
                snprintf(run->error, sizeof(run->error), "policy %s is not known on %s",
                         jstr(json_object_object_get(pre, "policy"), "name"), e->hostname);
                err = -ENOENT;
                goto reply;
        }
        run->policy = policy_dup(p);
        run->device_id = strdup(d->id);
        if (!run->policy || !run->device_id || migration_new(run->id, &mig) < 0)
                goto reply;
        (void) migration_set_string(&mig->role, "destination");
        (void) migration_set_string(&mig->device, d->id);
        (void) migration_set_string(&mig->peer, strna(run->peer_host));
        (void) migration_set_string(&mig->policy, p->name);
        (void) migration_set_string(&mig->phase, "preflight");
        mig->bytes_total = (uint64_t) json_object_get_int64(
                json_object_object_get(json_object_object_get(pre, "device"), "state_size"));
        if (manager_add_migration(e->manager, mig) < 0)
                goto reply;
        TAKE_PTR(mig);
        engine_take_device(e, d);
        run->device = d;
reply:
        if (run)
                run->claim_error = run->device ? 0 : (err ?: -ENODEV);
        (void) !write(reply_fd, &one, sizeof(one));
}

/* Migration.Cancel(): before the commit point the worker rolls back; after it, nothing can be undone. */
static int migration_cancel(Migration *mig, sd_bus_error *error) {
        Engine *e = mig->userdata;
        Run *run;

        pthread_mutex_lock(&e->lock);
        run = engine_find_run(e, mig->id);
        if (run && !atomic_load(&run->finished) && !atomic_load(&run->past_commit)) {
                atomic_store(&run->cancel, true);
                if (run->conn)
                        peer_conn_abort(run->conn);
        }
        pthread_mutex_unlock(&e->lock);
        if (!run || atomic_load(&run->finished))
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE, "Migration %s has already ended (%s).",
                                         mig->id, mig->result[0] ? mig->result : "finished");
        if (atomic_load(&run->past_commit))
                return sd_bus_error_setf(error, MIGD_ERROR_PAST_COMMIT,
                                         "Migration %s passed its commit point; the destination owns the device.",
                                         mig->id);
        return 0;
}

/* Interrupt monitor: the eventfds of the interrupts migd restored (or configured as the sim's VMM), and copies
 * of those a VMM handed (RegisterDevice). A VMM's eventfd feeds its guest (a KVM irqfd or its own loop): migd
 * reads it only while the device is stopped, where a signal is the anomaly the policy asks about, and writes
 * what it read back so the VMM still gets it. */
typedef struct IrqWatch {
        Engine *engine;
        char *device_id;
        IrqIndex index;
        uint32_t vector;
        bool vmm_owned;
        int fd;
        uint64_t signals;
        sd_event_source *source;
} IrqWatch;

static IrqWatch **watches;
static size_t n_watches;

static void irq_watch_free(IrqWatch *w) {
        sd_event_source_disable_unref(w->source);
        close(w->fd);
        free(w->device_id);
        free(w);
}

static void engine_unwatch_all(void) {
        for (size_t i = 0; i < n_watches; i++)
                irq_watch_free(watches[i]);
        free(watches);
        watches = NULL;
        n_watches = 0;
}

static Run *run_for_device(Engine *e, const char *device_id) {
        for (size_t i = 0; i < e->n_runs; i++)
                if (streq_ptr(e->runs[i]->device_id, device_id) && !atomic_load(&e->runs[i]->finished) &&
                    !e->runs[i]->device_released)
                        return e->runs[i];
        return NULL;
}

static void report_irq_while_stopped(Engine *e, IrqWatch *w, Device *d) {
        Run *run = run_for_device(e, w->device_id);
        Migration *mig = run ? manager_find_migration(e->manager, run->id) : NULL;
        struct json_object *ev;
        IrqWhileStopped action = run && run->policy ? run->policy->on_irq_while_stopped : IRQ_WHILE_STOPPED_WARN;

        if (action == IRQ_WHILE_STOPPED_IGNORE)
                return;
        log_full(action == IRQ_WHILE_STOPPED_FAIL ? LOG_ERR : LOG_WARNING, 0, MIGD_MESSAGE_IRQ_WHILE_STOPPED, w->device_id,
                 run ? run->id : NULL, "Interrupt on %s vector %u while the device is %s (not running).",
                 irq_index_to_string(w->index), w->vector, mig_state_to_string(d->state));
        if (mig) {
                ev = json_object_new_object();
                json_object_object_add(ev, "host", json_object_new_string(e->hostname));
                json_object_object_add(ev, "role", json_object_new_string(mig->role));
                json_object_object_add(ev, "t_usec", json_object_new_int64((int64_t) now_usec(CLOCK_MONOTONIC)));
                json_object_object_add(ev, "rt_usec", json_object_new_int64((int64_t) now_usec(CLOCK_REALTIME)));
                json_object_object_add(ev, "event", json_object_new_string("irq_while_stopped"));
                json_object_object_add(ev, "index", json_object_new_string(irq_index_to_string(w->index)));
                json_object_object_add(ev, "vector", json_object_new_int((int) w->vector));
                json_object_object_add(ev, "state", json_object_new_string(mig_state_to_string(d->state)));
                apply_timeline(e, mig, ev);
                json_object_put(ev);
        }
        if (action == IRQ_WHILE_STOPPED_FAIL && run && !atomic_load(&run->past_commit)) {
                snprintf(run->error, sizeof(run->error), "device %s raised an interrupt while %s (policy: fail)",
                         w->device_id, mig_state_to_string(d->state));
                atomic_store(&run->cancel, true);
                if (run->conn)
                        peer_conn_abort(run->conn);
        }
}

static int on_irq(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        IrqWatch *w = userdata;
        Device *d = manager_find_device(w->engine->manager, w->device_id);
        uint64_t value;

        if (read(fd, &value, sizeof(value)) != sizeof(value))
                return 0;
        w->signals += value;
        /* One-shot for a VMM's eventfd: the write below would wake us again; the next state change re-arms. */
        if (w->vmm_owned)
                (void) !write(fd, &value, sizeof(value));
        if (d && !mig_state_is_running(d->state))
                report_irq_while_stopped(w->engine, w, d);
        return 0;
}

static void irq_watch_arm(IrqWatch *w, MigState state) {
        if (w->vmm_owned)
                (void) sd_event_source_set_enabled(w->source,
                                                   mig_state_is_running(state) ? SD_EVENT_OFF : SD_EVENT_ONESHOT);
}

static void engine_arm_watches(const char *device_id, MigState state) {
        for (size_t i = 0; i < n_watches; i++)
                if (streq(watches[i]->device_id, device_id))
                        irq_watch_arm(watches[i], state);
}

static void engine_unwatch(Engine *e, const char *device_id, IrqIndex index) {
        for (size_t i = 0; i < n_watches;)
                if (streq(watches[i]->device_id, device_id) && (index < 0 || watches[i]->index == index)) {
                        irq_watch_free(watches[i]);
                        memmove(watches + i, watches + i + 1, (n_watches - i - 1) * sizeof(IrqWatch *));
                        n_watches--;
                } else
                        i++;
}

/* Takes ownership of fds. */
static int engine_watch(Engine *e, const char *device_id, IrqIndex index, const int *fds, uint32_t n, bool vmm_owned) {
        Device *d = manager_find_device(e->manager, device_id);
        int r = 0;

        engine_unwatch(e, device_id, index);
        for (uint32_t v = 0; v < n; v++) {
                IrqWatch *w = calloc(1, sizeof(*w)), **grown;

                if (!w || !(w->device_id = strdup(device_id)) ||
                    !(grown = reallocarray(watches, n_watches + 1, sizeof(IrqWatch *)))) {
                        if (w)
                                free(w->device_id);
                        free(w);
                        for (; v < n; v++)
                                close(fds[v]);
                        return -ENOMEM;
                }
                w->engine = e;
                w->index = index;
                w->vector = v;
                w->vmm_owned = vmm_owned;
                w->fd = fds[v];
                watches = grown;
                watches[n_watches++] = w;
                r = sd_event_add_io(e->manager->event, &w->source, w->fd, EPOLLIN, on_irq, w);
                if (r < 0)
                        return r;
                irq_watch_arm(w, d ? d->state : MIG_STATE_RUNNING);
        }
        return r;
}

int engine_irq_signals(Engine *e, const char *device_id, IrqIndex index, uint64_t *ret) {
        uint64_t total = 0;
        bool any = false;

        for (size_t i = 0; i < n_watches; i++)
                if (streq(watches[i]->device_id, device_id) && watches[i]->index == index) {
                        total += watches[i]->signals;
                        any = true;
                }
        *ret = total;
        return any;
}

int engine_configure_guest_interrupts(Engine *e, Device *d, IrqIndex index, uint32_t count) {
        int fds[ENGINE_MAX_VECTORS];
        int r;

        if (count == 0 || count > d->info.irq_count[index] || count > ENGINE_MAX_VECTORS)
                return -EINVAL;
        for (uint32_t v = 0; v < count; v++) {
                fds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[v] < 0) {
                        r = -errno;
                        while (v-- > 0)
                                close(fds[v]);
                        return r;
                }
        }
        r = device_set_irqs(d, index, 0, count, fds);
        if (r < 0) {
                for (uint32_t v = 0; v < count; v++)
                        close(fds[v]);
                return r;
        }
        return engine_watch(e, d->id, index, fds, count, false);
}

static void handle_irq_watch(Engine *e, struct json_object *u) {
        struct json_object *irq = json_object_object_get(u, "irq"), *fds = json_object_object_get(irq, "fds");
        int list[ENGINE_MAX_VECTORS];
        size_t n = json_object_array_length(fds);

        for (size_t i = 0; i < n && i < ENGINE_MAX_VECTORS; i++)
                list[i] = json_object_get_int(json_object_array_get_idx(fds, i));
        (void) engine_watch(e, jstr(u, "device"), json_object_get_int(json_object_object_get(irq, "index")), list,
                            (uint32_t) n, json_object_get_boolean(json_object_object_get(irq, "vmm_owned")));
}

static void handle_device_state(Engine *e, struct json_object *u) {
        Device *d = manager_find_device(e->manager, jstr(u, "device"));
        MigState new_state = json_object_get_int(json_object_object_get(u, "new"));

        if (d && d->saved_on_state_changed)
                d->saved_on_state_changed(d, json_object_get_int(json_object_object_get(u, "old")), new_state,
                                          d->userdata);
        if (d)
                engine_arm_watches(d->id, new_state);
}

static void handle_update(Engine *e, struct json_object *u) {
        const char *kind = jstr(u, "kind"), *id = jstr(u, "migration");
        Migration *mig = id ? manager_find_migration(e->manager, id) : NULL;
        Run *run = id ? engine_find_run(e, id) : NULL;

        if (!kind)
                return;
        if (streq(kind, "timeline") && mig)
                apply_timeline(e, mig, json_object_object_get(u, "event"));
        else if (streq(kind, "phase") && mig)
                apply_phase(e, mig, jstr(u, "phase"));
        else if (streq(kind, "progress") && mig)
                apply_progress(e, mig, json_object_object_get(u, "progress"));
        else if (streq(kind, "device-state"))
                handle_device_state(e, u);
        else if (streq(kind, "irq-watch"))
                handle_irq_watch(e, u);
        else if (streq(kind, "irq-unwatch"))
                engine_unwatch(e, jstr(u, "device"), json_object_get_int(json_object_object_get(u, "index")));
        else if (streq(kind, "claim"))
                handle_claim(e, u);
        else if (streq(kind, "done"))
                apply_done(e, run, mig, u);
        else if (streq(kind, "refused")) {
                struct json_object *done = json_object_new_object();
                json_object_object_add(done, "result", json_object_new_string("failed"));
                json_object_object_add(done, "error", json_object_new_string(run ? run->error : "refused"));
                json_object_object_add(done, "error_name",
                                       json_object_new_string(run && run->error_name ? run->error_name : ""));
                apply_done(e, run, mig, done);
                json_object_put(done);
        }
}

static void reap_finished(Engine *e) {
        for (size_t i = 0; i < e->n_runs;) {
                Run *run = e->runs[i];
                if (run->reapable) {
                        reap_run(e, run);
                        continue;
                }
                i++;
        }
}

static int engine_on_queue(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Engine *e = userdata;
        _cleanup_json_ struct json_object *batch = NULL;
        uint64_t v;

        (void) !read(fd, &v, sizeof(v));
        pthread_mutex_lock(&e->lock);
        batch = e->queue;
        e->queue = json_object_new_array();
        for (size_t i = 0; i < e->n_runs; i++)
                e->runs[i]->reapable = atomic_load(&e->runs[i]->finished);
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < json_object_array_length(batch); i++)
                handle_update(e, json_object_array_get_idx(batch, i));
        reap_finished(e);
        return 0;
}

static Run *run_new(Engine *e, PlanRole role) {
        Run *run = calloc(1, sizeof(*run));

        if (!run)
                return NULL;
        run->engine = e;
        run->role = role;
        run->accepted_fd = -1;
        run->data_fd = -1;
        run->silence_usec = SILENCE_USEC;
        run->timeline = json_object_new_array();
        run->local_name = strdup(e->hostname);
        if (!run->timeline || !run->local_name ||
            peer_tls_init_default(&run->tls, e->manager->config->pki_dir, role == PLAN_ROLE_DESTINATION) < 0)
                return run_free(run);
        run->tls.insecure = e->manager->config->peer_insecure;
        return run;
}

static int run_start_thread(Run *run, void *(*main)(void *)) {
        int r = pthread_create(&run->thread, NULL, main, run);

        if (r != 0)
                return -r;
        run->thread_started = true;
        return 0;
}

static int make_migration_id(char **ret) {
        sd_id128_t id;
        char s[SD_ID128_STRING_MAX];
        int r;

        r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        *ret = strdup(sd_id128_to_string(id, s));
        return *ret ? 0 : -ENOMEM;
}

/* The policy the caller named, or the device's, with the caller's pre-copy override applied. */
static int resolve_start_policy(Engine *e, Device *d, struct json_object *options, Policy **ret, sd_bus_error *error) {
        const char *name = jstr(options, "policy"), *precopy = jstr(options, "precopy");
        const Policy *p = name ? policy_set_find(e->manager->policies, name) : manager_device_policy(e->manager, d);
        Policy *copy;

        if (!p)
                return name ? sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_POLICY, "No policy named '%s'.", name)
                            : sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_POLICY, "No policy matches device %s.", d->id);
        copy = policy_dup(p);
        if (!copy)
                return -ENOMEM;
        if (precopy) {
                Tristate t = tristate_from_string(precopy);
                if (t < 0) {
                        policy_free(copy);
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option precopy must be off, auto or required, not '%s'.", precopy);
                }
                copy->precopy = t;
        }
        *ret = copy;
        return 0;
}

static int plan_or_error(Run *run, Device *d, sd_bus_error *error) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        int r;

        r = plan_build(run->policy, &(MigCaps) { d->info.mig_flags, d->info.uapi }, &run->plan, &errors);
        if (r >= 0)
                return 0;
        if (r != -EINVAL || errors.n == 0)
                return r;
        return sd_bus_error_setf(error, MIGD_ERROR_POLICY_VIOLATION, "Policy %s cannot migrate device %s: %s: %s",
                                 run->policy->name, d->id, errors.items[0].json_path, errors.items[0].message);
}

int engine_start_migration(Engine *e, const char *device_id, const char *destination, struct json_object *options,
                           char **ret_object_path, sd_bus_error *error) {
        _cleanup_(run_freep) Run *run = NULL;
        _cleanup_(migration_freep) Migration *mig = NULL;
        char peer[300];
        Device *d;
        int r;

        d = manager_find_device(e->manager, device_id);
        if (!d)
                return sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_DEVICE, "No device '%s'.", device_id);
        if (d->busy || engine_device_in_use(e, d->id))
                return sd_bus_error_setf(error, MIGD_ERROR_BUSY, "Device %s is busy with another migration.", d->id);
        if (!mig_state_is_running(d->state))
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE,
                                         "Device %s is %s; only a running device can be migrated.", d->id,
                                         mig_state_to_string(d->state));
        run = run_new(e, PLAN_ROLE_SOURCE);
        if (!run)
                return -ENOMEM;
        r = peer_parse_address(destination, &run->peer_host, &run->peer_port);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Destination '%s' is not HOST, HOST:PORT or [IPV6]:PORT.", destination);
        r = resolve_start_policy(e, d, options, &run->policy, error);
        if (r < 0)
                return r;
        r = plan_or_error(run, d, error);
        if (r < 0)
                return r;
        r = make_migration_id(&run->id);
        if (r < 0)
                return r;
        run->device_id = strdup(d->id);
        run->options = json_object_get(options);
        if (!run->device_id)
                return -ENOMEM;
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                run->irq_count[idx] = d->irq_enabled[idx];
        run->bytes_total = d->info.state_size;
        run_journal_init(run);

        r = migration_new(run->id, &mig);
        if (r < 0)
                return r;
        snprintf(peer, sizeof(peer), "%s:%u", run->peer_host, run->peer_port);
        (void) migration_set_string(&mig->role, "source");
        (void) migration_set_string(&mig->device, d->id);
        (void) migration_set_string(&mig->peer, peer);
        (void) migration_set_string(&mig->policy, run->policy->name);
        (void) migration_set_string(&mig->phase, "preflight");
        mig->bytes_total = d->info.state_size;
        mig->cancel = migration_cancel;
        mig->userdata = e;
        r = manager_add_migration(e->manager, mig);
        if (r < 0)
                return r;
        TAKE_PTR(mig);
        run->device = d;
        engine_take_device(e, d);
        r = engine_add_run(e, run);
        if (r < 0)
                return r;
        r = run_start_thread(run, run_source_main);
        if (r < 0) {
                engine_remove_run(e, run);
                engine_release_device(e, d, false);
                return r;
        }
        log_full(LOG_INFO, 0, MIGD_MESSAGE_MIGRATION_STARTED, d->id, run->id, "Migrating to %s under policy %s.", peer,
                 run->policy->name);
        {
                Migration *added = manager_find_migration(e->manager, run->id);
                r = added ? bus_migration_path(added, ret_object_path) : -ENOENT;
        }
        TAKE_PTR(run);
        return r;
}

static int on_peer_connection(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Engine *e = userdata;
        Run *run;
        int cfd;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        run = run_new(e, PLAN_ROLE_DESTINATION);
        if (!run) {
                close(cfd);
                return 0;
        }
        run->accepted_fd = cfd;
        run->id = strdup("");
        if (!run->id || engine_add_run(e, run) < 0) {
                run_free(run);
                return 0;
        }
        if (run_start_thread(run, run_destination_main) < 0) {
                engine_remove_run(e, run);
                run_free(run);
        }
        return 0;
}

int engine_listen(Engine *e) {
        const char *address = e->manager->config->peer_listen;
        int n, r;

        /* Socket activation: migd.socket hands over the listening socket. */
        n = sd_listen_fds(true);
        if (n > 0 && sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) > 0) {
                e->listen_fd = SD_LISTEN_FDS_START;
                /* [Peer] Listen= is not what we listen on then: say so, or the log would mislead. */
                log_info("Peer connections come through the listening socket systemd passed (socket activation); "
                         "[Peer] Listen= is not used.");
        } else {
                if (!address || !address[0] || streq(address, "none"))
                        return 0;
                r = peer_listen(address, &e->listen_fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot listen for peers on %s: %m", address);
        }
        if (e->manager->config->peer_insecure)
                log_full(LOG_WARNING, 0, MIGD_MESSAGE_INSECURE_PEER, NULL, NULL,
                         "Peer connections on %s are NOT encrypted or authenticated (Insecure=yes).", strna(address));
        return sd_event_add_io(e->manager->event, &e->listen_source, e->listen_fd, EPOLLIN, on_peer_connection, e);
}

/* A journal record as a peer names it; NULL when there is none (or the name could escape the directory). */
static struct json_object *journal_record_for_peer(Engine *e, const char *migration_id) {
        _cleanup_free_ char *path = NULL;

        if (!migration_id || strchr(migration_id, '/') || asprintf(&path, "%s/%s.json", e->journal_dir, migration_id) < 0)
                return NULL;
        return json_object_from_file(path);
}

const char *engine_resolve_answer(Engine *e, const char *migration_id) {
        _cleanup_json_ struct json_object *record = journal_record_for_peer(e, migration_id);
        const char *decision;
        bool live;

        decision = record ? jstr(record, "decision") : NULL;
        if (decision && streq(decision, "commit"))
                return "commit";
        pthread_mutex_lock(&e->lock);
        live = engine_find_run(e, migration_id) && !atomic_load(&engine_find_run(e, migration_id)->finished);
        pthread_mutex_unlock(&e->lock);
        /* Still deciding: the source must ask again rather than assume. */
        if (live && (!decision || streq(decision, "none")))
                return "unknown";
        return "abort";
}

void engine_forget(Engine *e, const char *migration_id) {
        _cleanup_json_ struct json_object *record = journal_record_for_peer(e, migration_id);

        /* Only a finished commit: a live record is the authority a source may still need. */
        if (record && streq_ptr(jstr(record, "role"), "destination") && streq_ptr(jstr(record, "decision"), "commit") &&
            json_object_get_boolean(json_object_object_get(record, "done")))
                (void) journal_remove(e->journal_dir, migration_id);
}

static int recover_migration_object(Engine *e, const char *id, struct json_object *rec, const char *result,
                                    const char *error_text) {
        _cleanup_(migration_freep) Migration *mig = NULL;
        char peer[300];
        int r;

        r = migration_new(id, &mig);
        if (r < 0)
                return r;
        snprintf(peer, sizeof(peer), "%s:%d", strna(jstr(rec, "peer_host")),
                 json_object_get_int(json_object_object_get(rec, "peer_port")));
        (void) migration_set_string(&mig->role, jstr(rec, "role"));
        (void) migration_set_string(&mig->device, jstr(rec, "device"));
        (void) migration_set_string(&mig->peer, peer);
        (void) migration_set_string(&mig->policy, jstr(rec, "policy"));
        migration_set_result(mig, result, error_text, NULL);
        mig->userdata = e;
        mig->cancel = migration_cancel;
        r = manager_add_migration(e->manager, mig);
        if (r < 0)
                return r;
        TAKE_PTR(mig);
        return 0;
}

static int leave_error(Device *d) {
        int r = device_refresh_state(d);

        return r >= 0 && d->state == MIG_STATE_ERROR ? device_reset(d) : r;
}

/* A walk can fail into ERROR (RESUMING -> STOP with no complete stream after a restart): reset, walk again. */
static int walk_or_reset(Device *d, MigState target) {
        int r = leave_error(d);

        if (r >= 0)
                r = device_walk_to(d, target, NULL);
        if (r < 0 && leave_error(d) >= 0)
                r = device_walk_to(d, target, NULL);
        return r;
}

static void recover_record(Engine *e, const char *id, struct json_object *rec) {
        const char *role = jstr(rec, "role"), *decision = jstr(rec, "decision"), *phase = jstr(rec, "phase");
        Device *d = manager_find_device(e->manager, jstr(rec, "device"));
        char text[512];
        int r;

        /* Kept only to answer a source's resolve-query: the device may have moved on since. */
        if (json_object_get_boolean(json_object_object_get(rec, "done")))
                return;
        if (!role || !decision || !d) {
                log_full(LOG_ERR, 0, NULL, jstr(rec, "device"), id, "Journal record names no known device; left as is.");
                return;
        }
        if (streq(role, "source") && streq(decision, "none")) {
                r = walk_or_reset(d, MIG_STATE_RUNNING);
                snprintf(text, sizeof(text), "migd restarted during %s; rolled back: %s", strna(phase),
                         r < 0 ? "the device could not be run again" : "the source device runs again");
                log_full(r < 0 ? LOG_ERR : LOG_NOTICE, r, NULL, d->id, id, "%s", text);
                (void) recover_migration_object(e, id, rec, "failed", text);
                (void) journal_remove(e->journal_dir, id);
        } else if (streq(role, "source") && streq(decision, "commit")) {
                Run *run = run_new(e, PLAN_ROLE_SOURCE);
                if (!run)
                        return;
                run->id = strdup(id);
                run->device_id = strdup(d->id);
                run->peer_host = strdup(strna(jstr(rec, "peer_host")));
                run->peer_port = (uint16_t) json_object_get_int(json_object_object_get(rec, "peer_port"));
                run->device = d;
                run->recovery = true;
                run->journal = json_object_get(rec);
                if (policy_new_default("recovery", &run->policy) < 0 || !run->id || !run->device_id ||
                    recover_migration_object(e, id, rec, "", "") < 0 || engine_add_run(e, run) < 0) {
                        run_free(run);
                        return;
                }
                engine_take_device(e, d);
                (void) run_start_thread(run, run_resolve_main);
        } else if (streq(role, "destination") && streq(decision, "none")) {
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                        if (d->irq_enabled[idx])
                                (void) device_disable_irqs(d, idx);
                r = walk_or_reset(d, MIG_STATE_STOP);
                (void) journal_remove(e->journal_dir, id);
                snprintf(text, sizeof(text), "migd restarted during %s before the commit; the target was released",
                         strna(phase));
                (void) recover_migration_object(e, id, rec, "failed", text);
        } else if (streq(role, "destination") && streq(decision, "commit") && !mig_state_is_running(d->state)) {
                struct json_object *irqs = json_object_object_get(rec, "interrupts");
                /* The eventfds died with the old process: the new ones must be in place before RUNNING. */
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                        uint32_t n = (uint32_t) json_object_get_int(json_object_object_get(irqs, irq_index_to_string(idx)));
                        if (n > 0)
                                (void) engine_configure_guest_interrupts(e, d, idx, n);
                }
                r = walk_or_reset(d, MIG_STATE_RUNNING);
                if (r >= 0) {
                        json_object_object_add(rec, "done", json_object_new_boolean(true));
                        (void) journal_save(e->journal_dir, id, rec);
                }
                (void) recover_migration_object(e, id, rec, r < 0 ? "failed" : "success",
                                                r < 0 ? "the committed device could not be started after a restart" : "");
        }
}

int engine_recover(Engine *e) {
        _cleanup_json_ struct json_object *records = NULL, *errors = NULL;
        int r;

        r = journal_load_all(e->journal_dir, &records, &errors);
        if (r < 0)
                return log_error_errno(r, "Cannot read the journal in %s: %m", e->journal_dir);
        for (size_t i = 0; i < json_object_array_length(errors); i++)
                log_error("%s", json_object_get_string(json_object_array_get_idx(errors, i)));
        json_object_object_foreach(records, id, rec)
                recover_record(e, id, rec);
        return 0;
}

int engine_resolve(Engine *e, const char *migration_id, bool commit, sd_bus_error *error) {
        static const char *const props[] = { "Result", "Error", "ErrorName", "Phase", NULL };
        Migration *mig = manager_find_migration(e->manager, migration_id);
        Device *d;
        int r = 0;

        if (!mig)
                return sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_MIGRATION, "No migration '%s'.", migration_id);
        if (!streq(mig->result, "in-doubt"))
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE,
                                         "Migration %s is not in doubt (result: %s); nothing to resolve.", mig->id,
                                         mig->result[0] ? mig->result : "running");
        d = manager_find_device(e->manager, mig->device);
        if (d && commit) {
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                        if (d->irq_enabled[idx]) {
                                (void) device_disable_irqs(d, idx);
                                engine_unwatch(e, d->id, idx);
                        }
        } else if (d)
                r = walk_or_reset(d, MIG_STATE_RUNNING);
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Device %s could not be run again: %s", d->id, strerror(-r));
        (void) journal_remove(e->journal_dir, mig->id);
        migration_set_result(mig, commit ? "success" : "failed",
                             commit ? "" : "aborted by the operator (migctl resolve --abort)", NULL);
        (void) migration_set_string(&mig->phase, "");
        emit_migration(e, mig, props);
        if (d)
                engine_release_device(e, d, false);
        return 0;
}
