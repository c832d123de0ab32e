/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl devices/show/policies/reload: talking to migd over D-Bus and turning its errors into sentences. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "../daemon/bus-errors.h"
#include "config.h"
#include "migctl.h"
#include "util.h"

#define MANAGER_INTERFACE "org.vfiomig.Migd1.Manager"
#define DEVICE_INTERFACE "org.vfiomig.Migd1.Device"

/* Where migctl_bus_open() connected, for "migd is not running on …" (exit-code mapping has no context). */
static char bus_where[512] = "the system bus";

static FILE *out_of(const MigctlContext *ctx) {
        return ctx->out ?: stdout;
}

int migctl_bus_open(const MigctlContext *ctx, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        assert(ctx);
        assert(ret);

        if (ctx->bus_address) {
                snprintf(bus_where, sizeof(bus_where), "the bus at %s", ctx->bus_address);
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, ctx->bus_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else if (ctx->host) {
                snprintf(bus_where, sizeof(bus_where), "%s", ctx->host);
                r = sd_bus_open_system_remote(&bus, ctx->host);
        } else if (ctx->user_bus) {
                snprintf(bus_where, sizeof(bus_where), "the user bus");
                r = sd_bus_open_user(&bus);
        } else
                r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "migctl: cannot connect to %s: %s (is migd.service started?)\n", bus_where,
                        strerror(-r));
                return r;
        }
        *ret = TAKE_PTR(bus);
        return 0;
}

static bool error_is_one_of(const sd_bus_error *e, const char *const *names) {
        for (; *names; names++)
                if (sd_bus_error_has_name(e, *names))
                        return true;
        return false;
}

#define IN_SET_TRANSPORT(err) \
        ((err) == ECONNRESET || (err) == ENOTCONN || (err) == EPIPE || (err) == ECONNREFUSED)

static int transport_errno(const sd_bus_error *e, int r) {
        int err = e && sd_bus_error_is_set(e) ? sd_bus_error_get_errno(e) : (r < 0 ? -r : 0);

        return IN_SET_TRANSPORT(err) ? err : 0;
}

/* One table for a method's error and a failed migration's ErrorName. */
int migctl_exit_for_error_name(const char *name) {
        static const struct {
                const char *name;
                int exit_code;
        } map[] = {
                { MIGD_ERROR_NO_SUCH_DEVICE, MIGCTL_EXIT_NOT_FOUND },
                { MIGD_ERROR_NO_SUCH_POLICY, MIGCTL_EXIT_NOT_FOUND },
                { MIGD_ERROR_NO_SUCH_MIGRATION, MIGCTL_EXIT_NOT_FOUND },
                { MIGD_ERROR_NOT_PERMITTED, MIGCTL_EXIT_NOT_PERMITTED },
                { SD_BUS_ERROR_ACCESS_DENIED, MIGCTL_EXIT_NOT_PERMITTED },
                { SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED, MIGCTL_EXIT_NOT_PERMITTED },
                { MIGD_ERROR_INVALID_POLICY, MIGCTL_EXIT_POLICY },
                { MIGD_ERROR_POLICY_VIOLATION, MIGCTL_EXIT_POLICY },
                { MIGD_ERROR_PEER_UNREACHABLE, MIGCTL_EXIT_PEER_UNREACHABLE },
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq_ptr(name, map[i].name))
                        return map[i].exit_code;
        return MIGCTL_EXIT_FAILED;
}

int migctl_exit_for_bus_error(const sd_bus_error *e, int r, const char *what) {
        static const char *const not_running[] = { SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                                   NULL };

        assert(what);

        if (e && error_is_one_of(e, not_running)) {
                fprintf(stderr, "migctl: cannot %s: migd is not running on %s (is migd.service started?)\n", what,
                        bus_where);
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        }
        /* A connection that never came up or broke mid-call: the daemon (or the -H host) is out of reach. */
        if (transport_errno(e, r)) {
                fprintf(stderr, "migctl: cannot %s: the connection to %s failed (%s)\n", what, bus_where,
                        strerror(transport_errno(e, r)));
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        }
        if (e && sd_bus_error_is_set(e) && e->message)
                fprintf(stderr, "migctl: cannot %s: %s\n", what, e->message);
        else
                fprintf(stderr, "migctl: cannot %s: %s\n", what, strerror(r < 0 ? -r : EIO));

        if (!e || !sd_bus_error_is_set(e))
                return MIGCTL_EXIT_FAILED;
        return migctl_exit_for_error_name(e->name);
}

/* Calls a method on migd that returns one JSON string, and parses it. */
static int call_json(sd_bus *bus, const char *path, const char *interface, const char *method, const char *what,
                     const char *arg, struct json_object **ret_json, char **ret_text) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct json_object *j;
        const char *text;
        int r;

        if (arg)
                r = sd_bus_call_method(bus, MIGD_BUS_NAME, path, interface, method, &error, &reply, "s", arg);
        else
                r = sd_bus_call_method(bus, MIGD_BUS_NAME, path, interface, method, &error, &reply, NULL);
        if (r < 0)
                return -migctl_exit_for_bus_error(&error, r, what);
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0) {
                fprintf(stderr, "migctl: cannot %s: migd's reply is malformed: %s\n", what, strerror(-r));
                return -MIGCTL_EXIT_FAILED;
        }
        j = json_tokener_parse(text);
        if (!j) {
                fprintf(stderr, "migctl: cannot %s: migd's reply is not JSON\n", what);
                return -MIGCTL_EXIT_FAILED;
        }
        if (ret_text) {
                *ret_text = strdup(text);
                if (!*ret_text) {
                        json_object_put(j);
                        return -MIGCTL_EXIT_FAILED;
                }
        }
        *ret_json = j;
        return 0;
}

static const char *json_str(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return json_object_get_string(v);
}

static bool json_flag(struct json_object *o, const char *key) {
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static char *json_strv_join(struct json_object *o, const char *key, const char *separator) {
        _cleanup_strv_free_ char **l = NULL;
        struct json_object *a;

        if (!json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
                return strdup("");
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (strv_extend(&l, json_object_get_string(json_object_array_get_idx(a, i))) < 0)
                        return NULL;
        return l ? strv_join(l, separator) : strdup("none");
}

/* Cells are row-major, n_columns per row, the header first. The last column is not padded. */
static void print_table(FILE *f, const char *const *cells, size_t n_rows, size_t n_columns) {
        size_t width[16] = {};

        assert(n_columns <= ELEMENTSOF(width));

        for (size_t i = 0; i < n_rows * n_columns; i++) {
                size_t n = strlen(cells[i]);

                if (n > width[i % n_columns])
                        width[i % n_columns] = n;
        }
        for (size_t row = 0; row < n_rows; row++)
                for (size_t col = 0; col < n_columns; col++) {
                        const char *c = cells[row * n_columns + col];

                        if (col + 1 < n_columns)
                                fprintf(f, "%-*s ", (int) width[col], c);
                        else
                                fprintf(f, "%s\n", c);
                }
}

static int usage_no_arguments(int argc, char *argv[]) {
        if (argc <= 1)
                return 0;
        fprintf(stderr, "migctl: %s takes no arguments, got \"%s\" (see migctl --help)\n", argv[0], argv[1]);
        return -MIGCTL_EXIT_USAGE;
}

static int print_json_text(const MigctlContext *ctx, const char *text) {
        fprintf(out_of(ctx), "%s\n", text);
        return MIGCTL_EXIT_OK;
}

int verb_devices(int argc, char *argv[], MigctlContext *ctx) {
        static const char *const header[] = { "ID", "BACKEND", "DRIVER", "STATE", "BITS", "POLICY", "BUSY" };
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ struct json_object *j = NULL;
        _cleanup_free_ const char **cells = NULL;
        _cleanup_free_ char *text = NULL;
        size_t n, nc = ELEMENTSOF(header);
        int r;

        r = usage_no_arguments(argc, argv);
        if (r < 0)
                return -r;
        if (migctl_bus_open(ctx, &bus) < 0)
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = call_json(bus, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "ListDevices", "list devices", NULL, &j, &text);
        if (r < 0)
                return -r;
        if (ctx->json)
                return print_json_text(ctx, text);

        n = json_object_array_length(j);
        cells = calloc((n + 1) * nc, sizeof(char *));
        if (!cells)
                return MIGCTL_EXIT_FAILED;
        memcpy(cells, header, sizeof(header));
        for (size_t i = 0; i < n; i++) {
                struct json_object *d = json_object_array_get_idx(j, i);
                const char **row = cells + (i + 1) * nc;

                row[0] = strna(json_str(d, "id"));
                row[1] = strna(json_str(d, "backend"));
                row[2] = strna(json_str(d, "driver"));
                row[3] = strna(json_str(d, "state"));
                row[4] = json_str(d, "state_bits") ?: "-";
                row[5] = json_str(d, "policy") ?: "-";
                row[6] = json_flag(d, "busy") ? "yes" : "no";
        }
        print_table(out_of(ctx), cells, n + 1, nc);
        return MIGCTL_EXIT_OK;
}

static int print_device(FILE *f, struct json_object *d) {
        _cleanup_free_ char *flags = json_strv_join(d, "migration_flags", " ");
        struct json_object *uapi = NULL;
        const char *bits = json_str(d, "state_bits");
        const struct {
                const char *key;
                const char *value;
        } lines[] = {
                { "ID", json_str(d, "id") },
                { "Object Path", json_str(d, "object_path") },
                { "Backend", json_str(d, "backend") },
                { "Driver", json_str(d, "driver") },
                { "Vendor ID", json_str(d, "vendor_id") },
                { "Device ID", json_str(d, "device_id") },
                { "Mdev Type", json_str(d, "mdev_type") },
                { "Migration Flags", flags },
                { "Migration uAPI", json_object_object_get_ex(d, "uapi", &uapi) ? json_object_get_string(uapi) : NULL },
                { "State", json_str(d, "state") },
                { "v1 Bits", bits ?: "none (no v1 form)" },
                { "Policy", json_str(d, "policy") ?: "none matches" },
                { "Busy", json_flag(d, "busy") ? "yes (a migration owns it)" : "no" },
        };

        if (!flags)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(lines); i++)
                fprintf(f, "%15s: %s\n", lines[i].key, strna(lines[i].value));
        return 0;
}

static int device_path(sd_bus *bus, const char *id, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *what = NULL;
        const char *path;
        int r;

        if (asprintf(&what, "show device %s", id) < 0)
                return -MIGCTL_EXIT_FAILED;
        r = sd_bus_call_method(bus, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "GetDevice", &error, &reply,
                               "s", id);
        if (r < 0)
                return -migctl_exit_for_bus_error(&error, r, what);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !(*ret = strdup(path)))
                return -MIGCTL_EXIT_FAILED;
        return 0;
}

int verb_show(int argc, char *argv[], MigctlContext *ctx) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ struct json_object *j = NULL;
        _cleanup_free_ char *path = NULL, *text = NULL, *what = NULL;
        int r;

        if (argc != 2) {
                fprintf(stderr, "migctl: show needs exactly one DEVICE (see migctl devices for the IDs)\n");
                return MIGCTL_EXIT_USAGE;
        }
        if (migctl_bus_open(ctx, &bus) < 0)
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = device_path(bus, argv[1], &path);
        if (r < 0)
                return -r;
        if (asprintf(&what, "show device %s", argv[1]) < 0)
                return MIGCTL_EXIT_FAILED;
        r = call_json(bus, path, DEVICE_INTERFACE, "Describe", what, NULL, &j, &text);
        if (r < 0)
                return -r;
        if (ctx->json)
                return print_json_text(ctx, text);
        return print_device(out_of(ctx), j) < 0 ? MIGCTL_EXIT_FAILED : MIGCTL_EXIT_OK;
}

int verb_policies(int argc, char *argv[], MigctlContext *ctx) {
        static const char *const header[] = { "NAME", "PRIORITY", "IRQ-RESTORE", "POSTCOPY", "SOURCE" };
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ struct json_object *j = NULL;
        _cleanup_free_ const char **cells = NULL;
        _cleanup_free_ char *text = NULL, *priorities = NULL;
        size_t n, nc = ELEMENTSOF(header);
        int r;

        r = usage_no_arguments(argc, argv);
        if (r < 0)
                return -r;
        if (migctl_bus_open(ctx, &bus) < 0)
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = call_json(bus, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "ListPolicies", "list policies", NULL, &j, &text);
        if (r < 0)
                return -r;
        if (ctx->json)
                return print_json_text(ctx, text);

        n = json_object_array_length(j);
        cells = calloc((n + 1) * nc, sizeof(char *));
        /* Room for each priority's digits, so that the cells can point into one buffer. */
        priorities = calloc(n + 1, 16);
        if (!cells || !priorities)
                return MIGCTL_EXIT_FAILED;
        memcpy(cells, header, sizeof(header));
        for (size_t i = 0; i < n; i++) {
                struct json_object *p = json_object_array_get_idx(j, i), *prio = NULL;
                const char **row = cells + (i + 1) * nc;

                (void) json_object_object_get_ex(p, "priority", &prio);
                snprintf(priorities + i * 16, 16, "%d", json_object_get_int(prio));
                row[0] = strna(json_str(p, "name"));
                row[1] = priorities + i * 16;
                row[2] = strna(json_str(p, "irq_restore"));
                row[3] = json_flag(p, "postcopy") ? "yes" : "no";
                row[4] = strna(json_str(p, "source"));
        }
        print_table(out_of(ctx), cells, n + 1, nc);
        return MIGCTL_EXIT_OK;
}

int verb_reload(int argc, char *argv[], MigctlContext *ctx) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        r = usage_no_arguments(argc, argv);
        if (r < 0)
                return -r;
        if (migctl_bus_open(ctx, &bus) < 0)
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = sd_bus_call_method(bus, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "Reload", &error, NULL, NULL);
        if (r < 0)
                return migctl_exit_for_bus_error(&error, r, "reload migd");
        return MIGCTL_EXIT_OK;
}
