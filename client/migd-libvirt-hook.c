/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migd-libvirt-hook: libvirt's qemu hook; checks incoming migrations' VFIO hostdevs with migd, records lifecycles. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <systemd/sd-bus.h>

#include "../daemon/bus-errors.h"
#include "config.h"
#include "daemon-config.h"
#include "util.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define MIGD_NS "https://vfiomig.org/schemas/migd/1.0"
#define INPUT_MAX (64u << 20)
#define MANAGER_INTERFACE "org.vfiomig.Migd1.Manager"

typedef struct Args {
        const char *bus_address;
        const char *config;
        const char *object, *operation, *sub_operation, *extra;
} Args;

typedef struct Input {
        char *data;
        size_t size;
} Input;

static int read_all(FILE *f, Input *ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, used = 0, n;

        do {
                if (used + 65536 > size) {
                        char *p;

                        if (size >= INPUT_MAX)
                                return -EFBIG;
                        p = realloc(buf, size + 65536 + 1);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        size += 65536;
                }
                n = fread(buf + used, 1, size - used, f);
                used += n;
        } while (n > 0);
        if (ferror(f))
                return -EIO;
        buf[used] = '\0';
        ret->data = TAKE_PTR(buf);
        ret->size = used;
        return 0;
}

static void on_alarm(int sig) {
        static const char msg[] = "migd-libvirt-hook: migd did not answer in time; refusing\n";

        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        _exit(1);
}

/* ---- the domain XML ---- */

static xmlNode *child(xmlNode *parent, const char *name) {
        for (xmlNode *c = parent ? parent->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && xmlStrcmp(c->name, (const xmlChar *) name) == 0 &&
                    (!c->ns || !c->ns->prefix))
                        return c;
        return NULL;
}

static char *attr(xmlNode *n, const char *name) {
        return n ? (char *) xmlGetProp(n, (const xmlChar *) name) : NULL;
}

static void xfreep(char **p) {
        if (*p)
                xmlFree(*p);
}
#define _cleanup_xfree_ _cleanup_(xfreep)

/* "0x0000", "0x3b", "0x00", "0x1" → "0000:3b:00.1", the name sysfs and migd use. */
static int pci_address(xmlNode *address, char **ret) {
        _cleanup_xfree_ char *domain = attr(address, "domain"), *bus = attr(address, "bus"), *slot = attr(address, "slot"),
                             *function = attr(address, "function");

        if (!bus || !slot || !function)
                return -EINVAL;
        if (asprintf(ret, "%04lx:%02lx:%02lx.%lx", domain ? strtoul(domain, NULL, 0) : 0UL, strtoul(bus, NULL, 0),
                     strtoul(slot, NULL, 0), strtoul(function, NULL, 0)) < 0)
                return -ENOMEM;
        return 0;
}

/* One VFIO hostdev as migd's CheckLibvirtHostdevs() takes it, or NULL when the hostdev is no vfio-pci device
 * (a USB or SCSI hostdev, a kvm-assigned one, vfio-ccw/vfio-ap mdevs: QEMU migrates none of those). */
static struct json_object *hostdev_to_json(xmlNode *h) {
        _cleanup_xfree_ char *mode = attr(h, "mode"), *type = attr(h, "type"), *model = attr(h, "model"),
                             *alias = attr(child(h, "alias"), "name"), *driver = attr(child(h, "driver"), "name");
        _cleanup_json_ struct json_object *o = NULL;
        xmlNode *address = child(child(h, "source"), "address");
        _cleanup_free_ char *pci = NULL;

        if (!mode || !streq(mode, "subsystem") || !type)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        if (alias)
                json_object_object_add(o, "alias", json_object_new_string(alias));
        if (streq(type, "pci") && (!driver || streq(driver, "vfio")) && pci_address(address, &pci) >= 0) {
                json_object_object_add(o, "type", json_object_new_string("pci"));
                json_object_object_add(o, "address", json_object_new_string(pci));
        } else if (streq(type, "mdev") && model && streq(model, "vfio-pci")) {
                _cleanup_xfree_ char *uuid = attr(address, "uuid");

                if (!uuid)
                        return NULL;
                json_object_object_add(o, "type", json_object_new_string("mdev"));
                json_object_object_add(o, "uuid", json_object_new_string(uuid));
        } else
                return NULL;
        return TAKE_PTR(o);
}

static struct json_object *domain_hostdevs(xmlNode *root) {
        struct json_object *a = json_object_new_array();

        for (xmlNode *c = child(root, "devices") ? child(root, "devices")->children : NULL; a && c; c = c->next) {
                struct json_object *h;

                if (c->type != XML_ELEMENT_NODE || xmlStrcmp(c->name, (const xmlChar *) "hostdev") != 0)
                        continue;
                h = hostdev_to_json(c);
                if (h)
                        json_object_array_add(a, h);
        }
        return a;
}

static xmlNode *find_or_add(xmlNode *parent, xmlNs *ns, const char *name, const char *key, const char *value) {
        for (xmlNode *c = parent->children; c; c = c->next) {
                _cleanup_xfree_ char *v = NULL;

                if (c->type != XML_ELEMENT_NODE || c->ns != ns || xmlStrcmp(c->name, (const xmlChar *) name) != 0)
                        continue;
                if (!key)
                        return c;
                v = attr(c, key);
                if (v && streq(v, value))
                        return c;
        }
        {
                xmlNode *n = xmlNewChild(parent, ns, (const xmlChar *) name, NULL);

                if (n && key)
                        xmlSetProp(n, (const xmlChar *) key, (const xmlChar *) value);
                return n;
        }
}

/* <qemu:override><qemu:device alias=…><qemu:frontend><qemu:property name='x-enable-migration' type='bool'
 * value='true'/>: QEMU 7.2's vfio-pci registers its migration handlers only with this property, so without it
 * the destination cannot load the device state the source sends. */
static int enable_vfio_migration(xmlNode *root, const char *alias) {
        xmlNs *ns = xmlSearchNsByHref(root->doc, root, (const xmlChar *) QEMU_NS);
        xmlNode *override, *device, *frontend, *property;

        if (!ns)
                ns = xmlNewNs(root, (const xmlChar *) QEMU_NS, (const xmlChar *) "qemu");
        if (!ns)
                return -ENOMEM;
        override = find_or_add(root, ns, "override", NULL, NULL);
        device = override ? find_or_add(override, ns, "device", "alias", alias) : NULL;
        frontend = device ? find_or_add(device, ns, "frontend", NULL, NULL) : NULL;
        property = frontend ? find_or_add(frontend, ns, "property", "name", "x-enable-migration") : NULL;
        if (!property)
                return -ENOMEM;
        xmlSetProp(property, (const xmlChar *) "type", (const xmlChar *) "bool");
        xmlSetProp(property, (const xmlChar *) "value", (const xmlChar *) "true");
        return 0;
}

static void set_prop(xmlNode *n, const char *key, struct json_object *o, const char *field) {
        const char *v = json_object_get_string(json_object_object_get(o, field));

        if (v && json_object_get_type(json_object_object_get(o, field)) == json_type_string)
                xmlSetProp(n, (const xmlChar *) key, (const xmlChar *) v);
}

/* <metadata><migd:migration id=…><migd:device …/></migd:migration>: what migd checked, readable later with
 * virsh dumpxml or virsh metadata on the destination. */
static int record_metadata(xmlNode *root, struct json_object *verdict) {
        struct json_object *devices = json_object_object_get(verdict, "devices");
        xmlNode *metadata = find_or_add(root, NULL, "metadata", NULL, NULL), *old, *m;
        xmlNs *ns;

        if (!metadata)
                return -ENOMEM;
        for (old = metadata->children; old; old = old->next)
                if (old->ns && old->ns->href && xmlStrcmp(old->ns->href, (const xmlChar *) MIGD_NS) == 0)
                        break;
        if (old) {
                xmlUnlinkNode(old);
                xmlFreeNode(old);
        }
        m = xmlNewChild(metadata, NULL, (const xmlChar *) "migration", NULL);
        if (!m)
                return -ENOMEM;
        ns = xmlNewNs(m, (const xmlChar *) MIGD_NS, (const xmlChar *) "migd");
        xmlSetNs(m, ns);
        set_prop(m, "id", verdict, "migration");
        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                struct json_object *o = json_object_array_get_idx(devices, i);
                xmlNode *d = xmlNewChild(m, ns, (const xmlChar *) "device", NULL);

                if (!d)
                        return -ENOMEM;
                set_prop(d, "alias", o, "alias");
                set_prop(d, "hostdev", o, "hostdev");
                set_prop(d, "device", o, "device");
                set_prop(d, "policy", o, "policy");
                set_prop(d, "irq-restore", o, "irq_restore");
        }
        return 0;
}

static int rewrite(xmlDoc *doc, struct json_object *verdict) {
        struct json_object *devices = json_object_object_get(verdict, "devices");
        xmlNode *root = xmlDocGetRootElement(doc);
        int r;

        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                const char *alias = json_object_get_string(json_object_object_get(json_object_array_get_idx(devices, i),
                                                                                  "alias"));
                if (!alias)
                        continue;
                r = enable_vfio_migration(root, alias);
                if (r < 0)
                        return r;
        }
        return record_metadata(root, verdict);
}

static int print_root(xmlDoc *doc) {
        xmlBuffer *buf = xmlBufferCreate();
        int r = 0;

        if (!buf)
                return -ENOMEM;
        /* The root element alone: no XML declaration, as libvirt hands the XML over. */
        if (xmlNodeDump(buf, doc, xmlDocGetRootElement(doc), 0, 0) < 0)
                r = -ENOMEM;
        else if (fwrite(xmlBufferContent(buf), 1, (size_t) xmlBufferLength(buf), stdout) != (size_t) xmlBufferLength(buf) ||
                 fputc('\n', stdout) == EOF || fflush(stdout) == EOF)
                r = -EIO;
        xmlBufferFree(buf);
        return r;
}

static int print_unchanged(const Input *in) {
        if (fwrite(in->data, 1, in->size, stdout) != in->size || fflush(stdout) == EOF)
                return -EIO;
        return 0;
}

/* ---- migd ---- */

static int bus_open(const Args *args, const Config *c, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (args->bus_address) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, args->bus_address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        } else
                r = sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        /* libvirt waits for the hook with the domain's job held: every call is bounded. */
        r = sd_bus_set_method_call_timeout(bus, c->libvirt_hook_timeout_usec);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

/* Errors that mean "migd could not be asked" (as opposed to "migd said no"): the fail mode decides. */
static bool unreachable(const sd_bus_error *e, int r) {
        static const char *const names[] = { SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                             SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT, SD_BUS_ERROR_DISCONNECTED,
                                             SD_BUS_ERROR_UNKNOWN_METHOD, MIGD_ERROR_NOT_SUPPORTED, NULL };

        if (!sd_bus_error_is_set(e))
                return true;
        for (const char *const *n = names; *n; n++)
                if (sd_bus_error_has_name(e, *n))
                        return true;
        return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -ENOENT;
}

static int ask_migd(const Args *args, const Config *c, const char *domain, struct json_object *hostdevs,
                    struct json_object **ret, char **ret_why, bool *ret_unreachable) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *text;
        int r;

        r = bus_open(args, c, &bus);
        if (r >= 0)
                r = sd_bus_call_method(bus, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "CheckLibvirtHostdevs",
                                       &error, &reply, "ss", domain,
                                       json_object_to_json_string_ext(hostdevs, JSON_C_TO_STRING_PLAIN));
        if (r >= 0)
                r = sd_bus_message_read(reply, "s", &text);
        if (r < 0) {
                *ret_unreachable = unreachable(&error, r);
                if (asprintf(ret_why, "%s", error.message ?: strerror(-r)) < 0)
                        *ret_why = NULL;
                return r;
        }
        *ret = json_tokener_parse(text);
        if (!*ret) {
                *ret_unreachable = false;
                *ret_why = strdup("migd's answer is not JSON");
                return -EBADMSG;
        }
        return 0;
}

static int on_migrate(const Args *args, const Config *c, const Input *in) {
        _cleanup_json_ struct json_object *hostdevs = NULL, *verdict = NULL;
        _cleanup_free_ char *why = NULL;
        _cleanup_xfree_ char *name = NULL;
        bool down = false;
        xmlDoc *doc;
        xmlNode *root;
        int r;

        doc = xmlReadMemory(in->data, (int) in->size, "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || xmlStrcmp(root->name, (const xmlChar *) "domain") != 0) {
                fprintf(stderr, "migd-libvirt-hook: the domain XML on stdin cannot be parsed; refusing\n");
                xmlFreeDoc(doc);
                return 1;
        }
        name = child(root, "name") ? (char *) xmlNodeGetContent(child(root, "name")) : NULL;
        hostdevs = domain_hostdevs(root);
        r = hostdevs ? ask_migd(args, c, name ?: args->object, hostdevs, &verdict, &why, &down) : -ENOMEM;
        if (r < 0 && down && (c->libvirt_hook_fail_open || json_object_array_length(hostdevs) == 0)) {
                /* Nothing migd guards, or the administrator chose availability over the check. */
                fprintf(stderr, "migd-libvirt-hook: migd cannot be asked (%s); letting the migration of %s pass "
                        "unchecked\n", strna(why), strna(name));
                r = print_unchanged(in) < 0;
        } else if (r < 0) {
                fprintf(stderr, "migd-libvirt-hook: migd cannot check the VFIO devices of domain %s (%s)%s; refusing "
                        "the migration\n", strna(name), strna(why),
                        down ? " and HookFailMode=closed" : "");
                r = 1;
        } else if (!json_object_get_boolean(json_object_object_get(verdict, "relevant")))
                r = print_unchanged(in) < 0;
        else if (!json_object_get_boolean(json_object_object_get(verdict, "ok"))) {
                fprintf(stderr, "migd refuses the incoming migration of domain %s: %s\n", strna(name),
                        strna(json_object_get_string(json_object_object_get(verdict, "message"))));
                r = 1;
        } else if (rewrite(doc, verdict) < 0 || print_root(doc) < 0) {
                fprintf(stderr, "migd-libvirt-hook: cannot write the domain XML; refusing\n");
                r = 1;
        } else
                r = 0;
        xmlFreeDoc(doc);
        return r;
}

/* Lifecycle events are recorded on a best-effort basis: a domain must start and stop whether or not migd runs. */
static void record(const Args *args, const Config *c) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = bus_open(args, c, &bus);
        if (r >= 0)
                r = sd_bus_call_method(bus, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "RecordLibvirtEvent",
                                       &error, NULL, "ssss", args->object, args->operation, args->sub_operation,
                                       args->extra);
        if (r < 0)
                fprintf(stderr, "migd-libvirt-hook: cannot record %s %s of %s in migd: %s\n", args->operation,
                        args->sub_operation, args->object, error.message ?: strerror(-r));
}

static int parse_args(int argc, char *argv[], Args *ret) {
        static const struct option options[] = {
                { "bus", required_argument, NULL, 'b' },
                { "config", required_argument, NULL, 'c' },
                {},
        };
        Args a = {};
        int c;

        while ((c = getopt_long(argc, argv, "+", options, NULL)) >= 0)
                switch (c) {
                case 'b':
                        a.bus_address = optarg;
                        break;
                case 'c':
                        a.config = optarg;
                        break;
                default:
                        return -EINVAL;
                }
        if (argc - optind != 4)
                return -EINVAL;
        a.object = argv[optind];
        a.operation = argv[optind + 1];
        a.sub_operation = argv[optind + 2];
        a.extra = argv[optind + 3];
        *ret = a;
        return 0;
}

int main(int argc, char *argv[]) {
        static const char *const recorded[] = { "prepare", "start", "started", "stopped", "release", NULL };
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *config_error = NULL;
        _cleanup_free_ char *data = NULL;
        Input in = {};
        Args args;
        int r;

        if (parse_args(argc, argv, &args) < 0) {
                fprintf(stderr, "usage: migd-libvirt-hook [--bus ADDRESS] [--config FILE] OBJECT OPERATION "
                        "SUB-OPERATION EXTRA < DOMAIN-XML\n(installed in /etc/libvirt/hooks/qemu.d/, run by libvirt)\n");
                return 2;
        }
        r = read_all(stdin, &in);
        data = in.data;
        if (r < 0) {
                fprintf(stderr, "migd-libvirt-hook: cannot read the domain XML: %s\n", strerror(-r));
                return 1;
        }
        r = config_load(args.config ?: MIGD_CONF_FILE, !args.config, &c, &config_error);
        if (r < 0) {
                fprintf(stderr, "migd-libvirt-hook: %s\n", config_error ?: strerror(-r));
                /* Without its configuration the hook knows no fail mode: it lets lifecycles pass, not migrations. */
                return streq(args.operation, "migrate") ? 1 : print_unchanged(&in) < 0;
        }
        /* A watchdog beside the bus timeout: libvirt must never wait on this hook without bound. */
        signal(SIGALRM, on_alarm);
        alarm((unsigned) (c->libvirt_hook_timeout_usec / 1000000u) + 5);

        if (streq(args.operation, "migrate") && streq(args.sub_operation, "begin"))
                return on_migrate(&args, c, &in);
        if (strv_contains((char **) recorded, args.operation))
                record(&args, c);
        return print_unchanged(&in) < 0;
}
