/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migd.conf: the [Daemon], [Peer] and [SimDevice NAME] sections (docs/migd.conf.md). Not named config.h,
 * which is meson's generated header and must stay reachable by that name from every directory. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "sim.h"

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
