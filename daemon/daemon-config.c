/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migd.conf parser: systemd-style INI, every error pinned to FILE:LINE, [Section] and Key. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "daemon-config.h"
#include "util.h"

#define DEFAULT_PEER_LISTEN "0.0.0.0:7480"
#define DEFAULT_ADMIN_GROUP "migd"
#define SIM_NAME_MAX 64

static const char *const known_backends[] = { "sim", "vfio", "libvirt" };

typedef enum Section {
        SECTION_NONE,
        SECTION_DAEMON,
        SECTION_PEER,
        SECTION_SIM_DEVICE,
        SECTION_LIBVIRT,
        SECTION_LIBVIRT_DEVICE,
        SECTION_VFIO_DEVICE,
} Section;

typedef struct Parser {
        const char *file;
        char *dir;            /* where relative paths start */
        unsigned line;
        Section section;
        char *section_label;  /* as written between the brackets, for messages */
        size_t sim_index;     /* the current [SimDevice] in config->sim_devices */
        size_t libvirt_index; /* the current [LibvirtDevice] in config->libvirt_devices */
        size_t vfio_index;    /* the current [VfioDevice] in config->vfio_devices */
        Config *config;
        char *error;
} Parser;

typedef int (*KeyParser)(Parser *p, const char *key, const char *value);

typedef struct KeyTable {
        const char *key;
        KeyParser parse;
} KeyTable;

static void parser_done(Parser *p) {
        free(p->dir);
        free(p->section_label);
        free(p->error);
}

static int parser_error(Parser *p, const char *key, const char *format, ...) _printf_(3, 4);
static int parser_error(Parser *p, const char *key, const char *format, ...) {
        char what[512];
        va_list ap;
        int n;

        va_start(ap, format);
        vsnprintf(what, sizeof(what), format, ap);
        va_end(ap);

        free(p->error);
        p->error = NULL;
        if (key)
                n = asprintf(&p->error, "%s:%u: [%s] %s: %s", p->file, p->line, strna(p->section_label), key, what);
        else if (p->section_label)
                n = asprintf(&p->error, "%s:%u: [%s]: %s", p->file, p->line, p->section_label, what);
        else
                n = asprintf(&p->error, "%s:%u: %s", p->file, p->line, what);
        if (n < 0)
                p->error = NULL;
        return -EINVAL;
}

static int replace_string(char **field, const char *value) {
        char *copy = strdup(value);

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

/* Decimal or 0x-hexadecimal, nothing else: a leading 0 must not silently mean octal. */
static int parse_u64_range(const char *s, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                v = strtoull(s + 2, &end, 16);
        else
                v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || end == s || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* 1024-based K, M, G suffixes, as systemd's size options read them. */
static int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                uint64_t factor;
        } units[] = { { 'K', 1ULL << 10 }, { 'M', 1ULL << 20 }, { 'G', 1ULL << 30 } };
        _cleanup_free_ char *digits = strdup(s);
        uint64_t factor = 1, v;
        size_t n;
        int r;

        if (!digits)
                return -ENOMEM;
        n = strlen(digits);
        if (n > 0)
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (toupper((unsigned char) digits[n - 1]) == units[i].suffix) {
                                factor = units[i].factor;
                                digits[n - 1] = '\0';
                                break;
                        }
        r = parse_u64_range(digits, UINT64_MAX / factor, &v);
        if (r < 0)
                return r;
        *ret = v * factor;
        return 0;
}

static int make_path(Parser *p, const char *value, char **ret) {
        char *path;

        if (value[0] == '/')
                path = strdup(value);
        else if (asprintf(&path, "%s/%s", p->dir, value) < 0)
                path = NULL;
        if (!path)
                return -ENOMEM;
        *ret = path;
        return 0;
}

static SimConfig *parser_sim(Parser *p) {
        assert(p->section == SECTION_SIM_DEVICE);
        return &p->config->sim_devices[p->sim_index];
}

static int parse_directory(Parser *p, const char *key, const char *value, char **field) {
        char *path;
        int r;

        if (value[0] == '\0')
                return parser_error(p, key, "must not be empty (allowed: an absolute path, or one relative to %s)",
                                    p->dir);
        r = make_path(p, value, &path);
        if (r < 0)
                return r;
        free(*field);
        *field = path;
        return 0;
}

static int parse_policy_directory(Parser *p, const char *key, const char *value) {
        return parse_directory(p, key, value, &p->config->policy_dir);
}

static int parse_state_directory(Parser *p, const char *key, const char *value) {
        return parse_directory(p, key, value, &p->config->state_dir);
}

static bool backend_known(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(known_backends); i++)
                if (streq(name, known_backends[i]))
                        return true;
        return false;
}

static int parse_backends(Parser *p, const char *key, const char *value) {
        _cleanup_strv_free_ char **words = NULL, **backends = NULL;
        int r;

        r = strv_split(value, ", \t", &words);
        if (r < 0)
                return r;
        /* An empty list is allowed: the daemon then manages no devices but still answers. */
        backends = calloc(1, sizeof(char *));
        if (!backends)
                return -ENOMEM;
        for (char **w = words; *w; w++) {
                if (!backend_known(*w))
                        return parser_error(p, key, "unknown backend \"%s\" (allowed: sim, vfio, libvirt)", *w);
                if (strv_contains(backends, *w))
                        continue;
                r = strv_extend(&backends, *w);
                if (r < 0)
                        return r;
        }
        strv_free(p->config->backends);
        p->config->backends = TAKE_PTR(backends);
        return 0;
}

static bool valid_group_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 32 || s[0] == '-' || isdigit((unsigned char) s[0]))
                return false;
        for (const char *c = s; *c; c++)
                if (!isalnum((unsigned char) *c) && !strchr("_.-", *c))
                        return false;
        return true;
}

static int parse_admin_group(Parser *p, const char *key, const char *value) {
        if (value[0] == '\0') {
                /* Nobody but root and migd's own user may change anything. */
                free(p->config->admin_group);
                p->config->admin_group = NULL;
                return 0;
        }
        if (!valid_group_name(value))
                return parser_error(p, key, "\"%s\" is not a valid group name (allowed: letters, digits, \"_\", \".\", "
                                    "\"-\", at most 32, not starting with a digit or \"-\"; empty for none)", value);
        return replace_string(&p->config->admin_group, value);
}

static int parse_listen(Parser *p, const char *key, const char *value) {
        const char *colon = strrchr(value, ':');
        uint64_t port;
        size_t host_len;

        /* Empty: this host only sends (no incoming migrations). */
        if (value[0] == '\0')
                return replace_string(&p->config->peer_listen, "");

        if (!colon || colon == value)
                return parser_error(p, key, "\"%s\" is not HOST:PORT (allowed: e.g. 0.0.0.0:7480, [::]:7480)", value);
        host_len = colon - value;
        if (value[0] == '[' && value[host_len - 1] != ']')
                return parser_error(p, key, "\"%s\": an IPv6 address must be in brackets (allowed: e.g. [::]:7480)",
                                    value);
        if (parse_u64_range(colon + 1, 65535, &port) < 0 || port == 0)
                return parser_error(p, key, "\"%s\": bad port \"%s\" (allowed: 1…65535)", value, colon + 1);
        return replace_string(&p->config->peer_listen, value);
}

static int parse_peer_name(Parser *p, const char *key, const char *value) {
        if (value[0] == '\0' || strlen(value) > 253 || strpbrk(value, " \t/"))
                return parser_error(p, key, "\"%s\" is not a host name (allowed: a DNS name or an address)", value);
        return replace_string(&p->config->peer_name, value);
}

static int parse_certificate_directory(Parser *p, const char *key, const char *value) {
        return parse_directory(p, key, value, &p->config->pki_dir);
}

/* "msix", "msix:2,intx" or "none": what a guest driver had enabled, each index at most its vector count. */
static int parse_guest_interrupts(Parser *p, const char *key, const char *value) {
        _cleanup_strv_free_ char **words = NULL;
        uint32_t counts[_IRQ_INDEX_MAX] = {};
        int r;

        r = strv_split(value, ", ", &words);
        if (r < 0)
                return r;
        for (char **w = words; *w; w++) {
                char *colon = strchr(*w, ':');
                uint64_t n = UINT32_MAX;
                IrqIndex idx;

                if (streq(*w, "none"))
                        continue;
                if (colon)
                        *colon = '\0';
                idx = irq_index_from_string(*w);
                if (idx < 0 || (colon && (parse_u64_range(colon + 1, 2048, &n) < 0 || n == 0)))
                        return parser_error(p, key, "bad item \"%s%s%s\" (allowed: none, or a list of intx, msi, msix, "
                                            "each optionally :COUNT)", *w, colon ? ":" : "", colon ? colon + 1 : "");
                counts[idx] = (uint32_t) n;
        }
        memcpy(p->section == SECTION_VFIO_DEVICE ? p->config->vfio_devices[p->vfio_index].guest_irq_count
                                                 : parser_sim(p)->guest_irq_count,
               counts, sizeof(counts));
        return 0;
}

static int parse_insecure(Parser *p, const char *key, const char *value) {
        if (parse_bool(value, &p->config->peer_insecure) < 0)
                return parser_error(p, key, "\"%s\" is not a boolean (allowed: yes, no, true, false, 1, 0, on, off)",
                                    value);
        return 0;
}

static int parse_driver(Parser *p, const char *key, const char *value) {
        if (value[0] == '\0' || strpbrk(value, " \t/"))
                return parser_error(p, key, "\"%s\" is not a driver name (allowed: one word without \"/\")", value);
        return replace_string(&parser_sim(p)->driver, value);
}

static int parse_pci_id(Parser *p, const char *key, const char *value, uint16_t *field) {
        uint64_t v;

        if (parse_u64_range(value, UINT16_MAX, &v) < 0)
                return parser_error(p, key, "\"%s\" is not a PCI ID (allowed: 0x0000…0xffff)", value);
        *field = (uint16_t) v;
        return 0;
}

static int parse_vendor_id(Parser *p, const char *key, const char *value) {
        return parse_pci_id(p, key, value, &parser_sim(p)->vendor_id);
}

static int parse_device_id(Parser *p, const char *key, const char *value) {
        return parse_pci_id(p, key, value, &parser_sim(p)->device_id);
}

static int parse_mdev_type(Parser *p, const char *key, const char *value) {
        SimConfig *s = parser_sim(p);

        if (value[0] == '\0') {
                free(s->mdev_type);
                s->mdev_type = NULL;
                return 0;
        }
        if (strpbrk(value, " \t/"))
                return parser_error(p, key, "\"%s\" is not an mdev type (allowed: one word without \"/\", or empty)",
                                    value);
        return replace_string(&s->mdev_type, value);
}

static int parse_migration_flags(Parser *p, const char *key, const char *value) {
        uint32_t flags;

        if (mig_flags_from_string(value, &flags) < 0)
                return parser_error(p, key, "\"%s\" has an unknown flag (allowed: stop-copy, p2p, pre-copy)", value);
        /* VFIO_MIGRATION_STOP_COPY is mandatory in the v2 uAPI; without it a driver cannot migrate at all. */
        if (!(flags & MIG_FLAG_STOP_COPY))
                return parser_error(p, key, "\"%s\" lacks stop-copy, which every migratable device has "
                                    "(allowed: stop-copy, p2p, pre-copy)", value);
        parser_sim(p)->mig_flags = flags;
        return 0;
}

static int parse_uapi(Parser *p, const char *key, const char *value) {
        uint64_t v;

        if (parse_u64_range(value, 2, &v) < 0 || v < 1)
                return parser_error(p, key, "\"%s\" is not a migration uAPI version (allowed: 1, 2)", value);
        parser_sim(p)->uapi = (unsigned) v;
        return 0;
}

static int parse_state_size(Parser *p, const char *key, const char *value) {
        if (parse_size(value, &parser_sim(p)->state_size) < 0)
                return parser_error(p, key, "\"%s\" is not a size (allowed: bytes, or a number with K, M or G)", value);
        return 0;
}

static int parse_dirty_rate(Parser *p, const char *key, const char *value) {
        if (parse_size(value, &parser_sim(p)->dirty_rate) < 0)
                return parser_error(p, key, "\"%s\" is not a rate in bytes per second (allowed: bytes, or a number "
                                    "with K, M or G)", value);
        return 0;
}

static int parse_vectors(Parser *p, const char *key, const char *value, IrqIndex index, uint64_t max) {
        uint64_t v;

        if (parse_u64_range(value, max, &v) < 0)
                return parser_error(p, key, "\"%s\" is not a vector count (allowed: 0…%" PRIu64 ")", value, max);
        parser_sim(p)->irq_count[index] = (uint32_t) v;
        return 0;
}

static int parse_msix_vectors(Parser *p, const char *key, const char *value) {
        return parse_vectors(p, key, value, IRQ_INDEX_MSIX, 2048); /* the PCI MSI-X table limit */
}

static int parse_msi_vectors(Parser *p, const char *key, const char *value) {
        return parse_vectors(p, key, value, IRQ_INDEX_MSI, 32); /* the PCI MSI limit */
}

static int parse_intx(Parser *p, const char *key, const char *value) {
        bool b;

        if (parse_bool(value, &b) < 0)
                return parser_error(p, key, "\"%s\" is not a boolean (allowed: yes, no, true, false, 1, 0, on, off)",
                                    value);
        parser_sim(p)->irq_count[IRQ_INDEX_INTX] = b;
        return 0;
}

static int parse_quirks(Parser *p, const char *key, const char *value) {
        SimConfig *s = parser_sim(p);
        _cleanup_free_ char *bad = NULL;
        int r;

        /* The last Quirks= line wins, like every other key. */
        s->irq_in_stream = false;
        s->irq_while_stopped = false;
        s->n_fail_arcs = 0;
        s->n_slow_arcs = 0;
        r = sim_config_parse_quirks(s, value, &bad);
        if (r == -EINVAL)
                return parser_error(p, key, "bad quirk \"%s\" (allowed: irq-in-stream, irq-while-stopped, "
                                    "fail-arc=FROM->TO, slow-arc=FROM->TO:MSEC, at most %d arcs of each kind)",
                                    strna(bad), SIM_MAX_ARC_QUIRKS);
        return r;
}

static int parse_libvirt_uri(Parser *p, const char *key, const char *value) {
        if (value[0] == '\0' || strpbrk(value, " \t") || !strstr(value, ":/"))
                return parser_error(p, key, "\"%s\" is not a libvirt URI (allowed: e.g. qemu:///system)", value);
        return replace_string(&p->config->libvirt_uri, value);
}

static int parse_hook_fail_mode(Parser *p, const char *key, const char *value) {
        if (!streq(value, "closed") && !streq(value, "open"))
                return parser_error(p, key, "\"%s\" is not a fail mode (allowed: closed, open)", value);
        p->config->libvirt_hook_fail_open = streq(value, "open");
        return 0;
}

static int parse_hook_timeout(Parser *p, const char *key, const char *value) {
        uint64_t v;

        if (parse_u64_range(value, 300, &v) < 0 || v == 0)
                return parser_error(p, key, "\"%s\" is not a number of seconds (allowed: 1…300)", value);
        p->config->libvirt_hook_timeout_usec = v * 1000000ULL;
        return 0;
}

static int parse_libvirt_tls(Parser *p, const char *key, const char *value) {
        if (parse_bool(value, &p->config->libvirt_tls) < 0)
                return parser_error(p, key, "\"%s\" is not a boolean (allowed: yes, no, true, false, 1, 0, on, off)",
                                    value);
        return 0;
}

static int parse_libvirt_bandwidth(Parser *p, const char *key, const char *value) {
        if (parse_u64_range(value, 1048576, &p->config->libvirt_bandwidth_mib) < 0)
                return parser_error(p, key, "\"%s\" is not a bandwidth in MiB/s (allowed: 0…1048576, 0: unlimited)",
                                    value);
        return 0;
}

static LibvirtDeviceConfig *parser_libvirt(Parser *p) {
        assert(p->section == SECTION_LIBVIRT_DEVICE);
        return &p->config->libvirt_devices[p->libvirt_index];
}

static int parse_libvirt_domain(Parser *p, const char *key, const char *value) {
        if (value[0] == '\0' || strpbrk(value, "/ \t"))
                return parser_error(p, key, "\"%s\" is not a domain name (allowed: one word without \"/\")", value);
        return replace_string(&parser_libvirt(p)->domain, value);
}

static int parse_libvirt_hostdev(Parser *p, const char *key, const char *value) {
        LibvirtDeviceConfig *l = parser_libvirt(p);

        if (value[0] == '\0') {
                free(l->hostdev);
                l->hostdev = NULL;
                return 0;
        }
        if (strpbrk(value, "/ \t"))
                return parser_error(p, key, "\"%s\" is not a hostdev (allowed: an alias such as hostdev0, a PCI "
                                    "address such as 0000:3b:00.1, an mdev UUID, or empty)", value);
        return replace_string(&l->hostdev, value);
}

static int parse_irq_state_in_data(Parser *p, const char *key, const char *value) {
        if (parse_bool(value, &parser_libvirt(p)->irq_state_in_data) < 0)
                return parser_error(p, key, "\"%s\" is not a boolean (allowed: yes, no, true, false, 1, 0, on, off)",
                                    value);
        return 0;
}

static const KeyTable daemon_keys[] = {
        { "PolicyDirectory", parse_policy_directory },
        { "StateDirectory", parse_state_directory },
        { "Backends", parse_backends },
        { "AdminGroup", parse_admin_group },
        {},
};

static const KeyTable peer_keys[] = {
        { "Listen", parse_listen },
        { "Insecure", parse_insecure },
        { "CertificateDirectory", parse_certificate_directory },
        { "Name", parse_peer_name },
        {},
};

static const KeyTable sim_device_keys[] = {
        { "Driver", parse_driver },
        { "VendorId", parse_vendor_id },
        { "DeviceId", parse_device_id },
        { "MdevType", parse_mdev_type },
        { "MigrationFlags", parse_migration_flags },
        { "UAPI", parse_uapi },
        { "StateSize", parse_state_size },
        { "DirtyRate", parse_dirty_rate },
        { "MSIXVectors", parse_msix_vectors },
        { "MSIVectors", parse_msi_vectors },
        { "INTx", parse_intx },
        { "Quirks", parse_quirks },
        { "GuestInterrupts", parse_guest_interrupts },
        {},
};

static const KeyTable libvirt_keys[] = {
        { "URI", parse_libvirt_uri },
        { "HookFailMode", parse_hook_fail_mode },
        { "HookTimeoutSec", parse_hook_timeout },
        { "TLS", parse_libvirt_tls },
        { "Bandwidth", parse_libvirt_bandwidth },
        {},
};

static const KeyTable libvirt_device_keys[] = {
        { "Domain", parse_libvirt_domain },
        { "Hostdev", parse_libvirt_hostdev },
        { "InterruptStateInData", parse_irq_state_in_data },
        {},
};

static int parse_vfio_path(Parser *p, const char *key, const char *value) {
        if (value[0] == '\0' || strpbrk(value, " \t"))
                return parser_error(p, key, "\"%s\" is not a device (allowed: a sysfs path, a PCI address such as "
                                    "0000:3b:00.1, or an mdev UUID)", value);
        return replace_string(&p->config->vfio_devices[p->vfio_index].path, value);
}

static int parse_vfio_access(Parser *p, const char *key, const char *value) {
        VfioAccess a = vfio_access_from_string(value);

        if (a < 0 || a == VFIO_ACCESS_FD)
                return parser_error(p, key, "\"%s\" is not an access method (allowed: auto, group, cdev)", value);
        p->config->vfio_devices[p->vfio_index].access = a;
        return 0;
}

static const KeyTable vfio_device_keys[] = {
        { "Path", parse_vfio_path },
        { "Access", parse_vfio_access },
        { "GuestInterrupts", parse_guest_interrupts },
        {},
};

static const KeyTable *section_keys(Section s) {
        switch (s) {
        case SECTION_DAEMON:
                return daemon_keys;
        case SECTION_PEER:
                return peer_keys;
        case SECTION_SIM_DEVICE:
                return sim_device_keys;
        case SECTION_LIBVIRT:
                return libvirt_keys;
        case SECTION_LIBVIRT_DEVICE:
                return libvirt_device_keys;
        case SECTION_VFIO_DEVICE:
                return vfio_device_keys;
        default:
                return NULL;
        }
}

static char *allowed_keys(const KeyTable *t) {
        _cleanup_strv_free_ char **names = NULL;

        for (; t->key; t++)
                if (strv_extend(&names, t->key) < 0)
                        return NULL;
        return strv_join(names, ", ");
}

static bool valid_sim_name(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > SIM_NAME_MAX)
                return false;
        for (const char *c = s; *c; c++)
                if (!isalnum((unsigned char) *c) && !strchr("_.:-", *c))
                        return false;
        return true;
}

static int parser_add_sim_device(Parser *p, const char *name) {
        Config *c = p->config;
        SimConfig *n;
        int r;

        if (!valid_sim_name(name))
                return parser_error(p, NULL, "\"%s\" is not a device name (allowed: letters, digits, \"_\", \".\", "
                                    "\":\", \"-\", at most %d)", name, SIM_NAME_MAX);
        if (config_find_sim_device(c, name))
                return parser_error(p, NULL, "device \"%s\" is declared twice", name);

        n = reallocarray(c->sim_devices, c->n_sim_devices + 1, sizeof(SimConfig));
        if (!n)
                return -ENOMEM;
        c->sim_devices = n;
        r = sim_config_init(&c->sim_devices[c->n_sim_devices], name);
        if (r < 0)
                return r;
        p->sim_index = c->n_sim_devices++;
        return 0;
}

static int parser_add_libvirt_device(Parser *p, const char *name) {
        Config *c = p->config;
        LibvirtDeviceConfig *n;

        if (!valid_sim_name(name))
                return parser_error(p, NULL, "\"%s\" is not a device name (allowed: letters, digits, \"_\", \".\", "
                                    "\":\", \"-\", at most %d)", name, SIM_NAME_MAX);
        if (config_find_libvirt_device(c, name) || config_find_sim_device(c, name))
                return parser_error(p, NULL, "device \"%s\" is declared twice", name);
        n = reallocarray(c->libvirt_devices, c->n_libvirt_devices + 1, sizeof(LibvirtDeviceConfig));
        if (!n)
                return -ENOMEM;
        c->libvirt_devices = n;
        /* Unknown devices are assumed to carry interrupt state in their data: the safe assumption. */
        n[c->n_libvirt_devices] = (LibvirtDeviceConfig) { .name = strdup(name), .irq_state_in_data = true };
        if (!n[c->n_libvirt_devices].name)
                return -ENOMEM;
        p->libvirt_index = c->n_libvirt_devices++;
        return 0;
}

static int parser_add_vfio_device(Parser *p, const char *name) {
        Config *c = p->config;
        VfioConfig *n;
        int r;

        if (!valid_sim_name(name))
                return parser_error(p, NULL, "\"%s\" is not a device name (allowed: letters, digits, \"_\", \".\", "
                                    "\":\", \"-\", at most %d)", name, SIM_NAME_MAX);
        if (config_find_vfio_device(c, name) || config_find_sim_device(c, name) || config_find_libvirt_device(c, name))
                return parser_error(p, NULL, "device \"%s\" is declared twice", name);
        n = reallocarray(c->vfio_devices, c->n_vfio_devices + 1, sizeof(VfioConfig));
        if (!n)
                return -ENOMEM;
        c->vfio_devices = n;
        r = vfio_config_init(&n[c->n_vfio_devices], name);
        if (r < 0)
                return r;
        p->vfio_index = c->n_vfio_devices++;
        return 0;
}

static int parser_section(Parser *p, char *line) {
        size_t n = strlen(line);
        char *label;

        if (line[n - 1] != ']')
                return parser_error(p, NULL, "section header \"%s\" lacks its closing \"]\"", line);
        line[n - 1] = '\0';
        label = line + 1;
        free(p->section_label);
        p->section_label = strdup(label);
        if (!p->section_label)
                return -ENOMEM;

        if (streq(label, "Daemon"))
                p->section = SECTION_DAEMON;
        else if (streq(label, "Peer"))
                p->section = SECTION_PEER;
        else if (strncmp(label, "SimDevice", 9) == 0 && (label[9] == ' ' || label[9] == '\0')) {
                const char *name = label + 9;

                name += strspn(name, " \t");
                if (name[0] == '\0')
                        return parser_error(p, NULL, "a SimDevice section needs a name (allowed: [SimDevice NAME])");
                p->section = SECTION_SIM_DEVICE;
                return parser_add_sim_device(p, name);
        } else if (streq(label, "Libvirt"))
                p->section = SECTION_LIBVIRT;
        else if (strncmp(label, "LibvirtDevice", 13) == 0 && (label[13] == ' ' || label[13] == '\0')) {
                const char *name = label + 13 + strspn(label + 13, " \t");

                if (name[0] == '\0')
                        return parser_error(p, NULL, "a LibvirtDevice section needs a name (allowed: [LibvirtDevice NAME])");
                p->section = SECTION_LIBVIRT_DEVICE;
                return parser_add_libvirt_device(p, name);
        } else if (strncmp(label, "VfioDevice", 10) == 0 && (label[10] == ' ' || label[10] == '\0')) {
                const char *name = label + 10 + strspn(label + 10, " \t");

                if (name[0] == '\0')
                        return parser_error(p, NULL, "a VfioDevice section needs a name (allowed: [VfioDevice NAME])");
                p->section = SECTION_VFIO_DEVICE;
                return parser_add_vfio_device(p, name);
        } else {
                p->section = SECTION_NONE;
                return parser_error(p, NULL, "unknown section (allowed: Daemon, Peer, Libvirt, SimDevice NAME, "
                                    "VfioDevice NAME, LibvirtDevice NAME)");
        }
        return 0;
}

static char *strip(char *s) {
        char *e;

        s += strspn(s, " \t\r\n");
        e = s + strlen(s);
        while (e > s && strchr(" \t\r\n", e[-1]))
                e--;
        *e = '\0';
        return s;
}

/* "#" after whitespace starts a comment, so that annotated examples work; a value cannot contain " #". */
static void strip_trailing_comment(char *s) {
        for (char *c = s; *c; c++)
                if (*c == '#' && c > s && (c[-1] == ' ' || c[-1] == '\t')) {
                        *c = '\0';
                        return;
                }
}

static int parser_assignment(Parser *p, char *line) {
        const KeyTable *t;
        char *eq, *key, *value;

        eq = strchr(line, '=');
        if (!eq)
                return parser_error(p, NULL, "\"%s\" is neither a [Section] nor a Key=Value line", line);
        *eq = '\0';
        key = strip(line);
        value = eq + 1;
        strip_trailing_comment(value);
        value = strip(value);
        if (key[0] == '\0')
                return parser_error(p, NULL, "assignment without a key");

        t = section_keys(p->section);
        if (!t)
                return parser_error(p, key, "assignment outside of a section (allowed: after [Daemon], [Peer] or "
                                    "[SimDevice NAME])");
        for (; t->key; t++)
                if (streq(t->key, key))
                        return t->parse(p, key, value);

        _cleanup_free_ char *allowed = allowed_keys(section_keys(p->section));
        return parser_error(p, key, "unknown key (allowed: %s)", strna(allowed));
}

static int parser_line(Parser *p, char *raw) {
        char *line = strip(raw);

        if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
                return 0;
        if (line[0] == '[')
                return parser_section(p, line);
        return parser_assignment(p, line);
}

static int parser_set_dir(Parser *p, const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        char *slash, *dir;

        if (!copy)
                return -ENOMEM;
        slash = strrchr(copy, '/');
        if (slash == copy)
                copy[1] = '\0';
        else if (slash)
                *slash = '\0';
        else
                strcpy(copy, ".");
        /* Absolute, so that Describe() and the logs show where things really are. */
        dir = realpath(copy, NULL);
        if (!dir)
                return -errno;
        p->dir = dir;
        return 0;
}

static int config_parse_file(FILE *f, Parser *p) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        int r;

        while (getline(&buf, &size, f) >= 0) {
                p->line++;
                r = parser_line(p, buf);
                if (r < 0)
                        return r;
        }
        if (ferror(f))
                return -EIO;
        return 0;
}

int config_new_default(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        assert(ret);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->policy_dir = strdup(MIGD_POLICY_DIR);
        c->state_dir = strdup(MIGD_STATE_DIR);
        c->admin_group = strdup(DEFAULT_ADMIN_GROUP);
        c->peer_listen = strdup(DEFAULT_PEER_LISTEN);
        c->pki_dir = strdup(MIGD_PKI_DIR);
        c->libvirt_uri = strdup("qemu:///system");
        c->libvirt_hook_timeout_usec = 10 * 1000000ULL;
        if (!c->policy_dir || !c->state_dir || !c->admin_group || !c->peer_listen || !c->pki_dir || !c->libvirt_uri)
                return -ENOMEM;
        r = strv_split("sim vfio", " ", &c->backends);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

/* A section cannot know it is complete until the file ends. */
static int check_libvirt_devices(Parser *p) {
        for (size_t i = 0; i < p->config->n_libvirt_devices; i++)
                if (!p->config->libvirt_devices[i].domain) {
                        free(p->error);
                        if (asprintf(&p->error, "%s: [LibvirtDevice %s] Domain: is required (allowed: the libvirt "
                                     "domain's name)", p->file, p->config->libvirt_devices[i].name) < 0)
                                p->error = NULL;
                        return -EINVAL;
                }
        return 0;
}

static int config_read(const char *path, FILE *f, Config *c, char **ret_error) {
        Parser p = { .file = path, .config = c };
        int r;

        r = parser_set_dir(&p, path);
        if (r >= 0)
                r = config_parse_file(f, &p);
        if (r >= 0)
                r = check_libvirt_devices(&p);
        for (size_t i = 0; r >= 0 && i < c->n_vfio_devices; i++)
                if (!c->vfio_devices[i].path) {
                        free(p.error);
                        if (asprintf(&p.error, "%s: [VfioDevice %s] Path: is required (allowed: a sysfs path, a PCI "
                                     "address or an mdev UUID)", path, c->vfio_devices[i].name) < 0)
                                p.error = NULL;
                        r = -EINVAL;
                }
        if (r == -EINVAL && ret_error) {
                *ret_error = p.error;
                p.error = NULL;
        }
        parser_done(&p);
        return r;
}

int config_load(const char *path, bool missing_ok, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = NULL;
        FILE *f;
        int r;

        assert(path);
        assert(ret);

        r = config_new_default(&c);
        if (r < 0)
                return r;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && missing_ok) {
                        *ret = TAKE_PTR(c);
                        return 0;
                }
                return -errno;
        }
        r = config_read(path, f, c, ret_error);
        fclose(f);
        if (r < 0)
                return r;

        c->path = strdup(path);
        if (!c->path)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->path);
        free(c->policy_dir);
        free(c->state_dir);
        strv_free(c->backends);
        free(c->admin_group);
        free(c->peer_listen);
        free(c->pki_dir);
        free(c->peer_name);
        for (size_t i = 0; i < c->n_sim_devices; i++)
                sim_config_done(&c->sim_devices[i]);
        free(c->sim_devices);
        for (size_t i = 0; i < c->n_libvirt_devices; i++) {
                free(c->libvirt_devices[i].name);
                free(c->libvirt_devices[i].domain);
                free(c->libvirt_devices[i].hostdev);
        }
        free(c->libvirt_devices);
        for (size_t i = 0; i < c->n_vfio_devices; i++)
                vfio_config_done(&c->vfio_devices[i]);
        free(c->vfio_devices);
        free(c->libvirt_uri);
        free(c);
        return NULL;
}

void config_freep(Config **c) {
        config_free(*c);
}

bool config_has_backend(const Config *c, const char *name) {
        assert(c);
        return strv_contains(c->backends, name);
}

const SimConfig *config_find_sim_device(const Config *c, const char *name) {
        assert(c);
        for (size_t i = 0; i < c->n_sim_devices; i++)
                if (streq(c->sim_devices[i].name, name))
                        return &c->sim_devices[i];
        return NULL;
}

const LibvirtDeviceConfig *config_find_libvirt_device(const Config *c, const char *name) {
        assert(c);
        for (size_t i = 0; i < c->n_libvirt_devices; i++)
                if (streq(c->libvirt_devices[i].name, name))
                        return &c->libvirt_devices[i];
        return NULL;
}

const VfioConfig *config_find_vfio_device(const Config *c, const char *name) {
        assert(c);
        for (size_t i = 0; i < c->n_vfio_devices; i++)
                if (streq(c->vfio_devices[i].name, name))
                        return &c->vfio_devices[i];
        return NULL;
}

bool libvirt_device_config_equal(const LibvirtDeviceConfig *a, const LibvirtDeviceConfig *b) {
        assert(a);
        assert(b);
        return streq_ptr(a->name, b->name) && streq_ptr(a->domain, b->domain) && streq_ptr(a->hostdev, b->hostdev) &&
               a->irq_state_in_data == b->irq_state_in_data;
}

static bool arc_quirks_equal(const SimArcQuirk *a, unsigned na, const SimArcQuirk *b, unsigned nb) {
        if (na != nb)
                return false;
        for (unsigned i = 0; i < na; i++)
                if (a[i].from != b[i].from || a[i].to != b[i].to || a[i].delay_ms != b[i].delay_ms)
                        return false;
        return true;
}

bool sim_config_equal(const SimConfig *a, const SimConfig *b) {
        assert(a);
        assert(b);

        return streq_ptr(a->name, b->name) && streq_ptr(a->driver, b->driver) && a->vendor_id == b->vendor_id &&
               a->device_id == b->device_id && streq_ptr(a->mdev_type, b->mdev_type) &&
               a->mig_flags == b->mig_flags && a->uapi == b->uapi && a->state_size == b->state_size &&
               a->dirty_rate == b->dirty_rate &&
               memcmp(a->irq_count, b->irq_count, sizeof(a->irq_count)) == 0 &&
               memcmp(a->guest_irq_count, b->guest_irq_count, sizeof(a->guest_irq_count)) == 0 &&
               a->irq_in_stream == b->irq_in_stream && a->irq_while_stopped == b->irq_while_stopped &&
               arc_quirks_equal(a->fail_arcs, a->n_fail_arcs, b->fail_arcs, b->n_fail_arcs) &&
               arc_quirks_equal(a->slow_arcs, a->n_slow_arcs, b->slow_arcs, b->n_slow_arcs);
}
