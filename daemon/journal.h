/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migration journal: one fsync'd JSON record per migration, written before each irreversible step. */
#pragma once

#include <json-c/json.h>

/* Atomically replaces <dir>/<id>.json: temp file, fsync, rename, fsync of the directory. Creates dir. */
int journal_save(const char *dir, const char *id, struct json_object *record);
/* Every record in dir, as {id: record}; unreadable files are reported through ret_errors (an array of
 * sentences) and skipped, so one damaged record cannot stop recovery of the others. */
int journal_load_all(const char *dir, struct json_object **ret, struct json_object **ret_errors);
int journal_remove(const char *dir, const char *id);
