/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vtables' introspection must equal docs/org.vfiomig.Migd1.xml, member by member. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>

#include "bus-device.h"
#include "bus-manager.h"
#include "bus-migration.h"
#include "vfio-manager.h"
#include "config.h"

#define IFACE_PREFIX "org.vfiomig.Migd1."

static const char *const interfaces[] = {
        "org.vfiomig.Migd1.Manager",
        "org.vfiomig.Migd1.Device",
        "org.vfiomig.Migd1.SimDevice",
        "org.vfiomig.Migd1.VfioDevice",
        "org.vfiomig.Migd1.Migration",
};

/* ---- a private bus pair, the server side serving the vtables from its own thread ---- */

typedef struct Served {
        sd_bus *server;
        sd_bus *client;
        pthread_t thread;
        volatile gboolean stop;
} Served;

static void *serve(void *userdata) {
        Served *s = userdata;

        while (!s->stop) {
                int r = sd_bus_process(s->server, NULL);

                if (r < 0)
                        break;
                if (r == 0)
                        (void) sd_bus_wait(s->server, 20 * 1000);
        }
        return NULL;
}

static void served_start(Served *s) {
        sd_id128_t id;
        int fds[2];

        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
        g_assert_cmpint(sd_id128_randomize(&id), ==, 0);

        g_assert_cmpint(sd_bus_new(&s->server), ==, 0);
        g_assert_cmpint(sd_bus_set_fd(s->server, fds[0], fds[0]), ==, 0);
        g_assert_cmpint(sd_bus_set_server(s->server, 1, id), ==, 0);
        /* The introspection never reads a property, so the objects need no real Manager, Device or Migration. */
        g_assert_cmpint(sd_bus_add_object_vtable(s->server, NULL, MIGD_OBJECT_ROOT, MIGD_MANAGER_INTERFACE,
                                                 bus_manager_vtable, NULL), >=, 0);
        g_assert_cmpint(sd_bus_add_object_vtable(s->server, NULL, MIGD_DEVICE_PREFIX "/x", MIGD_DEVICE_INTERFACE,
                                                 bus_device_vtable, NULL), >=, 0);
        g_assert_cmpint(sd_bus_add_object_vtable(s->server, NULL, MIGD_DEVICE_PREFIX "/x", MIGD_SIM_DEVICE_INTERFACE,
                                                 bus_sim_device_vtable, NULL), >=, 0);
        g_assert_cmpint(sd_bus_add_object_vtable(s->server, NULL, MIGD_DEVICE_PREFIX "/x", MIGD_VFIO_DEVICE_INTERFACE,
                                                 bus_vfio_device_vtable, NULL), >=, 0);
        g_assert_cmpint(sd_bus_add_object_vtable(s->server, NULL, MIGD_MIGRATION_PREFIX "/x",
                                                 MIGD_MIGRATION_INTERFACE, bus_migration_vtable, NULL), >=, 0);
        g_assert_cmpint(sd_bus_start(s->server), >=, 0);

        g_assert_cmpint(sd_bus_new(&s->client), ==, 0);
        g_assert_cmpint(sd_bus_set_fd(s->client, fds[1], fds[1]), ==, 0);
        g_assert_cmpint(sd_bus_start(s->client), >=, 0);

        g_assert_cmpint(pthread_create(&s->thread, NULL, serve, s), ==, 0);
}

static void served_stop(Served *s) {
        s->stop = TRUE;
        g_assert_cmpint(pthread_join(s->thread, NULL), ==, 0);
        sd_bus_flush_close_unref(s->client);
        sd_bus_flush_close_unref(s->server);
}

static char *introspect(Served *s, const char *path) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *xml;
        char *copy;
        int r;

        r = sd_bus_call_method(s->client, NULL, path, "org.freedesktop.DBus.Introspectable", "Introspect", &error,
                               &reply, NULL);
        if (r < 0)
                g_error("Introspect %s: %s", path, error.message ?: g_strerror(-r));
        g_assert_cmpint(sd_bus_message_read(reply, "s", &xml), >, 0);
        copy = g_strdup(xml);
        sd_bus_message_unref(reply);
        sd_bus_error_free(&error);
        return copy;
}

/* The <interface name="org.vfiomig.Migd1.…"> blocks of one introspection document, as text. */
static void append_migd_interfaces(GString *out, const char *xml) {
        const char *p = xml;

        while ((p = strstr(p, "<interface name=\"" IFACE_PREFIX))) {
                const char *end = strstr(p, "</interface>");

                g_assert_nonnull(end);
                end += strlen("</interface>");
                g_string_append(out, " ");
                g_string_append_len(out, p, end - p);
                g_string_append(out, "\n");
                p = end;
        }
}

static char *generated_xml(void) {
        static const char *const paths[] = { MIGD_OBJECT_ROOT, MIGD_DEVICE_PREFIX "/x", MIGD_MIGRATION_PREFIX "/x" };
        GString *out = g_string_new(
                "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n"
                "\"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n"
                "<!-- SPDX-License-Identifier: LGPL-2.1-or-later -->\n"
                "<!-- migd's D-Bus API (docs/dbus-api.md); tests/unit/test-bus-xml.c checks it against the code. -->\n"
                "<node>\n");
        Served s = {};

        served_start(&s);
        for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
                g_autofree char *xml = introspect(&s, paths[i]);

                append_migd_interfaces(out, xml);
        }
        served_stop(&s);
        g_string_append(out, "</node>\n");
        return g_string_free(out, FALSE);
}

/* ---- flattening a document into one line per fact, so two documents compare member by member ---- */

typedef struct Flattener {
        GPtrArray *lines;
        char *interface;  /* NULL outside an org.vfiomig.Migd1.* interface */
        char *member;     /* "method X", "signal X", "property X" */
        unsigned arg_index;
} Flattener;

static const char *attr(const char **names, const char **values, const char *name) {
        for (; *names; names++, values++)
                if (strcmp(*names, name) == 0)
                        return *values;
        return "";
}

static void on_start(GMarkupParseContext *context, const char *element, const char **names, const char **values,
                     gpointer userdata, GError **error) {
        Flattener *f = userdata;
        const char *owner;

        if (strcmp(element, "interface") == 0) {
                const char *name = attr(names, values, "name");

                if (g_str_has_prefix(name, IFACE_PREFIX)) {
                        f->interface = g_strdup(name);
                        g_ptr_array_add(f->lines, g_strdup_printf("%s", name));
                }
                return;
        }
        if (!f->interface)
                return;
        if (strcmp(element, "method") == 0 || strcmp(element, "signal") == 0) {
                f->member = g_strdup_printf("%s %s", element, attr(names, values, "name"));
                f->arg_index = 0;
                g_ptr_array_add(f->lines, g_strdup_printf("%s %s", f->interface, f->member));
        } else if (strcmp(element, "property") == 0) {
                f->member = g_strdup_printf("property %s", attr(names, values, "name"));
                g_ptr_array_add(f->lines, g_strdup_printf("%s %s type=%s access=%s", f->interface, f->member,
                                                          attr(names, values, "type"), attr(names, values, "access")));
        } else if (strcmp(element, "arg") == 0) {
                const char *direction = attr(names, values, "direction");

                /* Signal args have no direction; a method arg without one is "in" by the spec. */
                if (!*direction && f->member && g_str_has_prefix(f->member, "method"))
                        direction = "in";
                g_ptr_array_add(f->lines, g_strdup_printf("%s %s arg%u name=%s type=%s direction=%s", f->interface,
                                                          f->member ?: "?", f->arg_index++, attr(names, values, "name"),
                                                          attr(names, values, "type"), direction));
        } else if (strcmp(element, "annotation") == 0) {
                owner = f->member ?: "interface";
                g_ptr_array_add(f->lines, g_strdup_printf("%s %s annotation %s=%s", f->interface, owner,
                                                          attr(names, values, "name"), attr(names, values, "value")));
        }
}

static void on_end(GMarkupParseContext *context, const char *element, gpointer userdata, GError **error) {
        Flattener *f = userdata;

        if (strcmp(element, "interface") == 0)
                g_clear_pointer(&f->interface, g_free);
        else if (strcmp(element, "method") == 0 || strcmp(element, "signal") == 0 ||
                 strcmp(element, "property") == 0)
                g_clear_pointer(&f->member, g_free);
}

static int compare_lines(gconstpointer a, gconstpointer b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Sorted, so member order does not matter; argument order does, through each arg's index. */
static GPtrArray *flatten(const char *xml) {
        static const GMarkupParser parser = { .start_element = on_start, .end_element = on_end };
        Flattener f = { .lines = g_ptr_array_new_with_free_func(g_free) };
        GMarkupParseContext *context;
        GError *error = NULL;

        /* GMarkup does not take a DOCTYPE; it carries no information here. */
        const char *start = strstr(xml, "<node");
        g_assert_nonnull(start);
        context = g_markup_parse_context_new(&parser, 0, &f, NULL);
        if (!g_markup_parse_context_parse(context, start, -1, &error) ||
            !g_markup_parse_context_end_parse(context, &error))
                g_error("cannot parse introspection XML: %s", error->message);
        g_markup_parse_context_free(context);
        g_free(f.interface);
        g_free(f.member);
        g_ptr_array_sort(f.lines, compare_lines);
        return f.lines;
}

static gboolean contains(GPtrArray *l, const char *s) {
        for (guint i = 0; i < l->len; i++)
                if (strcmp(g_ptr_array_index(l, i), s) == 0)
                        return TRUE;
        return FALSE;
}

/* Lines only in a and only in b, each prefixed with its side, restricted to lines starting with prefix. */
static unsigned report_differences(GPtrArray *a, const char *a_name, GPtrArray *b, const char *b_name,
                                   const char *prefix) {
        unsigned n = 0;

        for (guint i = 0; i < a->len; i++) {
                const char *line = g_ptr_array_index(a, i);

                if (g_str_has_prefix(line, prefix) && !contains(b, line)) {
                        g_test_message("only in %s: %s", a_name, line);
                        n++;
                }
        }
        for (guint i = 0; i < b->len; i++) {
                const char *line = g_ptr_array_index(b, i);

                if (g_str_has_prefix(line, prefix) && !contains(a, line)) {
                        g_test_message("only in %s: %s", b_name, line);
                        n++;
                }
        }
        return n;
}

static char *committed_xml(void) {
        const char *root = g_getenv("MIGD_SOURCE_ROOT");
        g_autofree char *path = NULL;
        GError *error = NULL;
        char *text;

        if (!root)
                g_error("MIGD_SOURCE_ROOT is not set; run this test through meson test");
        path = g_build_filename(root, "docs", "org.vfiomig.Migd1.xml", NULL);
        if (!g_file_get_contents(path, &text, NULL, &error))
                g_error("cannot read %s: %s", path, error->message);
        return text;
}

static void test_interface(gconstpointer data) {
        const char *interface = data;
        g_autofree char *generated = generated_xml(), *committed = committed_xml();
        g_autoptr(GPtrArray) g = flatten(generated), c = flatten(committed);
        g_autofree char *prefix = g_strconcat(interface, " ", NULL);
        unsigned n;

        g_assert_true(contains(g, interface));
        g_assert_true(contains(c, interface));
        n = report_differences(g, "the vtables", c, "docs/org.vfiomig.Migd1.xml", interface);
        if (n > 0)
                g_test_message("regenerate with: MIGD_BUS_XML_DUMP=1 build/tests/unit/test-bus-xml "
                               "> docs/org.vfiomig.Migd1.xml (and update docs/dbus-api.md)");
        g_assert_cmpuint(n, ==, 0);
}

static void test_no_other_interfaces(void) {
        g_autofree char *committed = committed_xml();
        g_autoptr(GPtrArray) c = flatten(committed);

        for (guint i = 0; i < c->len; i++) {
                const char *line = g_ptr_array_index(c, i);
                gboolean known = FALSE;

                for (size_t k = 0; k < G_N_ELEMENTS(interfaces); k++)
                        known = known || (g_str_has_prefix(line, interfaces[k]) &&
                                          (line[strlen(interfaces[k])] == ' ' || line[strlen(interfaces[k])] == '\0'));
                if (!known)
                        g_test_message("unexpected: %s", line);
                g_assert_true(known);
        }
}

/* The comparison itself must see a changed argument name, or the tests above would prove nothing. */
static void test_detects_drift(void) {
        g_autofree char *committed = committed_xml();
        g_autoptr(GPtrArray) c = flatten(committed), d = NULL;
        g_autofree char *changed = NULL;
        char *p;

        changed = g_strdup(committed);
        p = strstr(changed, "name=\"state\"");
        g_assert_nonnull(p);
        memcpy(p, "name=\"stat3\"", strlen("name=\"stat3\""));
        d = flatten(changed);
        g_assert_cmpuint(report_differences(c, "committed", d, "changed", "org.vfiomig.Migd1.Device "), ==, 2);
}

int main(int argc, char *argv[]) {
        if (g_getenv("MIGD_BUS_XML_DUMP")) {
                g_autofree char *xml = generated_xml();

                fputs(xml, stdout);
                return 0;
        }

        g_test_init(&argc, &argv, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(interfaces); i++) {
                g_autofree char *name = g_strdup_printf("/bus-xml/%s", interfaces[i]);

                g_test_add_data_func(name, interfaces[i], test_interface);
        }
        g_test_add_func("/bus-xml/no-other-interfaces", test_no_other_interfaces);
        g_test_add_func("/bus-xml/detects-drift", test_detects_drift);
        return g_test_run();
}
