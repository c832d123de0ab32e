/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The timeline picture: both hosts' events in time order, one lane each, the device's state as the lane's rail. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mig-state.h"
#include "migctl-progress.h"
#include "migctl-timeline.h"
#include "util.h"

#define ANSI_BOLD "\033[1m"
#define ANSI_RED "\033[31m"
#define ANSI_GREEN "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_CYAN "\033[36m"
#define ANSI_GREY "\033[90m"
#define ANSI_RESET "\033[0m"

/* A pause longer than this between two events gets its own row, so that long transfers read as long. */
#define GAP_USEC 100000

enum { LANE_SOURCE, LANE_DESTINATION, _LANE_MAX };

typedef struct Event {
        struct json_object *j;
        size_t index;          /* position in the daemon's array: keeps equal times in their recorded order */
        int lane;
        int64_t rt_usec;
} Event;

typedef struct Lane {
        const char *host;
        size_t first, last;    /* rows (sorted event indexes) of the lane's first and last event */
        bool seen;
        bool running;          /* the device's state right now, drawn as the rail */
} Lane;

typedef struct Picture {
        FILE *f;
        const TimelineStyle *style;
        size_t lane_width;     /* columns of one lane: rail, space, text */
        Event *events;
        size_t n_events;
        Lane lanes[_LANE_MAX];
        /* Downtime: from the source leaving its running states to the device running again (destination,
         * or the source after a rollback); SIZE_MAX when the timeline has no such span. */
        size_t down_start, down_end;
        uint64_t downtime_usec;
} Picture;

static const char *c(const Picture *p, const char *code) {
        return p->style->color ? code : "";
}

static const char *json_string_of(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return json_object_get_string(v);
}

static int64_t json_int_of(struct json_object *o, const char *key) {
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static bool json_ok(struct json_object *o) {
        struct json_object *v;

        /* An event without "ok" did not fail. */
        return !json_object_object_get_ex(o, "ok", &v) || json_object_get_boolean(v);
}

static bool event_is(const Event *e, const char *kind) {
        return streq_ptr(json_string_of(e->j, "event"), kind);
}

static bool state_running(const char *name) {
        MigState s;

        if (!name)
                return false;
        s = mig_state_from_string(name);
        return s >= 0 && mig_state_is_running(s);
}

static int event_compare(const void *a, const void *b) {
        const Event *x = a, *y = b;

        if (x->rt_usec != y->rt_usec)
                return x->rt_usec < y->rt_usec ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

static size_t text_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        n++;
        return n;
}

/* Prints text in colour, cut with "…" to width columns, and padded to exactly width unless it ends the line. */
static void put_cell(const Picture *p, const char *text, const char *color, size_t width, bool pad) {
        size_t w = text_width(text);

        fputs(c(p, color), p->f);
        if (w <= width) {
                fputs(text, p->f);
                fputs(c(p, ANSI_RESET), p->f);
                if (pad)
                        fprintf(p->f, "%*s", (int) (width - w), "");
                return;
        }
        for (size_t col = 0; *text && col + 1 < width; col++) {
                /* Whole UTF-8 characters only. */
                do
                        fputc(*text++, p->f);
                while (((unsigned char) *text & 0xc0) == 0x80);
        }
        fputs("…", p->f);
        fputs(c(p, ANSI_RESET), p->f);
}

static const char *rail(const Lane *l) {
        return l->running ? "┃" : "│";
}

static const char *rail_color(const Lane *l) {
        return l->running ? ANSI_GREEN : ANSI_GREY;
}

/* What one event says, its marker on the rail and its colour. */
static void describe(const Event *e, const Lane *l, char *buf, size_t size, const char **ret_marker,
                     const char **ret_color) {
        struct json_object *j = e->j;
        const char *kind = json_string_of(j, "event") ?: "?";
        char bytes[32];

        *ret_color = "";
        if (streq(kind, "phase")) {
                snprintf(buf, size, "%s", strna(json_string_of(j, "phase")));
                *ret_marker = l->running ? "┣━" : "├─";
                *ret_color = ANSI_BOLD;
        } else if (streq(kind, "arc")) {
                const char *to = json_string_of(j, "to");

                if (json_ok(j))
                        snprintf(buf, size, "%s → %s  %s", strna(json_string_of(j, "from")), strna(to),
                                 json_string_of(j, "bits") ?: "---");
                else
                        snprintf(buf, size, "%s → %s failed: %s", strna(json_string_of(j, "from")), strna(to),
                                 json_string_of(j, "errno") ?: "error");
                *ret_marker = json_ok(j) ? "●" : "✗";
                *ret_color = !json_ok(j) ? ANSI_RED : state_running(to) ? ANSI_GREEN : ANSI_CYAN;
        } else if (streq(kind, "set_irqs")) {
                snprintf(buf, size, "SET_IRQS %s ×%" PRId64 " in %s%s", strna(json_string_of(j, "index")),
                         json_int_of(j, "count"), strna(json_string_of(j, "state")), json_ok(j) ? "" : " failed");
                *ret_marker = "◆";
                *ret_color = json_ok(j) ? ANSI_YELLOW ANSI_BOLD : ANSI_RED ANSI_BOLD;
        } else if (streq(kind, "teardown_irqs")) {
                snprintf(buf, size, "tear down %s interrupts%s", strna(json_string_of(j, "index")),
                         json_ok(j) ? "" : " failed");
                *ret_marker = "◇";
                *ret_color = json_ok(j) ? ANSI_YELLOW : ANSI_RED;
        } else if (streq(kind, "irq_while_stopped")) {
                snprintf(buf, size, "interrupt %s #%" PRId64 " while %s", strna(json_string_of(j, "index")),
                         json_int_of(j, "vector"), strna(json_string_of(j, "state")));
                *ret_marker = "!";
                *ret_color = ANSI_RED ANSI_BOLD;
        } else if (streq(kind, "verify")) {
                snprintf(buf, size, "%s %s", json_ok(j) ? "verified" : "verify FAILED",
                         format_bytes(bytes, sizeof(bytes), (uint64_t) json_int_of(j, "bytes")));
                *ret_marker = json_ok(j) ? "✓" : "✗";
                *ret_color = json_ok(j) ? "" : ANSI_RED;
        } else if (streq(kind, "commit")) {
                snprintf(buf, size, "decision: %s", strna(json_string_of(j, "decision")));
                *ret_marker = "■";
                *ret_color = ANSI_BOLD;
        } else if (streq(kind, "resolve")) {
                snprintf(buf, size, "resolved: %s", strna(json_string_of(j, "decision")));
                *ret_marker = "■";
                *ret_color = ANSI_BOLD;
        } else if (streq(kind, "rollback")) {
                snprintf(buf, size, "rollback: %s", strna(json_string_of(j, "reason")));
                *ret_marker = "↺";
                *ret_color = ANSI_YELLOW;
        } else if (streq(kind, "result")) {
                const char *result = strna(json_string_of(j, "result"));

                snprintf(buf, size, "result: %s", result);
                *ret_marker = streq(result, "success") ? "✓" : "✗";
                *ret_color = streq(result, "success") ? ANSI_GREEN ANSI_BOLD : ANSI_RED ANSI_BOLD;
        } else {
                snprintf(buf, size, "%s", kind);
                *ret_marker = "·";
        }
}

/* A lane's rail before its first event and after its last stays blank. */
static bool lane_active(const Lane *l, size_t row) {
        return l->seen && row >= l->first && row <= l->last;
}

static void put_rail(const Picture *p, const Lane *l, bool active) {
        if (active) {
                fputs(c(p, rail_color(l)), p->f);
                fputs(rail(l), p->f);
                fputs(c(p, ANSI_RESET), p->f);
        } else
                fputc(' ', p->f);
}

/* The cell of a lane on a row without its own event: the rail, and text (e.g. the downtime) beside it. */
static void put_quiet_lane(const Picture *p, const Lane *l, bool active, const char *text, const char *color,
                           bool last) {
        if (last && !text[0]) {
                /* Nothing follows: no trailing blanks. */
                if (active)
                        put_rail(p, l, true);
                return;
        }
        put_rail(p, l, active);
        fputc(' ', p->f);
        put_cell(p, text, color, p->lane_width - 2, !last);
}

static void put_time(const Picture *p, int64_t rt_usec) {
        fprintf(p->f, "%10.3f", (double) (rt_usec - p->events[0].rt_usec) / 1000.0);
}

/* The downtime bracket between the time column and the source lane. */
static const char *bracket(const Picture *p, size_t row) {
        if (p->down_start == SIZE_MAX || row < p->down_start || row > p->down_end)
                return " ";
        if (row == p->down_start)
                return "┬";
        return row == p->down_end ? "┴" : "│";
}

static void put_event_row(Picture *p, size_t row) {
        const Event *e = &p->events[row];
        char text[256];

        put_time(p, e->rt_usec);
        fprintf(p->f, " %s%s%s ", c(p, ANSI_RED), bracket(p, row), c(p, ANSI_RESET));
        for (int lane = 0; lane < _LANE_MAX; lane++) {
                Lane *l = &p->lanes[lane];
                bool last = lane + 1 == _LANE_MAX;

                if (lane != e->lane) {
                        put_quiet_lane(p, l, lane_active(l, row), "", "", last);
                        continue;
                }

                const char *marker, *color, *to = json_string_of(e->j, "to");

                /* The rail changes with the arc, so the marker shows the new state. */
                if (event_is(e, "arc") && json_ok(e->j) && to)
                        l->running = state_running(to);
                describe(e, l, text, sizeof(text), &marker, &color);
                fputs(c(p, color), p->f);
                fputs(marker, p->f);
                fputs(c(p, ANSI_RESET), p->f);
                fputc(' ', p->f);
                put_cell(p, text, color, p->lane_width - 1 - text_width(marker), !last);
        }
        fputc('\n', p->f);
}

/* A row between two events (row - 1 and row): a lane shows its rail where it spans both. */
static void put_quiet_row(const Picture *p, const char *time_text, size_t row, const char *mark, const char *text) {
        fprintf(p->f, "%s%*s%s%s %s%s%s ", c(p, ANSI_GREY), (int) (10 - text_width(time_text)), "", time_text,
                c(p, ANSI_RESET), c(p, ANSI_RED), mark, c(p, ANSI_RESET));
        for (int lane = 0; lane < _LANE_MAX; lane++) {
                const Lane *l = &p->lanes[lane];

                put_quiet_lane(p, l, lane_active(l, row - 1) && lane_active(l, row), lane == 0 ? text : "",
                               ANSI_RED ANSI_BOLD, lane + 1 == _LANE_MAX);
        }
        fputc('\n', p->f);
}

static void put_header(const Picture *p) {
        char heading[_LANE_MAX][128];

        for (int lane = 0; lane < _LANE_MAX; lane++)
                snprintf(heading[lane], sizeof(heading[lane]), "%s%s%s", p->lanes[lane].host ?: "",
                         p->lanes[lane].host ? " · " : "", lane == LANE_SOURCE ? "source" : "destination");
        fprintf(p->f, "%s%10s   ", c(p, ANSI_BOLD), "ms");
        put_cell(p, heading[0], "", p->lane_width, true);
        fprintf(p->f, "%s%s\n", heading[1], c(p, ANSI_RESET));
}

static void find_lanes(Picture *p) {
        for (size_t i = 0; i < p->n_events; i++) {
                Lane *l = &p->lanes[p->events[i].lane];

                if (!l->seen) {
                        l->seen = true;
                        l->first = i;
                        l->host = json_string_of(p->events[i].j, "host");
                        /* Before its first arc a lane runs as the source does, and the destination's idle target
                         * is as its first arc leaves it. */
                        l->running = p->events[i].lane == LANE_SOURCE;
                }
                l->last = i;
        }
        for (int lane = 0; lane < _LANE_MAX; lane++)
                for (size_t i = 0; i < p->n_events; i++)
                        if (p->events[i].lane == lane && event_is(&p->events[i], "arc")) {
                                p->lanes[lane].running = state_running(json_string_of(p->events[i].j, "from"));
                                break;
                        }
}

static void find_downtime(Picture *p) {
        bool committed = false;

        p->down_start = p->down_end = SIZE_MAX;
        for (size_t i = 0; i < p->n_events; i++) {
                const Event *e = &p->events[i];

                if (e->lane == LANE_DESTINATION && event_is(e, "commit"))
                        committed = true;
                if (event_is(e, "result") && json_int_of(e->j, "downtime_usec") > 0)
                        p->downtime_usec = (uint64_t) json_int_of(e->j, "downtime_usec");
                if (!event_is(e, "arc") || !json_ok(e->j))
                        continue;
                if (p->down_start == SIZE_MAX) {
                        if (e->lane == LANE_SOURCE && state_running(json_string_of(e->j, "from")) &&
                            !state_running(json_string_of(e->j, "to")))
                                p->down_start = i;
                } else if (p->down_end == SIZE_MAX && state_running(json_string_of(e->j, "to")) &&
                           (e->lane == LANE_SOURCE || committed))
                        p->down_end = i;
        }
        if (p->down_end == SIZE_MAX)
                p->down_start = SIZE_MAX;
        else if (p->downtime_usec == 0)
                /* A rollback or an unfinished report: the picture's own measure. */
                p->downtime_usec = (uint64_t) (p->events[p->down_end].rt_usec - p->events[p->down_start].rt_usec);
}

static void put_legend_and_errors(const Picture *p) {
        fprintf(p->f, "\n%s┃ device running  │ device stopped  ● arc to a state, its v1 bits RESUMING SAVING RUNNING "
                      "(--- none)\n◆ SET_IRQS  ◇ interrupts torn down  ! interrupt while stopped  ■ commit decision%s\n",
                c(p, ANSI_GREY), c(p, ANSI_RESET));
        for (size_t i = 0; i < p->n_events; i++) {
                const char *error = json_string_of(p->events[i].j, "error");

                if (event_is(&p->events[i], "result") && error && error[0])
                        fprintf(p->f, "%sError:%s %s\n", c(p, ANSI_RED ANSI_BOLD), c(p, ANSI_RESET), error);
        }
}

static int collect(Picture *p, struct json_object *events) {
        size_t n;

        if (!json_object_is_type(events, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(events);
        p->events = calloc(n ?: 1, sizeof(Event));
        if (!p->events)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *j = json_object_array_get_idx(events, i);
                const char *role = json_string_of(j, "role");

                if (!json_object_is_type(j, json_type_object) || !role)
                        return -EBADMSG;
                p->events[p->n_events++] = (Event) {
                        .j = j,
                        .index = i,
                        .lane = streq(role, "destination") ? LANE_DESTINATION : LANE_SOURCE,
                        .rt_usec = json_int_of(j, "rt_usec"),
                };
        }
        qsort(p->events, p->n_events, sizeof(Event), event_compare);
        return 0;
}

static int render(FILE *f, struct json_object *events, const TimelineStyle *style) {
        _cleanup_free_ Event *owned = NULL;
        Picture p = { .f = f, .style = style };
        size_t width = style->width ?: 100;
        char gap[32], downtime[64];
        int r;

        r = collect(&p, events);
        owned = p.events;
        if (r < 0)
                return r;
        /* time (10), space, bracket, space, then two lanes. */
        p.lane_width = width > 13 + 2 * 24 ? (width - 13) / 2 : 24;

        if (style->title)
                fprintf(f, "%s%s%s\n", c(&p, ANSI_BOLD), style->title, c(&p, ANSI_RESET));
        if (p.n_events == 0) {
                fprintf(f, "No events recorded yet.\n");
                return 0;
        }
        find_lanes(&p);
        find_downtime(&p);
        if (p.down_start != SIZE_MAX)
                fprintf(f, "Downtime %s, from the source stopping the device to the device running again.\n",
                        format_usec(downtime, sizeof(downtime), p.downtime_usec));
        fputc('\n', f);
        put_header(&p);

        for (size_t row = 0; row < p.n_events; row++) {
                if (row > 0 && p.events[row].rt_usec - p.events[row - 1].rt_usec > GAP_USEC) {
                        char time_text[40];

                        snprintf(time_text, sizeof(time_text), "⋮ %s",
                                 format_usec(gap, sizeof(gap),
                                             (uint64_t) (p.events[row].rt_usec - p.events[row - 1].rt_usec)));
                        put_quiet_row(&p, time_text, row,
                                      p.down_start != SIZE_MAX && row > p.down_start && row <= p.down_end ? "│" : " ",
                                      "");
                }
                put_event_row(&p, row);
                if (row == p.down_end) {
                        snprintf(downtime, sizeof(downtime), "downtime %s",
                                 format_usec(gap, sizeof(gap), p.downtime_usec));
                        put_quiet_row(&p, "", row + 1, "╰", downtime);
                }
        }
        put_legend_and_errors(&p);
        return 0;
}

/* Lanes are padded to line up; the blanks a line ends with are dropped, as they only pad what is not there. */
static void put_trimmed(FILE *f, const char *text, size_t size) {
        const char *line = text, *end = text + size;

        while (line < end) {
                const char *nl = memchr(line, '\n', (size_t) (end - line)) ?: end;
                const char *last = nl;

                while (last > line && last[-1] == ' ')
                        last--;
                fwrite(line, 1, (size_t) (last - line), f);
                if (nl < end)
                        fputc('\n', f);
                line = nl + 1;
        }
}

int timeline_render(FILE *f, struct json_object *events, const TimelineStyle *style) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *buffer;
        int r;

        assert(f);
        assert(style);

        buffer = open_memstream(&text, &size);
        if (!buffer)
                return -ENOMEM;
        r = render(buffer, events, style);
        if (fclose(buffer) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        put_trimmed(f, text, size);
        return 0;
}
