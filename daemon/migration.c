/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Migration record behind org.vfiomig.Migd1.Migration objects. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-errors.h"
#include "migration.h"
#include "util.h"

int migration_new(const char *id, Migration **ret) {
        _cleanup_(migration_freep) Migration *m = NULL;

        assert(id);
        assert(ret);

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->id = strdup(id);
        m->role = strdup("");
        m->device = strdup("");
        m->peer = strdup("");
        m->policy = strdup("");
        m->phase = strdup("");
        m->result = strdup("");
        m->error = strdup("");
        m->error_name = strdup("");
        m->timeline = json_object_new_array();
        if (!m->id || !m->role || !m->device || !m->peer || !m->policy || !m->phase || !m->result || !m->error ||
            !m->error_name || !m->timeline)
                return -ENOMEM;
        *ret = TAKE_PTR(m);
        return 0;
}

Migration *migration_free(Migration *m) {
        if (!m)
                return NULL;
        free(m->id);
        free(m->role);
        free(m->device);
        free(m->peer);
        free(m->policy);
        free(m->phase);
        free(m->result);
        free(m->error);
        free(m->error_name);
        json_object_put(m->timeline);
        free(m);
        return NULL;
}

void migration_freep(Migration **m) {
        migration_free(*m);
}

int migration_set_string(char **field, const char *value) {
        char *copy;

        assert(field);

        copy = strdup(value ?: "");
        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int add_string(struct json_object *o, const char *key, const char *value) {
        return json_object_object_add(o, key, json_object_new_string(value));
}

static int add_u64(struct json_object *o, const char *key, uint64_t value) {
        return json_object_object_add(o, key, json_object_new_uint64(value));
}

struct json_object *migration_to_json(const Migration *m, const char *object_path) {
        _cleanup_json_ struct json_object *o = NULL;

        assert(m);

        o = json_object_new_object();
        if (!o)
                return NULL;
        if (add_string(o, "id", m->id) < 0 || add_string(o, "object_path", object_path) < 0 ||
            add_string(o, "role", m->role) < 0 || add_string(o, "device", m->device) < 0 ||
            add_string(o, "peer", m->peer) < 0 || add_string(o, "policy", m->policy) < 0 ||
            add_string(o, "phase", m->phase) < 0 || add_u64(o, "bytes_total", m->bytes_total) < 0 ||
            add_u64(o, "bytes_transferred", m->bytes_transferred) < 0 || add_u64(o, "rate", m->rate) < 0 ||
            add_u64(o, "eta_seconds", m->eta_seconds) < 0 || add_u64(o, "downtime_usec", m->downtime_usec) < 0 ||
            add_string(o, "result", m->result) < 0 || add_string(o, "error", m->error) < 0 ||
            add_string(o, "error_name", m->error_name) < 0)
                return NULL;
        return TAKE_PTR(o);
}

void migration_set_result(Migration *m, const char *result, const char *error, const char *error_name) {
        bool failed = streq_ptr(result, "failed");

        assert(m);

        (void) migration_set_string(&m->result, result);
        (void) migration_set_string(&m->error, error);
        (void) migration_set_string(&m->error_name,
                                    !failed ? "" : error_name && error_name[0] ? error_name : MIGD_ERROR_MIGRATION_FAILED);
}
