/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Draws a migration's timeline (GetTimeline()'s JSON) as two lanes, one per host, lined up in time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <json-c/json.h>

typedef struct TimelineStyle {
        bool color;
        size_t width;          /* columns; 0 means 100 */
        const char *title;     /* first line, e.g. "Migration 0497eed3 of gpu0"; NULL for none */
} TimelineStyle;

/* Returns 0, -EBADMSG when events is not an array of timeline events, -ENOMEM. */
int timeline_render(FILE *f, struct json_object *events, const TimelineStyle *style);
