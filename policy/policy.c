/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy documents: parsing that reports every problem, defaults, matching and sorted policy sets. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "policy.h"
#include "util.h"

/* Policies are a few hundred bytes; anything near this is a mistake (a log file, a core dump), not a policy. */
#define POLICY_FILE_MAX (1024 * 1024)
#define POLICY_NAME_MAX 64
/* Values quoted back in messages are cut here, so a stray megabyte string does not become the message. */
#define QUOTE_MAX 64
/* Longest key considered for a "did you mean" suggestion; longer keys are not typos of ours. */
#define SUGGEST_KEY_MAX 64
#define SUGGEST_DISTANCE_MAX 2

#define PRIORITY_MIN (-1000)
#define PRIORITY_MAX 1000
#define DOWNTIME_LIMIT_MS_MIN 1
#define DOWNTIME_LIMIT_MS_MAX 600000
#define DOWNTIME_LIMIT_MS_DEFAULT 300
#define TIMEOUT_MS_MIN 1
#define TIMEOUT_MS_MAX 3600000

#define BUILTIN_SOURCE "built-in"

static const char *const irq_restore_table[_IRQ_RESTORE_MAX] = {
        [IRQ_RESTORE_BEFORE_RESUMING] = "before-resuming",
        [IRQ_RESTORE_DURING_RESUMING] = "during-resuming",
        [IRQ_RESTORE_AFTER_RESUMING] = "after-resuming",
};

static const char *const tristate_table[_TRISTATE_MAX] = {
        [TRISTATE_OFF] = "off",
        [TRISTATE_AUTO] = "auto",
        [TRISTATE_REQUIRED] = "required",
};

static const char *const irq_while_stopped_table[_IRQ_WHILE_STOPPED_MAX] = {
        [IRQ_WHILE_STOPPED_FAIL] = "fail",
        [IRQ_WHILE_STOPPED_WARN] = "warn",
        [IRQ_WHILE_STOPPED_IGNORE] = "ignore",
};

static const char *const mig_phase_table[_MIG_PHASE_MAX] = {
        [MIG_PHASE_PREFLIGHT] = "preflight",
        [MIG_PHASE_PREPARE] = "prepare",
        [MIG_PHASE_PRECOPY] = "precopy",
        [MIG_PHASE_STOP_COPY] = "stop_copy",
        [MIG_PHASE_LOAD] = "load",
        [MIG_PHASE_IRQ_RESTORE] = "irq_restore",
        [MIG_PHASE_VERIFY] = "verify",
        [MIG_PHASE_COMMIT] = "commit",
        [MIG_PHASE_START] = "start",
        [MIG_PHASE_CLEANUP] = "cleanup",
        [MIG_PHASE_ROLLBACK] = "rollback",
};

static const uint32_t default_timeout_ms[_MIG_PHASE_MAX] = {
        [MIG_PHASE_PREFLIGHT] = 10000,
        [MIG_PHASE_PREPARE] = 10000,
        [MIG_PHASE_PRECOPY] = 600000,
        [MIG_PHASE_STOP_COPY] = 120000,
        [MIG_PHASE_LOAD] = 120000,
        [MIG_PHASE_IRQ_RESTORE] = 5000,
        [MIG_PHASE_VERIFY] = 10000,
        [MIG_PHASE_COMMIT] = 10000,
        [MIG_PHASE_START] = 5000,
        [MIG_PHASE_CLEANUP] = 10000,
        [MIG_PHASE_ROLLBACK] = 10000,
};

static const char *table_to_string(const char *const *table, size_t n, int v) {
        if (v < 0 || (size_t) v >= n)
                return NULL;
        return table[v];
}

static int table_from_string(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (streq(table[i], s))
                        return (int) i;
        return -1;
}

const char *irq_restore_to_string(IrqRestore v) {
        return table_to_string(irq_restore_table, ELEMENTSOF(irq_restore_table), v);
}

IrqRestore irq_restore_from_string(const char *s) {
        return table_from_string(irq_restore_table, ELEMENTSOF(irq_restore_table), s);
}

const char *tristate_to_string(Tristate v) {
        return table_to_string(tristate_table, ELEMENTSOF(tristate_table), v);
}

Tristate tristate_from_string(const char *s) {
        return table_from_string(tristate_table, ELEMENTSOF(tristate_table), s);
}

const char *irq_while_stopped_to_string(IrqWhileStopped v) {
        return table_to_string(irq_while_stopped_table, ELEMENTSOF(irq_while_stopped_table), v);
}

IrqWhileStopped irq_while_stopped_from_string(const char *s) {
        return table_from_string(irq_while_stopped_table, ELEMENTSOF(irq_while_stopped_table), s);
}

const char *mig_phase_to_string(MigPhase v) {
        return table_to_string(mig_phase_table, ELEMENTSOF(mig_phase_table), v);
}

MigPhase mig_phase_from_string(const char *s) {
        return table_from_string(mig_phase_table, ELEMENTSOF(mig_phase_table), s);
}

/* ---- Policy objects ---- */

static void policy_match_done(PolicyMatch *m) {
        assert(m);

        strv_free(m->drivers);
        strv_free(m->mdev_types);
        strv_free(m->names);
        *m = (PolicyMatch) {};
}

Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;

        free(p->name);
        free(p->description);
        free(p->source);
        policy_match_done(&p->match);
        free(p);
        return NULL;
}

void policy_freep(Policy **p) {
        if (*p)
                policy_free(*p);
}

/* NULL stays NULL: an unset match rule must not turn into "matches nothing". */
static int strv_dup_or_null(char *const *l, char ***ret) {
        char **copy;

        assert(ret);

        if (!l) {
                *ret = NULL;
                return 0;
        }
        copy = strv_copy(l);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

Policy *policy_dup(const Policy *p) {
        _cleanup_(policy_freep) Policy *copy = NULL;

        assert(p);

        copy = malloc(sizeof(Policy));
        if (!copy)
                return NULL;
        *copy = *p;
        /* Forget the borrowed pointers first, so a failure below frees only what this copy owns. */
        copy->name = copy->description = copy->source = NULL;
        copy->match.drivers = copy->match.mdev_types = copy->match.names = NULL;

        copy->name = strdup(p->name);
        copy->description = strdup(p->description ?: "");
        copy->source = strdup(p->source ?: BUILTIN_SOURCE);
        if (!copy->name || !copy->description || !copy->source)
                return NULL;
        if (strv_dup_or_null(p->match.drivers, &copy->match.drivers) < 0 ||
            strv_dup_or_null(p->match.mdev_types, &copy->match.mdev_types) < 0 ||
            strv_dup_or_null(p->match.names, &copy->match.names) < 0)
                return NULL;

        return TAKE_PTR(copy);
}

static bool policy_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n < 1 || n > POLICY_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = name[i];
                bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

                if (!alnum && (i == 0 || !strchr("._-", ch)))
                        return false;
        }
        return true;
}


/* Everything but the name, which the parser fills in only after checking it. */
static int policy_new_unnamed(Policy **ret) {
        _cleanup_(policy_freep) Policy *p = NULL;

        assert(ret);

        p = calloc(1, sizeof(Policy));
        if (!p)
                return -ENOMEM;
        p->description = strdup("");
        p->source = strdup(BUILTIN_SOURCE);
        if (!p->description || !p->source)
                return -ENOMEM;
        p->priority = 0;
        /* Correct whether or not the device's own migration data carries its interrupt state. */
        p->irq_restore = IRQ_RESTORE_AFTER_RESUMING;
        p->postcopy = false;
        p->precopy = TRISTATE_AUTO;
        p->p2p = TRISTATE_AUTO;
        p->downtime_limit_ms = DOWNTIME_LIMIT_MS_DEFAULT;
        memcpy(p->timeout_ms, default_timeout_ms, sizeof(p->timeout_ms));
        p->on_irq_while_stopped = IRQ_WHILE_STOPPED_WARN;

        *ret = TAKE_PTR(p);
        return 0;
}

int policy_new_default(const char *name, Policy **ret) {
        _cleanup_(policy_freep) Policy *p = NULL;
        int r;

        assert(name);
        assert(ret);

        if (!policy_name_is_valid(name))
                return -EINVAL;

        r = policy_new_unnamed(&p);
        if (r < 0)
                return r;
        p->name = strdup(name);
        if (!p->name)
                return -ENOMEM;

        *ret = TAKE_PTR(p);
        return 0;
}

/* ---- Errors ---- */

void policy_errors_clear(PolicyErrors *e) {
        if (!e)
                return;

        for (size_t i = 0; i < e->n; i++) {
                free(e->items[i].file);
                free(e->items[i].json_path);
                free(e->items[i].message);
        }
        free(e->items);
        *e = (PolicyErrors) {};
}

void policy_errors_clearp(PolicyErrors *e) {
        policy_errors_clear(e);
}

char *policy_error_format(const PolicyError *e) {
        char *s;

        assert(e);

        if (asprintf(&s, "%s: %s: %s", strna(e->file), strna(e->json_path), strna(e->message)) < 0)
                return NULL;
        return s;
}

static int errors_append(PolicyErrors *e, const char *file, const char *json_path, const char *message) {
        _cleanup_free_ char *f = NULL, *j = NULL, *m = NULL;
        PolicyError *items;

        assert(e);

        f = strdup(file);
        j = strdup(json_path);
        m = strdup(message);
        if (!f || !j || !m)
                return -ENOMEM;

        items = reallocarray(e->items, e->n + 1, sizeof(PolicyError));
        if (!items)
                return -ENOMEM;
        e->items = items;
        e->items[e->n++] = (PolicyError) {
                .file = TAKE_PTR(f),
                .json_path = TAKE_PTR(j),
                .message = TAKE_PTR(m),
        };
        return 0;
}

typedef struct ParseContext {
        const char *file;
        PolicyErrors *errors; /* NULL when the caller only wants to know whether the document is valid */
        unsigned n_problems;  /* keeps counting when errors is NULL */
} ParseContext;

/* Records one problem and returns -EINVAL, so a validator can end with "return report(...)". Only -ENOMEM
 * means the caller must stop; after -EINVAL it goes on, because every problem is to be reported. */
_printf_(3, 4) static int report(ParseContext *c, const char *json_path, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int r;

        assert(c);
        assert(json_path);

        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        c->n_problems++;
        if (c->errors) {
                r = errors_append(c->errors, c->file, json_path, message);
                if (r < 0)
                        return r;
        }
        return -EINVAL;
}

/* ---- Describing values in messages ---- */

/* JSON string syntax, so quotes and control characters in the value cannot garble the message. */
static char *quote(const char *s, size_t len) {
        _cleanup_json_ struct json_object *j = NULL;
        const char *text;
        bool cut = len > QUOTE_MAX;
        char *result;

        if (cut) {
                len = QUOTE_MAX;
                /* Do not split a UTF-8 sequence. */
                while (len > 0 && ((unsigned char) s[len] & 0xC0) == 0x80)
                        len--;
        }
        j = json_object_new_string_len(s, (int) len);
        if (!j)
                return NULL;
        text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return NULL;
        if (!cut)
                return strdup(text);
        if (asprintf(&result, "%.*s...\"", (int) strlen(text) - 1, text) < 0)
                return NULL;
        return result;
}

static const char *json_type_phrase(struct json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_null:
                return "null";
        case json_type_boolean:
                return "a boolean";
        case json_type_double:
                return "a number";
        case json_type_int:
                return "an integer";
        case json_type_object:
                return "an object";
        case json_type_array:
                return json_object_array_length(v) == 0 ? "an empty array" : "an array";
        case json_type_string:
                return "a string";
        }
        return "an unknown value";
}

static bool json_is_number(struct json_object *v) {
        return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

/* A string without embedded NULs, which C would silently cut short. */
static bool json_is_clean_string(struct json_object *v) {
        return json_object_is_type(v, json_type_string) &&
               strlen(json_object_get_string(v)) == (size_t) json_object_get_string_len(v);
}

/* The value itself when its type was right (or close, like 1.5 for an integer), so the reader sees what was
 * rejected; only its type otherwise, since "got a string" says more than a string's content then. */
static char *describe_got(struct json_object *v, bool show_value) {
        if (!show_value || json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array))
                return strdup(json_type_phrase(v));
        if (json_object_is_type(v, json_type_string))
                return quote(json_object_get_string(v), (size_t) json_object_get_string_len(v));
        return strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
}

/* "RULE; got WHAT": the rule says what is allowed, the rest what was found. */
_printf_(5, 6) static int report_got(ParseContext *c, const char *path, struct json_object *v, bool show_value,
                                     const char *format, ...) {
        _cleanup_free_ char *rule = NULL, *got = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&rule, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        got = describe_got(v, show_value);
        if (!got)
                return -ENOMEM;
        return report(c, path, "%s; got %s", rule, got);
}

static char *join_table(const char *const *table, size_t n) {
        size_t len = 1;
        char *result, *p;

        for (size_t i = 0; i < n; i++)
                len += strlen(table[i]) + 2;
        result = malloc(len);
        if (!result)
                return NULL;
        p = result;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        p = stpcpy(p, ", ");
                p = stpcpy(p, table[i]);
        }
        *p = '\0';
        return result;
}

/* ---- JSON paths ---- */

static bool key_is_identifier(const char *key) {
        if (!*key || (*key >= '0' && *key <= '9'))
                return false;
        for (const char *k = key; *k; k++)
                if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_'))
                        return false;
        return true;
}

/* "$.match.driver" for ordinary keys, "$[\"odd key\"]" for keys dot notation cannot carry. */
static char *path_key(const char *parent, const char *key) {
        _cleanup_free_ char *quoted = NULL;
        char *s;

        if (key_is_identifier(key)) {
                if (asprintf(&s, "%s.%s", parent, key) < 0)
                        return NULL;
                return s;
        }
        quoted = quote(key, strlen(key));
        if (!quoted)
                return NULL;
        if (asprintf(&s, "%s[%s]", parent, quoted) < 0)
                return NULL;
        return s;
}

static char *path_index(const char *parent, size_t i) {
        char *s;

        if (asprintf(&s, "%s[%zu]", parent, i) < 0)
                return NULL;
        return s;
}

/* ---- Unknown keys ---- */

static size_t min_size(size_t a, size_t b) {
        return a < b ? a : b;
}

/* Optimal string alignment distance: a swapped pair of letters counts as one typo, as people make them. */
static size_t edit_distance(const char *a, const char *b) {
        size_t rows[3][SUGGEST_KEY_MAX + 1];
        size_t *before = rows[0], *prev = rows[1], *cur = rows[2];
        size_t la = strlen(a), lb = strlen(b);

        assert(la <= SUGGEST_KEY_MAX && lb <= SUGGEST_KEY_MAX);

        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t *t;

                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t d = min_size(prev[j] + 1, cur[j - 1] + 1);

                        d = min_size(d, prev[j - 1] + (a[i - 1] != b[j - 1]));
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                                d = min_size(d, before[j - 2] + 1);
                        cur[j] = d;
                }
                t = before;
                before = prev;
                prev = cur;
                cur = t;
        }
        return prev[lb];
}

static const char *suggest_key(const char *key, const char *const *known, size_t n) {
        const char *best = NULL;
        size_t best_distance = SIZE_MAX;

        if (strlen(key) > SUGGEST_KEY_MAX)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                size_t d = edit_distance(key, known[i]);

                /* A distance as long as the key itself is a replacement, not a typo ("ab" vs "p2p"). */
                if (d <= SUGGEST_DISTANCE_MAX && d < strlen(known[i]) && d < best_distance) {
                        best = known[i];
                        best_distance = d;
                }
        }
        return best;
}

static int report_unknown_key(ParseContext *c, const char *path, const char *key, const char *const *known,
                              size_t n) {
        _cleanup_free_ char *quoted = NULL, *allowed = NULL;
        const char *best;

        quoted = quote(key, strlen(key));
        if (!quoted)
                return -ENOMEM;
        best = suggest_key(key, known, n);
        if (best)
                return report(c, path, "unknown key %s (did you mean \"%s\"?)", quoted, best);
        allowed = join_table(known, n);
        if (!allowed)
                return -ENOMEM;
        return report(c, path, "unknown key %s; allowed keys: %s", quoted, allowed);
}

/* ---- Value validators: 0 and *ret set, or -EINVAL reported, or -ENOMEM ---- */

static int parse_int_range(ParseContext *c, const char *path, struct json_object *v, int64_t min, int64_t max,
                           int64_t *ret) {
        assert(ret);

        if (json_object_is_type(v, json_type_int)) {
                /* json-c saturates what does not fit into int64, which lands outside every range here. */
                int64_t i = json_object_get_int64(v);

                if (i >= min && i <= max) {
                        *ret = i;
                        return 0;
                }
        }
        return report_got(c, path, v, json_is_number(v), "must be an integer from %" PRIi64 " to %" PRIi64, min,
                          max);
}

static int parse_bool(ParseContext *c, const char *path, struct json_object *v, bool *ret) {
        assert(ret);

        if (!json_object_is_type(v, json_type_boolean))
                return report_got(c, path, v, false, "must be true or false");
        *ret = json_object_get_boolean(v);
        return 0;
}

static int parse_enum(ParseContext *c, const char *path, struct json_object *v, const char *const *table, size_t n,
                      int *ret) {
        _cleanup_free_ char *allowed = NULL;
        int i = -1;

        assert(ret);

        if (json_is_clean_string(v))
                i = table_from_string(table, n, json_object_get_string(v));
        if (i >= 0) {
                *ret = i;
                return 0;
        }
        allowed = join_table(table, n);
        if (!allowed)
                return -ENOMEM;
        return report_got(c, path, v, json_object_is_type(v, json_type_string), "must be one of %s", allowed);
}

/* PCI ids as people copy them from lspci: "10de", "0x10de", or a plain integer. */
static bool parse_hex_id(const char *s, uint16_t *ret) {
        unsigned value = 0;
        size_t n = 0;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                s += 2;
        for (; *s; s++, n++) {
                char ch = *s;
                unsigned digit;

                if (ch >= '0' && ch <= '9')
                        digit = ch - '0';
                else if (ch >= 'a' && ch <= 'f')
                        digit = ch - 'a' + 10;
                else if (ch >= 'A' && ch <= 'F')
                        digit = ch - 'A' + 10;
                else
                        return false;
                if (n >= 4)
                        return false;
                value = value * 16 + digit;
        }
        if (n == 0)
                return false;
        *ret = (uint16_t) value;
        return true;
}

static int parse_pci_id(ParseContext *c, const char *path, struct json_object *v, uint16_t *ret) {
        assert(ret);

        if (json_object_is_type(v, json_type_int)) {
                int64_t i = json_object_get_int64(v);

                if (i >= 0 && i <= UINT16_MAX) {
                        *ret = (uint16_t) i;
                        return 0;
                }
        } else if (json_is_clean_string(v) && parse_hex_id(json_object_get_string(v), ret))
                return 0;

        return report_got(c, path, v, json_is_number(v) || json_object_is_type(v, json_type_string),
                          "must be an integer from 0 to 65535 or a hexadecimal string such as \"0x10de\"");
}

static int parse_string(ParseContext *c, const char *path, struct json_object *v, char **ret) {
        char *s;

        assert(ret);

        if (!json_object_is_type(v, json_type_string))
                return report_got(c, path, v, false, "must be a string");
        if (!json_is_clean_string(v))
                return report(c, path, "must not contain NUL characters (\\u0000)");
        s = strdup(json_object_get_string(v));
        if (!s)
                return -ENOMEM;
        free(*ret);
        *ret = s;
        return 0;
}

static bool json_is_nonempty_clean_string(struct json_object *v) {
        return json_is_clean_string(v) && json_object_get_string_len(v) > 0;
}

/* Every bad item is reported, not only the first. */
static int parse_string_array(ParseContext *c, const char *path, struct json_object *v, char ***l) {
        size_t n = json_object_array_length(v);
        bool ok = true;
        int r;

        for (size_t i = 0; i < n; i++) {
                struct json_object *item = json_object_array_get_idx(v, i);
                _cleanup_free_ char *item_path = NULL;

                if (json_is_nonempty_clean_string(item)) {
                        r = strv_extend(l, json_object_get_string(item));
                        if (r < 0)
                                return r;
                        continue;
                }
                item_path = path_index(path, i);
                if (!item_path)
                        return -ENOMEM;
                r = report_got(c, item_path, item, json_object_is_type(item, json_type_string),
                               "must be a non-empty string");
                if (r == -ENOMEM)
                        return r;
                ok = false;
        }
        return ok ? 0 : -EINVAL;
}

/* A single string or a non-empty array of them; stored as a list either way. */
static int parse_string_list(ParseContext *c, const char *path, struct json_object *v, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        assert(ret);

        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        if (json_is_nonempty_clean_string(v))
                r = strv_extend(&l, json_object_get_string(v));
        else if (json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0)
                r = parse_string_array(c, path, v, &l);
        else
                r = report_got(c, path, v, json_object_is_type(v, json_type_string),
                               "must be a non-empty string or a non-empty array of non-empty strings");
        if (r < 0)
                return r;

        strv_free(*ret);
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- Objects and their keys ---- */

typedef int (*FieldParser)(ParseContext *c, const char *path, struct json_object *v, void *userdata);

typedef struct Field {
        const char *key;
        FieldParser parse;
} Field;

#define FIELDS_MAX 16

/* Every key is looked at, known or not, so one pass reports all problems of an object in document order. */
static int dispatch_object(ParseContext *c, const char *path, struct json_object *obj, const Field *fields,
                           size_t n_fields, void *userdata) {
        const char *known[FIELDS_MAX];
        int r;

        assert(n_fields <= FIELDS_MAX);

        if (!json_object_is_type(obj, json_type_object))
                return report_got(c, path, obj, false, "must be an object");

        for (size_t i = 0; i < n_fields; i++)
                known[i] = fields[i].key;

        json_object_object_foreach(obj, key, value) {
                _cleanup_free_ char *key_path = NULL;
                const Field *field = NULL;

                key_path = path_key(path, key);
                if (!key_path)
                        return -ENOMEM;
                for (size_t i = 0; i < n_fields && !field; i++)
                        if (streq(fields[i].key, key))
                                field = &fields[i];
                if (field)
                        r = field->parse(c, key_path, value, userdata);
                else
                        r = report_unknown_key(c, key_path, key, known, n_fields);
                if (r == -ENOMEM)
                        return r;
        }
        return 0;
}

static int match_driver(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        PolicyMatch *m = userdata;

        return parse_string_list(c, path, v, &m->drivers);
}

static int match_vendor_id(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        PolicyMatch *m = userdata;
        int r;

        r = parse_pci_id(c, path, v, &m->vendor_id);
        if (r < 0)
                return r;
        m->has_vendor_id = true;
        return 0;
}

static int match_device_id(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        PolicyMatch *m = userdata;
        int r;

        r = parse_pci_id(c, path, v, &m->device_id);
        if (r < 0)
                return r;
        m->has_device_id = true;
        return 0;
}

static int match_mdev_type(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        PolicyMatch *m = userdata;

        return parse_string_list(c, path, v, &m->mdev_types);
}

static int match_name(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        PolicyMatch *m = userdata;

        return parse_string_list(c, path, v, &m->names);
}

static const Field match_fields[] = {
        { "driver", match_driver },
        { "vendor_id", match_vendor_id },
        { "device_id", match_device_id },
        { "mdev_type", match_mdev_type },
        { "name", match_name },
};

#define NAME_RULE "a string of 1 to 64 characters from a-z, 0-9, \".\", \"_\" and \"-\", starting with a-z or 0-9"

static int field_name(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;
        char *name;

        if (!json_is_clean_string(v) || !policy_name_is_valid(json_object_get_string(v)))
                return report_got(c, path, v, json_object_is_type(v, json_type_string), "must be " NAME_RULE);
        name = strdup(json_object_get_string(v));
        if (!name)
                return -ENOMEM;
        free(p->name);
        p->name = name;
        return 0;
}

static int field_description(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;

        return parse_string(c, path, v, &p->description);
}

static int field_match(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;

        return dispatch_object(c, path, v, match_fields, ELEMENTSOF(match_fields), &p->match);
}

static int field_priority(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;
        int64_t i;
        int r;

        r = parse_int_range(c, path, v, PRIORITY_MIN, PRIORITY_MAX, &i);
        if (r < 0)
                return r;
        p->priority = (int) i;
        return 0;
}

static int field_irq_restore(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;
        int i, r;

        r = parse_enum(c, path, v, irq_restore_table, ELEMENTSOF(irq_restore_table), &i);
        if (r < 0)
                return r;
        p->irq_restore = i;
        return 0;
}

static int field_postcopy(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;

        return parse_bool(c, path, v, &p->postcopy);
}

static int parse_tristate(ParseContext *c, const char *path, struct json_object *v, Tristate *ret) {
        int i, r;

        r = parse_enum(c, path, v, tristate_table, ELEMENTSOF(tristate_table), &i);
        if (r < 0)
                return r;
        *ret = i;
        return 0;
}

static int field_precopy(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;

        return parse_tristate(c, path, v, &p->precopy);
}

static int field_p2p(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;

        return parse_tristate(c, path, v, &p->p2p);
}

static int field_downtime_limit_ms(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;
        int64_t i;
        int r;

        r = parse_int_range(c, path, v, DOWNTIME_LIMIT_MS_MIN, DOWNTIME_LIMIT_MS_MAX, &i);
        if (r < 0)
                return r;
        p->downtime_limit_ms = (uint32_t) i;
        return 0;
}

static int field_timeouts_ms(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;
        int r;

        if (!json_object_is_type(v, json_type_object))
                return report_got(c, path, v, false, "must be an object");

        json_object_object_foreach(v, key, value) {
                _cleanup_free_ char *key_path = NULL;
                MigPhase phase = mig_phase_from_string(key);
                int64_t ms;

                key_path = path_key(path, key);
                if (!key_path)
                        return -ENOMEM;
                if (phase < 0)
                        r = report_unknown_key(c, key_path, key, mig_phase_table, ELEMENTSOF(mig_phase_table));
                else {
                        r = parse_int_range(c, key_path, value, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX, &ms);
                        if (r >= 0)
                                p->timeout_ms[phase] = (uint32_t) ms;
                }
                if (r == -ENOMEM)
                        return r;
        }
        return 0;
}

static int field_on_irq_while_stopped(ParseContext *c, const char *path, struct json_object *v, void *userdata) {
        Policy *p = userdata;
        int i, r;

        r = parse_enum(c, path, v, irq_while_stopped_table, ELEMENTSOF(irq_while_stopped_table), &i);
        if (r < 0)
                return r;
        p->on_irq_while_stopped = i;
        return 0;
}

static const Field policy_fields[] = {
        { "name", field_name },
        { "description", field_description },
        { "match", field_match },
        { "priority", field_priority },
        { "irq_restore", field_irq_restore },
        { "postcopy", field_postcopy },
        { "precopy", field_precopy },
        { "p2p", field_p2p },
        { "downtime_limit_ms", field_downtime_limit_ms },
        { "timeouts_ms", field_timeouts_ms },
        { "on_irq_while_stopped", field_on_irq_while_stopped },
};

/* ---- Documents ---- */

/* after-resuming restores interrupts in STOP between RESUMING and RUNNING; postcopy goes from RESUMING to
 * RESUMING|RUNNING and never has that STOP. Only a valid, explicit or defaulted after-resuming counts: an
 * invalid irq_restore was reported already. */
static int check_postcopy(ParseContext *c, struct json_object *doc, const Policy *p) {
        struct json_object *v;

        if (!p->postcopy || p->irq_restore != IRQ_RESTORE_AFTER_RESUMING)
                return 0;

        if (!json_object_object_get_ex(doc, "irq_restore", &v))
                return report(c, "$.postcopy",
                              "true needs irq_restore set to during-resuming or before-resuming: irq_restore "
                              "defaults to after-resuming, which needs a STOP window between RESUMING and RUNNING, "
                              "but postcopy runs the device while it is still resuming");
        if (!json_is_clean_string(v) || irq_restore_from_string(json_object_get_string(v)) != IRQ_RESTORE_AFTER_RESUMING)
                return 0;
        return report(c, "$.irq_restore",
                      "after-resuming needs a STOP window between RESUMING and RUNNING, but postcopy (true at "
                      "$.postcopy) runs the device while it is still resuming; use during-resuming or "
                      "before-resuming, or set postcopy to false");
}

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static void text_position(const char *text, size_t offset, unsigned *ret_line, unsigned *ret_column) {
        unsigned line = 1, column = 1;

        for (size_t i = 0; i < offset && text[i]; i++) {
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

static int parse_json_text(ParseContext *c, const char *text, struct json_object **ret) {
        _cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
        struct json_object *j;
        unsigned line, column;

        assert(ret);

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        /* Strict: no trailing commas, no garbage after the document. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        /* Handing json-c the terminating NUL tells it the input ends there; without it, a bare number or a
         * cut-off document would only be "incomplete" rather than an error with a position. */
        j = json_tokener_parse_ex(tok, text, (int) strlen(text) + 1);
        if (!j && json_tokener_get_error(tok) != json_tokener_success) {
                text_position(text, json_tokener_get_parse_end(tok), &line, &column);
                return report(c, "$", "not valid JSON: %s (line %u, column %u)",
                              json_tokener_error_desc(json_tokener_get_error(tok)), line, column);
        }
        if (!j)
                return report(c, "$", "must be a JSON object; got null");

        *ret = j;
        return 0;
}

static int parse_document(ParseContext *c, const char *text, Policy **ret) {
        _cleanup_json_ struct json_object *doc = NULL;
        _cleanup_(policy_freep) Policy *p = NULL;
        unsigned problems_before = c->n_problems;
        int r;

        assert(ret);

        r = parse_json_text(c, text, &doc);
        if (r < 0)
                return r;
        if (!json_object_is_type(doc, json_type_object))
                return report_got(c, "$", doc, false, "must be a JSON object");

        r = policy_new_unnamed(&p);
        if (r < 0)
                return r;
        r = dispatch_object(c, "$", doc, policy_fields, ELEMENTSOF(policy_fields), p);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(doc, "name", NULL)) {
                r = report(c, "$.name", "is required");
                if (r == -ENOMEM)
                        return r;
        }
        r = check_postcopy(c, doc, p);
        if (r == -ENOMEM)
                return r;
        if (c->n_problems > problems_before)
                return -EINVAL;

        free(p->source);
        p->source = strdup(c->file);
        if (!p->source)
                return -ENOMEM;

        *ret = TAKE_PTR(p);
        return 0;
}

int policy_parse_json(const char *text, const char *file, Policy **ret, PolicyErrors *errors) {
        ParseContext c = {
                .file = file ?: "-",
                .errors = errors,
        };

        assert(text);
        assert(ret);

        return parse_document(&c, text, ret);
}

/* The whole file as a NUL-terminated string; -EFBIG beyond POLICY_FILE_MAX. */
static int read_text_file(const char *path, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;
        struct stat st;

        assert(ret);
        assert(ret_size);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;

        for (;;) {
                ssize_t n;

                if (size + 1 >= allocated) {
                        size_t want = allocated ? allocated * 2 : 4096;
                        char *grown;

                        if (allocated > POLICY_FILE_MAX)
                                return -EFBIG;
                        grown = realloc(buf, want);
                        if (!grown)
                                return -ENOMEM;
                        buf = grown;
                        allocated = want;
                }
                n = read(fd, buf + size, allocated - size - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (size > POLICY_FILE_MAX)
                return -EFBIG;

        buf[size] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

int policy_parse_file(const char *path, Policy **ret, PolicyErrors *errors) {
        ParseContext c = {
                .file = path,
                .errors = errors,
        };
        _cleanup_free_ char *text = NULL;
        const char *nul;
        size_t size = 0;
        int r;

        assert(path);
        assert(ret);

        r = read_text_file(path, &text, &size);
        if (r == -ENOMEM)
                return r;
        if (r == -EFBIG)
                return report(&c, "$", "is larger than %d bytes; a policy is a small JSON document",
                              POLICY_FILE_MAX);
        if (r < 0) {
                int q = report(&c, "$", "cannot be read: %s", strerror(-r));

                return q == -ENOMEM ? q : r;
        }

        nul = memchr(text, '\0', size);
        if (nul)
                return report(&c, "$", "contains a NUL byte at offset %zu; a policy is JSON text", (size_t) (nul - text));

        return parse_document(&c, text, ret);
}

/* ---- Output ---- */

static int json_add(struct json_object *o, const char *key, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static struct json_object *json_new_strv(char *const *l) {
        _cleanup_json_ struct json_object *a = NULL;

        a = json_object_new_array();
        if (!a)
                return NULL;
        for (char *const *i = l; i && *i; i++) {
                struct json_object *s = json_object_new_string(*i);

                if (!s)
                        return NULL;
                if (json_object_array_add(a, s) < 0) {
                        json_object_put(s);
                        return NULL;
                }
        }
        return TAKE_PTR(a);
}

static struct json_object *json_new_pci_id(uint16_t id) {
        char buf[sizeof("0xffff")];

        snprintf(buf, sizeof(buf), "0x%04x", id);
        return json_object_new_string(buf);
}

static struct json_object *match_to_json(const PolicyMatch *m) {
        _cleanup_json_ struct json_object *o = NULL;

        o = json_object_new_object();
        if (!o)
                return NULL;
        if (m->drivers && json_add(o, "driver", json_new_strv(m->drivers)) < 0)
                return NULL;
        if (m->has_vendor_id && json_add(o, "vendor_id", json_new_pci_id(m->vendor_id)) < 0)
                return NULL;
        if (m->has_device_id && json_add(o, "device_id", json_new_pci_id(m->device_id)) < 0)
                return NULL;
        if (m->mdev_types && json_add(o, "mdev_type", json_new_strv(m->mdev_types)) < 0)
                return NULL;
        if (m->names && json_add(o, "name", json_new_strv(m->names)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static struct json_object *timeouts_to_json(const Policy *p) {
        _cleanup_json_ struct json_object *o = NULL;

        o = json_object_new_object();
        if (!o)
                return NULL;
        for (MigPhase i = 0; i < _MIG_PHASE_MAX; i++)
                if (json_add(o, mig_phase_to_string(i), json_object_new_int64(p->timeout_ms[i])) < 0)
                        return NULL;
        return TAKE_PTR(o);
}

/* NULL for an out-of-range enum would crash json-c far from the cause; fail here instead. */
static struct json_object *json_new_enum_string(const char *s) {
        assert(s);
        return json_object_new_string(s);
}

struct json_object *policy_to_json(const Policy *p) {
        _cleanup_json_ struct json_object *o = NULL;

        assert(p);
        assert(p->name);

        o = json_object_new_object();
        if (!o)
                return NULL;
        if (json_add(o, "name", json_object_new_string(p->name)) < 0 ||
            json_add(o, "description", json_object_new_string(p->description ?: "")) < 0 ||
            json_add(o, "match", match_to_json(&p->match)) < 0 ||
            json_add(o, "priority", json_object_new_int(p->priority)) < 0 ||
            json_add(o, "irq_restore", json_new_enum_string(irq_restore_to_string(p->irq_restore))) < 0 ||
            json_add(o, "postcopy", json_object_new_boolean(p->postcopy)) < 0 ||
            json_add(o, "precopy", json_new_enum_string(tristate_to_string(p->precopy))) < 0 ||
            json_add(o, "p2p", json_new_enum_string(tristate_to_string(p->p2p))) < 0 ||
            json_add(o, "downtime_limit_ms", json_object_new_int64(p->downtime_limit_ms)) < 0 ||
            json_add(o, "timeouts_ms", timeouts_to_json(p)) < 0 ||
            json_add(o, "on_irq_while_stopped",
                     json_new_enum_string(irq_while_stopped_to_string(p->on_irq_while_stopped))) < 0)
                return NULL;
        return TAKE_PTR(o);
}

/* ---- Matching ---- */

static bool fnmatch_any(char *const *globs, const char *s) {
        for (char *const *g = globs; *g; g++)
                if (fnmatch(*g, s, 0) == 0)
                        return true;
        return false;
}

bool policy_matches(const Policy *p, const DeviceDescription *d) {
        const PolicyMatch *m;

        assert(p);
        assert(d);

        m = &p->match;
        if (m->drivers && !(d->driver && strv_contains(m->drivers, d->driver)))
                return false;
        if (m->has_vendor_id && d->vendor_id != m->vendor_id)
                return false;
        if (m->has_device_id && d->device_id != m->device_id)
                return false;
        if (m->mdev_types && !(d->mdev_type && strv_contains(m->mdev_types, d->mdev_type)))
                return false;
        if (m->names && !(d->name && fnmatch_any(m->names, d->name)))
                return false;
        return true;
}

/* ---- Sets ---- */

PolicySet *policy_set_free(PolicySet *s) {
        if (!s)
                return NULL;

        for (size_t i = 0; i < s->n; i++)
                policy_free(s->items[i]);
        free(s->items);
        free(s);
        return NULL;
}

void policy_set_freep(PolicySet **s) {
        if (*s)
                policy_set_free(*s);
}

static int policy_set_new_empty(PolicySet **ret) {
        PolicySet *s;

        assert(ret);

        s = calloc(1, sizeof(PolicySet));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* Takes ownership of p only on success. */
static int policy_set_append(PolicySet *s, Policy *p) {
        Policy **items;

        assert(s);
        assert(p);

        items = reallocarray(s->items, s->n + 1, sizeof(Policy *));
        if (!items)
                return -ENOMEM;
        s->items = items;
        s->items[s->n++] = p;
        return 0;
}

static int policy_compare(const void *a, const void *b) {
        const Policy *x = *(Policy *const *) a, *y = *(Policy *const *) b;

        if (x->priority != y->priority)
                return x->priority > y->priority ? -1 : 1;
        return strcmp(x->name, y->name);
}

const Policy *policy_set_find(const PolicySet *s, const char *name) {
        assert(s);
        assert(name);

        for (size_t i = 0; i < s->n; i++)
                if (s->items[i] && streq(s->items[i]->name, name))
                        return s->items[i];
        return NULL;
}

const Policy *policy_set_resolve(const PolicySet *s, const DeviceDescription *d) {
        assert(s);
        assert(d);

        for (size_t i = 0; i < s->n; i++)
                if (policy_matches(s->items[i], d))
                        return s->items[i];
        return NULL;
}

static int set_add_file(PolicySet *files, const char *path, PolicyErrors *errors) {
        _cleanup_(policy_freep) Policy *p = NULL;
        const Policy *other;
        int r;

        r = policy_parse_file(path, &p, errors);
        if (r < 0)
                return r;

        other = policy_set_find(files, p->name);
        if (other) {
                ParseContext c = {
                        .file = path,
                        .errors = errors,
                };

                return report(&c, "$.name", "policy \"%s\" is already defined in %s", p->name, other->source);
        }

        r = policy_set_append(files, p);
        if (r < 0)
                return r;
        TAKE_PTR(p);
        return 0;
}

/* Built-ins a file does not shadow join the set; the others are dropped. */
static int set_add_builtins(PolicySet *files) {
        _cleanup_(policy_set_freep) PolicySet *builtins = NULL;
        int r;

        r = policy_set_new_builtin(&builtins);
        if (r < 0)
                return r;
        for (size_t i = 0; i < builtins->n; i++) {
                if (policy_set_find(files, builtins->items[i]->name))
                        continue;
                r = policy_set_append(files, builtins->items[i]);
                if (r < 0)
                        return r;
                builtins->items[i] = NULL;
        }
        return 0;
}

static int load_paths(char *const *paths, bool with_builtins, PolicySet **ret, PolicyErrors *errors) {
        _cleanup_(policy_set_freep) PolicySet *set = NULL;
        bool failed = false;
        int r;

        assert(ret);

        r = policy_set_new_empty(&set);
        if (r < 0)
                return r;

        /* Keep going after a bad file, so one run shows every problem in every file. */
        for (char *const *path = paths; path && *path; path++) {
                r = set_add_file(set, *path, errors);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        failed = true;
        }
        if (failed)
                return -EINVAL;

        if (with_builtins) {
                r = set_add_builtins(set);
                if (r < 0)
                        return r;
        }
        if (set->n > 1)
                qsort(set->items, set->n, sizeof(Policy *), policy_compare);

        *ret = TAKE_PTR(set);
        return 0;
}

static bool is_policy_file_name(const char *name) {
        size_t n = strlen(name);

        /* Dot files are editor locks and backups (".#x.json"), never meant to be loaded. */
        return name[0] != '.' && n > strlen(".json") && streq(name + n - strlen(".json"), ".json");
}

static int strv_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* Paths of the *.json files in dir, sorted by name so the order (and which file is "the other" in a duplicate)
 * does not depend on the file system. A missing dir is an empty list. */
static int list_policy_files(const char *dir, char ***ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_strv_free_ char **paths = NULL;
        struct dirent *de;

        assert(ret);

        paths = calloc(1, sizeof(char *));
        if (!paths)
                return -ENOMEM;

        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                *ret = TAKE_PTR(paths);
                return 0;
        }

        for (;;) {
                _cleanup_free_ char *path = NULL;
                int r;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return -errno;
                        break;
                }
                if (!is_policy_file_name(de->d_name))
                        continue;
                if (asprintf(&path, "%s/%s", dir, de->d_name) < 0)
                        return -ENOMEM;
                r = strv_extend(&paths, path);
                if (r < 0)
                        return r;
        }

        /* Every path has the same prefix, so this is the order of the file names. */
        qsort(paths, strv_length(paths), sizeof(char *), strv_compare);
        *ret = TAKE_PTR(paths);
        return 0;
}

int policy_set_load_dir(const char *dir, PolicySet **ret, PolicyErrors *errors) {
        _cleanup_strv_free_ char **paths = NULL;
        int r;

        assert(dir);
        assert(ret);

        r = list_policy_files(dir, &paths);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                ParseContext c = {
                        .file = dir,
                        .errors = errors,
                };

                return report(&c, "$", "cannot read the policy directory: %s", strerror(-r));
        }

        return load_paths(paths, true, ret, errors);
}

int policy_set_load_files(char *const *paths, bool with_builtins, PolicySet **ret, PolicyErrors *errors) {
        assert(ret);

        return load_paths(paths, with_builtins, ret, errors);
}
