/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libvirt backend: hostdevs of libvirt domains as devices, migrations run by libvirt, the hook's questions. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <systemd/sd-id128.h>

#include "bus-device.h"
#include "bus-migration.h"
#include "libvirt-backend.h"
#include "log.h"
#include "manager.h"
#include "migration.h"
#include "util.h"

#define JOB_POLL_USEC 100000u          /* how often a job's thread asks libvirt for statistics */
#define JOB_PUBLISH_USEC 250000u       /* how often the main loop publishes them (the engine's rate) */
#define WATCH_LIMIT_USEC (600u * 1000000u) /* an incoming migration libvirt never finishes is given up */

bool libvirt_policy_honourable(const Policy *p, bool irq_state_in_data, char **ret_reason) {
        const char *why;
        bool ok = false;

        assert(p);
        assert(ret_reason);

        /* QEMU 7.2's vfio-pci moves device state only in its save/load handlers (pre-copy and stop-and-copy);
         * it registers no post-copy handlers, and loads vfio-pci's config section (which enables MSI-X, MSI or
         * INTx through VFIO_DEVICE_SET_IRQS) right after the device data, while the device is still RESUMING.
         * It has no property that moves that step. */
        if (p->postcopy)
                why = "it asks for post-copy (RESUMING|RUNNING), and QEMU's vfio-pci has no post-copy: the device's "
                      "state moves only while the guest is stopped";
        else if (p->irq_restore == IRQ_RESTORE_DURING_RESUMING) {
                why = "QEMU restores interrupts once the device data is written, before RESUMING ends: the policy's "
                      "order";
                ok = true;
        } else if (p->irq_restore == IRQ_RESTORE_BEFORE_RESUMING)
                why = "it restores interrupts before RESUMING, and QEMU restores them only after it has written the "
                      "device's data, while the device is RESUMING; QEMU has no option to do it earlier";
        else if (!irq_state_in_data) {
                why = "QEMU restores interrupts while the device is RESUMING rather than in a STOP window, but the "
                      "device's data carries no interrupt state (InterruptStateInData=no), so nothing overwrites "
                      "them: equivalent to the policy's order";
                ok = true;
        } else
                why = "it restores interrupts in a STOP window after RESUMING, and QEMU restores MSI-X/MSI/INTx while "
                      "the device is still RESUMING and has no option to defer it; the device's data may carry "
                      "interrupt state that overwrites them";

        if (asprintf(ret_reason, "policy %s %s %s", p->name, ok ? "can be honoured:" : "cannot be honoured by QEMU:",
                     why) < 0)
                *ret_reason = NULL;
        return ok;
}

/* ---- devices ---- */

typedef struct LibvirtDevice {
        char *uri;
        char *domain;
        char *hostdev;
        bool irq_state_in_data;
} LibvirtDevice;

static LibvirtDevice *backend(Device *d) {
        return d->backend_data;
}

static void silent_error(void *userdata, virErrorPtr error) {
        /* libvirt prints every error on stderr by default; migd reports them itself, once, with context. */
}

static void libvirt_setup_once(void) {
        static bool done;

        if (done)
                return;
        (void) virInitialize();
        virSetErrorFunc(NULL, silent_error);
        done = true;
}

static int read_sysfs_line(const char *path, char *buf, size_t size) {
        FILE *f = fopen(path, "re");
        bool ok;

        if (!f)
                return -errno;
        ok = fgets(buf, (int) size, f) != NULL;
        fclose(f);
        if (!ok)
                return -EIO;
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

static uint16_t read_sysfs_id(const char *dir, const char *file) {
        char path[PATH_MAX], buf[32];

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        if (read_sysfs_line(path, buf, sizeof(buf)) < 0)
                return 0;
        return (uint16_t) strtoul(buf, NULL, 16);
}

static char *sysfs_link_name(const char *dir, const char *link) {
        char path[PATH_MAX], target[PATH_MAX];
        ssize_t n;

        snprintf(path, sizeof(path), "%s/%s", dir, link);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return NULL;
        target[n] = '\0';
        return strdup(strrchr(target, '/') ? strrchr(target, '/') + 1 : target);
}

/* What sysfs says about a hostdev named by PCI address or mdev UUID; unknown fields stay 0/NULL (a policy
 * matching on them then does not match). */
static void describe_host_device(const char *name, DeviceInfo *info) {
        char dir[PATH_MAX];

        if (!name)
                return;
        snprintf(dir, sizeof(dir), "/sys/bus/mdev/devices/%s", name);
        if (access(dir, F_OK) == 0) {
                info->mdev_type = sysfs_link_name(dir, "mdev_type");
                /* The parent's ids: an mdev has none of its own. */
                strncat(dir, "/..", sizeof(dir) - strlen(dir) - 1);
        } else
                snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s", name);
        info->driver = sysfs_link_name(dir, "driver");
        info->vendor_id = read_sysfs_id(dir, "vendor");
        info->device_id = read_sysfs_id(dir, "device");
}

static int libvirt_get_info(Device *d, DeviceInfo *ret) {
        DeviceInfo info = {};

        describe_host_device(backend(d)->hostdev, &info);
        if (!info.driver)
                info.driver = strdup("vfio-pci");
        if (!info.driver) {
                device_info_done(&info);
                return -ENOMEM;
        }
        /* QEMU 7.2 speaks the v1 protocol: SAVING|RUNNING is its pre-copy. */
        info.mig_flags = MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY;
        info.uapi = 1;
        *ret = info;
        return 0;
}

static MigState state_from_libvirt(int state) {
        switch (state) {
        case VIR_DOMAIN_RUNNING:
                return MIG_STATE_RUNNING;
        default:
                /* Paused, shut off, elsewhere: the device does not run on this host. */
                return MIG_STATE_STOP;
        }
}

static int domain_state(const char *uri, const char *name, int *ret_state, int *ret_reason) {
        virConnectPtr conn;
        virDomainPtr dom;
        int state = 0, reason = 0, r = 0;

        conn = virConnectOpen(uri);
        if (!conn)
                return -ECONNREFUSED;
        dom = virDomainLookupByName(conn, name);
        if (!dom)
                r = -ENOENT;
        else if (virDomainGetState(dom, &state, &reason, 0) < 0)
                r = -EIO;
        if (dom)
                virDomainFree(dom);
        virConnectClose(conn);
        if (r < 0)
                return r;
        *ret_state = state;
        if (ret_reason)
                *ret_reason = reason;
        return 0;
}

static int libvirt_get_state(Device *d, MigState *ret) {
        int state = VIR_DOMAIN_NOSTATE;

        /* libvirtd down or the domain elsewhere is not an error for the device: it is just not running here. */
        (void) domain_state(backend(d)->uri, backend(d)->domain, &state, NULL);
        *ret = state_from_libvirt(state);
        return 0;
}

static int libvirt_set_state(Device *d, MigState to, int *ret_data_fd) {
        /* The arcs of a libvirt device happen inside QEMU, driven by libvirt's migration job. */
        return -EOPNOTSUPP;
}

static int libvirt_set_irqs(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds) {
        return -EOPNOTSUPP;
}

static int libvirt_disable_irqs(Device *d, IrqIndex index) {
        return -EOPNOTSUPP;
}

static void libvirt_close(Device *d) {
        LibvirtDevice *l = backend(d);

        if (!l)
                return;
        free(l->uri);
        free(l->domain);
        free(l->hostdev);
        free(l);
        d->backend_data = NULL;
}

const BackendOps libvirt_backend_ops = {
        .name = "libvirt",
        .close = libvirt_close,
        .get_info = libvirt_get_info,
        .get_state = libvirt_get_state,
        .set_state = libvirt_set_state,
        .set_irqs = libvirt_set_irqs,
        .disable_irqs = libvirt_disable_irqs,
};

static int add_device(Manager *m, const LibvirtDeviceConfig *c) {
        _cleanup_(device_freep) Device *d = NULL;
        LibvirtDevice *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->uri = strdup(m->config->libvirt_uri);
        l->domain = strdup(c->domain);
        l->hostdev = c->hostdev ? strdup(c->hostdev) : NULL;
        l->irq_state_in_data = c->irq_state_in_data;
        r = device_new(c->name, &libvirt_backend_ops, l, m->event, &d);
        if (r < 0) {
                free(l->uri);
                free(l->domain);
                free(l->hostdev);
                free(l);
                return r;
        }
        if (!l->uri || !l->domain || (c->hostdev && !l->hostdev))
                return -ENOMEM;
        r = device_open(d);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, c->name, NULL, "Cannot open the libvirt device: %m");
        log_device(LOG_INFO, d->id, MIGD_MESSAGE_DEVICE_ADDED, "Added libvirt device (domain %s, hostdev %s, %s).",
                   c->domain, c->hostdev ?: "none: the whole domain", mig_state_to_string(d->state));
        return manager_add_device(m, TAKE_PTR(d));
}


void libvirt_apply_devices(Manager *m, const Config *old) {
        bool enabled = config_has_backend(m->config, "libvirt");

        libvirt_setup_once();
        for (size_t i = m->n_devices; i > 0; i--) {
                Device *d = m->devices[i - 1];
                const LibvirtDeviceConfig *now = enabled ? config_find_libvirt_device(m->config, d->id) : NULL;
                const LibvirtDeviceConfig *before = old ? config_find_libvirt_device(old, d->id) : NULL;

                if (!device_is_libvirt(d))
                        continue;
                if (now && before && libvirt_device_config_equal(now, before) &&
                    streq(old->libvirt_uri, m->config->libvirt_uri))
                        continue;
                manager_retire_device(m, i - 1);
        }
        if (!manager_backend_enabled(m, "libvirt", "LibvirtDevice", m->config->n_libvirt_devices))
                return;
        for (size_t i = 0; i < m->config->n_libvirt_devices; i++)
                if (!manager_find_device(m, m->config->libvirt_devices[i].name))
                        (void) add_device(m, &m->config->libvirt_devices[i]);
}

/* ---- jobs: an outgoing migration migd drives, or an incoming one the hook told migd about ---- */

typedef enum JobKind {
        JOB_MIGRATE, /* source: virDomainMigrateToURI3 */
        JOB_WATCH,   /* destination: libvirt runs it; migd watches the domain until it runs or goes */
} JobKind;

typedef struct Job {
        Manager *manager;
        JobKind kind;
        char *migration_id;
        char *device_id;             /* NULL for a watched domain that is no migd device */
        char *uri;                   /* the local libvirtd */
        char *domain;
        char *dest_uri;
        char *migrate_uri;
        uint64_t bandwidth_mib;
        bool tls;
        uint32_t downtime_ms;
        pthread_t thread;
        bool thread_started;
        sd_event_source *timer;
        atomic_bool cancel;
        atomic_bool done;
        pthread_mutex_t lock;        /* guards everything below */
        char phase[32];
        uint64_t bytes_total, bytes_done, rate, eta, downtime_usec;
        char result[16];
        char error[512];
} Job;

static Job **jobs;
static size_t n_jobs;

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        if (j->thread_started)
                pthread_join(j->thread, NULL);
        sd_event_source_disable_unref(j->timer);
        pthread_mutex_destroy(&j->lock);
        free(j->migration_id);
        free(j->device_id);
        free(j->uri);
        free(j->domain);
        free(j->dest_uri);
        free(j->migrate_uri);
        free(j);
        return NULL;
}

static void job_freep(Job **j) {
        job_free(*j);
}

static void job_set_phase(Job *j, const char *phase) {
        pthread_mutex_lock(&j->lock);
        snprintf(j->phase, sizeof(j->phase), "%s", phase);
        pthread_mutex_unlock(&j->lock);
}

static void job_finish(Job *j, const char *result, const char *error) {
        pthread_mutex_lock(&j->lock);
        snprintf(j->result, sizeof(j->result), "%s", result);
        snprintf(j->error, sizeof(j->error), "%s", error ?: "");
        pthread_mutex_unlock(&j->lock);
        atomic_store(&j->done, true);
}

static uint64_t typed_ull(virTypedParameterPtr params, int n, const char *name) {
        unsigned long long v = 0;

        if (virTypedParamsGetULLong(params, n, name, &v) <= 0)
                return 0;
        return v;
}

/* One statistics sample of the running job into the shared fields; the phase follows the domain's state.
 * Returns whether QEMU's migration runs (libvirt's job may still be negotiating with the destination). */
static bool job_sample(Job *j, virDomainPtr dom) {
        virTypedParameterPtr params = NULL;
        int type = VIR_DOMAIN_JOB_NONE, n = 0, state = 0, reason = 0;
        uint64_t total, done, remaining, rate;

        if (virDomainGetJobStats(dom, &type, &params, &n, 0) < 0 || type != VIR_DOMAIN_JOB_UNBOUNDED) {
                virTypedParamsFree(params, n);
                return false;
        }
        total = typed_ull(params, n, VIR_DOMAIN_JOB_DATA_TOTAL);
        done = typed_ull(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED);
        remaining = typed_ull(params, n, VIR_DOMAIN_JOB_DATA_REMAINING);
        rate = typed_ull(params, n, VIR_DOMAIN_JOB_MEMORY_BPS);
        virTypedParamsFree(params, n);
        (void) virDomainGetState(dom, &state, &reason, 0);

        pthread_mutex_lock(&j->lock);
        j->bytes_total = total;
        j->bytes_done = done;
        j->rate = rate;
        j->eta = rate > 0 ? (remaining + rate - 1) / rate : 0;
        /* libvirt pauses the guest for the final copy: that is the stop-and-copy phase of the device too. */
        snprintf(j->phase, sizeof(j->phase), "%s",
                 state == VIR_DOMAIN_PAUSED && reason == VIR_DOMAIN_PAUSED_MIGRATION ? "stop_copy" : "precopy");
        pthread_mutex_unlock(&j->lock);
        return total > 0;
}

typedef struct Poller {
        Job *job;
        atomic_bool stop;
} Poller;

/* Runs beside the blocking virDomainMigrateToURI3(): statistics, and Cancel() as virDomainAbortJob(). It has a
 * connection of its own: on the migrating one its calls can wait until the migration call returns. */
static void *poller_main(void *userdata) {
        Poller *p = userdata;
        virConnectPtr conn = virConnectOpen(p->job->uri);
        virDomainPtr dom = conn ? virDomainLookupByName(conn, p->job->domain) : NULL;
        bool aborted = false;

        if (!dom)
                log_full(LOG_WARNING, 0, NULL, p->job->device_id, p->job->migration_id,
                         "No statistics and no cancelling for this migration: %s", virGetLastErrorMessage());
        while (dom && !atomic_load(&p->stop)) {
                bool running = job_sample(p->job, dom);

                /* An abort while libvirt still sets the migration up can be lost; QEMU's running job cannot. */
                if (atomic_load(&p->job->cancel) && running && !aborted)
                        aborted = virDomainAbortJob(dom) >= 0;
                usleep(JOB_POLL_USEC);
        }
        if (dom)
                virDomainFree(dom);
        if (conn)
                virConnectClose(conn);
        return NULL;
}

static int job_params(Job *j, virTypedParameterPtr *ret, int *ret_n) {
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0;

        if (j->migrate_uri && virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, j->migrate_uri) < 0)
                goto fail;
        if (j->bandwidth_mib > 0 &&
            virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH, j->bandwidth_mib) < 0)
                goto fail;
        *ret = params;
        *ret_n = n;
        return 0;
fail:
        virTypedParamsFree(params, n);
        return -ENOMEM;
}

static void job_migrate(Job *j, virConnectPtr conn, virDomainPtr dom) {
        Poller poller = { .job = j };
        virTypedParameterPtr params = NULL;
        unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | (j->tls ? VIR_MIGRATE_TLS : 0);
        char error[512];
        pthread_t t;
        int n = 0, r;

        if (job_params(j, &params, &n) < 0) {
                job_finish(j, "failed", "out of memory");
                return;
        }
        /* The policy's limit for the stop-and-copy phase is QEMU's downtime limit. */
        if (virDomainMigrateSetMaxDowntime(dom, j->downtime_ms, 0) < 0)
                log_full(LOG_WARNING, 0, NULL, j->device_id, j->migration_id, "Cannot set the downtime limit: %s",
                         virGetLastErrorMessage());
        job_set_phase(j, "precopy");
        r = pthread_create(&t, NULL, poller_main, &poller);
        if (r == 0 && !atomic_load(&j->cancel))
                r = virDomainMigrateToURI3(dom, j->dest_uri, params, (unsigned) n, flags) < 0 ? -EIO : 0;
        else if (r == 0)
                r = -ECANCELED;
        else
                r = -r;
        snprintf(error, sizeof(error), "libvirt: %s", r == -EIO ? virGetLastErrorMessage() : strerror(-r));
        atomic_store(&poller.stop, true);
        if (r != -EAGAIN && r != -ENOMEM)
                pthread_join(t, NULL);
        virTypedParamsFree(params, n);
        if (r >= 0)
                job_finish(j, "success", NULL);
        else
                job_finish(j, atomic_load(&j->cancel) ? "cancelled" : "failed", error);
}

/* Destination: libvirt resumes the guest when the incoming migration is complete (RUNNING, reason MIGRATED);
 * a failed one makes libvirt kill the incoming QEMU, and the domain goes. */
static void job_watch(Job *j, virConnectPtr conn) {
        for (uint64_t waited = 0; waited < WATCH_LIMIT_USEC && !atomic_load(&j->cancel); waited += JOB_POLL_USEC) {
                virDomainPtr dom = virDomainLookupByName(conn, j->domain);
                int state = 0, reason = 0;

                if (!dom) {
                        job_finish(j, "failed", "the incoming domain went away before it ran: libvirt aborted the "
                                   "migration (see the source's error)");
                        return;
                }
                if (virDomainGetState(dom, &state, &reason, 0) >= 0 && state == VIR_DOMAIN_RUNNING) {
                        virDomainFree(dom);
                        job_finish(j, "success", NULL);
                        return;
                }
                virDomainFree(dom);
                usleep(JOB_POLL_USEC);
        }
        job_finish(j, atomic_load(&j->cancel) ? "cancelled" : "failed",
                   "the incoming domain did not run within the watch limit");
}

static void *job_main(void *userdata) {
        Job *j = userdata;
        virConnectPtr conn;
        virDomainPtr dom = NULL;
        char error[512];

        conn = virConnectOpen(j->uri);
        if (!conn) {
                snprintf(error, sizeof(error), "cannot connect to %s: %s", j->uri, virGetLastErrorMessage());
                job_finish(j, "failed", error);
                return NULL;
        }
        if (j->kind == JOB_WATCH)
                job_watch(j, conn);
        else if (!(dom = virDomainLookupByName(conn, j->domain))) {
                snprintf(error, sizeof(error), "no domain %s on %s", j->domain, j->uri);
                job_finish(j, "failed", error);
        } else
                job_migrate(j, conn, dom);
        if (dom)
                virDomainFree(dom);
        virConnectClose(conn);
        return NULL;
}

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* A timeline event like the engine's, so GetTimeline() reads the same for every backend. */
static void timeline_add(Manager *m, Migration *mig, const char *event, const char *key, const char *value) {
        struct json_object *ev = json_object_new_object();

        if (!ev)
                return;
        json_object_object_add(ev, "host", json_object_new_string(m->config->peer_name ?: m->hostname));
        json_object_object_add(ev, "role", json_object_new_string(mig->role));
        json_object_object_add(ev, "t_usec", json_object_new_int64((int64_t) now_usec(CLOCK_MONOTONIC)));
        json_object_object_add(ev, "rt_usec", json_object_new_int64((int64_t) now_usec(CLOCK_REALTIME)));
        json_object_object_add(ev, "event", json_object_new_string(event));
        if (key)
                json_object_object_add(ev, key, json_object_new_string(value));
        json_object_array_add(mig->timeline, ev);
}

static void migration_set_phase(Manager *m, Migration *mig, const char *phase) {
        static char *const props[] = { (char *) "Phase", NULL };

        if (streq(mig->phase, phase))
                return;
        (void) migration_set_string(&mig->phase, phase);
        if (phase[0])
                timeline_add(m, mig, "phase", "phase", phase);
        bus_migration_emit_changed_strv(m, mig, (char **) props);
}

static void migration_end(Manager *m, Migration *mig, const char *result, const char *error) {
        static char *const props[] = { (char *) "Result", (char *) "Error", (char *) "ErrorName", (char *) "Phase",
                                       (char *) "EtaSeconds",
                                       (char *) "BytesTotal", (char *) "BytesTransferred", (char *) "Rate", NULL };
        struct json_object *ev;

        migration_set_result(mig, result, error, NULL);
        (void) migration_set_string(&mig->phase, "");
        mig->eta_seconds = 0;
        timeline_add(m, mig, "result", "result", result);
        ev = json_object_array_get_idx(mig->timeline, json_object_array_length(mig->timeline) - 1);
        if (ev)
                json_object_object_add(ev, "error", json_object_new_string(error ?: ""));
        bus_migration_emit_changed_strv(m, mig, (char **) props);
        log_full(streq(result, "success") ? LOG_INFO : LOG_ERR, 0,
                 streq(result, "success") ? MIGD_MESSAGE_MIGRATION_DONE : MIGD_MESSAGE_MIGRATION_FAILED, mig->device,
                 mig->id, "libvirt migration of %s ended: %s%s%s", mig->device, result, error && error[0] ? ": " : "",
                 error ?: "");
}

static void jobs_remove(Job *j) {
        for (size_t i = 0; i < n_jobs; i++)
                if (jobs[i] == j) {
                        memmove(jobs + i, jobs + i + 1, (n_jobs - i - 1) * sizeof(Job *));
                        n_jobs--;
                        return;
                }
}

/* The main loop's half: publishes what the job's thread found, at most every JOB_PUBLISH_USEC. */
static int on_job_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        static char *const progress[] = { (char *) "BytesTotal", (char *) "BytesTransferred", (char *) "Rate",
                                          (char *) "EtaSeconds", NULL };
        Job *j = userdata;
        Manager *m = j->manager;
        Migration *mig = manager_find_migration(m, j->migration_id);
        bool done = atomic_load(&j->done);
        char phase[32], result[16], error[512];
        Device *d;
        int r;

        pthread_mutex_lock(&j->lock);
        memcpy(phase, j->phase, sizeof(phase));
        memcpy(result, j->result, sizeof(result));
        memcpy(error, j->error, sizeof(error));
        if (mig && (mig->bytes_total != j->bytes_total || mig->bytes_transferred != j->bytes_done ||
                    mig->rate != j->rate || mig->eta_seconds != j->eta)) {
                mig->bytes_total = j->bytes_total;
                mig->bytes_transferred = j->bytes_done;
                mig->rate = j->rate;
                mig->eta_seconds = j->eta;
                bus_migration_emit_changed_strv(m, mig, (char **) progress);
        }
        pthread_mutex_unlock(&j->lock);
        if (mig && phase[0])
                migration_set_phase(m, mig, phase);
        if (!done) {
                r = sd_event_source_set_time(s, usec + JOB_PUBLISH_USEC);
                return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }

        if (mig)
                migration_end(m, mig, result, error);
        d = j->device_id ? manager_find_device(m, j->device_id) : NULL;
        if (d) {
                manager_device_set_busy(m, d, false);
                (void) device_refresh_state(d);
        }
        jobs_remove(j);
        job_free(j);
        return 0;
}

static int job_start(Job *j) {
        int r;

        r = sd_event_add_time_relative(j->manager->event, &j->timer, CLOCK_MONOTONIC, JOB_PUBLISH_USEC, 0,
                                       on_job_timer, j);
        if (r < 0)
                return r;
        r = pthread_create(&j->thread, NULL, job_main, j);
        if (r != 0)
                return -r;
        j->thread_started = true;
        return 0;
}

static Job *job_new(Manager *m, JobKind kind, const char *domain) {
        Job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->manager = m;
        j->kind = kind;
        pthread_mutex_init(&j->lock, NULL);
        j->uri = strdup(m->config->libvirt_uri);
        j->domain = strdup(domain);
        if (!j->uri || !j->domain)
                return job_free(j);
        return j;
}

static int jobs_add(Job *j) {
        Job **n = reallocarray(jobs, n_jobs + 1, sizeof(Job *));

        if (!n)
                return -ENOMEM;
        jobs = n;
        jobs[n_jobs++] = j;
        return 0;
}

static Job *job_for_migration(const char *id) {
        for (size_t i = 0; i < n_jobs; i++)
                if (streq(jobs[i]->migration_id, id))
                        return jobs[i];
        return NULL;
}

static int job_cancel(Migration *mig, sd_bus_error *error) {
        Job *j = job_for_migration(mig->id);

        if (!j || atomic_load(&j->done))
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE, "Migration %s has already ended.", mig->id);
        /* The job's own thread calls virDomainAbortJob(): a slow libvirtd must not stall the main loop. */
        atomic_store(&j->cancel, true);
        return 0;
}

void libvirt_backend_shutdown(Manager *m) {
        for (size_t i = 0; i < n_jobs; i++)
                atomic_store(&jobs[i]->cancel, true);
        for (size_t i = 0; i < n_jobs; i++)
                job_free(jobs[i]);
        free(jobs);
        jobs = NULL;
        n_jobs = 0;
}

static int make_id(char **ret) {
        char s[SD_ID128_STRING_MAX];
        sd_id128_t id;
        int r;

        r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        *ret = strdup(sd_id128_to_string(id, s));
        return *ret ? 0 : -ENOMEM;
}

/* Creates and exports a Migration object; returns it (owned by the manager). */
static int add_migration(Manager *m, const char *role, const char *device, const char *peer, const char *policy,
                         const char *phase, Migration **ret) {
        _cleanup_(migration_freep) Migration *mig = NULL;
        _cleanup_free_ char *id = NULL;
        Migration *added;
        int r;

        r = make_id(&id);
        if (r < 0)
                return r;
        r = migration_new(id, &mig);
        if (r < 0)
                return r;
        if (migration_set_string(&mig->role, role) < 0 || migration_set_string(&mig->device, device) < 0 ||
            migration_set_string(&mig->peer, peer) < 0 || migration_set_string(&mig->policy, policy) < 0 ||
            migration_set_string(&mig->phase, phase) < 0)
                return -ENOMEM;
        /* Only migd's own jobs can be cancelled; an incoming one belongs to the source's libvirt. */
        mig->cancel = streq(role, "source") ? job_cancel : NULL;
        timeline_add(m, mig, "phase", "phase", phase);
        added = mig;
        r = manager_add_migration(m, TAKE_PTR(mig));
        if (r < 0) {
                migration_free(added);
                return r;
        }
        *ret = added;
        return 0;
}

static const char *opt(struct json_object *options, const char *key) {
        return json_object_get_string(json_object_object_get(options, key));
}

static int start_options(Job *j, Manager *m, struct json_object *options, sd_bus_error *error) {
        const char *bandwidth = opt(options, "bandwidth"), *tls = opt(options, "tls");
        char *end;

        j->tls = m->config->libvirt_tls;
        j->bandwidth_mib = m->config->libvirt_bandwidth_mib;
        if (bandwidth) {
                errno = 0;
                j->bandwidth_mib = strtoull(bandwidth, &end, 10);
                if (errno || *end || end == bandwidth)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option bandwidth must be MiB/s as a decimal number, not '%s'.",
                                                 bandwidth);
        }
        if (tls) {
                if (!streq(tls, "yes") && !streq(tls, "no"))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option tls must be yes or no, not '%s'.", tls);
                j->tls = streq(tls, "yes");
        }
        if (opt(options, "migrate_uri") && !(j->migrate_uri = strdup(opt(options, "migrate_uri"))))
                return -ENOMEM;
        return 0;
}

static int start_policy(Manager *m, Device *d, struct json_object *options, const Policy **ret, sd_bus_error *error) {
        const char *name = opt(options, "policy");
        _cleanup_free_ char *why = NULL;
        const Policy *p;

        p = name ? policy_set_find(m->policies, name) : manager_device_policy(m, d);
        if (!p)
                return name ? sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_POLICY, "No policy named '%s'.", name)
                            : sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_POLICY, "No policy matches device %s.", d->id);
        if (opt(options, "precopy") || opt(options, "target"))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Options precopy and target do not apply to libvirt device %s: QEMU decides "
                                         "pre-copy and libvirt the target.", d->id);
        if (!libvirt_policy_honourable(p, backend(d)->irq_state_in_data, &why))
                return sd_bus_error_setf(error, MIGD_ERROR_POLICY_VIOLATION, "Device %s (domain %s) cannot migrate "
                                         "under %s", d->id, backend(d)->domain, strna(why));
        *ret = p;
        return 0;
}

int libvirt_start_migration(Manager *m, Device *d, const char *destination, struct json_object *options,
                            char **ret_object_path, sd_bus_error *error) {
        _cleanup_(job_freep) Job *j = NULL;
        const Policy *p = NULL;
        Migration *mig;
        int r;

        assert(device_is_libvirt(d));

        if (d->busy)
                return sd_bus_error_setf(error, MIGD_ERROR_BUSY, "Device %s is busy with another migration.", d->id);
        if (!strstr(destination, ":/"))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Destination '%s' of libvirt device %s "
                                         "must be a libvirt URI such as qemu+tls://host-b/system.", destination, d->id);
        r = start_policy(m, d, options, &p, error);
        if (r < 0)
                return r;
        (void) device_refresh_state(d);
        if (d->state != MIG_STATE_RUNNING)
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE, "Domain %s of device %s is not running on "
                                         "%s; only a running domain can be migrated.", backend(d)->domain, d->id,
                                         m->config->libvirt_uri);
        j = job_new(m, JOB_MIGRATE, backend(d)->domain);
        if (!j)
                return -ENOMEM;
        r = start_options(j, m, options, error);
        if (r < 0)
                return r;
        j->downtime_ms = p->downtime_limit_ms;
        j->dest_uri = strdup(destination);
        j->device_id = strdup(d->id);
        if (!j->dest_uri || !j->device_id)
                return -ENOMEM;
        r = add_migration(m, "source", d->id, destination, p->name, "preflight", &mig);
        if (r < 0)
                return r;
        j->migration_id = strdup(mig->id);
        if (!j->migration_id)
                return -ENOMEM;
        r = bus_migration_path(mig, ret_object_path);
        if (r < 0)
                return r;
        r = jobs_add(j);
        if (r < 0)
                return r;
        r = job_start(j);
        if (r < 0) {
                jobs_remove(j);
                migration_end(m, mig, "failed", "cannot start the libvirt job");
                free(*ret_object_path);
                *ret_object_path = NULL;
                return r;
        }
        manager_device_set_busy(m, d, true);
        log_full(LOG_INFO, 0, MIGD_MESSAGE_MIGRATION_STARTED, d->id, mig->id,
                 "libvirt migrates domain %s to %s under policy %s.", backend(d)->domain, destination, p->name);
        TAKE_PTR(j);
        return 0;
}

/* ---- the hook's questions ---- */

/* The migd device a hostdev of domain is, if [LibvirtDevice] names it (by alias, PCI address or UUID). */
static Device *find_hostdev_device(Manager *m, const char *domain, const char *alias, const char *name) {
        for (size_t i = 0; i < m->n_devices; i++) {
                Device *d = m->devices[i];
                LibvirtDevice *l = device_is_libvirt(d) ? backend(d) : NULL;

                if (l && streq(l->domain, domain) && l->hostdev &&
                    (streq_ptr(l->hostdev, alias) || streq_ptr(l->hostdev, name)))
                        return d;
        }
        return NULL;
}

static int verdict_add(struct json_object *devices, const char *alias, const char *hostdev, Device *d,
                       const Policy *p, bool honoured, const char *reason) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "alias", alias ? json_object_new_string(alias) : NULL);
        json_object_object_add(o, "hostdev", hostdev ? json_object_new_string(hostdev) : NULL);
        json_object_object_add(o, "device", d ? json_object_new_string(d->id) : NULL);
        json_object_object_add(o, "policy", p ? json_object_new_string(p->name) : NULL);
        json_object_object_add(o, "irq_restore",
                               p ? json_object_new_string(irq_restore_to_string(p->irq_restore)) : NULL);
        json_object_object_add(o, "postcopy", json_object_new_boolean(p && p->postcopy));
        json_object_object_add(o, "honoured", json_object_new_boolean(honoured));
        json_object_object_add(o, "reason", json_object_new_string(reason));
        return json_object_array_add(devices, o);
}

/* One hostdev from the hook: its policy (through the migd device naming it, else from sysfs) and the verdict. */
static int check_one(Manager *m, const char *domain, struct json_object *h, struct json_object *devices, bool *ok) {
        const char *alias = opt(h, "alias"), *name = opt(h, "address") ?: opt(h, "uuid");
        Device *d = find_hostdev_device(m, domain, alias, name);
        _cleanup_free_ char *why = NULL;
        DeviceInfo info = {};
        const Policy *p;
        bool honoured;

        if (d)
                p = manager_device_policy(m, d);
        else {
                DeviceDescription desc = { .name = name };

                describe_host_device(name, &info);
                desc.driver = info.driver;
                desc.vendor_id = info.vendor_id;
                desc.device_id = info.device_id;
                desc.mdev_type = info.mdev_type;
                p = policy_set_resolve(m->policies, &desc);
                device_info_done(&info);
        }
        if (!p) {
                *ok = false;
                return verdict_add(devices, alias, name, d, NULL, false, "no policy matches it on this host");
        }
        honoured = libvirt_policy_honourable(p, d ? backend(d)->irq_state_in_data : true, &why);
        *ok = *ok && honoured;
        return verdict_add(devices, alias, name, d, p, honoured, strna(why));
}

/* Devices that stand for the whole domain (no Hostdev=) are checked too: migd was told the domain's data path
 * is one of its devices. */
static int check_domain_devices(Manager *m, const char *domain, struct json_object *devices, bool *ok) {
        int r;

        for (size_t i = 0; i < m->n_devices; i++) {
                Device *d = m->devices[i];
                _cleanup_free_ char *why = NULL;
                const Policy *p;
                bool honoured;

                if (!device_is_libvirt(d) || !streq(backend(d)->domain, domain) || backend(d)->hostdev)
                        continue;
                p = manager_device_policy(m, d);
                honoured = p && libvirt_policy_honourable(p, backend(d)->irq_state_in_data, &why);
                *ok = *ok && honoured;
                r = verdict_add(devices, NULL, NULL, d, p, honoured, why ?: "no policy matches it on this host");
                if (r < 0)
                        return r;
        }
        return 0;
}

static Migration *find_incoming(Manager *m, const char *domain);

/* The Migration object a libvirt-driven incoming migration gets: Device is the domain's migd device when it has
 * exactly one, else "libvirt:DOMAIN"; Peer is "libvirt" (the hook is not told the source). */
static char *incoming_device_name(struct json_object *devices, const char *domain) {
        const char *only = NULL;
        size_t n = 0;
        char *s;

        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                const char *id = opt(json_object_array_get_idx(devices, i), "device");
                if (id) {
                        only = id;
                        n++;
                }
        }
        if (n == 1)
                return strdup(only);
        return asprintf(&s, "libvirt:%s", domain) < 0 ? NULL : s;
}

static char *policies_joined(struct json_object *devices) {
        _cleanup_strv_free_ char **l = NULL;

        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                const char *p = opt(json_object_array_get_idx(devices, i), "policy");
                if (p && !strv_contains(l, p) && strv_extend(&l, p) < 0)
                        return NULL;
        }
        return l ? strv_join(l, ",") : strdup("");
}

static void record_incoming(Manager *m, const char *domain, struct json_object *verdict, bool ok,
                            const char *refusal) {
        struct json_object *devices = json_object_object_get(verdict, "devices");
        _cleanup_free_ char *device = incoming_device_name(devices, domain), *policies = policies_joined(devices);
        Migration *old = find_incoming(m, domain), *mig = NULL;

        if (old)
                migration_end(m, old, "failed", "superseded by a new incoming migration of the domain");
        if (!device || !policies || add_migration(m, "destination", device, "libvirt", policies, "preflight", &mig) < 0)
                return;
        timeline_add(m, mig, "libvirt_hook", "operation", "migrate begin");
        json_object_object_add(verdict, "migration", json_object_new_string(mig->id));
        if (!ok)
                migration_end(m, mig, "failed", refusal);
}

int libvirt_check_hostdevs(Manager *m, const char *domain, const char *hostdevs_json, char **ret_json,
                           sd_bus_error *error) {
        _cleanup_json_ struct json_object *hostdevs = json_tokener_parse(hostdevs_json), *verdict = NULL;
        _cleanup_free_ char *refusal = NULL;
        struct json_object *devices;
        bool ok = true;
        int r;

        if (!hostdevs || !json_object_is_type(hostdevs, json_type_array))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Argument hostdevs: must be a JSON array of objects.");
        verdict = json_object_new_object();
        devices = json_object_new_array();
        if (!verdict || !devices) {
                json_object_put(devices);
                return -ENOMEM;
        }
        json_object_object_add(verdict, "domain", json_object_new_string(domain));
        json_object_object_add(verdict, "devices", devices);
        for (size_t i = 0; i < json_object_array_length(hostdevs); i++) {
                r = check_one(m, domain, json_object_array_get_idx(hostdevs, i), devices, &ok);
                if (r < 0)
                        return r;
        }
        r = check_domain_devices(m, domain, devices, &ok);
        if (r < 0)
                return r;
        json_object_object_add(verdict, "relevant", json_object_new_boolean(json_object_array_length(devices) > 0));
        json_object_object_add(verdict, "ok", json_object_new_boolean(ok));
        for (size_t i = 0; !ok && i < json_object_array_length(devices); i++) {
                struct json_object *o = json_object_array_get_idx(devices, i);
                if (json_object_get_boolean(json_object_object_get(o, "honoured")))
                        continue;
                if (asprintf(&refusal, "%s: %s", opt(o, "alias") ?: opt(o, "device") ?: "?", opt(o, "reason")) < 0)
                        return -ENOMEM;
                break;
        }
        if (refusal)
                json_object_object_add(verdict, "message", json_object_new_string(refusal));
        if (json_object_array_length(devices) > 0)
                record_incoming(m, domain, verdict, ok, refusal);
        *ret_json = strdup(json_object_to_json_string_ext(verdict, JSON_C_TO_STRING_PLAIN |
                                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
        return *ret_json ? 0 : -ENOMEM;
}

static Job *job_for_domain(const char *domain, JobKind kind) {
        for (size_t i = 0; i < n_jobs; i++)
                if (jobs[i]->kind == kind && streq(jobs[i]->domain, domain) && !atomic_load(&jobs[i]->done))
                        return jobs[i];
        return NULL;
}

static Migration *find_incoming(Manager *m, const char *domain) {
        _cleanup_free_ char *fallback = NULL;

        for (size_t i = m->n_migrations; i > 0; i--) {
                Migration *mig = m->migrations[i - 1];
                Device *d = manager_find_device(m, mig->device);

                if (!streq(mig->role, "destination") || mig->result[0] != '\0' || !streq(mig->peer, "libvirt"))
                        continue;
                if ((d && device_is_libvirt(d) && streq(backend(d)->domain, domain)) ||
                    (asprintf(&fallback, "libvirt:%s", domain) >= 0 && streq(mig->device, fallback)))
                        return mig;
                free(fallback);
                fallback = NULL;
        }
        return NULL;
}

/* After "started" the incoming QEMU waits for (or already loads) the data; libvirt tells hooks nothing more, so
 * a thread of migd's asks libvirt until the guest runs or is gone. */
static int watch_incoming(Manager *m, Migration *mig, const char *domain) {
        _cleanup_(job_freep) Job *j = job_new(m, JOB_WATCH, domain);
        int r;

        if (!j)
                return -ENOMEM;
        j->migration_id = strdup(mig->id);
        if (!j->migration_id)
                return -ENOMEM;
        snprintf(j->phase, sizeof(j->phase), "load");
        r = jobs_add(j);
        if (r < 0)
                return r;
        r = job_start(j);
        if (r < 0) {
                jobs_remove(j);
                return r;
        }
        TAKE_PTR(j);
        return 0;
}

int libvirt_record_event(Manager *m, const char *domain, const char *operation, const char *sub_operation,
                         const char *extra, const char **ret_outcome, sd_bus_error *error) {
        Migration *incoming = find_incoming(m, domain), *outgoing = NULL;
        Job *mj = job_for_domain(domain, JOB_MIGRATE);
        char what[128];

        snprintf(what, sizeof(what), "%s %s %s", operation, sub_operation, extra);
        if (mj)
                outgoing = manager_find_migration(m, mj->migration_id);
        if (streq(operation, "prepare") && incoming)
                migration_set_phase(m, incoming, "prepare");
        else if (streq(operation, "started") && incoming && !job_for_domain(domain, JOB_WATCH)) {
                migration_set_phase(m, incoming, "load");
                if (watch_incoming(m, incoming, domain) < 0)
                        migration_end(m, incoming, "failed", "migd cannot watch the incoming domain");
        } else if ((streq(operation, "stopped") || streq(operation, "release")) && incoming &&
                   !job_for_domain(domain, JOB_WATCH))
                migration_end(m, incoming, "failed", "the incoming QEMU stopped before the migration finished");
        if (incoming)
                timeline_add(m, incoming, "libvirt_hook", "operation", what);
        if (outgoing)
                timeline_add(m, outgoing, "libvirt_hook", "operation", what);
        /* A source host sees only "stopped" and "release", as for any shutdown: without a job of migd's they
         * cannot be told apart, so they are not recorded. */
        *ret_outcome = incoming ? "recorded-incoming" : outgoing ? "recorded-outgoing" : "ignored";
        return 0;
}
