/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loading and reloading configuration, policies and devices, and keeping the bus told about each change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "bus-device.h"
#include "bus-errors.h"
#include "bus-manager.h"
#include "bus-migration.h"
#include "config.h"
#include "log.h"
#include "manager.h"
#include "engine.h"
#include "libvirt-backend.h"
#include "sim.h"
#include "vfio-manager.h"
#include "vfio.h"
#include "util.h"

#define SWAP(a, b)                        \
        do {                              \
                __typeof__(a) _t_ = (a);  \
                (a) = (b);                \
                (b) = _t_;                \
        } while (0)

int manager_new(sd_event *event, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        char hostname[256] = {};

        assert(event);
        assert(ret);

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->config_file = strdup(MIGD_CONF_FILE);
        if (!m->config_file)
                return -ENOMEM;
        if (gethostname(hostname, sizeof(hostname) - 1) < 0)
                return -errno;
        m->hostname = strdup(hostname);
        if (!m->hostname)
                return -ENOMEM;
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* Workers use devices and migrations: they stop first. */
        engine_free(m->engine);
        libvirt_backend_shutdown(m);
        for (size_t i = 0; i < m->n_migrations; i++)
                migration_free(m->migrations[i]);
        free(m->migrations);
        for (size_t i = 0; i < m->n_devices; i++)
                device_free(m->devices[i]);
        free(m->devices);
        policy_set_free(m->policies);
        config_free(m->config);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        free(m->config_file);
        free(m->arg_state_dir);
        free(m->arg_policy_dir);
        free(m->hostname);
        free(m);
        return NULL;
}

void manager_freep(Manager **m) {
        manager_free(*m);
}

Device *manager_find_device(Manager *m, const char *id) {
        assert(m);
        for (size_t i = 0; i < m->n_devices; i++)
                if (streq(m->devices[i]->id, id))
                        return m->devices[i];
        return NULL;
}

Migration *manager_find_migration(Manager *m, const char *id) {
        assert(m);
        for (size_t i = 0; i < m->n_migrations; i++)
                if (streq(m->migrations[i]->id, id))
                        return m->migrations[i];
        return NULL;
}

static const Policy *resolve_policy(const PolicySet *set, const Device *d) {
        DeviceDescription desc = {
                .name = d->id,
                .driver = d->info.driver,
                .vendor_id = d->info.vendor_id,
                .device_id = d->info.device_id,
                .mdev_type = d->info.mdev_type,
        };

        return set ? policy_set_resolve(set, &desc) : NULL;
}

const Policy *manager_device_policy(Manager *m, Device *d) {
        assert(m);
        assert(d);
        return resolve_policy(m->policies, d);
}

void manager_notify_status(Manager *m) {
        size_t n_policies = m->policies ? m->policies->n : 0;

        (void) sd_notifyf(false, "STATUS=Managing %zu device%s, %zu polic%s", m->n_devices,
                          m->n_devices == 1 ? "" : "s", n_policies, n_policies == 1 ? "y" : "ies");
}

static void on_device_state_changed(Device *d, MigState old_state, MigState new_state, void *userdata) {
        static char *const properties[] = { (char *) "State", (char *) "StateBits", NULL };
        Manager *m = userdata;

        log_device(LOG_INFO, d->id, MIGD_MESSAGE_DEVICE_STATE, "State %s -> %s.",
                   strna(mig_state_to_string(old_state)), strna(mig_state_to_string(new_state)));
        bus_device_emit_changed_strv(m, d, (char **) properties);
}

void manager_device_set_busy(Manager *m, Device *d, bool busy) {
        static char *const properties[] = { (char *) "Busy", NULL };

        assert(m);
        assert(d);

        if (d->busy == busy)
                return;
        d->busy = busy;
        bus_device_emit_changed_strv(m, d, (char **) properties);
}

static int mkdir_parents_and_self(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* migd plays the VMM of a simulated device: the vectors a guest had enabled get eventfds migd watches. */
static void manager_configure_guest_interrupts(Manager *m, Device *d, const SimConfig *c) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                uint32_t n = c->guest_irq_count[idx];
                int r;

                if (n == 0 || d->irq_enabled[idx] > 0)
                        continue;
                if (n > d->info.irq_count[idx])
                        n = d->info.irq_count[idx];
                r = n > 0 ? engine_configure_guest_interrupts(m->engine, d, idx, n) : 0;
                if (r < 0)
                        log_full(LOG_WARNING, r, NULL, d->id, NULL, "Cannot configure the guest's %s interrupts: %m",
                                 irq_index_to_string(idx));
        }
}

static int manager_add_sim_device(Manager *m, const SimConfig *c) {
        _cleanup_(device_freep) Device *d = NULL;
        _cleanup_free_ char *record_dir = NULL;
        int r;

        if (asprintf(&record_dir, "%s/sim", m->config->state_dir) < 0)
                return -ENOMEM;
        /* The records say what a guest's device did; only root (or the demo user) reads them. */
        r = mkdir_parents_and_self(record_dir, 0700);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, c->name, NULL, "Cannot create %s: %m", record_dir);
        r = sim_device_new(c, m->event, record_dir, &d);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, c->name, NULL, "Cannot create the simulated device: %m");
        r = device_open(d);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, c->name, NULL, "Cannot open the simulated device: %m");

        manager_configure_guest_interrupts(m, d, c);
        log_device(LOG_INFO, d->id, MIGD_MESSAGE_DEVICE_ADDED, "Added %s device (driver %s, state %s).",
                   d->ops->name, strna(d->info.driver), strna(mig_state_to_string(d->state)));
        return manager_add_device(m, TAKE_PTR(d));
}

int manager_add_device(Manager *m, Device *d) {
        Device **n;

        assert(m);
        assert(d);

        n = reallocarray(m->devices, m->n_devices + 1, sizeof(Device *));
        if (!n) {
                device_free(d);
                return -ENOMEM;
        }
        m->devices = n;
        d->on_state_changed = on_device_state_changed;
        d->userdata = m;
        m->devices[m->n_devices++] = d;
        bus_device_emit_added(m, d);
        return 0;
}

void manager_remove_device(Manager *m, size_t i) {
        Device *d = m->devices[i];

        /* InterfacesRemoved lists the interfaces, so the object must still be found while it is sent. */
        bus_device_emit_removed(m, d);
        log_device(LOG_INFO, d->id, MIGD_MESSAGE_DEVICE_REMOVED, "Removed.");
        memmove(m->devices + i, m->devices + i + 1, (m->n_devices - i - 1) * sizeof(Device *));
        m->n_devices--;
        device_free(d);
}

void manager_retire_device(Manager *m, size_t i) {
        Device *d = m->devices[i];

        if (d->busy) {
                log_device(LOG_WARNING, d->id, NULL, "Configuration changed, but a migration owns the device; "
                           "keeping it as it is.");
                return;
        }
        manager_remove_device(m, i);
}

bool manager_backend_enabled(Manager *m, const char *backend, const char *section, size_t n_sections) {
        if (config_has_backend(m->config, backend))
                return true;
        if (n_sections > 0)
                log_warning("%zu [%s] sections ignored: Backends= does not list %s.", n_sections, section, backend);
        return false;
}

/* A device stays as it is (with its state) when its section did not change; a changed section means a
 * different device, so it goes and comes back. A busy device stays whatever the file says. */
static void manager_apply_devices(Manager *m, const Config *old) {
        bool sim = config_has_backend(m->config, "sim");

        libvirt_apply_devices(m, old);

        for (size_t i = m->n_devices; i > 0; i--) {
                Device *d = m->devices[i - 1];
                const SimConfig *now = sim ? config_find_sim_device(m->config, d->id) : NULL;
                const SimConfig *before = old ? config_find_sim_device(old, d->id) : NULL;

                /* Other backends' devices come and go with their own sections. */
                if (device_is_libvirt(d) || device_is_vfio(d))
                        continue;
                if (now && before && sim_config_equal(now, before))
                        continue;
                manager_retire_device(m, i - 1);
        }

        vfio_apply_devices(m, old);
        if (!manager_backend_enabled(m, "sim", "SimDevice", m->config->n_sim_devices))
                return;
        for (size_t i = 0; i < m->config->n_sim_devices; i++)
                if (!manager_find_device(m, m->config->sim_devices[i].name))
                        /* One device that cannot be opened must not take the others down; it is logged. */
                        (void) manager_add_sim_device(m, &m->config->sim_devices[i]);
}

static int manager_read_config(Manager *m, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *why = NULL;
        int r;

        r = config_load(m->config_file, !m->config_file_given, &c, &why);
        if (r == -EINVAL && why) {
                *ret_error = TAKE_PTR(why);
                return r;
        }
        if (r < 0) {
                if (asprintf(ret_error, "%s: cannot read: %s", m->config_file, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (m->arg_state_dir && migration_set_string(&c->state_dir, m->arg_state_dir) < 0)
                return -ENOMEM;
        if (m->arg_policy_dir && migration_set_string(&c->policy_dir, m->arg_policy_dir) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static char *policy_errors_join(const PolicyErrors *errors) {
        _cleanup_strv_free_ char **l = NULL;

        for (size_t i = 0; i < errors->n; i++) {
                _cleanup_free_ char *s = policy_error_format(&errors->items[i]);

                if (!s || strv_extend(&l, s) < 0)
                        return NULL;
        }
        return l ? strv_join(l, "; ") : strdup("invalid policy");
}

static int manager_read_policies(const char *dir, PolicySet **ret, char **ret_error) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        int r;

        r = policy_set_load_dir(dir, ret, &errors);
        if (r == -EINVAL)
                *ret_error = policy_errors_join(&errors);
        else if (r < 0 && asprintf(ret_error, "%s: cannot read the policy directory: %s", dir, strerror(-r)) < 0)
                *ret_error = NULL;
        return r;
}

int manager_startup(Manager *m, char **ret_error) {
        _cleanup_free_ char *why = NULL;
        int r;

        assert(m);
        assert(ret_error);

        r = manager_read_config(m, &m->config, &why);
        if (r >= 0)
                r = manager_read_policies(m->config->policy_dir, &m->policies, &why);
        if (r < 0) {
                *ret_error = TAKE_PTR(why);
                return r;
        }
        if (!m->config->path)
                log_info("%s does not exist, using built-in defaults.", m->config_file);
        r = engine_new(m, &m->engine);
        if (r < 0) {
                if (asprintf(ret_error, "cannot set up the migration engine: %s", strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        manager_apply_devices(m, NULL);
        return 0;
}

static int reload_failed(Manager *m, sd_bus_error *error, const char *name, const char *what, const char *why,
                         int r) {
        size_t n = m->policies->n;

        log_full(LOG_ERR, r, MIGD_MESSAGE_RELOAD_FAILED, NULL, NULL,
                 "Reload failed, keeping the running configuration and %zu policies: %s", n, strna(why));
        (void) sd_notify(false, "READY=1");
        manager_notify_status(m);
        return sd_bus_error_setf(error, name, "%s not reloaded, keeping the running configuration and %zu "
                                 "policies: %s", what, n, strna(why));
}

static void emit_policy_changes(Manager *m, const PolicySet *old) {
        static char *const properties[] = { (char *) "Policy", NULL };

        for (size_t i = 0; i < m->n_devices; i++) {
                const Policy *before = resolve_policy(old, m->devices[i]), *now = manager_device_policy(m, m->devices[i]);

                if (!streq_ptr(before ? before->name : NULL, now ? now->name : NULL))
                        bus_device_emit_changed_strv(m, m->devices[i], (char **) properties);
        }
}

static bool strv_equal(char **a, char **b) {
        for (; a && *a && b && *b; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return (!a || !*a) && (!b || !*b);
}

static void emit_manager_changes(Manager *m, const Config *old) {
        char *changed[3] = {};
        size_t n = 0;

        if (!streq(old->peer_listen, m->config->peer_listen))
                changed[n++] = (char *) "PeerListen";
        if (!strv_equal(old->backends, m->config->backends))
                changed[n++] = (char *) "Backends";
        if (n > 0)
                bus_manager_emit_changed_strv(m, changed);
}

int manager_reload(Manager *m, sd_bus_error *error) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(policy_set_freep) PolicySet *policies = NULL;
        _cleanup_free_ char *why = NULL;
        struct timespec ts;
        int r;

        assert(m);

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu",
                          (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000ULL);

        r = manager_read_config(m, &config, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reload_failed(m, error, MIGD_ERROR_INVALID_CONFIG, "Configuration", why, r);
        r = manager_read_policies(config->policy_dir, &policies, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reload_failed(m, error, MIGD_ERROR_INVALID_POLICY, "Policies", why, r);

        /* From here on nothing fails: the new set and configuration replace the old ones as a whole. The old
         * ones go into the cleanup variables, to be compared with before they are freed. */
        SWAP(m->policies, policies);
        emit_policy_changes(m, policies);
        SWAP(m->config, config);
        manager_apply_devices(m, config);
        emit_manager_changes(m, config);

        log_full(LOG_INFO, 0, MIGD_MESSAGE_RELOADED, NULL, NULL, "Reloaded %s: %zu devices, %zu policies.",
                 m->config->path ?: "built-in defaults", m->n_devices, m->policies->n);
        (void) sd_notify(false, "READY=1");
        manager_notify_status(m);
        return 0;
}

int manager_connect_bus(Manager *m, const char *address, bool user) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        assert(m);
        assert(!m->bus);

        if (address) {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                (void) sd_bus_set_description(bus, "migd");
                r = sd_bus_set_address(bus, address);
                if (r < 0)
                        return log_error_errno(r, "Bad bus address \"%s\": %m", address);
                r = sd_bus_set_bus_client(bus, true);
                if (r < 0)
                        return r;
                r = sd_bus_start(bus);
        } else if (user)
                r = sd_bus_open_user_with_description(&bus, "migd");
        else
                r = sd_bus_open_system_with_description(&bus, "migd");
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the %s bus%s%s: %m",
                                       address ? "given" : user ? "user" : "system", address ? " " : "",
                                       address ?: "");

        /* A daemon whose bus went away can do nothing useful; systemd restarts it. */
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0)
                return r;
        m->bus = TAKE_PTR(bus);
        r = bus_manager_register(m);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %m");
        return 0;
}

int manager_request_name(Manager *m) {
        int r;

        assert(m);
        assert(m->bus);

        r = sd_bus_request_name(m->bus, MIGD_BUS_NAME, 0);
        if (r == -EEXIST)
                return log_error_errno(r, "%s is owned by another process; is another migd running?", MIGD_BUS_NAME);
        if (r < 0)
                return log_error_errno(r, "Cannot own %s: %m (does the bus policy allow it?)", MIGD_BUS_NAME);
        return 0;
}

int manager_add_migration(Manager *m, Migration *mig) {
        Migration **n;

        assert(m);
        assert(mig);

        n = reallocarray(m->migrations, m->n_migrations + 1, sizeof(Migration *));
        if (!n)
                return -ENOMEM;
        m->migrations = n;
        m->migrations[m->n_migrations++] = mig;
        mig->manager = m;
        bus_migration_emit_added(m, mig);
        return 0;
}

void manager_remove_migration(Manager *m, Migration *mig) {
        assert(m);
        assert(mig);

        for (size_t i = 0; i < m->n_migrations; i++) {
                if (m->migrations[i] != mig)
                        continue;
                bus_migration_emit_removed(m, mig);
                memmove(m->migrations + i, m->migrations + i + 1, (m->n_migrations - i - 1) * sizeof(Migration *));
                m->n_migrations--;
                migration_free(mig);
                return;
        }
}
