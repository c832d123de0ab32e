/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The caller check behind every mutating method, from credentials the bus vouches for. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "bus-access.h"
#include "bus-errors.h"
#include "log.h"
#include "util.h"

static bool gid_in(gid_t gid, const gid_t *gids, int n) {
        for (int i = 0; i < n; i++)
                if (gids[i] == gid)
                        return true;
        return false;
}

/* dbus-daemon does not pass supplementary groups to sd-bus, so then the group database decides, as it
 * would at the user's next login. */
static bool user_in_group_db(uid_t uid, gid_t group) {
        struct passwd *pw;
        int n = 0;

        pw = getpwuid(uid);
        if (!pw)
                return false;
        if (pw->pw_gid == group)
                return true;
        (void) getgrouplist(pw->pw_name, pw->pw_gid, NULL, &n);
        if (n <= 0)
                return false;

        _cleanup_free_ gid_t *gids = calloc(n, sizeof(gid_t));
        if (!gids)
                return false;
        if (getgrouplist(pw->pw_name, pw->pw_gid, gids, &n) < 0)
                return false;
        return gid_in(group, gids, n);
}

static bool caller_in_group(sd_bus_creds *creds, uid_t uid, gid_t group) {
        const gid_t *gids;
        gid_t gid;
        int n;

        if ((sd_bus_creds_get_egid(creds, &gid) >= 0 || sd_bus_creds_get_gid(creds, &gid) >= 0) && gid == group)
                return true;
        n = sd_bus_creds_get_supplementary_gids(creds, &gids);
        if (n >= 0)
                return gid_in(group, gids, n);
        return user_in_group_db(uid, group);
}

static int caller_uid(sd_bus_creds *creds, uid_t *ret) {
        int r;

        /* Through dbus-daemon only the uid at connect time (SO_PEERCRED's, an effective uid) is known. */
        r = sd_bus_creds_get_euid(creds, ret);
        if (r >= 0)
                return 0;
        return sd_bus_creds_get_uid(creds, ret);
}

int bus_verify_admin(Manager *m, sd_bus_message *message, const char *action, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *group = m->config->admin_group;
        struct group *gr;
        uid_t uid;
        int r;

        assert(m);
        assert(message);
        assert(action);

        r = sd_bus_query_sender_creds(message,
                                      SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID | SD_BUS_CREDS_GID | SD_BUS_CREDS_EGID |
                                              SD_BUS_CREDS_SUPPLEMENTARY_GIDS,
                                      &creds);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who is calling: %m.");
        r = caller_uid(creds, &uid);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who is calling: %m.");

        /* migd's own user: an unprivileged user running a private migd (demo, tests) drives it. */
        if (uid == 0 || uid == geteuid())
                return 0;
        if (group) {
                gr = getgrnam(group);
                if (gr && caller_in_group(creds, uid, gr->gr_gid))
                        return 0;
        }

        log_notice("%s refused for uid %u: not root, not migd's user, not in group %s.", action, (unsigned) uid,
                   strna(group));
        if (group)
                return sd_bus_error_setf(error, MIGD_ERROR_NOT_PERMITTED,
                                         "%s requires root or membership in group %s.", action, group);
        return sd_bus_error_setf(error, MIGD_ERROR_NOT_PERMITTED,
                                 "%s requires root (AdminGroup= is empty).", action);
}
