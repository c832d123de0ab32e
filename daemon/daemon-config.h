/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migd.conf: the [Daemon], [Peer] and [SimDevice NAME] sections (docs/migd.conf.md). Not named config.h,
 * which is meson's generated header and must stay reachable by that name from every directory. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim.h"
#include "vfio.h"

/* A VFIO hostdev of a libvirt domain (or, with no Hostdev=, the domain's whole migration data path). */
typedef struct LibvirtDeviceConfig {
        char *name;
        char *domain;
        char *hostdev;               /* alias, PCI address or mdev UUID; NULL: the domain as a whole */
        bool irq_state_in_data;      /* the device's migration data may carry its interrupt state */
} LibvirtDeviceConfig;

typedef struct Config {
        char *path;          /* the file read, NULL when built-in defaults are in use */
        char *policy_dir;    /* absolute, or relative to the working directory when given so on the command line */
        char *state_dir;
        char **backends;     /* strv of known backend names, in the order given */
        char *admin_group;
        char *peer_listen;   /* "HOST:PORT" */
        bool peer_insecure;
        char *pki_dir;
        char *peer_name;     /* this host's name as peers and certificates know it; NULL: the hostname */       /* ca-cert.pem, server-cert.pem, … as libvirt lays them out */
        SimConfig *sim_devices;
        size_t n_sim_devices;
        /* [Libvirt] and [LibvirtDevice NAME] (docs/libvirt.md) */
        char *libvirt_uri;           /* the local libvirtd, qemu:///system by default */
        bool libvirt_hook_fail_open; /* HookFailMode=open: the hook lets a migration pass when migd cannot answer */
        uint64_t libvirt_hook_timeout_usec;
        bool libvirt_tls;            /* VIR_MIGRATE_TLS for migrations migd starts */
        uint64_t libvirt_bandwidth_mib; /* MiB/s, 0: libvirt's default */
        LibvirtDeviceConfig *libvirt_devices;
        size_t n_libvirt_devices;
        VfioConfig *vfio_devices;     /* [VfioDevice NAME] (docs/vfio.md) */
        size_t n_vfio_devices;
} Config;

/* Every key at its documented default. */
int config_new_default(Config **ret);
/* Reads path over the defaults. A missing file is not an error when missing_ok (the default path); then
 * ret->path is NULL. On a bad file returns -EINVAL and *ret_error (if given) gets
 * "FILE:LINE: [Section] Key: what is wrong (allowed: …)". */
int config_load(const char *path, bool missing_ok, Config **ret, char **ret_error);
Config *config_free(Config *c);
void config_freep(Config **c);

bool config_has_backend(const Config *c, const char *name);
const SimConfig *config_find_sim_device(const Config *c, const char *name);
/* Whether two sim device sections describe the same device (then a reload keeps it as it is). */
bool sim_config_equal(const SimConfig *a, const SimConfig *b);
const LibvirtDeviceConfig *config_find_libvirt_device(const Config *c, const char *name);
bool libvirt_device_config_equal(const LibvirtDeviceConfig *a, const LibvirtDeviceConfig *b);
const VfioConfig *config_find_vfio_device(const Config *c, const char *name);
