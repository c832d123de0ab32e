/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vfio devices in the daemon: configured and registered devices, discovery, and their D-Bus methods. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-access.h"
#include "bus-device.h"
#include "bus-errors.h"
#include "engine-internal.h"
#include "log.h"
#include "util.h"
#include "vfio-manager.h"
#include "vfio.h"

/* The daemon's one Manager, for the VfioDevice methods, which are served from a fallback vtable. */
static Manager *bus_manager;

/* Takes d. The device is on the bus when this returns 0. */
static int adopt_device(Manager *m, Device *d) {
        log_device(LOG_INFO, d->id, MIGD_MESSAGE_DEVICE_ADDED,
                   "Added vfio device (driver %s, %04x:%04x, flags 0x%x, %s, state %s).", strna(d->info.driver),
                   d->info.vendor_id, d->info.device_id, d->info.mig_flags,
                   vfio_access_to_string(vfio_device_access(d)), strna(mig_state_to_string(d->state)));
        return manager_add_device(m, d);
}


/* migd plays the VMM, as for sim devices: the guest's vectors get eventfds the engine watches. */
static void configure_guest_interrupts(Manager *m, Device *d, const uint32_t *counts) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                uint32_t n = counts[idx] > d->info.irq_count[idx] ? d->info.irq_count[idx] : counts[idx];
                int r;

                if (n == 0 || d->irq_enabled[idx] > 0)
                        continue;
                r = engine_configure_guest_interrupts(m->engine, d, idx, n);
                if (r < 0)
                        log_full(LOG_WARNING, r, NULL, d->id, NULL, "Cannot configure the guest's %s interrupts: %m",
                                 irq_index_to_string(idx));
        }
}

static int add_configured_device(Manager *m, const VfioConfig *c) {
        Device *d = NULL;
        int r;

        r = vfio_device_new(c, getenv("MIGD_VFIO_SYSFS") ?: "/sys", m->event, &d);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, c->name, NULL, "Cannot create the vfio device: %m");
        r = device_open(d);
        if (r < 0) {
                device_free(d);
                return log_full(LOG_ERR, r, NULL, c->name, NULL, "Cannot open the vfio device %s: %m", c->path);
        }
        r = adopt_device(m, d);
        if (r < 0)
                return r;
        configure_guest_interrupts(m, d, c->guest_irq_count);
        return 0;
}

void vfio_apply_devices(Manager *m, const Config *old) {
        bool enabled = config_has_backend(m->config, "vfio");

        for (size_t i = m->n_devices; i > 0; i--) {
                Device *d = m->devices[i - 1];
                const VfioConfig *now = enabled ? config_find_vfio_device(m->config, d->id) : NULL;
                const VfioConfig *before = old ? config_find_vfio_device(old, d->id) : NULL;

                if (!device_is_vfio(d) || vfio_device_is_registered(d))
                        continue;
                if (now && before && vfio_config_equal(now, before))
                        continue;
                manager_retire_device(m, i - 1);
        }
        if (!manager_backend_enabled(m, "vfio", "VfioDevice", m->config->n_vfio_devices))
                return;
        for (size_t i = 0; i < m->config->n_vfio_devices; i++)
                if (!manager_find_device(m, m->config->vfio_devices[i].name))
                        (void) add_configured_device(m, &m->config->vfio_devices[i]);
}

/* ---- RegisterDevice ---- */

typedef struct HandedIrqs {
        int fds[_IRQ_INDEX_MAX][ENGINE_MAX_VECTORS];
        uint32_t n[_IRQ_INDEX_MAX];
} HandedIrqs;

static void handed_irqs_done(HandedIrqs *h) {
        for (IrqIndex i = 0; i < _IRQ_INDEX_MAX; i++)
                for (uint32_t v = 0; v < h->n[i]; v++)
                        close(h->fds[i][v]);
}

/* a{sah}: {"msix": [fd, ...]}; the fds are dup'd, the message keeps its own. */
static int read_interrupts(sd_bus_message *message, HandedIrqs *h, sd_bus_error *error) {
        const char *key;
        int r;

        r = sd_bus_message_enter_container(message, 'a', "{sah}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(message, 'e', "sah")) > 0) {
                IrqIndex idx;
                int fd;

                r = sd_bus_message_read(message, "s", &key);
                if (r < 0)
                        return r;
                idx = irq_index_from_string(key);
                if (idx < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Interrupt index '%s' is not one of intx, msi, msix.", key);
                r = sd_bus_message_enter_container(message, 'a', "h");
                if (r < 0)
                        return r;
                while ((r = sd_bus_message_read(message, "h", &fd)) > 0) {
                        if (h->n[idx] >= ENGINE_MAX_VECTORS)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "More than %d %s eventfds.", ENGINE_MAX_VECTORS, key);
                        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        if (fd < 0)
                                return -errno;
                        h->fds[idx][h->n[idx]++] = fd;
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(message);
                if (r >= 0)
                        r = sd_bus_message_exit_container(message);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(message);
}

typedef struct RegisterOptions {
        char *driver;
        char *sysfs_path;
        char *interrupts_at; /* "registration" (default) or "restore" */
} RegisterOptions;

static void register_options_done(RegisterOptions *o) {
        free(o->driver);
        free(o->sysfs_path);
        free(o->interrupts_at);
}

/* a{sv} with string values "driver", "sysfs_path" and "interrupts_at". */
static int read_register_options(sd_bus_message *message, RegisterOptions *o, sd_bus_error *error) {
        const char *key, *value;
        int r;

        r = sd_bus_message_enter_container(message, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(message, 'e', "sv")) > 0) {
                char **target;

                r = sd_bus_message_read(message, "s", &key);
                if (r < 0)
                        return r;
                target = streq(key, "driver") ? &o->driver : streq(key, "sysfs_path") ? &o->sysfs_path :
                         streq(key, "interrupts_at") ? &o->interrupts_at : NULL;
                if (!target)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown option '%s' (allowed: driver, sysfs_path, interrupts_at).", key);
                r = sd_bus_message_enter_container(message, 'v', "s");
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be a string.", key);
                r = sd_bus_message_read(message, "s", &value);
                if (r < 0)
                        return r;
                if (target == &o->interrupts_at && !streq(value, "registration") && !streq(value, "restore"))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option interrupts_at is '%s'; it must be 'registration' (a running "
                                                 "device: set them now) or 'restore' (an incoming migration's target: "
                                                 "set them at the plan's interrupt restore).", value);
                free(*target);
                *target = value[0] ? strdup(value) : NULL;
                if (value[0] && !*target)
                        return -ENOMEM;
                r = sd_bus_message_exit_container(message);
                if (r >= 0)
                        r = sd_bus_message_exit_container(message);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(message);
}

/* The VMM's triggers become the device's (SET_IRQS) and the interrupt monitor's (through the engine's queue,
 * which takes its own copies). */
static int apply_handed_irqs(Manager *m, Device *d, HandedIrqs *h, sd_bus_error *error) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                struct json_object *u, *irq, *list;
                int r;

                if (h->n[idx] == 0)
                        continue;
                r = device_set_irqs(d, idx, 0, h->n[idx], h->fds[idx]);
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "SET_IRQS %s with %" PRIu32 " eventfds on %s failed: %m.",
                                                       irq_index_to_string(idx), h->n[idx], d->id);
                u = json_object_new_object();
                irq = json_object_new_object();
                list = json_object_new_array();
                for (uint32_t v = 0; v < h->n[idx]; v++)
                        json_object_array_add(list, json_object_new_int(h->fds[idx][v]));
                json_object_object_add(irq, "index", json_object_new_int(idx));
                json_object_object_add(irq, "fds", list);
                json_object_object_add(irq, "vmm_owned", json_object_new_boolean(true));
                json_object_object_add(u, "kind", json_object_new_string("irq-watch"));
                json_object_object_add(u, "device", json_object_new_string(d->id));
                json_object_object_add(u, "irq", irq);
                engine_post(m->engine, u);
                h->n[idx] = 0; /* the engine owns them now */
        }
        return 0;
}

/* A VMM that hands more eventfds than the device has vectors has the wrong device, or the wrong guest. */
static int check_handed_counts(Device *d, const HandedIrqs *h, sd_bus_error *error) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                if (h->n[idx] > d->info.irq_count[idx])
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "%" PRIu32 " %s eventfds for %s, which has %" PRIu32 " %s vectors.",
                                                 h->n[idx], irq_index_to_string(idx), d->id, d->info.irq_count[idx],
                                                 irq_index_to_string(idx));
        return 0;
}

/* interrupts_at=restore: the eventfds wait for the plan's interrupt restore of the next incoming migration. */
static int keep_restore_fds(Device *d, HandedIrqs *h) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                int r;

                if (h->n[idx] == 0)
                        continue;
                r = device_set_restore_fds(d, idx, h->fds[idx], h->n[idx]);
                if (r < 0)
                        return r;
                h->n[idx] = 0; /* the device owns them now */
        }
        return 0;
}

int vfio_method_register_device(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *path = NULL;
        RegisterOptions o = {};
        HandedIrqs h = {};
        Manager *m = userdata;
        const char *name;
        char action[256];
        Device *d = NULL;
        int fd, r;

        r = sd_bus_message_read(message, "sh", &name, &fd);
        if (r < 0)
                return r;
        r = read_interrupts(message, &h, error);
        if (r >= 0)
                r = read_register_options(message, &o, error);
        if (r < 0)
                goto finish;
        snprintf(action, sizeof(action), "Registering device %s", name);
        r = bus_verify_admin(m, message, action, error);
        if (r < 0)
                goto finish;
        if (manager_find_device(m, name)) {
                r = sd_bus_error_setf(error, MIGD_ERROR_BUSY, "A device named '%s' exists already.", name);
                goto finish;
        }
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
                r = -errno;
                goto finish;
        }
        r = vfio_device_new_from_fd(name, fd, o.driver, o.sysfs_path, m->event, &d);
        if (r == -EINVAL)
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                      "'%s' is not a device name (no \"/\", not empty).", name);
        else if (r == -EBADF)
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                      "The fd for '%s' is not a VFIO device fd (VFIO_DEVICE_GET_INFO failed).", name);
        else if (r < 0)
                r = sd_bus_error_set_errnof(error, r, "Cannot take over device %s: %m.", name);
        if (r < 0)
                goto finish;
        r = device_open(d);
        if (r < 0) {
                device_free(d);
                r = sd_bus_error_set_errnof(error, r, "Cannot query device %s: %m.", name);
                goto finish;
        }
        r = check_handed_counts(d, &h, error);
        if (r < 0) {
                device_free(d);
                goto finish;
        }
        if (streq_ptr(o.interrupts_at, "restore")) {
                r = keep_restore_fds(d, &h);
                if (r < 0) {
                        device_free(d);
                        goto finish;
                }
        }
        r = adopt_device(m, d);
        if (r < 0)
                goto finish;
        r = apply_handed_irqs(m, d, &h, error);
        if (r < 0) {
                manager_remove_device(m, m->n_devices - 1);
                goto finish;
        }
        r = bus_device_path(d, &path);
        if (r >= 0)
                r = sd_bus_reply_method_return(message, "o", path);
finish:
        handed_irqs_done(&h);
        register_options_done(&o);
        return r;
}

int vfio_method_unregister_device(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        char action[256];
        int r;

        r = sd_bus_message_read(message, "s", &name);
        if (r < 0)
                return r;
        snprintf(action, sizeof(action), "Unregistering device %s", name);
        r = bus_verify_admin(m, message, action, error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_devices; i++) {
                Device *d = m->devices[i];

                if (!streq(d->id, name))
                        continue;
                if (!vfio_device_is_registered(d))
                        return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED,
                                                 "Device %s comes from the configuration, not RegisterDevice.", name);
                if (d->busy || engine_device_in_use(m->engine, d->id))
                        return sd_bus_error_setf(error, MIGD_ERROR_BUSY, "Device %s is owned by a migration.", name);
                /* The monitor's copies of the eventfds go with the device. */
                for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                        struct json_object *u = json_object_new_object();
                        json_object_object_add(u, "kind", json_object_new_string("irq-unwatch"));
                        json_object_object_add(u, "device", json_object_new_string(d->id));
                        json_object_object_add(u, "index", json_object_new_int(idx));
                        engine_post(m->engine, u);
                }
                manager_remove_device(m, i);
                return sd_bus_reply_method_return(message, NULL);
        }
        return sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_DEVICE, "No device '%s'.", name);
}

static int reply_json(sd_bus_message *message, struct json_object *j) {
        const char *text;

        if (!j)
                return -ENOMEM;
        text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        return text ? sd_bus_reply_method_return(message, "s", text) : -ENOMEM;
}

int vfio_method_discover_devices(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *a = NULL;
        Manager *m = userdata;
        int r;

        r = vfio_discover(getenv("MIGD_VFIO_SYSFS") ?: "/sys", &a);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot read sysfs: %m.");
        /* Which of them migd manages already, and under which name. */
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                struct json_object *o = json_object_array_get_idx(a, i);
                const char *path = json_object_get_string(json_object_object_get(o, "path"));
                const char *managed = NULL;

                for (size_t k = 0; k < m->config->n_vfio_devices && !managed; k++) {
                        _cleanup_free_ char *resolved = NULL;
                        if (vfio_resolve_path(getenv("MIGD_VFIO_SYSFS") ?: "/sys", m->config->vfio_devices[k].path,
                                              &resolved) >= 0 && streq(resolved, path))
                                managed = m->config->vfio_devices[k].name;
                }
                json_object_object_add(o, "managed_as", managed ? json_object_new_string(managed) : NULL);
        }
        return reply_json(message, a);
}

int vfio_method_qualify_device(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *report = NULL;
        Manager *m = userdata;
        const char *name;
        char action[256];
        Device *d;
        int r;

        r = sd_bus_message_read(message, "s", &name);
        if (r < 0)
                return r;
        r = sd_bus_message_skip(message, "a{sv}");
        if (r < 0)
                return r;
        d = manager_find_device(m, name);
        if (!d)
                return sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_DEVICE, "No device '%s'.", name);
        snprintf(action, sizeof(action), "Qualifying %s", name);
        r = bus_verify_admin(m, message, action, error);
        if (r < 0)
                return r;
        if (d->busy || engine_device_in_use(m->engine, d->id))
                return sd_bus_error_setf(error, MIGD_ERROR_BUSY, "Device %s is owned by a migration.", d->id);
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                if (d->irq_enabled[idx] > 0)
                        return sd_bus_error_setf(error, MIGD_ERROR_BUSY,
                                                 "Device %s has %s interrupts configured: a guest uses it. Qualify "
                                                 "a spare device.", d->id, irq_index_to_string(idx));
        if (!d->ops->set_state || !d->ops->set_irqs)
                return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED, "The %s backend has no arcs to qualify.",
                                         d->ops->name);
        r = device_qualify(m, d, &report);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Qualifying %s failed: %m.", d->id);
        return reply_json(message, report);
}

/* ---- org.vfiomig.Migd1.VfioDevice ---- */

static int vfio_errno_reply(sd_bus_error *error, Device *d, uint32_t region, uint64_t offset, int r) {
        if (r == -ERANGE || r == -EPERM || r == -EINVAL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Device %s region %" PRIu32 " has no %s access at 0x%" PRIx64 ".", d->id,
                                         region, r == -EPERM ? "such" : "in-range", offset);
        return sd_bus_error_set_errnof(error, r, "Region %" PRIu32 " of %s: %m.", region, d->id);
}

static int method_read_region(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        Device *d = userdata;
        uint32_t region, size;
        uint64_t offset;
        int r;

        r = sd_bus_message_read(message, "utu", &region, &offset, &size);
        if (r < 0)
                return r;
        if (size == 0 || size > 4096)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Argument size: 1…4096, not %" PRIu32 ".",
                                         size);
        /* Reading a UART's receive register consumes data: as much a change as writing. */
        r = bus_verify_admin(bus_manager, message, "Reading a device region", error);
        if (r < 0)
                return r;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        r = vfio_device_region_read(d, region, offset, buf, size);
        if (r < 0)
                return vfio_errno_reply(error, d, region, offset, r);
        r = sd_bus_message_new_method_return(message, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', buf, size);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_write_region(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        const void *data;
        uint32_t region;
        uint64_t offset;
        size_t size;
        int r;

        r = sd_bus_message_read(message, "ut", &region, &offset);
        if (r >= 0)
                r = sd_bus_message_read_array(message, 'y', &data, &size);
        if (r < 0)
                return r;
        if (size == 0 || size > 4096)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Argument data: 1…4096 bytes, not %zu.",
                                         size);
        r = bus_verify_admin(bus_manager, message, "Writing a device region", error);
        if (r < 0)
                return r;
        r = vfio_device_region_write(d, region, offset, data, size);
        if (r < 0)
                return vfio_errno_reply(error, d, region, offset, r);
        return sd_bus_reply_method_return(message, NULL);
}

static int method_interrupt_signals(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        Device *d = userdata;
        Manager *m = bus_manager;

        if (!o)
                return -ENOMEM;
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                struct json_object *e = json_object_new_object();
                uint64_t n = 0;
                int watched = engine_irq_signals(m->engine, d->id, idx, &n);

                json_object_object_add(e, "vectors", json_object_new_int((int) d->info.irq_count[idx]));
                json_object_object_add(e, "enabled", json_object_new_int((int) d->irq_enabled[idx]));
                json_object_object_add(e, "watched", json_object_new_boolean(watched > 0));
                json_object_object_add(e, "for_restore", json_object_new_int((int) d->n_restore_fds[idx]));
                json_object_object_add(e, "signals", json_object_new_int64((int64_t) n));
                json_object_object_add(o, irq_index_to_string(idx), e);
        }
        return reply_json(message, o);
}

static int property_get_access(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", strna(vfio_access_to_string(vfio_device_access(userdata))));
}

static int property_get_registered(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", vfio_device_is_registered(userdata));
}

const sd_bus_vtable bus_vfio_device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Access", "s", property_get_access, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Registered", "b", property_get_registered, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("ReadRegion", SD_BUS_ARGS("u", region, "t", offset, "u", size),
                                SD_BUS_RESULT("ay", data), method_read_region, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("WriteRegion", SD_BUS_ARGS("u", region, "t", offset, "ay", data), SD_BUS_NO_RESULT,
                                method_write_region, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("InterruptSignals", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json),
                                method_interrupt_signals, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int vfio_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                            sd_bus_error *error) {
        _cleanup_free_ char *id = NULL;
        Device *d;

        if (sd_bus_path_decode(path, MIGD_DEVICE_PREFIX, &id) <= 0 || id[0] == '\0')
                return 0;
        d = manager_find_device(userdata, id);
        if (!device_is_vfio(d))
                return 0;
        *found = d;
        return 1;
}

int vfio_bus_register(Manager *m) {
        bus_manager = m;
        return sd_bus_add_fallback_vtable(m->bus, NULL, MIGD_DEVICE_PREFIX, MIGD_VFIO_DEVICE_INTERFACE,
                                          bus_vfio_device_vtable, vfio_object_find, m);
}
