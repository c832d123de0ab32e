/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A migration's progress as migctl holds it, and the words and bars that show it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

typedef struct MigrationInfo {
        char *id;
        char *object_path;
        char *role;
        char *device;
        char *peer;
        char *policy;
        char *phase;
        char *result;
        char *error;
        char *error_name;
        uint64_t bytes_total;
        uint64_t bytes_transferred;
        uint64_t rate;
        uint64_t eta_seconds;
        uint64_t downtime_usec;
} MigrationInfo;

void migration_info_done(MigrationInfo *m);
/* From one element of ListMigrations()'s JSON. */
int migration_info_from_json(MigrationInfo *m, struct json_object *j);
/* Reads an a{sv} of org.vfiomig.Migd1.Migration properties (GetAll's reply, PropertiesChanged's body). */
int migration_info_update_from_message(MigrationInfo *m, sd_bus_message *message);

static inline bool migration_info_ended(const MigrationInfo *m) {
        return m->result && m->result[0] != '\0';
}
/* 0…100; -1 while the total is unknown. */
int migration_info_percent(const MigrationInfo *m);

/* "512 B", "1.0 KiB", "486.3 MiB", "1.0 GiB". */
char *format_bytes(char *buf, size_t size, uint64_t bytes);
/* "980 µs", "3.1 ms", "1.25 s", "4 min 12 s". */
char *format_usec(char *buf, size_t size, uint64_t usec);
/* "3 s", "2 min 5 s", "1 h 4 min". */
char *format_seconds(char *buf, size_t size, uint64_t seconds);

/* One line, at most width columns: phase, bar, percentage, bytes/total, rate, ETA, downtime when known. */
char *progress_line(const MigrationInfo *m, size_t width, bool color);
/* The plain form for logs: "precopy: 45% (486.0 MiB of 1.0 GiB), 305.1 MiB/s, ETA 3 s". */
char *progress_plain(const MigrationInfo *m);

/* The migration JSON of docs/dbus-api.md, built from what migctl holds. */
struct json_object *migration_info_to_json(const MigrationInfo *m);
