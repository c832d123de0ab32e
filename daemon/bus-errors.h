/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migd's named D-Bus errors and the errno each one maps to (docs/dbus-api.md lists both). */
#pragma once

#include <systemd/sd-bus.h>

#define MIGD_ERROR_NO_SUCH_DEVICE    "org.vfiomig.Migd1.Error.NoSuchDevice"
#define MIGD_ERROR_NO_SUCH_POLICY    "org.vfiomig.Migd1.Error.NoSuchPolicy"
#define MIGD_ERROR_NO_SUCH_MIGRATION "org.vfiomig.Migd1.Error.NoSuchMigration"
#define MIGD_ERROR_POLICY_VIOLATION  "org.vfiomig.Migd1.Error.PolicyViolation"
#define MIGD_ERROR_INVALID_POLICY    "org.vfiomig.Migd1.Error.InvalidPolicy"
#define MIGD_ERROR_INVALID_CONFIG    "org.vfiomig.Migd1.Error.InvalidConfig"
#define MIGD_ERROR_INVALID_STATE     "org.vfiomig.Migd1.Error.InvalidState"
#define MIGD_ERROR_BUSY              "org.vfiomig.Migd1.Error.Busy"
#define MIGD_ERROR_PEER_UNREACHABLE  "org.vfiomig.Migd1.Error.PeerUnreachable"
#define MIGD_ERROR_NOT_PERMITTED     "org.vfiomig.Migd1.Error.NotPermitted"
#define MIGD_ERROR_NOT_SUPPORTED     "org.vfiomig.Migd1.Error.NotSupported"
#define MIGD_ERROR_PAST_COMMIT       "org.vfiomig.Migd1.Error.PastCommitPoint"
/* Only as a failed Migration's ErrorName: no more specific name applies. */
#define MIGD_ERROR_MIGRATION_FAILED  "org.vfiomig.Migd1.Error.MigrationFailed"

/* Terminated by SD_BUS_ERROR_MAP_END; both the daemon and clients register it with sd_bus_error_add_map(). */
extern const sd_bus_error_map migd_bus_error_map[];

/* Registers migd_bus_error_map once per process. */
int bus_errors_register(void);
