/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The schema of every peer control message, checked on send and on receive. */
#include <stdarg.h>
#include <stdio.h>

#include "peer.h"
#include "util.h"

typedef enum FieldKind {
        FIELD_STRING,
        FIELD_INT,
        FIELD_UINT,
        FIELD_OBJECT,
        FIELD_STRINGS,
        FIELD_STRING_OR_NULL,
        FIELD_SHA256,
        FIELD_DECISION,
} FieldKind;

typedef struct Field {
        const char *name;
        FieldKind kind;
        bool optional;
} Field;

typedef struct MessageSchema {
        const char *type;
        Field fields[7]; /* terminated by a NULL name */
} MessageSchema;

static const MessageSchema schemas[] = {
        { "hello",
          { { "protocol", FIELD_STRING },
            { "version", FIELD_INT },
            { "name", FIELD_STRING },
            { "capabilities", FIELD_STRINGS } } },
        { "welcome", { { "version", FIELD_INT }, { "name", FIELD_STRING }, { "capabilities", FIELD_STRINGS } } },
        { "error", { { "code", FIELD_STRING }, { "message", FIELD_STRING } } },
        { "keepalive", {} },
        { "keepalive-ack", {} },
        { "preflight",
          { { "migration", FIELD_STRING },
            { "device", FIELD_OBJECT },
            { "policy", FIELD_OBJECT },
            { "plan", FIELD_OBJECT },
            { "options", FIELD_OBJECT },
            { "target", FIELD_STRING_OR_NULL, true } } },
        { "preflight-ok", { { "migration", FIELD_STRING }, { "target", FIELD_STRING }, { "plan", FIELD_OBJECT } } },
        { "prepare", { { "migration", FIELD_STRING } } },
        { "prepared", { { "migration", FIELD_STRING } } },
        { "precopy-done", {} },
        { "data-end", { { "bytes", FIELD_UINT }, { "sha256", FIELD_SHA256 } } },
        { "ack", { { "bytes", FIELD_UINT } } },
        { "loaded", { { "migration", FIELD_STRING } } },
        { "commit", { { "migration", FIELD_STRING } } },
        { "committed", { { "migration", FIELD_STRING } } },
        { "started", { { "migration", FIELD_STRING } } },
        { "rollback", { { "migration", FIELD_STRING }, { "reason", FIELD_STRING } } },
        { "cancel", { { "migration", FIELD_STRING }, { "reason", FIELD_STRING } } },
        { "resolve-query", { { "migration", FIELD_STRING } } },
        { "forget", { { "migration", FIELD_STRING } } },
        { "resolve-answer", { { "migration", FIELD_STRING }, { "decision", FIELD_DECISION } } },
};

static int fail(char **ret_error, const char *format, ...) _printf_(2, 3);
static int fail(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EBADMSG;
}

static bool is_sha256_hex(const char *s) {
        if (strlen(s) != PEER_SHA256_SIZE * 2)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static bool is_string_array(struct json_object *v) {
        size_t n;

        if (!json_object_is_type(v, json_type_array))
                return false;
        n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++)
                if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
                        return false;
        return true;
}

/* NULL when the value fits, else what the field must be. */
static const char *field_mismatch(const Field *f, struct json_object *v) {
        switch (f->kind) {
        case FIELD_STRING:
                return json_object_is_type(v, json_type_string) ? NULL : "must be a string";
        case FIELD_INT:
                return json_object_is_type(v, json_type_int) ? NULL : "must be an integer";
        case FIELD_UINT:
                /* json-c keeps integers above INT64_MAX as uint64; both are fine here. */
                return json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0
                               ? NULL
                               : "must be a non-negative integer";
        case FIELD_OBJECT:
                return json_object_is_type(v, json_type_object) ? NULL : "must be an object";
        case FIELD_STRINGS:
                return is_string_array(v) ? NULL : "must be an array of strings";
        case FIELD_STRING_OR_NULL:
                return !v || json_object_is_type(v, json_type_string) ? NULL : "must be a string or null";
        case FIELD_SHA256:
                return json_object_is_type(v, json_type_string) && is_sha256_hex(json_object_get_string(v))
                               ? NULL
                               : "must be a SHA-256 digest in 64 lowercase hexadecimal digits";
        case FIELD_DECISION:
                if (json_object_is_type(v, json_type_string)) {
                        const char *s = json_object_get_string(v);

                        if (streq(s, "commit") || streq(s, "abort") || streq(s, "unknown"))
                                return NULL;
                }
                return "must be \"commit\", \"abort\" or \"unknown\"";
        }
        assert(false);
        return "has an unknown kind";
}

static const MessageSchema *schema_find(const char *type) {
        for (size_t i = 0; i < ELEMENTSOF(schemas); i++)
                if (streq(schemas[i].type, type))
                        return &schemas[i];
        return NULL;
}

int peer_message_validate(struct json_object *msg, char **ret_error) {
        const MessageSchema *schema;
        struct json_object *t;
        const char *type;

        if (!json_object_is_type(msg, json_type_object))
                return fail(ret_error, "a control message must be a JSON object, not %s",
                            msg ? json_type_to_name(json_object_get_type(msg)) : "null");
        if (!json_object_object_get_ex(msg, "type", &t))
                return fail(ret_error, "message has no \"type\" field");
        if (!json_object_is_type(t, json_type_string))
                return fail(ret_error, "message field \"type\" must be a string");
        type = json_object_get_string(t);
        schema = schema_find(type);
        if (!schema)
                return fail(ret_error, "unknown message type \"%s\"", type);

        /* Fields beyond the schema are allowed: a newer peer may add some within the same version. */
        for (const Field *f = schema->fields; f->name; f++) {
                struct json_object *v;
                const char *mismatch;

                if (!json_object_object_get_ex(msg, f->name, &v)) {
                        if (f->optional)
                                continue;
                        return fail(ret_error, "message \"%s\": field \"%s\" is missing", type, f->name);
                }
                mismatch = field_mismatch(f, v);
                if (mismatch)
                        return fail(ret_error, "message \"%s\": field \"%s\" %s", type, f->name, mismatch);
        }
        return 0;
}
