/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Device objects: their properties, SetState()/Reset()/Describe() and the sim test hooks. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus-access.h"
#include "bus-device.h"
#include "bus-errors.h"
#include "log.h"
#include "sim.h"
#include "util.h"

static const char allowed_states[] =
        "STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P, RESUMING_RUNNING";

int bus_device_path(const Device *d, char **ret) {
        assert(d);
        assert(ret);
        return sd_bus_path_encode(MIGD_DEVICE_PREFIX, d->id, ret);
}

static bool device_is_sim(const Device *d) {
        return d->ops == &sim_backend_ops;
}

static const char *device_policy_name(Device *d) {
        const Policy *p = manager_device_policy(d->userdata, d);

        return p ? p->name : NULL;
}

static int property_get_backend(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->ops->name);
}

static int property_get_driver(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->info.driver ?: "");
}

static int property_get_mdev_type(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->info.mdev_type ?: "");
}

static int mig_flags_to_strv(uint32_t flags, char ***ret) {
        char buf[MIG_FLAGS_STRING_MAX];

        if (flags == 0) {
                /* "none" is for people; an empty array says the same to programs. */
                *ret = calloc(1, sizeof(char *));
                return *ret ? 0 : -ENOMEM;
        }
        return strv_split(mig_flags_to_string(flags, buf, sizeof(buf)), ",", ret);
}

static int property_get_migration_flags(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error) {
        _cleanup_strv_free_ char **flags = NULL;
        Device *d = userdata;
        int r;

        r = mig_flags_to_strv(d->info.mig_flags, &flags);
        if (r < 0)
                return r;
        return sd_bus_message_append_strv(reply, flags);
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", strna(mig_state_to_string(d->state)));
}

static int property_get_state_bits(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", mig_state_to_bits(d->state) ?: "");
}

static int property_get_policy(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", device_policy_name(userdata) ?: "");
}

static int property_get_busy(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "b", d->busy);
}

/* The v1 model alone has RESUMING|RUNNING, and v1 devices took any bit pattern in one write, so there is no
 * path to walk: the device itself accepts or refuses the single change. */
static bool is_v1_change(const Device *d, MigState target) {
        return d->info.uapi == 1 && (target == MIG_STATE_V1_RESUMING_RUNNING ||
                                     d->state == MIG_STATE_V1_RESUMING_RUNNING);
}

static int device_change_state(Device *d, MigState target, sd_bus_error *error) {
        const char *from = strna(mig_state_to_string(d->state)), *to = mig_state_to_string(target);
        char flags[MIG_FLAGS_STRING_MAX];
        int r;

        if (target == MIG_STATE_V1_RESUMING_RUNNING && d->info.uapi != 1)
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE,
                                         "Device %s speaks migration v2; RESUMING_RUNNING exists only in the v1 "
                                         "protocol.", d->id);
        if (is_v1_change(d, target))
                r = device_set_state(d, target, NULL);
        else {
                if (!mig_state_supported(target, d->info.mig_flags))
                        return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE,
                                                 "Device %s has no state %s (its migration flags: %s).", d->id, to,
                                                 mig_flags_to_string(d->info.mig_flags, flags, sizeof(flags)));
                r = device_walk_to(d, target, NULL);
        }
        if (r == -EINVAL)
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE,
                                         "Device %s cannot go from %s to %s: the migration state machine has no "
                                         "path there.", d->id, from, to);
        if (r < 0) {
                log_device(LOG_ERR, d->id, MIGD_MESSAGE_DEVICE_STATE, "Going from %s to %s failed, now %s: %s",
                           from, to, strna(mig_state_to_string(d->state)), strerror(-r));
                return sd_bus_error_set_errnof(error, r, "Device %s failed to go from %s to %s and is now in %s: %m.",
                                               d->id, from, to, strna(mig_state_to_string(d->state)));
        }
        return 0;
}

static int method_set_state(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        char action[256];
        const char *name;
        MigState target;
        int r;

        r = sd_bus_message_read(message, "s", &name);
        if (r < 0)
                return r;
        target = mig_state_from_string(name);
        if (target < 0 || target == MIG_STATE_ERROR)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Argument state: \"%s\" is not a state a device can be set to (allowed: %s).",
                                         name, allowed_states);

        snprintf(action, sizeof(action), "Changing the state of %s", d->id);
        r = bus_verify_admin(d->userdata, message, action, error);
        if (r < 0)
                return r;
        if (d->busy)
                return sd_bus_error_setf(error, MIGD_ERROR_BUSY, "Device %s is owned by a running migration.", d->id);

        r = device_change_state(d, target, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, NULL);
}

static int method_reset(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        char action[256];
        int r;

        snprintf(action, sizeof(action), "Resetting %s", d->id);
        r = bus_verify_admin(d->userdata, message, action, error);
        if (r < 0)
                return r;
        if (d->busy)
                return sd_bus_error_setf(error, MIGD_ERROR_BUSY, "Device %s is owned by a running migration.", d->id);
        if (!d->ops->reset)
                return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED, "The %s backend cannot reset devices.",
                                         d->ops->name);

        r = d->ops->reset(d);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Resetting device %s failed: %m.", d->id);
        /* A reset puts a device back in RUNNING; ask rather than assume. */
        r = device_refresh_state(d);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Device %s was reset but its state is unknown: %m.", d->id);
        log_device(LOG_INFO, d->id, MIGD_MESSAGE_DEVICE_STATE, "Reset, now %s.", strna(mig_state_to_string(d->state)));
        return sd_bus_reply_method_return(message, NULL);
}

static int reply_json(sd_bus_message *message, struct json_object *j) {
        const char *text;

        if (!j)
                return -ENOMEM;
        text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        return sd_bus_reply_method_return(message, "s", text);
}

static int method_describe(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *j = NULL;
        Device *d = userdata;

        j = bus_device_to_json(d->userdata, d);
        return reply_json(message, j);
}

static int sim_check_vector(Device *d, IrqIndex index, uint32_t vector, sd_bus_error *error) {
        uint32_t n = d->info.irq_count[index];

        if (n == 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Argument index: device %s has no %s interrupts.", d->id,
                                         irq_index_to_string(index));
        if (vector >= n)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Argument vector: device %s has %" PRIu32 " %s vector%s (0…%" PRIu32
                                         "), not %" PRIu32 ".",
                                         d->id, n, irq_index_to_string(index), n == 1 ? "" : "s", n - 1, vector);
        return 0;
}

static int method_raise_interrupt(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        const char *name;
        char action[256];
        uint32_t vector;
        IrqIndex index;
        int r;

        r = sd_bus_message_read(message, "su", &name, &vector);
        if (r < 0)
                return r;
        index = irq_index_from_string(name);
        if (index < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Argument index: \"%s\" is not an interrupt index (allowed: intx, msi, msix).",
                                         name);
        r = sim_check_vector(d, index, vector, error);
        if (r < 0)
                return r;
        snprintf(action, sizeof(action), "Raising an interrupt on %s", d->id);
        r = bus_verify_admin(d->userdata, message, action, error);
        if (r < 0)
                return r;

        r = sim_device_raise_irq(d, index, vector);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Device %s could not raise %s vector %" PRIu32 ": %m.", d->id,
                                               irq_index_to_string(index), vector);
        return sd_bus_reply_method_return(message, NULL);
}

static int register_error(Device *d, uint32_t offset, int r, sd_bus_error *error) {
        if (r == -EINVAL || r == -ERANGE)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Argument offset: device %s has no register at offset %" PRIu32 ".", d->id,
                                         offset);
        return sd_bus_error_set_errnof(error, r, "Register %" PRIu32 " of device %s: %m.", offset, d->id);
}

static int method_write_register(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        char action[256];
        uint32_t offset;
        uint8_t value;
        int r;

        r = sd_bus_message_read(message, "uy", &offset, &value);
        if (r < 0)
                return r;
        snprintf(action, sizeof(action), "Writing a register of %s", d->id);
        r = bus_verify_admin(d->userdata, message, action, error);
        if (r < 0)
                return r;

        r = sim_device_write_register(d, offset, value);
        if (r < 0)
                return register_error(d, offset, r, error);
        return sd_bus_reply_method_return(message, NULL);
}

static int method_read_register(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        uint32_t offset;
        uint8_t value;
        int r;

        r = sd_bus_message_read(message, "u", &offset);
        if (r < 0)
                return r;
        r = sim_device_read_register(d, offset, &value);
        if (r < 0)
                return register_error(d, offset, r, error);
        return sd_bus_reply_method_return(message, "y", value);
}

static int method_get_record(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *j = NULL;

        j = sim_device_get_record(userdata);
        return reply_json(message, j);
}

const sd_bus_vtable bus_device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", NULL, offsetof(Device, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Backend", "s", property_get_backend, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Driver", "s", property_get_driver, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("VendorId", "q", NULL, offsetof(Device, info.vendor_id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceId", "q", NULL, offsetof(Device, info.device_id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MdevType", "s", property_get_mdev_type, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MigrationFlags", "as", property_get_migration_flags, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StateBits", "s", property_get_state_bits, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Policy", "s", property_get_policy, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Busy", "b", property_get_busy, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("SetState", SD_BUS_ARGS("s", state), SD_BUS_NO_RESULT, method_set_state,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reset", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reset, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Describe", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_describe,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

const sd_bus_vtable bus_sim_device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("RaiseInterrupt", SD_BUS_ARGS("s", index, "u", vector), SD_BUS_NO_RESULT,
                                method_raise_interrupt, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("WriteRegister", SD_BUS_ARGS("u", offset, "y", value), SD_BUS_NO_RESULT,
                                method_write_register, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReadRegister", SD_BUS_ARGS("u", offset), SD_BUS_RESULT("y", value),
                                method_read_register, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetRecord", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_get_record,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static Device *device_from_path(Manager *m, const char *path) {
        _cleanup_free_ char *id = NULL;

        if (sd_bus_path_decode(path, MIGD_DEVICE_PREFIX, &id) <= 0 || id[0] == '\0')
                return NULL;
        return manager_find_device(m, id);
}

static int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                              sd_bus_error *error) {
        Device *d = device_from_path(userdata, path);

        if (!d)
                return 0;
        *found = d;
        return 1;
}

static int sim_device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                                  void **found, sd_bus_error *error) {
        Device *d = device_from_path(userdata, path);

        if (!d || !device_is_sim(d))
                return 0;
        *found = d;
        return 1;
}

static int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                  sd_bus_error *error) {
        _cleanup_strv_free_ char **l = NULL;
        Manager *m = userdata;
        size_t n = 0;
        int r;

        l = calloc(m->n_devices + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_devices; i++) {
                r = bus_device_path(m->devices[i], &l[n]);
                if (r < 0)
                        return r;
                n++;
        }
        *nodes = TAKE_PTR(l);
        return 1;
}

int bus_device_register(Manager *m) {
        int r;

        assert(m);
        assert(m->bus);

        r = sd_bus_add_fallback_vtable(m->bus, NULL, MIGD_DEVICE_PREFIX, MIGD_DEVICE_INTERFACE, bus_device_vtable,
                                       device_object_find, m);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(m->bus, NULL, MIGD_DEVICE_PREFIX, MIGD_SIM_DEVICE_INTERFACE,
                                       bus_sim_device_vtable, sim_device_object_find, m);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(m->bus, NULL, MIGD_DEVICE_PREFIX, device_node_enumerator, m);
}

static int json_add_string(struct json_object *o, const char *key, const char *value) {
        /* json-c takes NULL as JSON null; callers pass NULL deliberately for "absent". */
        return json_object_object_add(o, key, value ? json_object_new_string(value) : NULL);
}

static int json_add_hex16(struct json_object *o, const char *key, uint16_t value) {
        char buf[8];

        snprintf(buf, sizeof(buf), "0x%04" PRIx16, value);
        return json_add_string(o, key, buf);
}

static struct json_object *flags_to_json(uint32_t flags) {
        _cleanup_json_ struct json_object *a = json_object_new_array();
        _cleanup_strv_free_ char **l = NULL;

        if (!a || mig_flags_to_strv(flags, &l) < 0)
                return NULL;
        for (char **f = l; *f; f++)
                if (json_object_array_add(a, json_object_new_string(*f)) < 0)
                        return NULL;
        return TAKE_PTR(a);
}

struct json_object *bus_device_to_json(Manager *m, Device *d) {
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_free_ char *path = NULL;
        struct json_object *flags;

        assert(m);
        assert(d);

        o = json_object_new_object();
        if (!o || bus_device_path(d, &path) < 0)
                return NULL;
        flags = flags_to_json(d->info.mig_flags);
        if (!flags)
                return NULL;
        if (json_add_string(o, "id", d->id) < 0 || json_add_string(o, "object_path", path) < 0 ||
            json_add_string(o, "backend", d->ops->name) < 0 || json_add_string(o, "driver", d->info.driver) < 0 ||
            json_add_hex16(o, "vendor_id", d->info.vendor_id) < 0 ||
            json_add_hex16(o, "device_id", d->info.device_id) < 0 ||
            json_add_string(o, "mdev_type", d->info.mdev_type) < 0 ||
            json_object_object_add(o, "migration_flags", flags) < 0 ||
            json_object_object_add(o, "uapi", json_object_new_int((int) d->info.uapi)) < 0 ||
            json_add_string(o, "state", mig_state_to_string(d->state)) < 0 ||
            json_add_string(o, "state_bits", mig_state_to_bits(d->state)) < 0 ||
            json_add_string(o, "policy", device_policy_name(d)) < 0 ||
            json_object_object_add(o, "busy", json_object_new_boolean(d->busy)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static void emit_device_signal(Manager *m, Device *d, const char *member) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = bus_device_path(d, &path);
        if (r >= 0)
                r = sd_bus_emit_signal(m->bus, MIGD_OBJECT_ROOT, "org.vfiomig.Migd1.Manager", member, "so", d->id,
                                       path);
        if (r >= 0)
                r = streq(member, "DeviceAdded") ? sd_bus_emit_object_added(m->bus, path)
                                                 : sd_bus_emit_object_removed(m->bus, path);
        if (r < 0)
                log_warning_errno(r, "Cannot send %s for %s: %m", member, d->id);
}

void bus_device_emit_added(Manager *m, Device *d) {
        if (m->bus)
                emit_device_signal(m, d, "DeviceAdded");
}

void bus_device_emit_removed(Manager *m, Device *d) {
        if (m->bus)
                emit_device_signal(m, d, "DeviceRemoved");
}

void bus_device_emit_changed_strv(Manager *m, Device *d, char **properties) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (!m->bus)
                return;
        r = bus_device_path(d, &path);
        if (r >= 0)
                r = sd_bus_emit_properties_changed_strv(m->bus, path, MIGD_DEVICE_INTERFACE, properties);
        if (r < 0)
                log_warning_errno(r, "Cannot send PropertiesChanged for %s: %m", d->id);
}
