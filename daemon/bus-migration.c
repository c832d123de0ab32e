/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Migration objects: progress properties, Cancel() and GetTimeline(), over the engine's Migration record. */
#include <errno.h>
#include <stdlib.h>

#include "bus-access.h"
#include "bus-errors.h"
#include "bus-migration.h"
#include "engine.h"
#include "log.h"
#include "util.h"

int bus_migration_path(const Migration *mig, char **ret) {
        assert(mig);
        assert(ret);
        return sd_bus_path_encode(MIGD_MIGRATION_PREFIX, mig->id, ret);
}

static int method_cancel(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Migration *mig = userdata;
        char action[256];
        int r;

        snprintf(action, sizeof(action), "Cancelling migration %s", mig->id);
        r = bus_verify_admin(mig->manager, message, action, error);
        if (r < 0)
                return r;
        if (mig->result[0] != '\0')
                return sd_bus_error_setf(error, MIGD_ERROR_INVALID_STATE, "Migration %s has already ended (%s).",
                                         mig->id, mig->result);
        if (!mig->cancel)
                return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED, "Migration %s cannot be cancelled.",
                                         mig->id);
        r = mig->cancel(mig, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, NULL);
}

static int method_resolve(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Migration *mig = userdata;
        const char *decision;
        char action[256];
        int r;

        r = sd_bus_message_read(message, "s", &decision);
        if (r < 0)
                return r;
        if (!streq(decision, "commit") && !streq(decision, "abort"))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Decision must be \"commit\" or \"abort\", not \"%s\".", decision);
        snprintf(action, sizeof(action), "Resolving migration %s", mig->id);
        r = bus_verify_admin(mig->manager, message, action, error);
        if (r < 0)
                return r;
        r = engine_resolve(mig->manager->engine, mig->id, streq(decision, "commit"), error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(message, NULL);
}

static int method_get_timeline(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Migration *mig = userdata;
        const char *text;

        text = json_object_to_json_string_ext(mig->timeline, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        return sd_bus_reply_method_return(message, "s", text);
}

const sd_bus_vtable bus_migration_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", NULL, offsetof(Migration, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Role", "s", NULL, offsetof(Migration, role), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Device", "s", NULL, offsetof(Migration, device), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Peer", "s", NULL, offsetof(Migration, peer), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Policy", "s", NULL, offsetof(Migration, policy), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Phase", "s", NULL, offsetof(Migration, phase), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesTotal", "t", NULL, offsetof(Migration, bytes_total),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesTransferred", "t", NULL, offsetof(Migration, bytes_transferred),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Rate", "t", NULL, offsetof(Migration, rate), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("EtaSeconds", "t", NULL, offsetof(Migration, eta_seconds),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DowntimeUsec", "t", NULL, offsetof(Migration, downtime_usec),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Result", "s", NULL, offsetof(Migration, result), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Error", "s", NULL, offsetof(Migration, error), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ErrorName", "s", NULL, offsetof(Migration, error_name),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Cancel", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_cancel,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetTimeline", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", json), method_get_timeline,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Resolve", SD_BUS_ARGS("s", decision), SD_BUS_NO_RESULT, method_resolve,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int migration_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                                 void **found, sd_bus_error *error) {
        _cleanup_free_ char *id = NULL;
        Migration *mig;

        if (sd_bus_path_decode(path, MIGD_MIGRATION_PREFIX, &id) <= 0 || id[0] == '\0')
                return 0;
        mig = manager_find_migration(userdata, id);
        if (!mig)
                return 0;
        *found = mig;
        return 1;
}

static int migration_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                     sd_bus_error *error) {
        _cleanup_strv_free_ char **l = NULL;
        Manager *m = userdata;
        int r;

        l = calloc(m->n_migrations + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_migrations; i++) {
                r = bus_migration_path(m->migrations[i], &l[i]);
                if (r < 0)
                        return r;
        }
        *nodes = TAKE_PTR(l);
        return 1;
}

int bus_migration_register(Manager *m) {
        int r;

        assert(m);
        assert(m->bus);

        r = sd_bus_add_fallback_vtable(m->bus, NULL, MIGD_MIGRATION_PREFIX, MIGD_MIGRATION_INTERFACE,
                                       bus_migration_vtable, migration_object_find, m);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(m->bus, NULL, MIGD_MIGRATION_PREFIX, migration_node_enumerator, m);
}

static void emit_migration_signal(Manager *m, Migration *mig, const char *member) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (!m->bus)
                return;
        r = bus_migration_path(mig, &path);
        if (r >= 0)
                r = sd_bus_emit_signal(m->bus, MIGD_OBJECT_ROOT, "org.vfiomig.Migd1.Manager", member, "so", mig->id,
                                       path);
        if (r >= 0)
                r = streq(member, "MigrationAdded") ? sd_bus_emit_object_added(m->bus, path)
                                                    : sd_bus_emit_object_removed(m->bus, path);
        if (r < 0)
                log_warning_errno(r, "Cannot send %s for migration %s: %m", member, mig->id);
}

void bus_migration_emit_added(Manager *m, Migration *mig) {
        emit_migration_signal(m, mig, "MigrationAdded");
}

void bus_migration_emit_removed(Manager *m, Migration *mig) {
        emit_migration_signal(m, mig, "MigrationRemoved");
}

void bus_migration_emit_changed_strv(Manager *m, Migration *mig, char **properties) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (!m->bus)
                return;
        r = bus_migration_path(mig, &path);
        if (r >= 0)
                r = sd_bus_emit_properties_changed_strv(m->bus, path, MIGD_MIGRATION_INTERFACE, properties);
        if (r < 0)
                log_warning_errno(r, "Cannot send PropertiesChanged for migration %s: %m", mig->id);
}
