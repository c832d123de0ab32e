/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Migration progress: the properties migctl tracks, and the bar and plain lines that show them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migctl-progress.h"
#include "util.h"

#define MIGRATION_INTERFACE "org.vfiomig.Migd1.Migration"

#define ANSI_BOLD "\033[1m"
#define ANSI_GREEN "\033[32m"
#define ANSI_GREY "\033[90m"
#define ANSI_RESET "\033[0m"

void migration_info_done(MigrationInfo *m) {
        char **strings[] = { &m->id,    &m->object_path, &m->role,   &m->device, &m->peer,
                             &m->policy, &m->phase,       &m->result, &m->error,  &m->error_name };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                free(*strings[i]);
                *strings[i] = NULL;
        }
}

static int set_string(char **field, const char *value) {
        char *copy = strdup(value ?: "");

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* The string fields, keyed both by D-Bus property name and by JSON key. */
static char **string_field(MigrationInfo *m, const char *name) {
        const struct {
                const char *property, *json;
                char **field;
        } map[] = {
                { "Id", "id", &m->id },           { NULL, "object_path", &m->object_path },
                { "Role", "role", &m->role },     { "Device", "device", &m->device },
                { "Peer", "peer", &m->peer },     { "Policy", "policy", &m->policy },
                { "Phase", "phase", &m->phase },  { "Result", "result", &m->result },
                { "Error", "error", &m->error },  { "ErrorName", "error_name", &m->error_name },
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq_ptr(map[i].property, name) || streq(map[i].json, name))
                        return map[i].field;
        return NULL;
}

static uint64_t *number_field(MigrationInfo *m, const char *name) {
        const struct {
                const char *property, *json;
                uint64_t *field;
        } map[] = {
                { "BytesTotal", "bytes_total", &m->bytes_total },
                { "BytesTransferred", "bytes_transferred", &m->bytes_transferred },
                { "Rate", "rate", &m->rate },
                { "EtaSeconds", "eta_seconds", &m->eta_seconds },
                { "DowntimeUsec", "downtime_usec", &m->downtime_usec },
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (streq(map[i].property, name) || streq(map[i].json, name))
                        return map[i].field;
        return NULL;
}

int migration_info_from_json(MigrationInfo *m, struct json_object *j) {
        int r;

        if (!json_object_is_type(j, json_type_object))
                return -EBADMSG;
        json_object_object_foreach(j, key, value) {
                char **s = string_field(m, key);
                uint64_t *n = number_field(m, key);

                if (s) {
                        r = set_string(s, json_object_is_type(value, json_type_null) ? "" :
                                                                                      json_object_get_string(value));
                        if (r < 0)
                                return r;
                } else if (n)
                        *n = (uint64_t) json_object_get_int64(value);
        }
        return 0;
}

int migration_info_update_from_message(MigrationInfo *m, sd_bus_message *message) {
        int r;

        r = sd_bus_message_enter_container(message, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(message, 'e', "sv")) > 0) {
                const char *name, *contents, *s;
                uint64_t *n;
                char **field;

                r = sd_bus_message_read(message, "s", &name);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(message, NULL, &contents);
                if (r < 0)
                        return r;
                field = string_field(m, name);
                n = number_field(m, name);
                if (field && streq(contents, "s")) {
                        r = sd_bus_message_read(message, "v", "s", &s);
                        if (r >= 0)
                                r = set_string(field, s);
                } else if (n && streq(contents, "t"))
                        r = sd_bus_message_read(message, "v", "t", n);
                else
                        r = sd_bus_message_skip(message, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(message);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(message);
}

int migration_info_percent(const MigrationInfo *m) {
        if (m->bytes_total == 0)
                return -1;
        if (m->bytes_transferred >= m->bytes_total)
                return 100;
        return (int) (m->bytes_transferred * 100 / m->bytes_total);
}

char *format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) bytes;
        size_t u = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%" PRIu64 " B", bytes);
                return buf;
        }
        v /= 1024;
        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

char *format_usec(char *buf, size_t size, uint64_t usec) {
        if (usec < 1000)
                snprintf(buf, size, "%" PRIu64 " µs", usec);
        else if (usec < 1000000)
                snprintf(buf, size, "%.1f ms", (double) usec / 1000);
        else if (usec < 60 * 1000000ull)
                snprintf(buf, size, "%.2f s", (double) usec / 1000000);
        else
                return format_seconds(buf, size, usec / 1000000);
        return buf;
}

char *format_seconds(char *buf, size_t size, uint64_t seconds) {
        if (seconds < 60)
                snprintf(buf, size, "%" PRIu64 " s", seconds);
        else if (seconds < 3600)
                snprintf(buf, size, "%" PRIu64 " min %" PRIu64 " s", seconds / 60, seconds % 60);
        else
                snprintf(buf, size, "%" PRIu64 " h %" PRIu64 " min", seconds / 3600, seconds % 3600 / 60);
        return buf;
}

/* "486.0 MiB/1.0 GiB  305.1 MiB/s  ETA 3 s  downtime 3.1 ms": everything after the bar, or "" before data moves. */
static void progress_details(const MigrationInfo *m, char *buf, size_t size, const char *separator,
                             const char *of) {
        char done[32], total[32], rate[32], eta[32], downtime[32];
        size_t n = 0;

        buf[0] = '\0';
        if (m->bytes_total > 0)
                n += (size_t) snprintf(buf + n, size - n, "%s%s%s", format_bytes(done, sizeof(done), m->bytes_transferred),
                                       of, format_bytes(total, sizeof(total), m->bytes_total));
        if (n < size && m->rate > 0 && !migration_info_ended(m))
                n += (size_t) snprintf(buf + n, size - n, "%s%s/s", n ? separator : "",
                                       format_bytes(rate, sizeof(rate), m->rate));
        if (n < size && m->eta_seconds > 0 && !migration_info_ended(m))
                n += (size_t) snprintf(buf + n, size - n, "%sETA %s", n ? separator : "",
                                       format_seconds(eta, sizeof(eta), m->eta_seconds));
        if (n < size && m->downtime_usec > 0)
                (void) snprintf(buf + n, size - n, "%sdowntime %s", n ? separator : "",
                                format_usec(downtime, sizeof(downtime), m->downtime_usec));
}

static const char *phase_or_result(const MigrationInfo *m) {
        if (m->phase && m->phase[0])
                return m->phase;
        if (migration_info_ended(m))
                return m->result;
        return "starting";
}

/* Columns a UTF-8 string takes, counting every non-continuation byte as one (no wide characters here). */
static size_t text_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        n++;
        return n;
}

char *progress_line(const MigrationInfo *m, size_t width, bool color) {
        char details[160], percent[16];
        int p = migration_info_percent(m);
        size_t bar, filled, used, n = 0;
        char *line;

        progress_details(m, details, sizeof(details), "  ", "/");
        if (p >= 0)
                snprintf(percent, sizeof(percent), "%3d%%", p);
        else
                snprintf(percent, sizeof(percent), "   -");

        /* "phase       [bar] 100%  details": the bar takes what is left, within 10…40 columns. */
        used = 12 + 1 + strlen(percent) + (details[0] ? 2 + text_width(details) : 0);
        bar = width > used + 10 ? width - used : 10;
        if (bar > 40)
                bar = 40;
        filled = p > 0 ? bar * (size_t) p / 100 : 0;

        /* Each bar cell is at most 3 bytes of UTF-8; colour codes and the rest fit in 256. */
        line = malloc(bar * 3 + sizeof(details) + 256);
        if (!line)
                return NULL;
        n += (size_t) sprintf(line + n, "%s%-11s%s ", color ? ANSI_BOLD : "", phase_or_result(m),
                              color ? ANSI_RESET : "");
        n += (size_t) sprintf(line + n, "%s", color ? ANSI_GREEN : "");
        for (size_t i = 0; i < bar; i++) {
                if (i == filled && color)
                        n += (size_t) sprintf(line + n, "%s", ANSI_GREY);
                n += (size_t) sprintf(line + n, "%s", i < filled ? "█" : "░");
        }
        n += (size_t) sprintf(line + n, "%s %s", color ? ANSI_RESET : "", percent);
        if (details[0])
                (void) sprintf(line + n, "  %s", details);
        return line;
}

char *progress_plain(const MigrationInfo *m) {
        char details[160];
        int p = migration_info_percent(m);
        char *line;
        int r;

        progress_details(m, details, sizeof(details), ", ", " of ");
        if (p >= 0)
                r = asprintf(&line, "%s: %d%%%s%s", phase_or_result(m), p, details[0] ? ", " : "", details);
        else
                r = asprintf(&line, "%s", phase_or_result(m));
        return r < 0 ? NULL : line;
}

struct json_object *migration_info_to_json(const MigrationInfo *m) {
        const struct {
                const char *key, *value;
        } strings[] = {
                { "id", m->id },         { "object_path", m->object_path }, { "role", m->role },
                { "device", m->device }, { "peer", m->peer },               { "policy", m->policy },
                { "phase", m->phase },
        };
        const struct {
                const char *key;
                uint64_t value;
        } numbers[] = {
                { "bytes_total", m->bytes_total }, { "bytes_transferred", m->bytes_transferred },
                { "rate", m->rate },               { "eta_seconds", m->eta_seconds },
                { "downtime_usec", m->downtime_usec },
        };
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        /* Same keys in the same order as the daemon's ListMigrations(), so that scripts see one shape. */
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                json_object_object_add(o, strings[i].key, json_object_new_string(strings[i].value ?: ""));
        for (size_t i = 0; i < ELEMENTSOF(numbers); i++)
                json_object_object_add(o, numbers[i].key, json_object_new_int64((int64_t) numbers[i].value));
        json_object_object_add(o, "result", json_object_new_string(m->result ?: ""));
        json_object_object_add(o, "error", json_object_new_string(m->error ?: ""));
        return o;
}
