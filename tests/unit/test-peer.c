/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Peer protocol tests: addresses, schemas, mutual TLS and its refusals, insecure mode, framing errors over raw
 * sockets, the windowed data stream and its digest, silence detection and abort. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "config.h"
#include "peer.h"
#include "util.h"

#define SEC (1000000ULL)
#define TIMEOUT (10 * SEC)

/* Certificates from certs.sh; NULL when certtool is missing, and the TLS tests skip. */
static char *cert_dir = NULL;

/* ---- helpers ---- */

static void assert_contains(const char *haystack, const char *needle) {
        if (!haystack || !strstr(haystack, needle))
                g_error("\"%s\" does not contain \"%s\"", haystack ?: "(null)", needle);
}

static char *cert_path(const char *name, const char *suffix) {
        g_autofree char *p = g_strdup_printf("%s/%s%s", cert_dir, name, suffix);

        return strdup(p);
}

/* ca: "ca" or "ca2"; leaf: a certs.sh name such as "hostb" or "ca2-hosta". */
static PeerTls tls_config(const char *ca, const char *leaf) {
        return (PeerTls) {
                .ca_file = cert_path(ca, "-cert.pem"),
                .cert_file = cert_path(leaf, "-cert.pem"),
                .key_file = cert_path(leaf, "-key.pem"),
        };
}

static PeerTls insecure_config(void) {
        return (PeerTls) { .insecure = true };
}

static bool need_certs(void) {
        if (cert_dir)
                return true;
        g_test_skip("certtool (gnutls-bin) is not installed");
        return false;
}

typedef struct Server Server;
struct Server {
        int listen_fd;
        uint16_t port;
        PeerTls tls;
        const char *name;
        /* results of peer_accept */
        int r;
        char *error;
        PeerConn *conn;
        /* runs in the server thread after a successful accept */
        void (*work)(Server *s);
        int work_r;
        char *work_error;
        void *userdata;
        GThread *thread;
};

static gpointer server_main(gpointer p) {
        Server *s = p;
        int fd;

        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        s->r = peer_accept(fd, &s->tls, s->name, TIMEOUT, &s->conn, &s->error);
        if (s->r >= 0 && s->work)
                s->work(s);
        return NULL;
}

static void server_start(Server *s, PeerTls tls, void (*work)(Server *s), void *userdata) {
        *s = (Server) { .tls = tls, .name = "hostb", .work = work, .userdata = userdata, .r = 1, .work_r = 1 };
        g_assert_cmpint(peer_listen("127.0.0.1:0", &s->listen_fd), ==, 0);
        g_assert_cmpint(peer_listen_port(s->listen_fd, &s->port), ==, 0);
        g_assert_cmpuint(s->port, >, 0);
        s->thread = g_thread_new("server", server_main, s);
}

static void server_join(Server *s) {
        g_thread_join(TAKE_PTR(s->thread));
}

static void server_done(Server *s) {
        if (s->thread)
                server_join(s);
        peer_conn_free(s->conn);
        peer_tls_done(&s->tls);
        free(s->error);
        free(s->work_error);
        close(s->listen_fd);
}

static int client_connect(Server *s, PeerTls *tls, const char *name, PeerConn **ret, char **ret_error) {
        return peer_connect("127.0.0.1", s->port, tls, name, TIMEOUT, ret, ret_error);
}

static struct json_object *json(const char *text) {
        struct json_object *o = json_tokener_parse(text);

        g_assert_nonnull(o);
        return o;
}

static const char *type_of(struct json_object *m) {
        struct json_object *t;

        g_assert_true(json_object_object_get_ex(m, "type", &t));
        return json_object_get_string(t);
}

static void send_ok(PeerConn *c, const char *text) {
        _cleanup_json_ struct json_object *m = json(text);

        g_assert_cmpint(peer_send(c, m, TIMEOUT), ==, 0);
}

static void recv_expect(PeerConn *c, const char *type) {
        _cleanup_json_ struct json_object *m = NULL;
        _cleanup_free_ char *error = NULL;

        if (peer_recv(c, TIMEOUT, &m, &error) < 0)
                g_error("peer_recv: %s", error);
        g_assert_cmpstr(type_of(m), ==, type);
}

/* ---- raw sockets that play a peer byte by byte ---- */

static int raw_connect(uint16_t port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        int fd;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), ==, 0);
        return fd;
}

static void raw_write(int fd, const void *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

                g_assert_cmpint(k, >, 0);
                p = (const uint8_t *) p + k;
                n -= (size_t) k;
        }
}

static void raw_header(int fd, uint8_t type, uint8_t flags, uint16_t reserved, uint32_t len) {
        uint8_t h[8] = { type, flags, reserved >> 8, reserved & 0xff, len >> 24, len >> 16, len >> 8, len };

        raw_write(fd, h, sizeof(h));
}

static void raw_frame(int fd, uint8_t type, const void *p, size_t n) {
        raw_header(fd, type, 0, 0, (uint32_t) n);
        raw_write(fd, p, n);
}

static void raw_json(int fd, const char *text) {
        raw_frame(fd, 1, text, strlen(text));
}

static bool raw_read(int fd, void *p, size_t n) {
        while (n > 0) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t k;

                g_assert_cmpint(poll(&pfd, 1, 10000), ==, 1);
                k = recv(fd, p, n, 0);
                if (k <= 0)
                        return false;
                p = (uint8_t *) p + k;
                n -= (size_t) k;
        }
        return true;
}

/* The next control message as JSON text; keepalives are skipped. NULL at the end of the stream. */
static char *raw_recv_json(int fd) {
        for (;;) {
                uint8_t h[8];
                uint32_t len;
                char *text;

                if (!raw_read(fd, h, sizeof(h)))
                        return NULL;
                g_assert_cmpuint(h[0], ==, 1);
                len = (uint32_t) h[4] << 24 | (uint32_t) h[5] << 16 | (uint32_t) h[6] << 8 | h[7];
                text = g_malloc0(len + 1);
                g_assert_true(raw_read(fd, text, len));
                if (!strstr(text, "\"keepalive\""))
                        return text;
                g_free(text);
        }
}

static void raw_hello(int fd, int version, const char *capabilities) {
        g_autofree char *hello = g_strdup_printf("{\"type\":\"hello\",\"protocol\":\"migd-peer\",\"version\":%d,"
                                                 "\"name\":\"hosta\",\"capabilities\":%s}",
                                                 version, capabilities);

        raw_json(fd, hello);
}

/* Connects to an insecure server and completes the hello/welcome exchange by hand. */
static int raw_client(Server *s) {
        g_autofree char *welcome = NULL;
        int fd = raw_connect(s->port);

        raw_hello(fd, 1, "[\"precopy\",\"postcopy-v1\",\"sha256\"]");
        welcome = raw_recv_json(fd);
        assert_contains(welcome, "\"welcome\"");
        return fd;
}

static void sha256_hex(const void *p, size_t n, char out[65]) {
        g_autofree char *hex = g_compute_checksum_for_data(G_CHECKSUM_SHA256, p, n);

        g_strlcpy(out, hex, 65);
}

/* ---- addresses and defaults ---- */

static void test_parse_address(void) {
        static const struct {
                const char *in, *host;
                uint16_t port;
        } good[] = {
                { "hostb:7481", "hostb", 7481 }, { "hostb", "hostb", PEER_DEFAULT_PORT },
                { "10.0.0.1:1", "10.0.0.1", 1 }, { "[::1]:9000", "::1", 9000 },
                { "[fe80::1]", "fe80::1", PEER_DEFAULT_PORT }, { "::1", "::1", PEER_DEFAULT_PORT },
                { "127.0.0.1:0", "127.0.0.1", 0 },
        };
        static const char *const bad[] = { "", ":7480", "hostb:", "hostb:65536", "hostb:x1", "[::1", "[]:80",
                                           "[::1]x", "hostb:-1" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *host = NULL;
                uint16_t port = 0;

                g_assert_cmpint(peer_parse_address(good[i].in, &host, &port), ==, 0);
                g_assert_cmpstr(host, ==, good[i].host);
                g_assert_cmpuint(port, ==, good[i].port);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *host = (char *) 0x1;
                uint16_t port = 42;

                g_assert_cmpint(peer_parse_address(bad[i], &host, &port), ==, -EINVAL);
                g_assert_true(host == (char *) 0x1);
                g_assert_cmpuint(port, ==, 42);
        }
}

static void test_tls_defaults(void) {
        PeerTls t = {};

        g_assert_cmpint(peer_tls_init_default(&t, "/x", true), ==, 0);
        g_assert_false(t.insecure);
        g_assert_cmpstr(t.ca_file, ==, "/x/ca-cert.pem");
        g_assert_cmpstr(t.cert_file, ==, "/x/server-cert.pem");
        g_assert_cmpstr(t.key_file, ==, "/x/server-key.pem");
        peer_tls_done(&t);
        g_assert_cmpint(peer_tls_init_default(&t, NULL, false), ==, 0);
        g_assert_cmpstr(t.ca_file, ==, MIGD_PKI_DIR "/ca-cert.pem");
        g_assert_cmpstr(t.cert_file, ==, MIGD_PKI_DIR "/client-cert.pem");
        g_assert_cmpstr(t.key_file, ==, MIGD_PKI_DIR "/client-key.pem");
        peer_tls_done(&t);
        g_assert_null(t.ca_file);
}

/* ---- schemas ---- */

#define DIGEST "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""

static void test_schema(void) {
        static const struct {
                const char *good, *bad, *error;
        } table[] = {
                { "{\"type\":\"hello\",\"protocol\":\"migd-peer\",\"version\":1,\"name\":\"a\",\"capabilities\":[]}",
                  "{\"type\":\"hello\",\"protocol\":\"migd-peer\",\"version\":\"1\",\"name\":\"a\",\"capabilities\":[]}",
                  "message \"hello\": field \"version\" must be an integer" },
                { "{\"type\":\"welcome\",\"version\":1,\"name\":\"b\",\"capabilities\":[\"precopy\"]}",
                  "{\"type\":\"welcome\",\"version\":1,\"name\":\"b\",\"capabilities\":[1]}",
                  "message \"welcome\": field \"capabilities\" must be an array of strings" },
                { "{\"type\":\"error\",\"code\":\"X\",\"message\":\"y\"}", "{\"type\":\"error\",\"code\":\"X\"}",
                  "message \"error\": field \"message\" is missing" },
                { "{\"type\":\"keepalive\"}", "{\"type\":\"keepalive\",\"type\":7}",
                  "message field \"type\" must be a string" },
                { "{\"type\":\"keepalive-ack\",\"extra\":1}", "{\"type\":\"keepalive-ack2\"}",
                  "unknown message type \"keepalive-ack2\"" },
                { "{\"type\":\"preflight\",\"migration\":\"m\",\"device\":{},\"policy\":{},\"plan\":{},\"options\":{},"
                  "\"target\":null}",
                  "{\"type\":\"preflight\",\"migration\":\"m\",\"device\":[],\"policy\":{},\"plan\":{},\"options\":{}}",
                  "message \"preflight\": field \"device\" must be an object" },
                { "{\"type\":\"preflight\",\"migration\":\"m\",\"device\":{},\"policy\":{},\"plan\":{},\"options\":{},"
                  "\"target\":\"t\"}",
                  "{\"type\":\"preflight\",\"migration\":\"m\",\"device\":{},\"policy\":{},\"plan\":{},\"options\":{},"
                  "\"target\":3}",
                  "message \"preflight\": field \"target\" must be a string or null" },
                { "{\"type\":\"preflight-ok\",\"migration\":\"m\",\"target\":\"t\",\"plan\":{}}",
                  "{\"type\":\"preflight-ok\",\"migration\":\"m\",\"target\":null,\"plan\":{}}",
                  "message \"preflight-ok\": field \"target\" must be a string" },
                { "{\"type\":\"prepare\",\"migration\":\"m\"}", "{\"type\":\"prepare\"}",
                  "message \"prepare\": field \"migration\" is missing" },
                { "{\"type\":\"prepared\",\"migration\":\"m\"}", "{\"type\":\"prepared\",\"migration\":1}",
                  "message \"prepared\": field \"migration\" must be a string" },
                { "{\"type\":\"precopy-done\"}", "{\"type\":\"precopy_done\"}",
                  "unknown message type \"precopy_done\"" },
                { "{\"type\":\"data-end\",\"bytes\":0,\"sha256\":" DIGEST "}",
                  "{\"type\":\"data-end\",\"bytes\":0,\"sha256\":\"0123456789ABCDEF0123456789abcdef0123456789abcdef"
                  "0123456789abcdef\"}",
                  "message \"data-end\": field \"sha256\" must be a SHA-256 digest in 64 lowercase hexadecimal "
                  "digits" },
                { "{\"type\":\"ack\",\"bytes\":1048576}", "{\"type\":\"ack\",\"bytes\":-1}",
                  "message \"ack\": field \"bytes\" must be a non-negative integer" },
                { "{\"type\":\"loaded\",\"migration\":\"m\"}", "{\"type\":\"loaded\",\"migration\":null}",
                  "message \"loaded\": field \"migration\" must be a string" },
                { "{\"type\":\"commit\",\"migration\":\"m\"}", "{\"type\":\"commit\",\"migration\":[]}",
                  "message \"commit\": field \"migration\" must be a string" },
                { "{\"type\":\"committed\",\"migration\":\"m\"}", "{\"type\":\"committed\"}",
                  "message \"committed\": field \"migration\" is missing" },
                { "{\"type\":\"started\",\"migration\":\"m\"}", "{\"type\":\"started\",\"migration\":true}",
                  "message \"started\": field \"migration\" must be a string" },
                { "{\"type\":\"rollback\",\"migration\":\"m\",\"reason\":\"r\"}",
                  "{\"type\":\"rollback\",\"migration\":\"m\"}", "message \"rollback\": field \"reason\" is missing" },
                { "{\"type\":\"cancel\",\"migration\":\"m\",\"reason\":\"r\"}",
                  "{\"type\":\"cancel\",\"migration\":\"m\",\"reason\":{}}",
                  "message \"cancel\": field \"reason\" must be a string" },
                { "{\"type\":\"resolve-query\",\"migration\":\"m\"}", "{\"type\":\"resolve-query\",\"migration\":2.5}",
                  "message \"resolve-query\": field \"migration\" must be a string" },
                { "{\"type\":\"resolve-answer\",\"migration\":\"m\",\"decision\":\"unknown\"}",
                  "{\"type\":\"resolve-answer\",\"migration\":\"m\",\"decision\":\"maybe\"}",
                  "message \"resolve-answer\": field \"decision\" must be \"commit\", \"abort\" or \"unknown\"" },
                { "{\"type\":\"resolve-answer\",\"migration\":\"m\",\"decision\":\"commit\"}", "[]",
                  "a control message must be a JSON object, not array" },
                { "{\"type\":\"data-end\",\"bytes\":5,\"sha256\":" DIGEST ",\"future\":[1]}", "{\"kind\":\"ack\"}",
                  "message has no \"type\" field" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_json_ struct json_object *good = json(table[i].good), *bad = json(table[i].bad);
                _cleanup_free_ char *error = NULL;

                if (peer_message_validate(good, &error) < 0)
                        g_error("%s: %s", table[i].good, error);
                g_assert_cmpint(peer_message_validate(bad, &error), ==, -EBADMSG);
                g_assert_cmpstr(error, ==, table[i].error);
        }
}

/* ---- TLS ---- */

static void test_tls_ok(void) {
        PeerTls ctls;
        PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL;
        Server s;

        if (!need_certs())
                return;
        server_start(&s, tls_config("ca", "hostb"), NULL, NULL);
        ctls = tls_config("ca", "hosta");
        if (client_connect(&s, &ctls, "hosta", &c, &error) < 0)
                g_error("peer_connect: %s", error);
        server_join(&s);
        if (s.r < 0)
                g_error("peer_accept: %s", s.error);

        g_assert_true(peer_conn_is_tls(c));
        g_assert_true(peer_conn_is_tls(s.conn));
        g_assert_cmpstr(peer_conn_remote_name(c), ==, "hostb");
        g_assert_cmpstr(peer_conn_remote_name(s.conn), ==, "hosta");
        g_assert_cmpuint(peer_conn_version(c), ==, 1);
        g_assert_cmpuint(peer_conn_version(s.conn), ==, 1);
        g_assert_true(peer_conn_has_capability(c, "postcopy-v1"));
        g_assert_true(peer_conn_has_capability(s.conn, "sha256"));
        g_assert_false(peer_conn_has_capability(c, "teleport"));

        send_ok(c, "{\"type\":\"prepare\",\"migration\":\"m1\"}");
        recv_expect(s.conn, "prepare");
        send_ok(s.conn, "{\"type\":\"prepared\",\"migration\":\"m1\"}");
        recv_expect(c, "prepared");

        peer_conn_free(c);
        peer_tls_done(&ctls);
        server_done(&s);
}

/* Runs one handshake that must fail on both ends; returns the two sentences. */
static void tls_refused(PeerTls server_tls, PeerTls client_tls, const char *claim, int client_r, int server_r,
                        char **ret_client_error, char **ret_server_error, uint16_t *ret_port) {
        PeerConn *c = (PeerConn *) 0x1;
        char *error = NULL;
        Server s;
        int r;

        server_start(&s, server_tls, NULL, NULL);
        r = client_connect(&s, &client_tls, claim, &c, &error);
        server_join(&s);
        g_test_message("client: %d %s; server: %d %s", r, error, s.r, s.error);
        g_assert_cmpint(r, ==, client_r);
        g_assert_true(c == (PeerConn *) 0x1);
        g_assert_cmpint(s.r, ==, server_r);
        g_assert_null(s.conn);
        *ret_client_error = error;
        *ret_server_error = TAKE_PTR(s.error);
        *ret_port = s.port;
        peer_tls_done(&client_tls);
        server_done(&s);
}

static void test_tls_server_other_ca(void) {
        _cleanup_free_ char *ce = NULL, *se = NULL;
        g_autofree char *want = NULL;
        uint16_t port;

        if (!need_certs())
                return;
        tls_refused(tls_config("ca", "ca2-hostb"), tls_config("ca", "hosta"), "hosta", -EPERM, -EPERM, &ce, &se,
                    &port);
        want = g_strdup_printf("TLS: the certificate of 127.0.0.1:%u is not signed by the CA in %s/ca-cert.pem",
                               port, cert_dir);
        g_assert_cmpstr(ce, ==, want);
        assert_contains(se, "rejected the certificate of this end");
}

static void test_tls_server_other_name(void) {
        _cleanup_free_ char *ce = NULL, *se = NULL;
        g_autofree char *want = NULL;
        uint16_t port;

        if (!need_certs())
                return;
        tls_refused(tls_config("ca", "otherhost"), tls_config("ca", "hosta"), "hosta", -EPERM, -EPERM, &ce, &se,
                    &port);
        want = g_strdup_printf("TLS: the certificate of 127.0.0.1:%u names \"otherhost\", not \"127.0.0.1\"", port);
        g_assert_cmpstr(ce, ==, want);
        assert_contains(se, "rejected the certificate of this end");
}

static void test_tls_client_other_ca(void) {
        _cleanup_free_ char *ce = NULL, *se = NULL;
        g_autofree char *want = NULL;
        uint16_t port;

        if (!need_certs())
                return;
        tls_refused(tls_config("ca", "hostb"), tls_config("ca", "ca2-hosta"), "hosta", -EPERM, -EPERM, &ce, &se,
                    &port);
        want = g_strdup_printf("is not signed by the CA in %s/ca-cert.pem", cert_dir);
        assert_contains(se, "TLS: the client certificate of 127.0.0.1:");
        assert_contains(se, want);
        /* TLS 1.3 finishes the client's side of the handshake first: it learns from the alert. */
        assert_contains(ce, "the certificate of this end");
}

static void test_tls_client_claims_other_name(void) {
        _cleanup_free_ char *ce = NULL, *se = NULL;
        g_autofree char *want = NULL;
        uint16_t port;

        if (!need_certs())
                return;
        tls_refused(tls_config("ca", "hostb"), tls_config("ca", "hosta"), "hostc", -EPERM, -EPERM, &ce, &se, &port);
        assert_contains(se, "TLS: the client certificate of 127.0.0.1:");
        assert_contains(se, "names \"hosta\", not \"hostc\"");
        want = g_strdup_printf("127.0.0.1:%u refused the handshake: the client certificate names \"hosta\", not "
                               "\"hostc\" (AuthenticationFailed)",
                               port);
        g_assert_cmpstr(ce, ==, want);
}

static void test_tls_missing_files(void) {
        PeerTls t = {
                .ca_file = strdup("/nonexistent/ca-cert.pem"),
                .cert_file = strdup("/x"),
                .key_file = strdup("/y"),
        };
        PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL;

        /* Checked before any connection attempt: port 1 is never contacted. */
        g_assert_cmpint(peer_connect("127.0.0.1", 1, &t, "hosta", TIMEOUT, &c, &error), ==, -ENOENT);
        g_assert_cmpstr(error, ==,
                        "TLS: cannot read the CA certificate file /nonexistent/ca-cert.pem: No such file or directory");
        g_assert_null(c);
        peer_tls_done(&t);
}

/* ---- insecure mode ---- */

static void test_insecure_ok(void) {
        PeerTls ctls = insecure_config();
        PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL;
        Server s;

        server_start(&s, insecure_config(), NULL, NULL);
        if (client_connect(&s, &ctls, "hosta", &c, &error) < 0)
                g_error("peer_connect: %s", error);
        server_join(&s);
        g_assert_cmpint(s.r, ==, 0);
        g_assert_false(peer_conn_is_tls(c));
        g_assert_false(peer_conn_is_tls(s.conn));
        g_assert_cmpstr(peer_conn_remote_name(c), ==, "hostb");
        g_assert_cmpstr(peer_conn_remote_name(s.conn), ==, "hosta");
        send_ok(s.conn, "{\"type\":\"commit\",\"migration\":\"m\"}");
        recv_expect(c, "commit");
        send_ok(c, "{\"type\":\"committed\",\"migration\":\"m\"}");
        recv_expect(s.conn, "committed");
        peer_conn_free(c);
        server_done(&s);
}

static void test_insecure_server_tls_client(void) {
        _cleanup_free_ char *ce = NULL, *se = NULL;
        uint16_t port;

        if (!need_certs())
                return;
        tls_refused(insecure_config(), tls_config("ca", "hosta"), "hosta", -EPROTO, -EPROTO, &ce, &se, &port);
        assert_contains(se, "speaks TLS; this end is configured insecure");
        assert_contains(ce, "TLS: the handshake with 127.0.0.1:");
        assert_contains(ce, "failed");
}

static void test_tls_server_insecure_client(void) {
        _cleanup_free_ char *ce = NULL, *se = NULL;
        g_autofree char *want = NULL;
        uint16_t port;

        if (!need_certs())
                return;
        tls_refused(tls_config("ca", "hostb"), insecure_config(), "hosta", -EPROTO, -EPROTO, &ce, &se, &port);
        assert_contains(se, "speaks plaintext (configured insecure); this end requires TLS");
        want = g_strdup_printf("127.0.0.1:%u refused the handshake: this end requires TLS, and the peer is "
                               "configured insecure (TlsRequired)",
                               port);
        g_assert_cmpstr(ce, ==, want);
}

static void test_refused(void) {
        PeerTls t = insecure_config();
        PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL;
        g_autofree char *want = NULL;
        uint16_t port;
        int fd;

        /* A port that was just free: nothing listens there any more. */
        g_assert_cmpint(peer_listen("127.0.0.1:0", &fd), ==, 0);
        g_assert_cmpint(peer_listen_port(fd, &port), ==, 0);
        close(fd);
        g_assert_cmpint(peer_connect("127.0.0.1", port, &t, "hosta", TIMEOUT, &c, &error), ==, -ECONNREFUSED);
        want = g_strdup_printf("connection to 127.0.0.1:%u refused", port);
        g_assert_cmpstr(error, ==, want);
        g_assert_null(c);
}

/* ---- versions, over raw sockets ---- */

static void test_version_too_old(void) {
        g_autofree char *answer = NULL;
        Server s;
        int fd;

        server_start(&s, insecure_config(), NULL, NULL);
        fd = raw_connect(s.port);
        raw_hello(fd, 0, "[]");
        answer = raw_recv_json(fd);
        assert_contains(answer, "\"type\":\"error\"");
        assert_contains(answer, "\"code\":\"VersionMismatch\"");
        assert_contains(answer, "this end speaks protocol version 1, the client offered version 0");
        close(fd);
        server_join(&s);
        g_assert_cmpint(s.r, ==, -EPROTONOSUPPORT);
        assert_contains(s.error, "version mismatch: 127.0.0.1:");
        assert_contains(s.error, "offered protocol version 0, this end speaks version 1");
        server_done(&s);
}

static void test_version_newer_client(void) {
        g_autofree char *answer = NULL;
        Server s;
        int fd;

        /* The rule is min(client, server): a version 99 client is answered in version 1, with the
         * capabilities both know. */
        server_start(&s, insecure_config(), NULL, NULL);
        fd = raw_connect(s.port);
        raw_hello(fd, 99, "[\"precopy\",\"teleport\"]");
        answer = raw_recv_json(fd);
        assert_contains(answer, "\"type\":\"welcome\"");
        assert_contains(answer, "\"version\":1");
        server_join(&s);
        g_assert_cmpint(s.r, ==, 0);
        g_assert_cmpuint(peer_conn_version(s.conn), ==, 1);
        g_assert_true(peer_conn_has_capability(s.conn, "precopy"));
        g_assert_false(peer_conn_has_capability(s.conn, "postcopy-v1"));
        g_assert_false(peer_conn_has_capability(s.conn, "teleport"));
        close(fd);
        server_done(&s);
}

typedef struct RawServer {
        int listen_fd;
        uint16_t port;
        const char *answer;
        GThread *thread;
} RawServer;

static gpointer raw_server_main(gpointer p) {
        RawServer *rs = p;
        g_autofree char *hello = NULL;
        char buf[256];
        int fd;

        fd = accept4(rs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        hello = raw_recv_json(fd);
        assert_contains(hello, "\"type\":\"hello\"");
        assert_contains(hello, "\"version\":1");
        raw_json(fd, rs->answer);
        while (recv(fd, buf, sizeof(buf), 0) > 0)
                ;
        close(fd);
        return NULL;
}

static void raw_server_client(const char *answer, int want_r, const char *want_error, const char *capability) {
        RawServer rs = { .answer = answer };
        PeerTls t = insecure_config();
        PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL;
        g_autofree char *want = NULL;
        int r;

        g_assert_cmpint(peer_listen("127.0.0.1:0", &rs.listen_fd), ==, 0);
        g_assert_cmpint(peer_listen_port(rs.listen_fd, &rs.port), ==, 0);
        rs.thread = g_thread_new("raw-server", raw_server_main, &rs);
        r = peer_connect("127.0.0.1", rs.port, &t, "hosta", TIMEOUT, &c, &error);
        g_assert_cmpint(r, ==, want_r);
        if (want_error) {
                g_auto(GStrv) parts = g_strsplit(want_error, "{port}", -1);
                g_autofree char *port = g_strdup_printf("%u", rs.port);

                want = g_strjoinv(port, parts);
                g_assert_cmpstr(error, ==, want);
        }
        if (capability) {
                g_assert_true(peer_conn_has_capability(c, capability));
                g_assert_false(peer_conn_has_capability(c, "precopy"));
        }
        peer_conn_free(c);
        g_thread_join(rs.thread);
        close(rs.listen_fd);
}

static void test_version_server_answers(void) {
        raw_server_client("{\"type\":\"welcome\",\"version\":99,\"name\":\"hostb\",\"capabilities\":[]}",
                          -EPROTONOSUPPORT,
                          "version mismatch: 127.0.0.1:{port} chose protocol version 99, this end speaks version 1", NULL);
        raw_server_client("{\"type\":\"welcome\",\"version\":0,\"name\":\"hostb\",\"capabilities\":[]}",
                          -EPROTONOSUPPORT,
                          "version mismatch: 127.0.0.1:{port} chose protocol version 0, this end speaks version 1", NULL);
        raw_server_client("{\"type\":\"error\",\"code\":\"VersionMismatch\",\"message\":\"this end speaks protocol "
                          "version 2 only\"}",
                          -EPROTONOSUPPORT,
                          "127.0.0.1:{port} refused the handshake: this end speaks protocol version 2 only "
                          "(VersionMismatch)",
                          NULL);
        raw_server_client("{\"type\":\"welcome\",\"version\":1,\"name\":\"hostb\",\"capabilities\":[\"sha256\",\"x\"]}",
                          0, NULL, "sha256");
}

/* ---- malformed frames, over a raw plaintext socket ---- */

typedef struct Received {
        int r;
        char *error;
        int again_r;
} Received;

static void work_recv(Server *s) {
        Received *rc = s->userdata;
        _cleanup_json_ struct json_object *m = NULL, *m2 = NULL;

        rc->r = peer_recv(s->conn, TIMEOUT, &m, &rc->error);
        /* The connection is unusable after a protocol error. */
        rc->again_r = peer_recv(s->conn, TIMEOUT, &m2, NULL);
}

static void test_malformed(void) {
        static const struct {
                uint8_t type, flags;
                uint16_t reserved;
                int32_t len; /* -1: the length of payload */
                const char *payload, *error;
        } table[] = {
                { 1, 0, 0, 65537, "", "control frame of 65537 bytes exceeds the limit of 65536 bytes" },
                { 2, 0, 0, 1048577, "", "data frame of 1048577 bytes exceeds the limit of 1048576 bytes" },
                { 7, 0, 0, 2, "{}", "unknown frame type 7" },
                { 1, 1, 0, -1, "{\"type\":\"keepalive\"}", "frame flags 0x01 are not zero" },
                { 1, 0, 3, -1, "{\"type\":\"keepalive\"}", "reserved frame header bytes are not zero" },
                { 1, 0, 0, -1, "{\"type\":", "bad JSON in a control frame: unexpected end of data" },
                { 1, 0, 0, -1, "{\"type\":\"ack\"}x", "bad JSON in a control frame: data after the object" },
                { 1, 0, 0, -1, "[1,2]", "a control message must be a JSON object, not array" },
                { 1, 0, 0, -1, "{\"type\":\"teleport\"}", "unknown message type \"teleport\"" },
                { 1, 0, 0, -1, "{\"type\":\"rollback\",\"migration\":\"m\"}",
                  "message \"rollback\": field \"reason\" is missing" },
                { 1, 0, 0, -1,
                  "{\"type\":\"preflight\",\"migration\":\"m\",\"device\":\"d\",\"policy\":{},\"plan\":{},"
                  "\"options\":{}}",
                  "message \"preflight\": field \"device\" must be an object" },
                { 2, 0, 0, -1, "data", "a data frame arrived outside a data stream" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                Received rc = { .r = 1 };
                g_autofree char *want = NULL;
                Server s;
                int fd;

                server_start(&s, insecure_config(), work_recv, &rc);
                fd = raw_client(&s);
                raw_header(fd, table[i].type, table[i].flags, table[i].reserved,
                           table[i].len < 0 ? (uint32_t) strlen(table[i].payload) : (uint32_t) table[i].len);
                raw_write(fd, table[i].payload, strlen(table[i].payload));
                server_join(&s);
                g_assert_cmpint(s.r, ==, 0);
                want = g_strdup_printf("protocol error from 127.0.0.1:");
                assert_contains(rc.error, want);
                assert_contains(rc.error, table[i].error);
                g_assert_cmpint(rc.r, ==, -EBADMSG);
                g_assert_cmpint(rc.again_r, ==, -EBADMSG);
                free(rc.error);
                close(fd);
                server_done(&s);
        }
}

/* ---- the data stream ---- */

typedef struct Drain {
        int read_fd, write_fd;
        GChecksum *sum;
        uint64_t bytes;
        GThread *thread;
} Drain;

/* The device: a pipe emptied in small bites, slower than the network fills it. */
static gpointer drain_main(gpointer p) {
        Drain *d = p;
        static uint8_t buf[16384];

        for (;;) {
                ssize_t k = read(d->read_fd, buf, sizeof(buf));

                if (k < 0 && errno == EINTR)
                        continue;
                g_assert_cmpint(k, >=, 0);
                if (k == 0)
                        return NULL;
                g_checksum_update(d->sum, buf, k);
                d->bytes += (uint64_t) k;
                g_usleep(20);
        }
}

static void on_progress(uint64_t bytes, void *u) {
        uint64_t *last = u;

        g_assert_cmpuint(bytes, >, *last);
        *last = bytes;
}

static void work_receive_to_pipe(Server *s) {
        Drain *d = s->userdata;
        uint64_t progress = 0;

        s->work_r = peer_stream_receive(s->conn, d->write_fd, 60 * SEC, on_progress, &progress, &s->work_error);
        close(TAKE_FD(d->write_fd));
        if (s->work_r == 0) {
                g_assert_cmpuint(progress, ==, 64u * 1024 * 1024);
                send_ok(s->conn, "{\"type\":\"loaded\",\"migration\":\"m\"}");
        }
}

static uint64_t xorshift(uint64_t *state) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        return *state;
}

static void test_stream_window(void) {
        const size_t total = 64u * 1024 * 1024, chunk = 3u * 1024 * 1024 + 12345;
        g_autoptr(GChecksum) sent = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree uint8_t *buf = g_malloc(chunk);
        Drain d = { .sum = g_checksum_new(G_CHECKSUM_SHA256) };
        PeerTls ctls = insecure_config();
        _cleanup_json_ struct json_object *loaded = NULL;
        _cleanup_free_ char *error = NULL;
        PeerStreamStats stats;
        PeerConn *c = NULL;
        uint64_t state = 0x9e3779b97f4a7c15ULL;
        int pipefd[2];
        Server s;

        g_assert_cmpint(pipe2(pipefd, O_CLOEXEC), ==, 0);
        d.read_fd = pipefd[0];
        d.write_fd = pipefd[1];
        d.thread = g_thread_new("drain", drain_main, &d);

        if (cert_dir)
                ctls = tls_config("ca", "hosta");
        server_start(&s, cert_dir ? tls_config("ca", "hostb") : insecure_config(), work_receive_to_pipe, &d);
        if (client_connect(&s, &ctls, "hosta", &c, &error) < 0)
                g_error("peer_connect: %s", error);

        for (size_t done = 0; done < total;) {
                size_t n = MIN(chunk, total - done);

                for (size_t i = 0; i + 8 <= n; i += 8) {
                        uint64_t v = xorshift(&state);

                        memcpy(buf + i, &v, 8);
                }
                memset(buf + (n & ~(size_t) 7), 0x5a, n & 7);
                g_checksum_update(sent, buf, n);
                if (peer_stream_write(c, buf, n, 30 * SEC) < 0)
                        g_error("peer_stream_write: %s", peer_conn_last_error(c));
                done += n;
        }
        g_assert_cmpint(peer_stream_finish(c, TIMEOUT), ==, 0);
        g_assert_cmpint(peer_stream_finish(c, TIMEOUT), ==, -EALREADY);
        if (peer_recv(c, 60 * SEC, &loaded, &error) < 0)
                g_error("peer_recv: %s", error);
        g_assert_cmpstr(type_of(loaded), ==, "loaded");

        peer_stream_stats(c, &stats);
        g_test_message("max in flight: %" G_GUINT64_FORMAT, stats.max_in_flight);
        g_assert_cmpuint(stats.bytes, ==, total);
        g_assert_cmpuint(stats.acked, ==, total);
        g_assert_cmpuint(stats.max_in_flight, >, 0);
        g_assert_cmpuint(stats.max_in_flight, <=, PEER_DATA_WINDOW + PEER_DATA_MAX);

        server_join(&s);
        if (s.work_r < 0)
                g_error("peer_stream_receive: %s", s.work_error);
        g_thread_join(d.thread);
        g_assert_cmpuint(d.bytes, ==, total);
        g_assert_cmpstr(g_checksum_get_string(d.sum), ==, g_checksum_get_string(sent));
        peer_stream_stats(s.conn, &stats);
        g_assert_cmpuint(stats.bytes, ==, total);

        g_checksum_free(d.sum);
        close(d.read_fd);
        peer_conn_free(c);
        peer_tls_done(&ctls);
        server_done(&s);
}

typedef struct WindowSender {
        int r;
        PeerStreamStats stats;
} WindowSender;

static void work_send_32mib(Server *s) {
        WindowSender *w = s->userdata;
        g_autofree uint8_t *buf = g_malloc0(2 * PEER_DATA_WINDOW);

        w->r = peer_stream_write(s->conn, buf, 2 * PEER_DATA_WINDOW, TIMEOUT);
        if (w->r >= 0)
                w->r = peer_stream_finish(s->conn, TIMEOUT);
        peer_stream_stats(s->conn, &w->stats);
}

/* Reads frames until `limit` data bytes arrived or, with a quiet period, until nothing came for that long.
 * Returns the data bytes read; *ret_end tells whether data-end arrived. */
static uint64_t raw_read_data(int fd, uint64_t limit, int quiet_ms, bool *ret_end) {
        static uint8_t payload[PEER_DATA_MAX];
        uint64_t total = 0;

        *ret_end = false;
        while (total < limit) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                uint8_t h[8];
                uint32_t len;

                if (quiet_ms > 0 && poll(&pfd, 1, quiet_ms) == 0)
                        break;
                g_assert_true(raw_read(fd, h, sizeof(h)));
                len = (uint32_t) h[4] << 24 | (uint32_t) h[5] << 16 | (uint32_t) h[6] << 8 | h[7];
                g_assert_cmpuint(len, <=, sizeof(payload));
                g_assert_true(raw_read(fd, payload, len));
                if (h[0] == 2)
                        total += len;
                else if (memmem(payload, len, "\"data-end\"", 10)) {
                        *ret_end = true;
                        break;
                }
        }
        return total;
}

static void test_stream_window_exact(void) {
        WindowSender w = { .r = 1 };
        g_autofree char *ack = NULL;
        bool end;
        Server s;
        int fd;

        /* A receiver that reads everything at once but does not acknowledge: only the window stops the
         * sender, at exactly PEER_DATA_WINDOW bytes. */
        server_start(&s, insecure_config(), work_send_32mib, &w);
        fd = raw_client(&s);
        g_assert_cmpuint(raw_read_data(fd, PEER_DATA_WINDOW, 0, &end), ==, PEER_DATA_WINDOW);
        g_assert_false(end);
        g_assert_cmpuint(raw_read_data(fd, UINT64_MAX, 300, &end), ==, 0);
        g_assert_false(end);
        ack = g_strdup_printf("{\"type\":\"ack\",\"bytes\":%u}", PEER_DATA_WINDOW);
        raw_json(fd, ack);
        g_assert_cmpuint(raw_read_data(fd, PEER_DATA_WINDOW, 0, &end), ==, PEER_DATA_WINDOW);
        g_assert_cmpuint(raw_read_data(fd, UINT64_MAX, 0, &end), ==, 0);
        g_assert_true(end);
        server_join(&s);
        g_assert_cmpint(w.r, ==, 0);
        g_assert_cmpuint(w.stats.bytes, ==, 2 * PEER_DATA_WINDOW);
        g_assert_cmpuint(w.stats.acked, ==, PEER_DATA_WINDOW);
        g_assert_cmpuint(w.stats.max_in_flight, ==, PEER_DATA_WINDOW);
        close(fd);
        server_done(&s);
}

static void work_receive_to_null(Server *s) {
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        s->work_r = peer_stream_receive(s->conn, fd, TIMEOUT, NULL, NULL, &s->work_error);
        close(fd);
}

static void test_stream_corrupt(void) {
        static const char data[] = "hello world";
        char good[65], bad[65];
        g_autofree char *end = NULL, *want = NULL;
        Server s;
        int fd;

        sha256_hex(data, 11, good);
        sha256_hex("hello xorld", 11, bad);
        server_start(&s, insecure_config(), work_receive_to_null, NULL);
        fd = raw_client(&s);
        /* One byte flipped on the way: the receiver hashes what it got, the sender announces what it sent. */
        raw_frame(fd, 2, "hello xorld", 11);
        end = g_strdup_printf("{\"type\":\"data-end\",\"bytes\":11,\"sha256\":\"%s\"}", good);
        raw_json(fd, end);
        server_join(&s);
        g_assert_cmpint(s.work_r, ==, -EBADMSG);
        want = g_strdup_printf("data stream: SHA-256 mismatch after 11 bytes (expected %s, got %s)", good, bad);
        g_assert_cmpstr(s.work_error, ==, want);
        close(fd);
        server_done(&s);
}

static void test_stream_truncated(void) {
        static uint8_t data[1000];
        char digest[65];
        g_autofree char *end = NULL, *ack = NULL;
        Server s;
        int fd;

        sha256_hex(data, sizeof(data), digest);
        server_start(&s, insecure_config(), work_receive_to_null, NULL);
        fd = raw_client(&s);
        raw_frame(fd, 2, data, sizeof(data));
        end = g_strdup_printf("{\"type\":\"data-end\",\"bytes\":2000,\"sha256\":\"%s\"}", digest);
        raw_json(fd, end);
        ack = raw_recv_json(fd);
        g_assert_cmpstr(ack, ==, "{\"type\":\"ack\",\"bytes\":1000}");
        server_join(&s);
        g_assert_cmpint(s.work_r, ==, -EBADMSG);
        g_assert_cmpstr(s.work_error, ==, "data stream: 2000 bytes announced, 1000 received");
        close(fd);
        server_done(&s);
}

typedef struct Precopy {
        int r1, r2, r3;
        char *error;
        uint64_t bytes;
} Precopy;

static void work_precopy(Server *s) {
        Precopy *p = s->userdata;
        _cleanup_json_ struct json_object *m = NULL;
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        PeerStreamStats stats;

        p->r1 = peer_stream_receive_until(s->conn, fd, "precopy-done", TIMEOUT, NULL, NULL, &p->error);
        peer_stream_stats(s->conn, &stats);
        p->bytes = stats.bytes;
        send_ok(s->conn, "{\"type\":\"prepared\",\"migration\":\"m\"}");
        p->r2 = peer_stream_receive_until(s->conn, fd, "precopy-done", TIMEOUT, NULL, NULL, NULL);
        /* A cancel in the middle of a stream stops it, and stays for peer_recv. */
        p->r3 = peer_stream_receive(s->conn, fd, TIMEOUT, NULL, NULL, NULL);
        g_assert_cmpint(peer_recv(s->conn, TIMEOUT, &m, NULL), ==, 0);
        g_assert_cmpstr(type_of(m), ==, "cancel");
        close(fd);
}

static void test_stream_precopy(void) {
        g_autofree uint8_t *buf = g_malloc0(20u * 1024 * 1024);
        PeerTls ctls = insecure_config();
        _cleanup_free_ char *error = NULL;
        Precopy p = { .r1 = 1, .r2 = 1, .r3 = 1 };
        PeerConn *c = NULL;
        Server s;

        server_start(&s, insecure_config(), work_precopy, &p);
        if (client_connect(&s, &ctls, "hosta", &c, &error) < 0)
                g_error("peer_connect: %s", error);
        g_assert_cmpint(peer_stream_write(c, buf, 3u * 1024 * 1024, TIMEOUT), ==, 0);
        send_ok(c, "{\"type\":\"precopy-done\"}");
        /* More than a window: the "prepared" that arrives meanwhile waits in the queue. */
        g_assert_cmpint(peer_stream_write(c, buf, 20u * 1024 * 1024, TIMEOUT), ==, 0);
        g_assert_cmpint(peer_stream_finish(c, TIMEOUT), ==, 0);
        recv_expect(c, "prepared");
        send_ok(c, "{\"type\":\"cancel\",\"migration\":\"m\",\"reason\":\"operator\"}");
        server_join(&s);

        g_assert_cmpint(p.r1, ==, 0);
        g_assert_cmpuint(p.bytes, ==, 3u * 1024 * 1024);
        g_assert_cmpint(p.r2, ==, 1); /* data-end instead of another precopy-done: the stream is complete */
        g_assert_cmpint(p.r3, ==, -ECONNABORTED);
        free(p.error);
        peer_conn_free(c);
        server_done(&s);
}

/* ---- silence and abort ---- */

static void make_pair(PeerConn **ret_client, Server *s) {
        PeerTls ctls = insecure_config();
        _cleanup_free_ char *error = NULL;

        server_start(s, insecure_config(), NULL, NULL);
        if (client_connect(s, &ctls, "hosta", ret_client, &error) < 0)
                g_error("peer_connect: %s", error);
        server_join(s);
        g_assert_cmpint(s->r, ==, 0);
}

static void test_silence(void) {
        _cleanup_json_ struct json_object *m = NULL;
        _cleanup_free_ char *error = NULL;
        g_autofree char *want = NULL;
        PeerConn *c;
        gint64 start, elapsed;
        Server s;

        make_pair(&c, &s);
        /* Keepalives flow every second: a silence limit of 2 s is not reached while waiting 3 s. */
        peer_conn_set_silence_timeout(c, 2 * SEC);
        start = g_get_monotonic_time();
        g_assert_cmpint(peer_recv(c, 3 * SEC, &m, &error), ==, -ETIMEDOUT);
        assert_contains(error, "timed out after 3.0 s waiting for a message from 127.0.0.1:");
        g_assert_cmpint(g_get_monotonic_time() - start, >=, 3 * SEC);
        free(TAKE_PTR(error));

        /* The last frame the client reads is this message, read after `start`: from then on, silence. */
        peer_conn_suspend_keepalive(s.conn, true);
        start = g_get_monotonic_time();
        send_ok(s.conn, "{\"type\":\"prepare\",\"migration\":\"m\"}");
        recv_expect(c, "prepare");
        g_assert_cmpint(peer_recv(c, 30 * SEC, &m, &error), ==, -ETIMEDOUT);
        elapsed = g_get_monotonic_time() - start;
        g_test_message("silence detected after %" G_GINT64_FORMAT " us", elapsed);
        g_assert_cmpint(elapsed, >=, 2 * SEC);
        want = g_strdup_printf("127.0.0.1:%u sent nothing for 2.0 s, not even a keepalive: the peer or the link is dead",
                               s.port);
        g_assert_cmpstr(error, ==, want);
        g_assert_null(m);
        peer_conn_free(c);
        server_done(&s);
}

typedef struct Blocked {
        PeerConn *conn;
        int r;
        char *error;
} Blocked;

static gpointer blocked_recv(gpointer p) {
        Blocked *b = p;
        _cleanup_json_ struct json_object *m = NULL;

        b->r = peer_recv(b->conn, 30 * SEC, &m, &b->error);
        return NULL;
}

static void test_abort(void) {
        _cleanup_json_ struct json_object *m = NULL;
        Blocked b = { .r = 1 };
        GThread *t;
        Server s;

        make_pair(&b.conn, &s);
        t = g_thread_new("blocked", blocked_recv, &b);
        g_usleep(200000);
        peer_conn_abort(b.conn);
        g_thread_join(t);
        g_assert_cmpint(b.r, ==, -ECANCELED);
        assert_contains(b.error, "was aborted");
        g_assert_cmpint(peer_recv(b.conn, TIMEOUT, &m, NULL), ==, -ECANCELED);
        g_assert_cmpint(peer_stream_write(b.conn, "x", 1, TIMEOUT), ==, -ECANCELED);
        free(b.error);
        peer_conn_free(b.conn);
        server_done(&s);
}

static void test_send_invalid(void) {
        _cleanup_json_ struct json_object *m = json("{\"type\":\"commit\"}");
        PeerConn *c;
        Server s;

        make_pair(&c, &s);
        g_assert_cmpint(peer_send(c, m, TIMEOUT), ==, -EINVAL);
        g_assert_cmpstr(peer_conn_last_error(c), ==,
                        "refusing to send an invalid message: message \"commit\": field \"migration\" is missing");
        /* Nothing went out: the connection still works. */
        send_ok(c, "{\"type\":\"commit\",\"migration\":\"m\"}");
        recv_expect(s.conn, "commit");
        peer_conn_free(c);
        server_done(&s);
}

/* ---- set-up ---- */

static char *make_certs(void) {
        g_autofree char *dir = NULL, *script = NULL, *out = NULL, *err = NULL, *certtool = NULL;
        const char *root = g_getenv("MIGD_SOURCE_ROOT");
        const char *argv[3];
        int status;

        certtool = g_find_program_in_path("certtool");
        if (!certtool)
                return NULL;
        dir = g_dir_make_tmp("test-peer-XXXXXX", NULL);
        g_assert_nonnull(dir);
        script = g_build_filename(root ?: ".", "tests", "unit", "certs.sh", NULL);
        argv[0] = script;
        argv[1] = dir;
        argv[2] = NULL;
        if (!g_spawn_sync(NULL, (char **) argv, NULL, 0, NULL, NULL, &out, &err, &status, NULL) ||
            !g_spawn_check_wait_status(status, NULL))
                g_error("%s failed: %s", script, err);
        return TAKE_PTR(dir);
}

static void remove_certs(const char *dir) {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *name;

        if (!d)
                return;
        while ((name = g_dir_read_name(d))) {
                g_autofree char *p = g_build_filename(dir, name, NULL);

                g_unlink(p);
        }
        g_rmdir(dir);
}

int main(int argc, char *argv[]) {
        int r;

        g_test_init(&argc, &argv, NULL);
        cert_dir = make_certs();

        g_test_add_func("/peer/parse-address", test_parse_address);
        g_test_add_func("/peer/tls-defaults", test_tls_defaults);
        g_test_add_func("/peer/schema", test_schema);
        g_test_add_func("/peer/tls/ok", test_tls_ok);
        g_test_add_func("/peer/tls/server-other-ca", test_tls_server_other_ca);
        g_test_add_func("/peer/tls/server-other-name", test_tls_server_other_name);
        g_test_add_func("/peer/tls/client-other-ca", test_tls_client_other_ca);
        g_test_add_func("/peer/tls/client-claims-other-name", test_tls_client_claims_other_name);
        g_test_add_func("/peer/tls/missing-files", test_tls_missing_files);
        g_test_add_func("/peer/insecure/ok", test_insecure_ok);
        g_test_add_func("/peer/insecure/server-vs-tls-client", test_insecure_server_tls_client);
        g_test_add_func("/peer/insecure/client-vs-tls-server", test_tls_server_insecure_client);
        g_test_add_func("/peer/refused", test_refused);
        g_test_add_func("/peer/version/too-old", test_version_too_old);
        g_test_add_func("/peer/version/newer-client", test_version_newer_client);
        g_test_add_func("/peer/version/server-answers", test_version_server_answers);
        g_test_add_func("/peer/malformed", test_malformed);
        g_test_add_func("/peer/stream/window", test_stream_window);
        g_test_add_func("/peer/stream/window-exact", test_stream_window_exact);
        g_test_add_func("/peer/stream/corrupt", test_stream_corrupt);
        g_test_add_func("/peer/stream/truncated", test_stream_truncated);
        g_test_add_func("/peer/stream/precopy", test_stream_precopy);
        g_test_add_func("/peer/silence", test_silence);
        g_test_add_func("/peer/abort", test_abort);
        g_test_add_func("/peer/send-invalid", test_send_invalid);

        r = g_test_run();
        if (cert_dir)
                remove_certs(cert_dir);
        g_free(cert_dir);
        return r;
}
