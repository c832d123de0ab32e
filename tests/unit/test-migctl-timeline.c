/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The timeline drawing on fixed timelines (a real two-host run, a rollback), colour off: exact output. */
#include <glib.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migctl-timeline.h"

/* Recorded from two sim migds on loopback (StateSize=1G, pre-copy, MSI-X). */
static const char success_json[] =
        "[{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4135038469,\"rt_usec\":1795549590749884,\"event\":\"phase\",\"pha"
        "se\":\"preflight\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4135040771,\"rt_usec\":1795549590752186,\"eve"
        "nt\":\"phase\",\"phase\":\"prepare\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4135052999,\"rt_usec\":1795549"
        "590764414,\"event\":\"arc\",\"from\":\"RUNNING\",\"to\":\"PRE_COPY\",\"bits\":\"011\",\"ok\":true},{\"host\":\"hosta\",\"ro"
        "le\":\"source\",\"t_usec\":4135053020,\"rt_usec\":1795549590764435,\"event\":\"phase\",\"phase\":\"precopy\"},{\"hos"
        "t\":\"hosta\",\"role\":\"source\",\"t_usec\":4139159687,\"rt_usec\":1795549594871102,\"event\":\"arc\",\"from\":\"PRE_"
        "COPY\",\"to\":\"PRE_COPY_P2P\",\"bits\":null,\"ok\":true},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139160322"
        ",\"rt_usec\":1795549594871737,\"event\":\"arc\",\"from\":\"PRE_COPY_P2P\",\"to\":\"STOP_COPY\",\"bits\":\"010\",\"ok\":t"
        "rue},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139160334,\"rt_usec\":1795549594871748,\"event\":\"phase\","
        "\"phase\":\"stop_copy\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139160646,\"rt_usec\":1795549594872060,"
        "\"event\":\"phase\",\"phase\":\"commit\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139168090,\"rt_usec\":1795"
        "549594879505,\"event\":\"commit\",\"decision\":\"commit\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":41391814"
        "81,\"rt_usec\":1795549594892896,\"event\":\"arc\",\"from\":\"STOP_COPY\",\"to\":\"STOP\",\"bits\":\"000\",\"ok\":true},{"
        "\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139181521,\"rt_usec\":1795549594892935,\"event\":\"phase\",\"phase"
        "\":\"cleanup\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139181543,\"rt_usec\":1795549594892958,\"event\":"
        "\"teardown_irqs\",\"index\":\"msix\",\"ok\":true},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":4135041108,\""
        "rt_usec\":1795549590752523,\"event\":\"phase\",\"phase\":\"prepare\"},{\"host\":\"hostb\",\"role\":\"destination\",\"t"
        "_usec\":4135041818,\"rt_usec\":1795549590753233,\"event\":\"arc\",\"from\":\"RUNNING\",\"to\":\"RUNNING_P2P\",\"bits"
        "\":null,\"ok\":true},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":4135042546,\"rt_usec\":179554959075396"
        "1,\"event\":\"arc\",\"from\":\"RUNNING_P2P\",\"to\":\"STOP\",\"bits\":\"000\",\"ok\":true},{\"host\":\"hostb\",\"role\":\"des"
        "tination\",\"t_usec\":4135052150,\"rt_usec\":1795549590763565,\"event\":\"arc\",\"from\":\"STOP\",\"to\":\"RESUMING\""
        ",\"bits\":\"100\",\"ok\":true},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":4135052279,\"rt_usec\":17955495"
        "90763693,\"event\":\"phase\",\"phase\":\"precopy\"},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":4139160071"
        ",\"rt_usec\":1795549594871486,\"event\":\"phase\",\"phase\":\"load\"},{\"host\":\"hostb\",\"role\":\"destination\",\"t_"
        "usec\":4139160711,\"rt_usec\":1795549594872126,\"event\":\"phase\",\"phase\":\"verify\"},{\"host\":\"hostb\",\"role\""
        ":\"destination\",\"t_usec\":4139160764,\"rt_usec\":1795549594872178,\"event\":\"verify\",\"ok\":true,\"bytes\":108"
        "0033904},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":4139161930,\"rt_usec\":1795549594873344,\"event\""
        ":\"arc\",\"from\":\"RESUMING\",\"to\":\"STOP\",\"bits\":\"000\",\"ok\":true},{\"host\":\"hostb\",\"role\":\"destination\",\"t"
        "_usec\":4139161941,\"rt_usec\":1795549594873356,\"event\":\"phase\",\"phase\":\"irq_restore\"},{\"host\":\"hostb\","
        "\"role\":\"destination\",\"t_usec\":4139162012,\"rt_usec\":1795549594873426,\"event\":\"set_irqs\",\"index\":\"msix"
        "\",\"count\":4,\"state\":\"STOP\",\"ok\":true},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":4139162042,\"rt_u"
        "sec\":1795549594873457,\"event\":\"phase\",\"phase\":\"commit\"},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec"
        "\":4139180148,\"rt_usec\":1795549594891563,\"event\":\"commit\",\"decision\":\"commit\"},{\"host\":\"hostb\",\"role\""
        ":\"destination\",\"t_usec\":4139180243,\"rt_usec\":1795549594891657,\"event\":\"phase\",\"phase\":\"start\"},{\"hos"
        "t\":\"hostb\",\"role\":\"destination\",\"t_usec\":4139181236,\"rt_usec\":1795549594892651,\"event\":\"arc\",\"from\":"
        "\"STOP\",\"to\":\"RUNNING_P2P\",\"bits\":null,\"ok\":true},{\"host\":\"hostb\",\"role\":\"destination\",\"t_usec\":41391"
        "81764,\"rt_usec\":1795549594893179,\"event\":\"arc\",\"from\":\"RUNNING_P2P\",\"to\":\"RUNNING\",\"bits\":\"001\",\"ok\""
        ":true},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":4139182469,\"rt_usec\":1795549594893883,\"event\":\"resul"
        "t\",\"result\":\"success\",\"downtime_usec\":20914}]";

static const char success_expected[] =
        "Migration 0497eed3: gpu0 to 127.0.0.1:17482, policy stop-window, success\n"
        "Downtime 20.9 ms, from the source stopping the device to the device running again.\n"
        "\n"
        "        ms   hosta · source                             hostb · destination\n"
        "     0.000   ┣━ preflight\n"
        "     2.302   ┣━ prepare\n"
        "     2.639   ┃                                          ┣━ prepare\n"
        "     3.349   ┃                                          ● RUNNING → RUNNING_P2P  ---\n"
        "     4.077   ┃                                          ● RUNNING_P2P → STOP  000\n"
        "    13.681   ┃                                          ● STOP → RESUMING  100\n"
        "    13.809   ┃                                          ├─ precopy\n"
        "    14.530   ● RUNNING → PRE_COPY  011                  │\n"
        "    14.551   ┣━ precopy                                 │\n"
        "  ⋮ 4.11 s   ┃                                          │\n"
        "  4121.218   ● PRE_COPY → PRE_COPY_P2P  ---             │\n"
        "  4121.602   ┃                                          ├─ load\n"
        "  4121.853 ┬ ● PRE_COPY_P2P → STOP_COPY  010            │\n"
        "  4121.864 │ ├─ stop_copy                               │\n"
        "  4122.176 │ ├─ commit                                  │\n"
        "  4122.242 │ │                                          ├─ verify\n"
        "  4122.294 │ │                                          ✓ verified 1.0 GiB\n"
        "  4123.460 │ │                                          ● RESUMING → STOP  000\n"
        "  4123.472 │ │                                          ├─ irq_restore\n"
        "  4123.542 │ │                                          ◆ SET_IRQS msix ×4 in STOP\n"
        "  4123.573 │ │                                          ├─ commit\n"
        "  4129.621 │ ■ decision: commit                         │\n"
        "  4141.679 │ │                                          ■ decision: commit\n"
        "  4141.773 │ │                                          ├─ start\n"
        "  4142.767 ┴ │                                          ● STOP → RUNNING_P2P  ---\n"
        "           ╰ │ downtime 20.9 ms                         ┃\n"
        "  4143.012   ● STOP_COPY → STOP  000                    ┃\n"
        "  4143.051   ├─ cleanup                                 ┃\n"
        "  4143.074   ◇ tear down msix interrupts                ┃\n"
        "  4143.295   │                                          ● RUNNING_P2P → RUNNING  001\n"
        "  4143.999   ✓ result: success\n"
        "\n"
        "┃ device running  │ device stopped  ● arc to a state, its v1 bits RESUMING SAVING RUNNING (--- none)\n"
        "◆ SET_IRQS  ◇ interrupts torn down  ! interrupt while stopped  ■ commit decision\n";

/* Hand-written: the source stops, sees an interrupt while stopped, the destination refuses, the source runs again. */
static const char rollback_json[] =
        "[{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":1,\"rt_usec\":1000000,\"event\":\"phase\",\"phase\":\"preflight\"},{"
        "\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":2,\"rt_usec\":1000500,\"event\":\"arc\",\"from\":\"RUNNING\",\"to\":\"RUN"
        "NING_P2P\",\"bits\":null,\"ok\":true},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":3,\"rt_usec\":1001000,\"event"
        "\":\"arc\",\"from\":\"RUNNING_P2P\",\"to\":\"STOP\",\"bits\":\"000\",\"ok\":true},{\"host\":\"hosta\",\"role\":\"source\",\"t_"
        "usec\":4,\"rt_usec\":1001200,\"event\":\"irq_while_stopped\",\"index\":\"msix\",\"vector\":2,\"state\":\"STOP\"},{\"ho"
        "st\":\"hostb\",\"role\":\"destination\",\"t_usec\":5,\"rt_usec\":1001300,\"event\":\"arc\",\"from\":\"STOP\",\"to\":\"RESU"
        "MING\",\"bits\":\"100\",\"ok\":false,\"errno\":\"Input/output error\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\""
        ":6,\"rt_usec\":1002000,\"event\":\"rollback\",\"reason\":\"hostb refused: device gpu0: arc STOP -> RESUMING f"
        "ailed\"},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":7,\"rt_usec\":1002500,\"event\":\"arc\",\"from\":\"STOP\",\"to"
        "\":\"RUNNING_P2P\",\"bits\":null,\"ok\":true},{\"host\":\"hosta\",\"role\":\"source\",\"t_usec\":8,\"rt_usec\":1002600,"
        "\"event\":\"arc\",\"from\":\"RUNNING_P2P\",\"to\":\"RUNNING\",\"bits\":\"001\",\"ok\":true},{\"host\":\"hosta\",\"role\":\"so"
        "urce\",\"t_usec\":9,\"rt_usec\":1003000,\"event\":\"result\",\"result\":\"failed\",\"error\":\"hostb refused: device"
        " gpu0: arc STOP -> RESUMING failed: Input/output error\"}]";

static const char rollback_expected[] =
        "Migration 1f00: gpu0 to hostb, policy stop-window, failed\n"
        "Downtime 1.5 ms, from the source stopping the device to the device running again.\n"
        "\n"
        "        ms   hosta · source                             hostb · destination\n"
        "     0.000   ┣━ preflight\n"
        "     0.500   ● RUNNING → RUNNING_P2P  ---\n"
        "     1.000 ┬ ● RUNNING_P2P → STOP  000\n"
        "     1.200 │ ! interrupt msix #2 while STOP\n"
        "     1.300 │ │                                          ✗ STOP → RESUMING failed: Input/output err…\n"
        "     2.000 │ ↺ rollback: hostb refused: device gpu0: ar…\n"
        "     2.500 ┴ ● STOP → RUNNING_P2P  ---\n"
        "           ╰ ┃ downtime 1.5 ms\n"
        "     2.600   ● RUNNING_P2P → RUNNING  001\n"
        "     3.000   ✗ result: failed\n"
        "\n"
        "┃ device running  │ device stopped  ● arc to a state, its v1 bits RESUMING SAVING RUNNING (--- none)\n"
        "◆ SET_IRQS  ◇ interrupts torn down  ! interrupt while stopped  ■ commit decision\n"
        "Error: hostb refused: device gpu0: arc STOP -> RESUMING failed: Input/output error\n";

static char *render(const char *json_text, const char *title, size_t width) {
        struct json_object *events = json_tokener_parse(json_text);
        TimelineStyle style = { .color = false, .width = width, .title = title };
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        g_assert_nonnull(events);
        f = open_memstream(&text, &size);
        g_assert_nonnull(f);
        g_assert_cmpint(timeline_render(f, events, &style), ==, 0);
        g_assert_cmpint(fclose(f), ==, 0);
        json_object_put(events);
        return text;
}

static void assert_fits(const char *text, size_t width) {
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

        for (char **l = lines; *l; l++) {
                g_assert_cmpuint(g_utf8_strlen(*l, -1), <=, width);
                g_assert_false(g_str_has_suffix(*l, " "));
        }
}

static void test_success(void) {
        g_autofree char *text = render(success_json, "Migration 0497eed3: gpu0 to 127.0.0.1:17482, policy stop-window, success", 100);

        g_assert_cmpstr(text, ==, success_expected);
        assert_fits(text, 100);
}

static void test_rollback(void) {
        g_autofree char *text = render(rollback_json, "Migration 1f00: gpu0 to hostb, policy stop-window, failed", 100);

        g_assert_cmpstr(text, ==, rollback_expected);
        assert_fits(text, 100);
}

static void test_empty_and_malformed(void) {
        struct json_object *j = json_tokener_parse("{\"event\":\"phase\"}");
        TimelineStyle style = { .color = false };
        g_autofree char *text = render("[]", NULL, 0);

        g_assert_cmpstr(text, ==, "No events recorded yet.\n");
        g_assert_cmpint(timeline_render(stderr, j, &style), ==, -EBADMSG);
        json_object_put(j);
}

static void test_color(void) {
        struct json_object *events = json_tokener_parse(success_json);
        TimelineStyle style = { .color = true };
        g_autofree char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        g_assert_cmpint(timeline_render(f, events, &style), ==, 0);
        fclose(f);
        json_object_put(events);
        /* SET_IRQS stands out in bold yellow; the running rail is green. */
        g_assert_nonnull(strstr(text, "\033[33m\033[1m◆"));
        g_assert_nonnull(strstr(text, "\033[32m┃"));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/timeline/success", test_success);
        g_test_add_func("/timeline/rollback", test_rollback);
        g_test_add_func("/timeline/empty-and-malformed", test_empty_and_malformed);
        g_test_add_func("/timeline/color", test_color);
        return g_test_run();
}
