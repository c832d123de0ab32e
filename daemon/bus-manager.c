/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Manager interface: listings as JSON, lookups, Reload() and the daemon's identity. */
#include <errno.h>
#include <stdlib.h>

#include "bus-access.h"
#include "bus-device.h"
#include "bus-errors.h"
#include "bus-manager.h"
#include "engine.h"
#include "libvirt-backend.h"
#include "bus-migration.h"
#include "config.h"
#include "log.h"
#include "util.h"
#include "vfio-manager.h"

static int reply_json(sd_bus_message *message, struct json_object *j) {
        const char *text;

        if (!j)
                return -ENOMEM;
        text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        return sd_bus_reply_method_return(message, "s", text);
}

static struct json_object *devices_to_json(Manager *m) {
        _cleanup_json_ struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (size_t i = 0; i < m->n_devices; i++) {
                struct json_object *d = bus_device_to_json(m, m->devices[i]);

                if (!d || json_object_array_add(a, d) < 0) {
                        json_object_put(d);
                        return NULL;
                }
        }
        return TAKE_PTR(a);
}

static struct json_object *migrations_to_json(Manager *m) {
        _cleanup_json_ struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (size_t i = 0; i < m->n_migrations; i++) {
                _cleanup_free_ char *path = NULL;
                struct json_object *j;

                if (bus_migration_path(m->migrations[i], &path) < 0)
                        return NULL;
                j = migration_to_json(m->migrations[i], path);
                if (!j || json_object_array_add(a, j) < 0) {
                        json_object_put(j);
                        return NULL;
                }
        }
        return TAKE_PTR(a);
}

/* The short form for listings; GetPolicy() gives the whole document. */
static struct json_object *policy_summary_to_json(const Policy *p) {
        _cleanup_json_ struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, "name", json_object_new_string(p->name)) < 0 ||
            json_object_object_add(o, "description", p->description ? json_object_new_string(p->description) : NULL) < 0 ||
            json_object_object_add(o, "priority", json_object_new_int(p->priority)) < 0 ||
            json_object_object_add(o, "irq_restore", json_object_new_string(irq_restore_to_string(p->irq_restore))) < 0 ||
            json_object_object_add(o, "postcopy", json_object_new_boolean(p->postcopy)) < 0 ||
            json_object_object_add(o, "source", json_object_new_string(strna(p->source))) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static struct json_object *policies_to_json(Manager *m) {
        _cleanup_json_ struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (size_t i = 0; i < m->policies->n; i++) {
                struct json_object *p = policy_summary_to_json(m->policies->items[i]);

                if (!p || json_object_array_add(a, p) < 0) {
                        json_object_put(p);
                        return NULL;
                }
        }
        return TAKE_PTR(a);
}

static struct json_object *strv_to_json(char **l) {
        _cleanup_json_ struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (char **i = l; i && *i; i++)
                if (json_object_array_add(a, json_object_new_string(*i)) < 0)
                        return NULL;
        return TAKE_PTR(a);
}

static int method_list_devices(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *j = devices_to_json(userdata);

        return reply_json(message, j);
}

static int method_list_migrations(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *j = migrations_to_json(userdata);

        return reply_json(message, j);
}

static int method_list_policies(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *j = policies_to_json(userdata);

        return reply_json(message, j);
}

static char *policy_names(Manager *m) {
        _cleanup_strv_free_ char **names = NULL;

        for (size_t i = 0; i < m->policies->n; i++)
                if (strv_extend(&names, m->policies->items[i]->name) < 0)
                        return NULL;
        return strv_join(names, ", ");
}

static char *device_ids(Manager *m) {
        _cleanup_strv_free_ char **ids = NULL;

        for (size_t i = 0; i < m->n_devices; i++)
                if (strv_extend(&ids, m->devices[i]->id) < 0)
                        return NULL;
        return ids ? strv_join(ids, ", ") : strdup("none");
}

static int method_get_policy(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *j = NULL;
        Manager *m = userdata;
        const Policy *p;
        const char *name;
        int r;

        r = sd_bus_message_read(message, "s", &name);
        if (r < 0)
                return r;
        p = policy_set_find(m->policies, name);
        if (!p) {
                _cleanup_free_ char *known = policy_names(m);

                return sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_POLICY, "No policy named \"%s\" (known: %s).",
                                         name, strna(known));
        }
        j = policy_to_json(p);
        return reply_json(message, j);
}

static int method_get_device(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *path = NULL;
        Manager *m = userdata;
        const char *id;
        Device *d;
        int r;

        r = sd_bus_message_read(message, "s", &id);
        if (r < 0)
                return r;
        d = manager_find_device(m, id);
        if (!d) {
                _cleanup_free_ char *known = device_ids(m);

                return sd_bus_error_setf(error, MIGD_ERROR_NO_SUCH_DEVICE, "No device \"%s\" on %s (known: %s).", id,
                                         m->hostname, strna(known));
        }
        r = bus_device_path(d, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, "o", path);
}

/* a{sv} options of StartMigration: only string values, only the keys the engine knows. */
static int read_start_options(sd_bus_message *message, struct json_object **ret, sd_bus_error *error) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        /* migrate_uri, bandwidth and tls are for libvirt devices (docs/libvirt.md). */
        static const char *const known[] = { "target", "policy", "precopy", "migrate_uri", "bandwidth", "tls" };
        int r;

        if (!o)
                return -ENOMEM;
        r = sd_bus_message_enter_container(message, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(message, 'e', "sv")) > 0) {
                const char *key, *value;
                bool ok = false;

                r = sd_bus_message_read(message, "s", &key);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        ok = ok || streq(key, known[i]);
                if (!ok)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown option '%s' (allowed: target, policy, precopy, "
                                                 "migrate_uri, bandwidth, tls).", key);
                r = sd_bus_message_enter_container(message, 'v', "s");
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be a string.",
                                                 key);
                r = sd_bus_message_read(message, "s", &value);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(message);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(message);
                if (r < 0)
                        return r;
                if (value[0])
                        json_object_object_add(o, key, json_object_new_string(value));
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(message);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

static int method_start_migration(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *options = NULL;
        _cleanup_free_ char *path = NULL;
        const char *device, *destination;
        char action[512];
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(message, "ss", &device, &destination);
        if (r < 0)
                return r;
        r = read_start_options(message, &options, error);
        if (r < 0)
                return r;
        snprintf(action, sizeof(action), "Migrating %s to %s", device, destination);
        r = bus_verify_admin(m, message, action, error);
        if (r < 0)
                return r;
        /* A libvirt device's arcs happen inside QEMU: libvirt's job runs it, not the engine's plan. */
        if (device_is_libvirt(manager_find_device(m, device)))
                r = libvirt_start_migration(m, manager_find_device(m, device), destination, options, &path, error);
        else
                r = engine_start_migration(m->engine, device, destination, options, &path, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, "o", path);
}

static int method_check_libvirt_hostdevs(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *verdict = NULL;
        const char *domain, *hostdevs;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(message, "ss", &domain, &hostdevs);
        if (r < 0)
                return r;
        /* It records a Migration object, so it is a mutating call like StartMigration. */
        r = bus_verify_admin(m, message, "Checking a libvirt migration", error);
        if (r < 0)
                return r;
        r = libvirt_check_hostdevs(m, domain, hostdevs, &verdict, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, "s", verdict);
}

static int method_record_libvirt_event(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        const char *domain, *operation, *sub_operation, *extra, *outcome = NULL;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(message, "ssss", &domain, &operation, &sub_operation, &extra);
        if (r < 0)
                return r;
        r = bus_verify_admin(m, message, "Recording a libvirt event", error);
        if (r < 0)
                return r;
        r = libvirt_record_event(m, domain, operation, sub_operation, extra, &outcome, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, "s", outcome);
}

static int method_reload(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = bus_verify_admin(m, message, "Reloading migd", error);
        if (r < 0)
                return r;
        r = manager_reload(m, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, NULL);
}

static int method_describe(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        _cleanup_json_ struct json_object *o = json_object_new_object();
        Manager *m = userdata;

        if (!o)
                return -ENOMEM;
        if (json_object_object_add(o, "version", json_object_new_string(MIGD_VERSION)) < 0 ||
            json_object_object_add(o, "hostname", json_object_new_string(m->hostname)) < 0 ||
            json_object_object_add(o, "backends", strv_to_json(m->config->backends)) < 0 ||
            json_object_object_add(o, "peer_listen", json_object_new_string(m->config->peer_listen)) < 0 ||
            json_object_object_add(o, "devices", devices_to_json(m)) < 0 ||
            json_object_object_add(o, "policies", policies_to_json(m)) < 0 ||
            json_object_object_add(o, "migrations", migrations_to_json(m)) < 0)
                return -ENOMEM;
        return reply_json(message, o);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", MIGD_VERSION);
}

static int property_get_peer_listen(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s", m->config->peer_listen);
}

static int property_get_backends(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append_strv(reply, m->config->backends);
}

const sd_bus_vtable bus_manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Hostname", "s", NULL, offsetof(Manager, hostname), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("PeerListen", "s", property_get_peer_listen, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Backends", "as", property_get_backends, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("ListDevices", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_list_devices,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListMigrations", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_list_migrations,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListPolicies", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_list_policies,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetPolicy", SD_BUS_ARGS("s", name), SD_BUS_RESULT("s", json), method_get_policy,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetDevice", SD_BUS_ARGS("s", id), SD_BUS_RESULT("o", path), method_get_device,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("StartMigration", SD_BUS_ARGS("s", device, "s", destination, "a{sv}", options),
                                SD_BUS_RESULT("o", migration), method_start_migration, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CheckLibvirtHostdevs", SD_BUS_ARGS("s", domain, "s", hostdevs),
                                SD_BUS_RESULT("s", json), method_check_libvirt_hostdevs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RecordLibvirtEvent",
                                SD_BUS_ARGS("s", domain, "s", operation, "s", sub_operation, "s", extra),
                                SD_BUS_RESULT("s", outcome), method_record_libvirt_event, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterDevice",
                                SD_BUS_ARGS("s", name, "h", device, "a{sah}", interrupts, "a{sv}", options),
                                SD_BUS_RESULT("o", path), vfio_method_register_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UnregisterDevice", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
                                vfio_method_unregister_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DiscoverDevices", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json),
                                vfio_method_discover_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("QualifyDevice", SD_BUS_ARGS("s", device, "a{sv}", options), SD_BUS_RESULT("s", json),
                                vfio_method_qualify_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reload,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Describe", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_describe,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("DeviceAdded", SD_BUS_ARGS("s", id, "o", path), 0),
        SD_BUS_SIGNAL_WITH_ARGS("DeviceRemoved", SD_BUS_ARGS("s", id, "o", path), 0),
        SD_BUS_SIGNAL_WITH_ARGS("MigrationAdded", SD_BUS_ARGS("s", id, "o", path), 0),
        SD_BUS_SIGNAL_WITH_ARGS("MigrationRemoved", SD_BUS_ARGS("s", id, "o", path), 0),
        SD_BUS_VTABLE_END,
};

int bus_manager_register(Manager *m) {
        int r;

        assert(m);
        assert(m->bus);

        r = sd_bus_add_object_vtable(m->bus, NULL, MIGD_OBJECT_ROOT, MIGD_MANAGER_INTERFACE, bus_manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot register the Manager object: %m");
        r = sd_bus_add_object_manager(m->bus, NULL, MIGD_OBJECT_ROOT);
        if (r < 0)
                return log_error_errno(r, "Cannot register the object manager: %m");
        r = bus_device_register(m);
        if (r < 0)
                return log_error_errno(r, "Cannot register the device objects: %m");
        r = bus_migration_register(m);
        if (r < 0)
                return log_error_errno(r, "Cannot register the migration objects: %m");
        r = vfio_bus_register(m);
        if (r < 0)
                return log_error_errno(r, "Cannot register the vfio device objects: %m");
        return 0;
}

void bus_manager_emit_changed_strv(Manager *m, char **properties) {
        int r;

        if (!m->bus)
                return;
        r = sd_bus_emit_properties_changed_strv(m->bus, MIGD_OBJECT_ROOT, MIGD_MANAGER_INTERFACE, properties);
        if (r < 0)
                log_warning_errno(r, "Cannot send PropertiesChanged for the Manager: %m");
}
