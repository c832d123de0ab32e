/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The errno behind each named error, so a plain negative return still reaches the caller by its name. */
#include <errno.h>

#include "bus-errors.h"

/* One errno per name. EINVAL and ENOMEM stay with sd-bus's InvalidArgs and NoMemory. ENOENT is taken by
 * NoSuchPolicy: handlers report every other missing thing by its own name, never as a bare ENOENT. */
const sd_bus_error_map migd_bus_error_map[] = {
        SD_BUS_ERROR_MAP(MIGD_ERROR_NO_SUCH_DEVICE, ENODEV),
        SD_BUS_ERROR_MAP(MIGD_ERROR_NO_SUCH_POLICY, ENOENT),
        SD_BUS_ERROR_MAP(MIGD_ERROR_NO_SUCH_MIGRATION, ESRCH),
        SD_BUS_ERROR_MAP(MIGD_ERROR_POLICY_VIOLATION, EDOM),
        SD_BUS_ERROR_MAP(MIGD_ERROR_INVALID_POLICY, EBADMSG),
        SD_BUS_ERROR_MAP(MIGD_ERROR_INVALID_CONFIG, ENOEXEC),
        SD_BUS_ERROR_MAP(MIGD_ERROR_INVALID_STATE, EBADFD),
        SD_BUS_ERROR_MAP(MIGD_ERROR_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(MIGD_ERROR_PEER_UNREACHABLE, EHOSTUNREACH),
        SD_BUS_ERROR_MAP(MIGD_ERROR_NOT_PERMITTED, EACCES),
        SD_BUS_ERROR_MAP(MIGD_ERROR_NOT_SUPPORTED, EOPNOTSUPP),
        SD_BUS_ERROR_MAP(MIGD_ERROR_PAST_COMMIT, ETIME),
        SD_BUS_ERROR_MAP(MIGD_ERROR_MIGRATION_FAILED, EIO),
        SD_BUS_ERROR_MAP_END,
};

int bus_errors_register(void) {
        int r;

        /* sd-bus remembers the map; a second call is a no-op. */
        r = sd_bus_error_add_map(migd_bus_error_map);
        return r < 0 ? r : 0;
}
