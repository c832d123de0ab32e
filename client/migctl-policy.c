/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl policy show|check|explain: offline verbs on policy documents, no daemon needed. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "migctl-render.h"
#include "migctl.h"
#include "plan.h"
#include "policy.h"
#include "util.h"

static void print_errors(const PolicyErrors *errors) {
        for (size_t i = 0; i < errors->n; i++) {
                _cleanup_free_ char *line = policy_error_format(&errors->items[i]);
                fprintf(stderr, "%s\n", strna(line));
        }
}

static bool looks_like_file(const char *arg) {
        struct stat st;

        return strchr(arg, '/') || (strlen(arg) > 5 && streq(arg + strlen(arg) - 5, ".json")) ||
               (stat(arg, &st) == 0 && S_ISREG(st.st_mode));
}

/* NAME from the policy directory (built-ins included) or FILE; the set is handed back to keep *ret alive. */
static int find_policy(const char *arg, const char *policy_dir, PolicySet **ret_set, const Policy **ret) {
        _cleanup_(policy_set_freep) PolicySet *set = NULL;
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        const Policy *p;
        int r;

        if (looks_like_file(arg)) {
                char *paths[] = { (char *) arg, NULL };

                r = policy_set_load_files(paths, false, &set, &errors);
                if (r < 0) {
                        print_errors(&errors);
                        return MIGCTL_EXIT_POLICY;
                }
                if (set->n != 1) {
                        fprintf(stderr, "migctl: %s holds no policy\n", arg);
                        return MIGCTL_EXIT_POLICY;
                }
                p = set->items[0];
        } else {
                r = policy_set_load_dir(policy_dir, &set, &errors);
                if (r < 0) {
                        /* A broken file elsewhere must not hide the built-ins from someone exploring them. */
                        print_errors(&errors);
                        fprintf(stderr, "migctl: warning: %s has errors; using the built-in policies only\n",
                                policy_dir);
                        r = policy_set_new_builtin(&set);
                        if (r < 0)
                                return MIGCTL_EXIT_FAILED;
                }
                p = policy_set_find(set, arg);
                if (!p) {
                        fprintf(stderr, "migctl: no policy named '%s' (built-ins and %s)\n", arg, policy_dir);
                        return MIGCTL_EXIT_NOT_FOUND;
                }
        }
        *ret = p;
        *ret_set = TAKE_PTR(set);
        return MIGCTL_EXIT_OK;
}

static int policy_check(int argc, char *argv[], MigctlContext *ctx) {
        _cleanup_(policy_set_freep) PolicySet *set = NULL;
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        int r;

        if (argc < 1) {
                fprintf(stderr, "migctl policy check: give one or more policy files\n");
                return MIGCTL_EXIT_USAGE;
        }
        r = policy_set_load_files(argv, false, &set, &errors);
        if (ctx->json) {
                _cleanup_json_ struct json_object *o = json_object_new_object(), *a = json_object_new_array();

                for (size_t i = 0; i < errors.n; i++) {
                        struct json_object *e = json_object_new_object();
                        json_object_object_add(e, "file", json_object_new_string(errors.items[i].file));
                        json_object_object_add(e, "path", json_object_new_string(errors.items[i].json_path));
                        json_object_object_add(e, "message", json_object_new_string(errors.items[i].message));
                        json_object_array_add(a, e);
                }
                json_object_object_add(o, "valid", json_object_new_boolean(r >= 0));
                json_object_object_add(o, "errors", json_object_get(a));
                fprintf(ctx->out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
        } else if (r < 0)
                print_errors(&errors);
        else
                for (size_t i = 0; i < set->n; i++)
                        fprintf(ctx->out, "%s: ok (policy %s)\n", set->items[i]->source, set->items[i]->name);
        return r < 0 ? MIGCTL_EXIT_FAILED : MIGCTL_EXIT_OK;
}

static int policy_show(const char *arg, const char *policy_dir, MigctlContext *ctx) {
        _cleanup_(policy_set_freep) PolicySet *set = NULL;
        _cleanup_json_ struct json_object *o = NULL;
        const Policy *p;
        int r;

        r = find_policy(arg, policy_dir, &set, &p);
        if (r != MIGCTL_EXIT_OK)
                return r;
        o = policy_to_json(p);
        if (!o)
                return MIGCTL_EXIT_FAILED;
        fprintf(ctx->out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
        return MIGCTL_EXIT_OK;
}

static int policy_explain(const char *arg, const char *policy_dir, const char *flags_arg, unsigned uapi,
                          MigctlContext *ctx) {
        _cleanup_(policy_set_freep) PolicySet *set = NULL;
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(plan_freep) Plan *plan = NULL;
        MigCaps caps = { .flags = MIG_FLAG_STOP_COPY, .uapi = 2 };
        const Policy *p;
        int r;

        if (flags_arg && mig_flags_from_string(flags_arg, &caps.flags) < 0) {
                fprintf(stderr, "migctl: --flags '%s': use a comma list of stop-copy, p2p, pre-copy\n", flags_arg);
                return MIGCTL_EXIT_USAGE;
        }
        r = find_policy(arg, policy_dir, &set, &p);
        if (r != MIGCTL_EXIT_OK)
                return r;
        /* Post-copy only exists in the v1 model; explaining it on v2 would only show the refusal. */
        caps.uapi = uapi ?: (p->postcopy ? 1 : 2);
        if (!uapi && p->postcopy && !ctx->json)
                fprintf(ctx->out, "Note: post-copy needs the v1 state RESUMING|RUNNING; explaining on the "
                                  "migration v1 model (--uapi 2 shows why v2 refuses it).\n\n");

        r = plan_build(p, &caps, &plan, &errors);
        if (r < 0) {
                fprintf(stderr, "migctl: policy %s cannot be planned for this device:\n", p->name);
                print_errors(&errors);
                return MIGCTL_EXIT_POLICY;
        }
        if (ctx->json) {
                _cleanup_json_ struct json_object *o = plan_to_json(plan);
                if (!o)
                        return MIGCTL_EXIT_FAILED;
                fprintf(ctx->out, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
        } else
                render_plan(ctx->out, plan, p, &(RenderStyle) { .color = ctx->color });
        return MIGCTL_EXIT_OK;
}

static void policy_help(FILE *f) {
        fprintf(f,
                "Usage: migctl policy check FILE...\n"
                "       migctl policy show NAME|FILE\n"
                "       migctl policy explain NAME|FILE [--flags stop-copy,p2p,pre-copy] [--uapi 1|2]\n"
                "\n"
                "Work on policy documents without the daemon.\n"
                "\n"
                "  check    Validate files; exit 0 when all are valid, 1 otherwise, one line per problem:\n"
                "           FILE: JSON_PATH: what is wrong and what is allowed\n"
                "  show     Print a policy with every default filled in\n"
                "  explain  Draw the source and destination timelines the policy gives a device:\n"
                "           v2 states with v1 bits (RESUMING SAVING RUNNING), arcs, and where SET_IRQS lands\n"
                "\n"
                "Options:\n"
                "     --flags LIST       The device's migration flags (default: stop-copy)\n"
                "     --uapi 1|2         Migration protocol model (default 2; 1 for post-copy policies)\n"
                "     --policy-dir DIR   Where NAME is looked up besides the built-ins (default %s)\n"
                "     --json             {\"policy\":…, \"source\":[…], \"destination\":[…]}\n",
                MIGD_POLICY_DIR);
}

int verb_policy(int argc, char *argv[], MigctlContext *ctx) {
        enum { ARG_FLAGS = 0x100, ARG_UAPI, ARG_POLICY_DIR };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "flags", required_argument, NULL, ARG_FLAGS },
                { "uapi", required_argument, NULL, ARG_UAPI },
                { "policy-dir", required_argument, NULL, ARG_POLICY_DIR },
                {},
        };
        const char *flags = NULL, *policy_dir = getenv("MIGD_POLICY_DIR") ?: MIGD_POLICY_DIR, *sub;
        unsigned uapi = 0;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        policy_help(stdout);
                        return MIGCTL_EXIT_OK;
                case ARG_FLAGS:
                        flags = optarg;
                        break;
                case ARG_UAPI:
                        if (!streq(optarg, "1") && !streq(optarg, "2")) {
                                fprintf(stderr, "migctl: --uapi takes 1 or 2, not '%s'\n", optarg);
                                return MIGCTL_EXIT_USAGE;
                        }
                        uapi = (unsigned) atoi(optarg);
                        break;
                case ARG_POLICY_DIR:
                        policy_dir = optarg;
                        break;
                default:
                        fprintf(stderr, "migctl policy: bad option '%s' (see migctl policy --help)\n",
                                argv[optind - 1]);
                        return MIGCTL_EXIT_USAGE;
                }
        if (optind >= argc) {
                policy_help(stderr);
                return MIGCTL_EXIT_USAGE;
        }
        sub = argv[optind++];
        if (streq(sub, "check"))
                return policy_check(argc - optind, argv + optind, ctx);
        if (!streq(sub, "show") && !streq(sub, "explain")) {
                fprintf(stderr, "migctl policy: unknown subcommand '%s' (check, show, explain)\n", sub);
                return MIGCTL_EXIT_USAGE;
        }
        if (argc - optind != 1) {
                fprintf(stderr, "migctl policy %s: give exactly one policy NAME or FILE\n", sub);
                return MIGCTL_EXIT_USAGE;
        }
        if (streq(sub, "show"))
                return policy_show(argv[optind], policy_dir, ctx);
        return policy_explain(argv[optind], policy_dir, flags, uapi, ctx);
}
