/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The peer protocol: TCP with TLS 1.3 and mutual X.509 (or declared-insecure plaintext), frames, handshake,
 * keepalive, and the data stream with its window and digest. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "config.h"
#include "log.h"
#include "peer.h"
#include "util.h"

#define FRAME_HEADER_SIZE 8
#define FRAME_CONTROL 1
#define FRAME_DATA 2

#define USEC_PER_SEC_ 1000000ULL
#define USEC_PER_MSEC_ 1000ULL
#define KEEPALIVE_INTERVAL_USEC (1 * USEC_PER_SEC_)
#define KEEPALIVE_SEND_TIMEOUT_USEC (5 * USEC_PER_SEC_)
#define SILENCE_DEFAULT_USEC (5 * USEC_PER_SEC_)
#define LINGER_USEC (500 * USEC_PER_MSEC_)
#define ACK_EVERY (1024u * 1024u)
/* Frames up to this size (header included) go to GnuTLS as one piece. */
#define TLS_COALESCE_MAX 4096u
/* TLS records are at most 16 KiB: this much ciphertext is read ahead and gathered for sending, so that a
 * MiB of data costs a few syscalls instead of one or two per record. */
#define TLS_IO_BUFFER_SIZE (256u * 1024u)

/* Keepalive probes after 5 s idle, every 2 s, 3 of them; unacknowledged data fails after 15 s. */
#define TCP_KEEPIDLE_SEC 5
#define TCP_KEEPINTVL_SEC 2
#define TCP_KEEPCNT_PROBES 3
#define TCP_USER_TIMEOUT_MSEC 15000

#define PEER_PROTOCOL_VERSION_MIN 1
#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"

static const char *const local_capabilities[] = { "precopy", "postcopy-v1", "sha256" };

struct PeerConn {
        int fd;
        bool server;
        bool established; /* handshake done: silence detection applies */
        char *label;      /* "HOST:PORT" of the peer, for sentences */
        char *ca_file;
        char *verify_host;

        gnutls_certificate_credentials_t creds;
        gnutls_session_t session; /* NULL when insecure */
        uint8_t *tls_in;          /* ciphertext read ahead, [tls_in_pos, tls_in_len) not yet given to GnuTLS */
        size_t tls_in_pos, tls_in_len;
        uint8_t *tls_out;         /* ciphertext gathered while a frame is written, under send_lock */
        size_t tls_out_len;
        bool tls_out_batch;

        char *remote_name;
        uint32_t version;
        char **capabilities;

        atomic_bool aborted;
        atomic_bool keepalive_suspended;
        atomic_int keepalive_error;
        int broken; /* negative errno once the connection cannot be used any more */
        char *broken_reason;
        char *last_error;

        /* What the running call waits for, for its timeout sentence. */
        const char *what;
        uint64_t call_timeout_usec;
        uint64_t silence_usec;
        uint64_t last_rx_usec;

        /* Serializes every writer: the calling thread and the keepalive thread. */
        pthread_mutex_t send_lock;

        pthread_t keepalive_thread;
        bool keepalive_running;
        bool keepalive_stop;
        pthread_mutex_t keepalive_lock;
        pthread_cond_t keepalive_cond;

        /* The frame being received; kept across calls so that a timeout within a frame loses nothing. */
        uint8_t rx_header[FRAME_HEADER_SIZE];
        size_t rx_header_got;
        bool rx_header_done;
        uint8_t rx_type;
        uint32_t rx_len;
        size_t rx_got;
        uint8_t *rx_buf;
        size_t rx_buf_size;
        uint64_t frames_received;

        /* Control messages that arrived while this end was sending data, for the next peer_recv. */
        struct json_object **queue;
        size_t n_queue;

        gnutls_hash_hd_t tx_hash;
        uint64_t tx_bytes, tx_acked, max_in_flight;
        bool tx_finished;

        gnutls_hash_hd_t rx_hash;
        uint64_t rx_bytes, rx_acked;
        bool rx_finished;
};

/* ---- small helpers ---- */

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC_ + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t add_usec(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static double seconds(uint64_t usec) {
        return (double) usec / (double) USEC_PER_SEC_;
}

static int set_error(char **error, int r, const char *format, ...) _printf_(3, 4);
static int set_error(char **error, int r, const char *format, ...) {
        va_list ap;
        char *s;

        assert(r < 0);

        if (!error)
                return r;
        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        free(*error);
        *error = s;
        return r;
}

/* Hands the sentence to the caller of a public function and remembers it for peer_conn_last_error(). */
static int conn_fail(PeerConn *c, int r, char **error, char **ret_error) {
        assert(r < 0);

        if (!*error)
                *error = strdup(strerror(-r));
        if (c) {
                free(c->last_error);
                c->last_error = *error ? strdup(*error) : NULL;
        }
        if (ret_error)
                *ret_error = TAKE_PTR(*error);
        return r;
}

static char *address_format(const char *host, uint16_t port) {
        char *s;
        int r;

        if (strchr(host, ':'))
                r = asprintf(&s, "[%s]:%u", host, port);
        else
                r = asprintf(&s, "%s:%u", host, port);
        return r < 0 ? NULL : s;
}

static char *sockaddr_format(const struct sockaddr_storage *sa) {
        char host[INET6_ADDRSTRLEN];

        if (sa->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

                if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)))
                        return address_format(host, ntohs(in->sin_port));
        } else if (sa->ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

                if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)))
                        return address_format(host, ntohs(in6->sin6_port));
        }
        return strdup("an unknown peer");
}

static void hex_encode(const uint8_t *d, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[d[i] >> 4];
                out[2 * i + 1] = digits[d[i] & 15];
        }
        out[2 * n] = 0;
}

static const char *message_type(struct json_object *m) {
        struct json_object *t;

        return json_object_object_get_ex(m, "type", &t) ? json_object_get_string(t) : "";
}

static const char *message_string(struct json_object *m, const char *field) {
        struct json_object *v;

        return json_object_object_get_ex(m, field, &v) ? json_object_get_string(v) : "";
}

static int64_t message_int(struct json_object *m, const char *field) {
        struct json_object *v;

        return json_object_object_get_ex(m, field, &v) ? json_object_get_int64(v) : 0;
}

/* ---- addresses and sockets ---- */

static int parse_port(const char *s, uint16_t *ret) {
        unsigned long v;

        if (*s == 0 || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
                return -EINVAL;
        v = strtoul(s, NULL, 10);
        if (v > UINT16_MAX)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

int peer_parse_address(const char *s, char **ret_host, uint16_t *ret_port) {
        _cleanup_free_ char *host = NULL;
        uint16_t port = PEER_DEFAULT_PORT;
        const char *colon;
        int r;

        assert(ret_host);
        assert(ret_port);

        if (!s || *s == 0)
                return -EINVAL;

        if (*s == '[') {
                const char *end = strchr(s, ']');

                if (!end || end == s + 1)
                        return -EINVAL;
                host = strndup(s + 1, end - s - 1);
                if (!host)
                        return -ENOMEM;
                if (end[1] == ':') {
                        r = parse_port(end + 2, &port);
                        if (r < 0)
                                return r;
                } else if (end[1] != 0)
                        return -EINVAL;
        } else {
                colon = strchr(s, ':');
                /* More than one colon without brackets: a bare IPv6 address, on the default port. */
                if (colon && !strchr(colon + 1, ':')) {
                        if (colon == s)
                                return -EINVAL;
                        host = strndup(s, colon - s);
                        if (!host)
                                return -ENOMEM;
                        r = parse_port(colon + 1, &port);
                        if (r < 0)
                                return r;
                } else {
                        host = strdup(s);
                        if (!host)
                                return -ENOMEM;
                }
        }

        *ret_host = TAKE_PTR(host);
        *ret_port = port;
        return 0;
}

static int socket_setup(int fd) {
        static const struct {
                int level, name, value;
        } options[] = {
                { IPPROTO_TCP, TCP_NODELAY, 1 },
                { SOL_SOCKET, SO_KEEPALIVE, 1 },
                { IPPROTO_TCP, TCP_KEEPIDLE, TCP_KEEPIDLE_SEC },
                { IPPROTO_TCP, TCP_KEEPINTVL, TCP_KEEPINTVL_SEC },
                { IPPROTO_TCP, TCP_KEEPCNT, TCP_KEEPCNT_PROBES },
                { IPPROTO_TCP, TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MSEC },
        };
        int flags;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;

        /* Dead-link detection is an improvement, not a condition: a socket type without these still works. */
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (setsockopt(fd, options[i].level, options[i].name, &options[i].value, sizeof(int)) < 0)
                        log_debug("Cannot set socket option %d/%d: %s", options[i].level, options[i].name,
                                  strerror(errno));
        return 0;
}

/* Returns the connected fd, or a negative errno. */
static int tcp_connect_one(const struct addrinfo *ai, uint64_t deadline) {
        _cleanup_close_ int fd = -1;
        socklen_t len = sizeof(int);
        int err = 0, r;

        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
                return -errno;
        r = socket_setup(fd);
        if (r < 0)
                return r;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                for (;;) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };
                        uint64_t n = now_usec();

                        if (n >= deadline)
                                return -ETIMEDOUT;
                        r = poll(&p, 1,
                                 deadline == UINT64_MAX ? -1 : (int) MIN((deadline - n + 999) / 1000, (uint64_t) INT_MAX));
                        if (r < 0 && errno != EINTR)
                                return -errno;
                        if (r > 0)
                                break;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        return -errno;
                if (err != 0)
                        return -err;
        }
        return TAKE_FD(fd);
}

static int tcp_connect(const char *host, uint16_t port, const char *label, uint64_t deadline, uint64_t timeout_usec,
                       int *ret_fd, char **error) {
        struct addrinfo hints = {
                .ai_socktype = SOCK_STREAM,
                .ai_protocol = IPPROTO_TCP,
                .ai_flags = AI_NUMERICSERV,
        };
        struct addrinfo *list = NULL;
        char service[8];
        int last = -EHOSTUNREACH, r;

        snprintf(service, sizeof(service), "%u", port);
        r = getaddrinfo(host, service, &hints, &list);
        if (r != 0)
                return set_error(error, -EHOSTUNREACH, "cannot resolve \"%s\": %s", host,
                                 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));

        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
                r = tcp_connect_one(ai, deadline);
                if (r >= 0) {
                        freeaddrinfo(list);
                        *ret_fd = r;
                        return 0;
                }
                last = r;
                if (r == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(list);

        if (last == -ETIMEDOUT)
                return set_error(error, last, "timed out after %.1f s connecting to %s", seconds(timeout_usec), label);
        if (last == -ECONNREFUSED)
                return set_error(error, last, "connection to %s refused", label);
        return set_error(error, last, "cannot connect to %s: %s", label, strerror(-last));
}

int peer_listen(const char *address, int *ret_fd) {
        struct addrinfo hints = {
                .ai_socktype = SOCK_STREAM,
                .ai_protocol = IPPROTO_TCP,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        _cleanup_free_ char *host = NULL;
        struct addrinfo *list = NULL;
        char service[8];
        uint16_t port;
        int last = -EADDRNOTAVAIL, r;

        assert(address);
        assert(ret_fd);

        r = peer_parse_address(address, &host, &port);
        if (r < 0)
                return r;
        snprintf(service, sizeof(service), "%u", port);
        r = getaddrinfo(host, service, &hints, &list);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;

        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
                _cleanup_close_ int fd = -1;
                int one = 1;

                fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        last = -errno;
                        continue;
                }
                if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                        last = -errno;
                        continue;
                }
                freeaddrinfo(list);
                *ret_fd = TAKE_FD(fd);
                return 0;
        }
        freeaddrinfo(list);
        return last;
}

int peer_listen_port(int fd, uint16_t *ret) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);

        assert(fd >= 0);
        assert(ret);

        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        if (sa.ss_family == AF_INET)
                *ret = ntohs(((struct sockaddr_in *) &sa)->sin_port);
        else if (sa.ss_family == AF_INET6)
                *ret = ntohs(((struct sockaddr_in6 *) &sa)->sin6_port);
        else
                return -EAFNOSUPPORT;
        return 0;
}

/* ---- TLS configuration ---- */

void peer_tls_done(PeerTls *t) {
        if (!t)
                return;
        free(t->ca_file);
        free(t->cert_file);
        free(t->key_file);
        t->ca_file = t->cert_file = t->key_file = NULL;
}

int peer_tls_init_default(PeerTls *t, const char *dir, bool server) {
        _cleanup_free_ char *ca = NULL, *cert = NULL, *key = NULL;
        const char *side = server ? "server" : "client";

        assert(t);

        dir = dir ?: MIGD_PKI_DIR;
        if (asprintf(&ca, "%s/ca-cert.pem", dir) < 0) {
                ca = NULL;
                return -ENOMEM;
        }
        if (asprintf(&cert, "%s/%s-cert.pem", dir, side) < 0) {
                cert = NULL;
                return -ENOMEM;
        }
        if (asprintf(&key, "%s/%s-key.pem", dir, side) < 0) {
                key = NULL;
                return -ENOMEM;
        }
        *t = (PeerTls) {
                .ca_file = TAKE_PTR(ca),
                .cert_file = TAKE_PTR(cert),
                .key_file = TAKE_PTR(key),
        };
        return 0;
}

static int tls_check_readable(const char *what, const char *path, char **error) {
        if (!path)
                return set_error(error, -EINVAL,
                                 "TLS: no %s file configured (or declare the peer connection insecure)", what);
        if (access(path, R_OK) < 0)
                return set_error(error, -errno, "TLS: cannot read the %s file %s: %s", what, path, strerror(errno));
        return 0;
}

static int tls_credentials_load(const PeerTls *tls, gnutls_certificate_credentials_t *ret, char **error) {
        gnutls_certificate_credentials_t creds = NULL;
        int r;

        r = tls_check_readable("CA certificate", tls->ca_file, error);
        if (r < 0)
                return r;
        r = tls_check_readable("certificate", tls->cert_file, error);
        if (r < 0)
                return r;
        r = tls_check_readable("key", tls->key_file, error);
        if (r < 0)
                return r;

        if (gnutls_certificate_allocate_credentials(&creds) < 0)
                return -ENOMEM;
        r = gnutls_certificate_set_x509_trust_file(creds, tls->ca_file, GNUTLS_X509_FMT_PEM);
        if (r <= 0) {
                gnutls_certificate_free_credentials(creds);
                return set_error(error, -EINVAL, "TLS: cannot load the CA certificate from %s: %s", tls->ca_file,
                                 r < 0 ? gnutls_strerror(r) : "no certificate in the file");
        }
        r = gnutls_certificate_set_x509_key_file(creds, tls->cert_file, tls->key_file, GNUTLS_X509_FMT_PEM);
        if (r < 0) {
                gnutls_certificate_free_credentials(creds);
                return set_error(error, -EINVAL, "TLS: cannot load the certificate %s with the key %s: %s",
                                 tls->cert_file, tls->key_file, gnutls_strerror(r));
        }
        *ret = creds;
        return 0;
}

static void credentials_freep(gnutls_certificate_credentials_t *c) {
        if (*c)
                gnutls_certificate_free_credentials(*c);
}

/* ---- the connection object ---- */

static int conn_new(int fd, bool server, const char *label, PeerConn **ret) {
        _cleanup_close_ int fd_owned = fd;
        pthread_condattr_t attr;
        PeerConn *c;

        c = calloc(1, sizeof(PeerConn));
        if (!c)
                return -ENOMEM;
        c->label = strdup(label);
        if (!c->label) {
                free(c);
                return -ENOMEM;
        }
        c->fd = TAKE_FD(fd_owned);
        c->server = server;
        c->silence_usec = SILENCE_DEFAULT_USEC;
        atomic_init(&c->aborted, false);
        atomic_init(&c->keepalive_suspended, false);
        atomic_init(&c->keepalive_error, 0);
        pthread_mutex_init(&c->send_lock, NULL);
        pthread_mutex_init(&c->keepalive_lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->keepalive_cond, &attr);
        pthread_condattr_destroy(&attr);
        *ret = c;
        return 0;
}

static void keepalive_stop(PeerConn *c) {
        if (!c->keepalive_running)
                return;
        pthread_mutex_lock(&c->keepalive_lock);
        c->keepalive_stop = true;
        pthread_cond_signal(&c->keepalive_cond);
        pthread_mutex_unlock(&c->keepalive_lock);
        pthread_join(c->keepalive_thread, NULL);
        c->keepalive_running = false;
}

PeerConn *peer_conn_free(PeerConn *c) {
        if (!c)
                return NULL;

        keepalive_stop(c);
        /* A close_notify lets the peer tell a clean end from a cut link; it is one attempt, never a wait. */
        if (c->session && c->established && c->broken == 0 && !atomic_load(&c->aborted))
                (void) gnutls_bye(c->session, GNUTLS_SHUT_WR);
        if (c->session)
                gnutls_deinit(c->session);
        free(c->tls_in);
        free(c->tls_out);
        if (c->creds)
                gnutls_certificate_free_credentials(c->creds);
        if (c->fd >= 0)
                close(c->fd);
        if (c->tx_hash)
                gnutls_hash_deinit(c->tx_hash, NULL);
        if (c->rx_hash)
                gnutls_hash_deinit(c->rx_hash, NULL);
        for (size_t i = 0; i < c->n_queue; i++)
                json_object_put(c->queue[i]);
        free(c->queue);
        free(c->rx_buf);
        strv_free(c->capabilities);
        free(c->remote_name);
        free(c->broken_reason);
        free(c->last_error);
        free(c->verify_host);
        free(c->ca_file);
        free(c->label);
        pthread_cond_destroy(&c->keepalive_cond);
        pthread_mutex_destroy(&c->keepalive_lock);
        pthread_mutex_destroy(&c->send_lock);
        free(c);
        return NULL;
}

void peer_conn_freep(PeerConn **c) {
        if (*c)
                *c = peer_conn_free(*c);
}

const char *peer_conn_remote_name(const PeerConn *c) {
        assert(c);
        return c->remote_name;
}

bool peer_conn_is_tls(const PeerConn *c) {
        assert(c);
        return c->session != NULL;
}

uint32_t peer_conn_version(const PeerConn *c) {
        assert(c);
        return c->version;
}

bool peer_conn_has_capability(const PeerConn *c, const char *cap) {
        assert(c);
        assert(cap);
        return strv_contains(c->capabilities, cap);
}

void peer_conn_abort(PeerConn *c) {
        if (!c)
                return;
        atomic_store(&c->aborted, true);
        /* Wakes every poll() on the socket, in whichever thread it blocks. */
        (void) shutdown(c->fd, SHUT_RDWR);
}

void peer_conn_set_silence_timeout(PeerConn *c, uint64_t usec) {
        assert(c);
        c->silence_usec = usec;
}

const char *peer_conn_last_error(const PeerConn *c) {
        assert(c);
        return c->last_error;
}

void peer_conn_suspend_keepalive(PeerConn *c, bool suspended) {
        assert(c);
        atomic_store(&c->keepalive_suspended, suspended);
}

/* Remembers that the connection cannot be used any more (the byte stream lost its framing, or the peer
 * broke a rule) so that every later call fails with the same reason. */
static void conn_mark_broken(PeerConn *c, int r, const char *sentence) {
        if (c->broken != 0)
                return;
        c->broken = r;
        c->broken_reason = strdup(sentence ?: strerror(-r));
}

static int conn_break(PeerConn *c, int r, char **error, const char *format, ...) _printf_(4, 5);
static int conn_break(PeerConn *c, int r, char **error, const char *format, ...) {
        char *s = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        conn_mark_broken(c, r, s);
        if (error) {
                free(*error);
                *error = s;
        } else
                free(s);
        return r;
}

#define conn_protocol_error(c, error, format, ...) \
        conn_break((c), -EBADMSG, (error), "protocol error from %s: " format, (c)->label, ##__VA_ARGS__)

static int conn_cancelled(PeerConn *c, char **error) {
        return set_error(error, -ECANCELED, "the connection to %s was aborted", c->label);
}

static int conn_eof(PeerConn *c, char **error) {
        int k;

        if (atomic_load(&c->aborted))
                return conn_cancelled(c, error);
        k = atomic_load(&c->keepalive_error);
        if (k < 0)
                return set_error(error, -ECONNRESET, "the connection to %s broke: a keepalive could not be sent (%s)",
                                 c->label, strerror(-k));
        return set_error(error, -ECONNRESET, "%s closed the connection", c->label);
}

/* Checks at the start of a public call whether the connection is usable, and sets up its deadline. */
static int conn_begin(PeerConn *c, uint64_t timeout_usec, const char *what, uint64_t *ret_deadline, char **error) {
        if (atomic_load(&c->aborted))
                return conn_cancelled(c, error);
        if (c->broken != 0)
                return set_error(error, c->broken, "the connection to %s is unusable after an earlier error: %s",
                                 c->label, strna(c->broken_reason));
        c->what = what;
        c->call_timeout_usec = timeout_usec;
        *ret_deadline = add_usec(now_usec(), timeout_usec);
        return 0;
}

/* Waits until the socket is ready for `events`, the call's deadline passes, or (when receiving on an
 * established connection) the peer has been silent for too long. */
static int conn_wait(PeerConn *c, short events, uint64_t deadline, char **error) {
        for (;;) {
                struct pollfd p = { .fd = c->fd, .events = events };
                uint64_t n = now_usec(), until = deadline;
                bool silence = false;
                int r;

                if (atomic_load(&c->aborted))
                        return conn_cancelled(c, error);
                if (c->established && (events & POLLIN)) {
                        uint64_t s = add_usec(c->last_rx_usec, c->silence_usec);

                        if (s < until) {
                                until = s;
                                silence = true;
                        }
                }
                if (n >= until) {
                        if (!error)
                                return -ETIMEDOUT;
                        if (silence)
                                return set_error(error, -ETIMEDOUT,
                                                 "%s sent nothing for %.1f s, not even a keepalive: the peer or the "
                                                 "link is dead",
                                                 c->label, seconds(c->silence_usec));
                        return set_error(error, -ETIMEDOUT, "timed out after %.1f s waiting for %s %s",
                                         seconds(c->call_timeout_usec), c->what, c->label);
                }
                r = poll(&p, 1, until == UINT64_MAX ? -1 : (int) MIN((until - n + 999) / 1000, (uint64_t) INT_MAX));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return set_error(error, -errno, "cannot wait for %s: %s", c->label, strerror(errno));
                }
                if (atomic_load(&c->aborted))
                        return conn_cancelled(c, error);
                if (r > 0)
                        return 0;
        }
}

/* ---- TLS sessions ---- */

/* Sends what tls_out holds, as far as the socket takes it: 0, or a negative errno (-EAGAIN when full). */
static int tls_out_flush(PeerConn *c) {
        size_t done = 0;
        int r = 0;

        while (done < c->tls_out_len) {
                /* MSG_NOSIGNAL: a vanished peer is an error to report, not a SIGPIPE for the whole daemon. */
                ssize_t k = send(c->fd, c->tls_out + done, c->tls_out_len - done, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                done += (size_t) k;
        }
        memmove(c->tls_out, c->tls_out + done, c->tls_out_len - done);
        c->tls_out_len -= done;
        return r;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t n) {
        PeerConn *c = p;
        int r;

        /* Gathered records go first; GnuTLS repeats this call after EAGAIN, so nothing is lost. */
        if (c->tls_out_len > 0 && (!c->tls_out_batch || c->tls_out_len + n > TLS_IO_BUFFER_SIZE)) {
                r = tls_out_flush(c);
                if (r < 0) {
                        errno = -r;
                        return -1;
                }
        }
        if (c->tls_out_batch && c->tls_out_len + n <= TLS_IO_BUFFER_SIZE) {
                memcpy(c->tls_out + c->tls_out_len, data, n);
                c->tls_out_len += n;
                return (ssize_t) n;
        }
        return send(c->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static bool tls_in_buffered(const PeerConn *c) {
        return c->tls_in_pos < c->tls_in_len;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *data, size_t n) {
        PeerConn *c = p;
        size_t k;

        /* GnuTLS asks for each record's 5-byte header and then for its body. */
        if (!tls_in_buffered(c)) {
                ssize_t got = recv(c->fd, c->tls_in, TLS_IO_BUFFER_SIZE, MSG_DONTWAIT);

                if (got <= 0)
                        return got;
                c->tls_in_pos = 0;
                c->tls_in_len = (size_t) got;
        }
        k = MIN(n, c->tls_in_len - c->tls_in_pos);
        memcpy(data, c->tls_in + c->tls_in_pos, k);
        c->tls_in_pos += k;
        return (ssize_t) k;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned ms) {
        PeerConn *c = p;
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

        if (tls_in_buffered(c))
                return 1;
        return poll(&pfd, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int) MIN(ms, (unsigned) INT_MAX));
}

static bool is_ip_address(const char *host) {
        struct in6_addr a;

        return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

/* Takes the credentials, also on failure. */
static int conn_tls_setup(PeerConn *c, gnutls_certificate_credentials_t creds, const PeerTls *tls,
                          const char *verify_host, char **error) {
        int r;

        c->creds = creds;
        c->ca_file = strdup(tls->ca_file);
        c->tls_in = malloc(TLS_IO_BUFFER_SIZE);
        c->tls_out = malloc(TLS_IO_BUFFER_SIZE);
        if (!c->ca_file || !c->tls_in || !c->tls_out)
                return -ENOMEM;

        r = gnutls_init(&c->session, (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS);
        if (r < 0) {
                c->session = NULL;
                return set_error(error, -ENOMEM, "TLS: cannot create a session: %s", gnutls_strerror(r));
        }
        r = gnutls_priority_set_direct(c->session, TLS_PRIORITY, NULL);
        if (r < 0)
                return set_error(error, -EINVAL, "TLS: cannot set the priorities: %s", gnutls_strerror(r));
        r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, c->creds);
        if (r < 0)
                return set_error(error, -EINVAL, "TLS: cannot set the credentials: %s", gnutls_strerror(r));

        if (c->server) {
                gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_REQUIRE);
                /* Without the list of acceptable CAs a client presents its certificate even when another CA
                 * signed it, and the refusal can name the real reason instead of "no certificate". */
                gnutls_certificate_send_x509_rdn_sequence(c->session, 1);
                /* The claimed name arrives only with the hello: the handshake checks the chain alone. */
                gnutls_session_set_verify_cert(c->session, NULL, 0);
        } else {
                c->verify_host = strdup(verify_host);
                if (!c->verify_host)
                        return -ENOMEM;
                /* SNI carries names only, never addresses. */
                if (!is_ip_address(verify_host)) {
                        r = gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, verify_host, strlen(verify_host));
                        if (r < 0)
                                return set_error(error, -EINVAL, "TLS: cannot set the server name: %s",
                                                 gnutls_strerror(r));
                }
                gnutls_session_set_verify_cert(c->session, c->verify_host, 0);
        }

        gnutls_transport_set_ptr(c->session, c);
        gnutls_transport_set_push_function(c->session, tls_push);
        gnutls_transport_set_pull_function(c->session, tls_pull);
        gnutls_transport_set_pull_timeout_function(c->session, tls_pull_timeout);
        gnutls_handshake_set_timeout(c->session, 0);
        return 0;
}

static int tls_peer_certificate(PeerConn *c, gnutls_x509_crt_t *ret) {
        const gnutls_datum_t *list;
        gnutls_x509_crt_t crt;
        unsigned n = 0;

        list = gnutls_certificate_get_peers(c->session, &n);
        if (!list || n == 0)
                return -ENOKEY;
        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        if (gnutls_x509_crt_import(crt, &list[0], GNUTLS_X509_FMT_DER) < 0) {
                gnutls_x509_crt_deinit(crt);
                return -EBADMSG;
        }
        *ret = crt;
        return 0;
}

/* The host names and addresses a certificate is for, quoted and comma-separated, for sentences. */
static char *certificate_names(gnutls_x509_crt_t crt) {
        char *text = NULL;
        size_t text_size = 0;
        unsigned found = 0;
        FILE *f;

        f = open_memstream(&text, &text_size);
        if (!f)
                return NULL;
        for (unsigned i = 0;; i++) {
                char buf[256], addr[INET6_ADDRSTRLEN];
                size_t size = sizeof(buf) - 1;
                unsigned critical;
                int r;

                r = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, &critical);
                if (r == GNUTLS_E_SHORT_MEMORY_BUFFER)
                        continue;
                if (r < 0)
                        break;
                if (r == GNUTLS_SAN_DNSNAME) {
                        buf[size] = 0;
                        fprintf(f, "%s\"%s\"", found++ ? ", " : "", buf);
                } else if (r == GNUTLS_SAN_IPADDRESS && (size == 4 || size == 16) &&
                           inet_ntop(size == 4 ? AF_INET : AF_INET6, buf, addr, sizeof(addr)))
                        fprintf(f, "%s\"%s\"", found++ ? ", " : "", addr);
        }
        if (found == 0) {
                char cn[256];
                size_t size = sizeof(cn);

                if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &size) >= 0)
                        fprintf(f, "\"%s\"", cn);
                else
                        fputs("no host", f);
        }
        if (fclose(f) != 0) {
                free(text);
                return NULL;
        }
        return text;
}

static const char *conn_certificate_owner(const PeerConn *c) {
        return c->server ? "the client certificate of" : "the certificate of";
}

/* Turns the verification status bits into the one reason an administrator can act on. */
static int tls_verify_error(PeerConn *c, char **error) {
        unsigned status = gnutls_session_get_verify_cert_status(c->session);
        const char *whose = conn_certificate_owner(c);
        gnutls_datum_t out = {};
        int r;

        if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA | GNUTLS_CERT_SIGNATURE_FAILURE))
                return set_error(error, -EPERM, "TLS: %s %s is not signed by the CA in %s", whose, c->label,
                                 c->ca_file);
        if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
                _cleanup_free_ char *names = NULL;
                gnutls_x509_crt_t crt;

                if (tls_peer_certificate(c, &crt) >= 0) {
                        names = certificate_names(crt);
                        gnutls_x509_crt_deinit(crt);
                }
                return set_error(error, -EPERM, "TLS: %s %s names %s, not \"%s\"", whose, c->label,
                                 names ?: "another host", strna(c->verify_host));
        }
        if (status & GNUTLS_CERT_EXPIRED)
                return set_error(error, -EPERM, "TLS: %s %s has expired", whose, c->label);
        if (status & GNUTLS_CERT_NOT_ACTIVATED)
                return set_error(error, -EPERM, "TLS: %s %s is not valid yet", whose, c->label);
        if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
                return set_error(error, -EPERM, "TLS: %s %s is not meant for a TLS %s", whose, c->label,
                                 c->server ? "client" : "server");

        r = gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0);
        set_error(error, -EPERM, "TLS: %s %s was rejected: %s", whose, c->label,
                  r >= 0 && out.data ? (const char *) out.data : "verification failed");
        gnutls_free(out.data);
        return -EPERM;
}

static int tls_alert_error(PeerConn *c, char **error) {
        gnutls_alert_description_t a = gnutls_alert_get(c->session);
        const char *name = gnutls_alert_get_name(a) ?: "unknown";

        switch (a) {
        case GNUTLS_A_BAD_CERTIFICATE:
        case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
        case GNUTLS_A_CERTIFICATE_REVOKED:
        case GNUTLS_A_CERTIFICATE_EXPIRED:
        case GNUTLS_A_CERTIFICATE_UNKNOWN:
        case GNUTLS_A_UNKNOWN_CA:
        case GNUTLS_A_ACCESS_DENIED:
        case GNUTLS_A_CERTIFICATE_REQUIRED:
                return set_error(error, -EPERM, "TLS: %s rejected the certificate of this end (alert: %s)", c->label,
                                 name);
        default:
                return set_error(error, -EPROTO, "TLS: %s ended the connection with the alert \"%s\"", c->label,
                                 name);
        }
}

/* A TLS error outside the handshake. */
static int tls_error(PeerConn *c, int r, const char *doing, char **error) {
        if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
                return tls_alert_error(c, error);
        if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR)
                return conn_eof(c, error);
        return set_error(error, -EPROTO, "TLS: error %s %s: %s", doing, c->label, gnutls_strerror(r));
}

static int tls_handshake_error(PeerConn *c, int r, char **error) {
        switch (r) {
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
                return tls_verify_error(c, error);
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
                return tls_alert_error(c, error);
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
        case GNUTLS_E_CERTIFICATE_REQUIRED:
                return set_error(error, -EPERM, "TLS: %s presented no certificate", c->label);
        case GNUTLS_E_PREMATURE_TERMINATION:
        case GNUTLS_E_PULL_ERROR:
        case GNUTLS_E_PUSH_ERROR:
                if (atomic_load(&c->aborted))
                        return conn_cancelled(c, error);
                return set_error(error, -EPROTO,
                                 "TLS: the handshake with %s failed: the peer closed the connection (is it "
                                 "configured insecure?)",
                                 c->label);
        case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
        case GNUTLS_E_UNEXPECTED_PACKET:
        case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
                return set_error(error, -EPROTO, "TLS: the handshake with %s failed: %s (the peer does not speak TLS)",
                                 c->label, gnutls_strerror(r));
        default:
                return set_error(error, -EPROTO, "TLS: the handshake with %s failed: %s", c->label,
                                 gnutls_strerror(r));
        }
}

static int conn_tls_handshake(PeerConn *c, uint64_t deadline, char **error) {
        int r;

        c->what = "the TLS handshake with";
        for (;;) {
                r = gnutls_handshake(c->session);
                if (r == GNUTLS_E_SUCCESS)
                        return 0;
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                        bool out = gnutls_record_get_direction(c->session);

                        if (!out && tls_in_buffered(c))
                                continue;
                        r = conn_wait(c, out ? POLLOUT : POLLIN, deadline, error);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!gnutls_error_is_fatal(r))
                        continue;
                /* Tell the peer why, so that it fails with a reason instead of a cut connection. */
                if (r != GNUTLS_E_FATAL_ALERT_RECEIVED)
                        (void) gnutls_alert_send_appropriate(c->session, r);
                return tls_handshake_error(c, r, error);
        }
}

/* ---- reading frames ---- */

/* One non-blocking read: the number of bytes, 0 at the end of the stream, -EAGAIN when nothing is there. */
static ssize_t conn_read_once(PeerConn *c, void *buf, size_t n, char **error) {
        ssize_t k;

        if (c->session) {
                k = gnutls_record_recv(c->session, buf, n);
                if (k >= 0)
                        return k;
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal((int) k))
                        return -EAGAIN;
                if (k == GNUTLS_E_PREMATURE_TERMINATION)
                        return 0;
                return tls_error(c, (int) k, "receiving from", error);
        }

        k = recv(c->fd, buf, n, MSG_DONTWAIT);
        if (k >= 0)
                return k;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return -EAGAIN;
        if (errno == ECONNRESET || errno == EPIPE)
                return 0;
        return set_error(error, -errno, "cannot receive from %s: %s", c->label, strerror(errno));
}

static int conn_read_some(PeerConn *c, void *buf, size_t n, uint64_t deadline, bool nonblock, size_t *ret_n,
                          char **error) {
        for (;;) {
                ssize_t k;
                int r;

                if (atomic_load(&c->aborted))
                        return conn_cancelled(c, error);
                k = conn_read_once(c, buf, n, error);
                if (k > 0) {
                        c->last_rx_usec = now_usec();
                        *ret_n = (size_t) k;
                        return 0;
                }
                if (k == 0)
                        return conn_eof(c, error);
                if (k != -EAGAIN)
                        return (int) k;
                /* GnuTLS, and the read-ahead, may hold bytes that poll() cannot see. */
                if (c->session && (gnutls_record_check_pending(c->session) > 0 || tls_in_buffered(c)))
                        continue;
                if (nonblock)
                        return -EAGAIN;
                r = conn_wait(c, POLLIN, deadline, error);
                if (r < 0)
                        return r;
        }
}

static int frame_header_check(PeerConn *c, char **error) {
        const uint8_t *h = c->rx_header;
        uint32_t len = (uint32_t) h[4] << 24 | (uint32_t) h[5] << 16 | (uint32_t) h[6] << 8 | h[7];
        uint32_t max;

        /* 0x14…0x17 are TLS record types: a peer that runs TLS against this plaintext end. */
        if (!c->session && c->frames_received == 0 && h[0] >= 0x14 && h[0] <= 0x17)
                return conn_break(c, -EPROTO, error, "%s speaks TLS; this end is configured insecure", c->label);
        if (h[0] != FRAME_CONTROL && h[0] != FRAME_DATA)
                return conn_protocol_error(c, error, "unknown frame type %u", h[0]);
        if (h[1] != 0)
                return conn_protocol_error(c, error, "frame flags 0x%02x are not zero", h[1]);
        if (h[2] != 0 || h[3] != 0)
                return conn_protocol_error(c, error, "reserved frame header bytes are not zero");
        max = h[0] == FRAME_CONTROL ? PEER_CONTROL_MAX : PEER_DATA_MAX;
        if (len > max)
                return conn_protocol_error(c, error, "%s frame of %" PRIu32 " bytes exceeds the limit of %" PRIu32 " bytes",
                                           h[0] == FRAME_CONTROL ? "control" : "data", len, max);

        if (c->rx_buf_size < (size_t) len + 1) {
                uint8_t *b = realloc(c->rx_buf, (size_t) len + 1);

                if (!b)
                        return -ENOMEM;
                c->rx_buf = b;
                c->rx_buf_size = (size_t) len + 1;
        }
        c->rx_type = h[0];
        c->rx_len = len;
        c->rx_got = 0;
        return 0;
}

/* Reads one whole frame into c->rx_type/rx_buf/rx_len. With nonblock, returns -EAGAIN instead of waiting;
 * a partly read frame stays for the next call. */
static int conn_read_frame(PeerConn *c, uint64_t deadline, bool nonblock, char **error) {
        size_t got;
        int r;

        while (c->rx_header_got < FRAME_HEADER_SIZE) {
                r = conn_read_some(c, c->rx_header + c->rx_header_got, FRAME_HEADER_SIZE - c->rx_header_got,
                                   deadline, nonblock, &got, error);
                if (r < 0)
                        return r;
                c->rx_header_got += got;
        }
        if (!c->rx_header_done) {
                r = frame_header_check(c, error);
                if (r < 0)
                        return r;
                c->rx_header_done = true;
        }
        while (c->rx_got < c->rx_len) {
                r = conn_read_some(c, c->rx_buf + c->rx_got, c->rx_len - c->rx_got, deadline, nonblock, &got, error);
                if (r < 0)
                        return r;
                c->rx_got += got;
        }
        c->rx_header_got = 0;
        c->rx_header_done = false;
        c->frames_received++;
        return 0;
}

static int conn_parse_control(PeerConn *c, struct json_object **ret, char **error) {
        _cleanup_free_ char *invalid = NULL;
        struct json_tokener *tok;
        enum json_tokener_error jerr;
        struct json_object *m;
        size_t end;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        m = json_tokener_parse_ex(tok, (const char *) c->rx_buf, (int) c->rx_len);
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (jerr != json_tokener_success) {
                json_object_put(m);
                return conn_protocol_error(c, error, "bad JSON in a control frame: %s",
                                           jerr == json_tokener_continue ? "unexpected end of data"
                                                                         : json_tokener_error_desc(jerr));
        }
        for (size_t i = end; i < c->rx_len; i++)
                if (!strchr(" \t\r\n", c->rx_buf[i]) || c->rx_buf[i] == 0) {
                        json_object_put(m);
                        return conn_protocol_error(c, error, "bad JSON in a control frame: data after the object");
                }
        if (peer_message_validate(m, &invalid) < 0) {
                json_object_put(m);
                return conn_protocol_error(c, error, "%s", strna(invalid));
        }
        *ret = m;
        return 0;
}

/* Deals with the messages the library answers itself. Returns 1 when m was one of them. */
static int conn_handle_internal(PeerConn *c, struct json_object *m, char **error) {
        const char *type = message_type(m);
        uint64_t bytes;

        if (streq(type, "keepalive") || streq(type, "keepalive-ack"))
                return 1;
        if (!streq(type, "ack"))
                return 0;
        bytes = (uint64_t) message_int(m, "bytes");
        if (bytes > c->tx_bytes || bytes < c->tx_acked)
                return conn_protocol_error(c, error,
                                           "acknowledgement of %" PRIu64 " bytes, but %" PRIu64
                                           " were sent and %" PRIu64 " acknowledged before",
                                           bytes, c->tx_bytes, c->tx_acked);
        c->tx_acked = bytes;
        return 1;
}

/* Returns the next control message that is the caller's business. */
static int conn_next_control(PeerConn *c, uint64_t deadline, struct json_object **ret, char **error) {
        for (;;) {
                struct json_object *m = NULL;
                int r;

                r = conn_read_frame(c, deadline, false, error);
                if (r < 0)
                        return r;
                if (c->rx_type == FRAME_DATA)
                        return conn_protocol_error(c, error, "a data frame arrived outside a data stream");
                r = conn_parse_control(c, &m, error);
                if (r < 0)
                        return r;
                r = conn_handle_internal(c, m, error);
                if (r == 0) {
                        *ret = m;
                        return 0;
                }
                json_object_put(m);
                if (r < 0)
                        return r;
        }
}

static int queue_push(PeerConn *c, struct json_object *m, bool front) {
        struct json_object **q;

        q = realloc(c->queue, (c->n_queue + 1) * sizeof(*q));
        if (!q) {
                json_object_put(m);
                return -ENOMEM;
        }
        c->queue = q;
        if (front) {
                memmove(q + 1, q, c->n_queue * sizeof(*q));
                q[0] = m;
        } else
                q[c->n_queue] = m;
        c->n_queue++;
        return 0;
}

static struct json_object *queue_pop(PeerConn *c) {
        struct json_object *m;

        if (c->n_queue == 0)
                return NULL;
        m = c->queue[0];
        c->n_queue--;
        memmove(c->queue, c->queue + 1, c->n_queue * sizeof(*c->queue));
        return m;
}

/* ---- writing frames ---- */

static void frame_header_put(uint8_t *h, uint8_t type, uint32_t len) {
        h[0] = type;
        h[1] = 0;
        h[2] = h[3] = 0;
        h[4] = (uint8_t) (len >> 24);
        h[5] = (uint8_t) (len >> 16);
        h[6] = (uint8_t) (len >> 8);
        h[7] = (uint8_t) len;
}

/* One attempt at sending the front of iov: the byte count, or -EAGAIN when the socket is full. */
static ssize_t conn_write_once(PeerConn *c, const struct iovec *iov, size_t n_iov, char **error) {
        ssize_t k;

        if (c->session) {
                /* After GNUTLS_E_AGAIN GnuTLS wants the very same arguments again, which is what the
                 * unchanged iov gives it. */
                k = gnutls_record_send(c->session, iov->iov_base, iov->iov_len);
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                        return -EAGAIN;
                if (k < 0)
                        return tls_error(c, (int) k, "sending to", error);
                return k;
        }

        k = sendmsg(c->fd, &(struct msghdr) { .msg_iov = (struct iovec *) iov, .msg_iovlen = n_iov },
                    MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k >= 0)
                return k;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return -EAGAIN;
        if (errno == EPIPE || errno == ECONNRESET)
                return conn_eof(c, error);
        return set_error(error, -errno, "cannot send to %s: %s", c->label, strerror(errno));
}

/* Pushes out the records tls_push() gathered. */
static int tls_out_drain(PeerConn *c, uint64_t deadline, char **error) {
        while (c->tls_out_len > 0) {
                int r = tls_out_flush(c);

                if (r == -EPIPE || r == -ECONNRESET)
                        return conn_eof(c, error);
                if (r < 0 && r != -EAGAIN && r != -EWOULDBLOCK)
                        return set_error(error, r, "cannot send to %s: %s", c->label, strerror(-r));
                if (r < 0) {
                        r = conn_wait(c, POLLOUT, deadline, error);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Hands every byte that iov points to over to the socket (or to GnuTLS, whose records may wait in tls_out),
 * consuming iov on the way. One sendmsg() takes a frame's header and payload together, so a data frame never
 * needs copying into a buffer of its own. */
static int conn_write_iov(PeerConn *c, struct iovec *iov, size_t n_iov, uint64_t deadline, char **error) {
        for (;;) {
                ssize_t k;
                int r;

                while (n_iov > 0 && iov->iov_len == 0) {
                        iov++;
                        n_iov--;
                }
                if (n_iov == 0)
                        return 0;
                if (atomic_load(&c->aborted))
                        return conn_cancelled(c, error);
                k = conn_write_once(c, iov, n_iov, error);
                if (k == -EAGAIN) {
                        r = conn_wait(c, POLLOUT, deadline, error);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (k < 0)
                        return (int) k;
                for (size_t done = (size_t) k; done > 0;) {
                        size_t step = MIN(done, iov->iov_len);

                        iov->iov_base = (uint8_t *) iov->iov_base + step;
                        iov->iov_len -= step;
                        done -= step;
                        if (iov->iov_len == 0) {
                                iov++;
                                n_iov--;
                        }
                }
        }
}

/* Sends all of iov: with TLS its records gather in tls_out and leave in large sends, the last of them before
 * this returns. Callers hold send_lock (or own the connection alone). */
static int conn_write_flushed(PeerConn *c, struct iovec *iov, size_t n_iov, uint64_t deadline, char **error) {
        int r;

        c->tls_out_batch = c->session != NULL;
        r = conn_write_iov(c, iov, n_iov, deadline, error);
        c->tls_out_batch = false;
        if (r < 0)
                return r;
        return tls_out_drain(c, deadline, error);
}

static int conn_write_all(PeerConn *c, const uint8_t *p, size_t n, uint64_t deadline, char **error) {
        struct iovec iov = { .iov_base = (void *) p, .iov_len = n };

        return conn_write_flushed(c, &iov, 1, deadline, error);
}

static int conn_send_frame(PeerConn *c, uint8_t type, const void *payload, size_t len, uint64_t deadline,
                           char **error) {
        uint8_t header[FRAME_HEADER_SIZE], small[TLS_COALESCE_MAX];
        struct iovec iov[] = {
                { .iov_base = header, .iov_len = sizeof(header) },
                { .iov_base = (void *) payload, .iov_len = len },
        };
        size_t n_iov = ELEMENTSOF(iov);
        int r;

        frame_header_put(header, type, (uint32_t) len);
        /* GnuTLS makes a record of every piece: a small frame goes in one, a data frame's header may well be
         * a record of its own. */
        if (c->session && len <= sizeof(small) - FRAME_HEADER_SIZE) {
                memcpy(small, header, FRAME_HEADER_SIZE);
                if (len > 0)
                        memcpy(small + FRAME_HEADER_SIZE, payload, len);
                iov[0] = (struct iovec) { .iov_base = small, .iov_len = FRAME_HEADER_SIZE + len };
                n_iov = 1;
        }
        pthread_mutex_lock(&c->send_lock);
        r = conn_write_flushed(c, iov, n_iov, deadline, error);
        pthread_mutex_unlock(&c->send_lock);

        /* Part of a frame may be out: the byte stream has lost its framing. */
        if (r < 0 && r != -ECANCELED)
                conn_mark_broken(c, r, error ? *error : NULL);
        return r;
}

static int conn_send_message(PeerConn *c, struct json_object *m, uint64_t deadline, char **error) {
        _cleanup_free_ char *invalid = NULL;
        const char *s;
        size_t n;

        if (peer_message_validate(m, &invalid) < 0)
                return set_error(error, -EINVAL, "refusing to send an invalid message: %s", strna(invalid));
        s = json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!s)
                return -ENOMEM;
        if (n > PEER_CONTROL_MAX)
                return set_error(error, -EMSGSIZE, "message \"%s\" of %zu bytes exceeds the limit of %u bytes",
                                 message_type(m), n, PEER_CONTROL_MAX);
        return conn_send_frame(c, FRAME_CONTROL, s, n, deadline, error);
}

/* ---- keepalive ---- */

static int keepalive_send(PeerConn *c) {
        static const char json[] = "{\"type\":\"keepalive\"}";
        uint8_t frame[FRAME_HEADER_SIZE + sizeof(json) - 1];
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        int r;

        if (atomic_load(&c->aborted))
                return -ECANCELED;
        if (atomic_load(&c->keepalive_suspended))
                return 0;
        /* Whoever holds the lock is sending, and any frame resets the peer's silence timer as well. */
        if (pthread_mutex_trylock(&c->send_lock) != 0)
                return 0;
        /* A full send buffer means the peer has not read our earlier frames yet, which will do as well. */
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) {
                pthread_mutex_unlock(&c->send_lock);
                return 0;
        }
        frame_header_put(frame, FRAME_CONTROL, sizeof(json) - 1);
        memcpy(frame + FRAME_HEADER_SIZE, json, sizeof(json) - 1);
        r = conn_write_all(c, frame, sizeof(frame), add_usec(now_usec(), KEEPALIVE_SEND_TIMEOUT_USEC), NULL);
        pthread_mutex_unlock(&c->send_lock);

        if (r < 0 && !atomic_load(&c->aborted)) {
                /* The stream may hold half a frame now: make the calling thread notice at once. */
                atomic_store(&c->keepalive_error, r);
                (void) shutdown(c->fd, SHUT_RDWR);
        }
        return r;
}

static struct timespec timespec_after(uint64_t usec) {
        uint64_t t = add_usec(now_usec(), usec);

        return (struct timespec) {
                .tv_sec = (time_t) (t / USEC_PER_SEC_),
                .tv_nsec = (long) (t % USEC_PER_SEC_) * 1000,
        };
}

static void *keepalive_main(void *userdata) {
        PeerConn *c = userdata;
        struct timespec next;

        pthread_mutex_lock(&c->keepalive_lock);
        next = timespec_after(KEEPALIVE_INTERVAL_USEC);
        while (!c->keepalive_stop) {
                int r;

                r = pthread_cond_timedwait(&c->keepalive_cond, &c->keepalive_lock, &next);
                if (c->keepalive_stop)
                        break;
                if (r != ETIMEDOUT)
                        continue;
                pthread_mutex_unlock(&c->keepalive_lock);
                r = keepalive_send(c);
                pthread_mutex_lock(&c->keepalive_lock);
                if (r < 0)
                        break;
                next = timespec_after(KEEPALIVE_INTERVAL_USEC);
        }
        pthread_mutex_unlock(&c->keepalive_lock);
        return NULL;
}

/* The connection is ready for the caller: silence detection starts, and so do our keepalives. */
static int conn_establish(PeerConn *c) {
        sigset_t all, saved;
        int r;

        c->established = true;
        c->last_rx_usec = now_usec();

        /* Signals belong to the daemon's main loop, never to this helper thread. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
        r = pthread_create(&c->keepalive_thread, NULL, keepalive_main, c);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;
        c->keepalive_running = true;
        return 0;
}

/* ---- handshake ---- */

static void log_insecure(const PeerConn *c) {
        log_full(LOG_WARNING, 0, MIGD_MESSAGE_INSECURE_PEER, NULL, NULL,
                 "Peer connection %s %s is unencrypted and unauthenticated (insecure mode): anyone on the network "
                 "can read or forge migration messages and device data.",
                 c->server ? "from" : "to", c->label);
}

/* Closing with unread input makes the kernel send a reset, which can destroy an error or alert just sent
 * before the peer reads it: stop sending, then discard input until the peer closes, briefly. */
static void conn_linger(PeerConn *c) {
        uint64_t until = add_usec(now_usec(), LINGER_USEC);
        uint8_t buf[4096];

        if (atomic_load(&c->aborted))
                return;
        (void) shutdown(c->fd, SHUT_WR);
        for (;;) {
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                uint64_t n = now_usec();
                ssize_t k;

                if (n >= until || poll(&p, 1, (int) ((until - n + 999) / 1000)) <= 0)
                        return;
                k = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        return;
        }
}

static struct json_object *capabilities_new(void) {
        struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(local_capabilities); i++)
                if (json_object_array_add(a, json_object_new_string(local_capabilities[i])) < 0) {
                        json_object_put(a);
                        return NULL;
                }
        return a;
}

static int capabilities_intersect(struct json_object *theirs, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        struct json_object *a;
        int r;

        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        if (!json_object_object_get_ex(theirs, "capabilities", &a))
                return -EBADMSG;
        for (size_t i = 0; i < ELEMENTSOF(local_capabilities); i++)
                for (size_t j = 0; j < json_object_array_length(a); j++)
                        if (streq(json_object_get_string(json_object_array_get_idx(a, j)), local_capabilities[i])) {
                                r = strv_extend(&l, local_capabilities[i]);
                                if (r < 0)
                                        return r;
                                break;
                        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int json_add(struct json_object *o, const char *key, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static struct json_object *message_new(const char *type) {
        struct json_object *m = json_object_new_object();

        if (m && json_add(m, "type", json_object_new_string(type)) < 0) {
                json_object_put(m);
                return NULL;
        }
        return m;
}

static int handshake_message_new(const char *type, uint32_t version, const char *name, struct json_object **ret) {
        _cleanup_json_ struct json_object *m = NULL;

        m = message_new(type);
        if (!m)
                return -ENOMEM;
        if ((streq(type, "hello") && json_add(m, "protocol", json_object_new_string(PEER_PROTOCOL_NAME)) < 0) ||
            json_add(m, "version", json_object_new_int64(version)) < 0 ||
            json_add(m, "name", json_object_new_string(name)) < 0 ||
            json_add(m, "capabilities", capabilities_new()) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(m);
        return 0;
}

/* Tells a client why the handshake failed, in its own framing; failures to do so change nothing. */
static void server_refuse(PeerConn *c, const char *code, const char *message, uint64_t deadline) {
        _cleanup_json_ struct json_object *m = NULL;

        m = message_new("error");
        if (!m || json_add(m, "code", json_object_new_string(code)) < 0 ||
            json_add(m, "message", json_object_new_string(message)) < 0)
                return;
        (void) conn_send_message(c, m, deadline, NULL);
}

/* A plaintext client starts with a control frame, which GnuTLS would only call a bad record: look at the
 * first byte before the handshake and answer in the client's own framing. */
static int server_refuse_plaintext(PeerConn *c, uint64_t deadline, char **error) {
        uint8_t b;
        int r;

        c->what = "the TLS handshake with";
        for (;;) {
                ssize_t k = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

                if (k == 1)
                        break;
                if (k == 0)
                        return conn_eof(c, error);
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                        return set_error(error, -errno, "cannot receive from %s: %s", c->label, strerror(errno));
                r = conn_wait(c, POLLIN, deadline, error);
                if (r < 0)
                        return r;
        }
        if (b != FRAME_CONTROL)
                return 0;
        server_refuse(c, "TlsRequired", "this end requires TLS, and the peer is configured insecure", deadline);
        return set_error(error, -EPROTO, "%s speaks plaintext (configured insecure); this end requires TLS", c->label);
}

static int version_mismatch_errno(const char *code) {
        if (streq(code, "VersionMismatch") || streq(code, "ProtocolMismatch"))
                return -EPROTONOSUPPORT;
        if (streq(code, "AuthenticationFailed"))
                return -EPERM;
        return -EPROTO;
}

static int client_handshake(PeerConn *c, const char *local_name, uint64_t deadline, char **error) {
        _cleanup_json_ struct json_object *hello = NULL, *answer = NULL;
        const char *type;
        int64_t version;
        int r;

        r = handshake_message_new("hello", PEER_PROTOCOL_VERSION, local_name, &hello);
        if (r < 0)
                return r;
        c->what = "the welcome from";
        r = conn_send_message(c, hello, deadline, error);
        if (r < 0)
                return r;
        r = conn_next_control(c, deadline, &answer, error);
        if (r == -ECONNRESET && c->session)
                return set_error(error, -EPERM,
                                 "TLS: %s closed the connection right after the handshake; it probably rejected the "
                                 "certificate of this end",
                                 c->label);
        if (r < 0)
                return r;

        type = message_type(answer);
        if (streq(type, "error")) {
                const char *code = message_string(answer, "code");

                return set_error(error, version_mismatch_errno(code), "%s refused the handshake: %s (%s)", c->label,
                                 message_string(answer, "message"), code);
        }
        if (!streq(type, "welcome"))
                return conn_protocol_error(c, error, "expected \"welcome\" or \"error\", got \"%s\"", type);

        /* The server picks min(ours, its own): anything else is a server this end cannot talk to. */
        version = message_int(answer, "version");
        if (version < PEER_PROTOCOL_VERSION_MIN || version > PEER_PROTOCOL_VERSION)
                return set_error(error, -EPROTONOSUPPORT,
                                 "version mismatch: %s chose protocol version %" PRId64 ", this end speaks version %d",
                                 c->label, version, PEER_PROTOCOL_VERSION);

        c->remote_name = strdup(message_string(answer, "name"));
        if (!c->remote_name)
                return -ENOMEM;
        c->version = (uint32_t) version;
        return capabilities_intersect(answer, &c->capabilities);
}

/* The hello's name must be one the client certificate is for: a certificate of one host must not let it
 * pose as another. */
static int server_check_name(PeerConn *c, const char *name, uint64_t deadline, char **error) {
        _cleanup_free_ char *names = NULL, *told = NULL;
        gnutls_x509_crt_t crt;
        bool ok;
        int r;

        r = tls_peer_certificate(c, &crt);
        if (r < 0)
                return set_error(error, -EPERM, "TLS: %s presented no certificate", c->label);
        ok = gnutls_x509_crt_check_hostname(crt, name);
        if (!ok)
                names = certificate_names(crt);
        gnutls_x509_crt_deinit(crt);
        if (ok)
                return 0;

        if (asprintf(&told, "the client certificate names %s, not \"%s\"", strna(names), name) < 0)
                told = NULL;
        server_refuse(c, "AuthenticationFailed", told ?: "the client certificate does not name the client", deadline);
        return set_error(error, -EPERM, "TLS: the client certificate of %s names %s, not \"%s\"", c->label,
                         strna(names), name);
}

static int server_handshake(PeerConn *c, const char *local_name, uint64_t deadline, char **error) {
        _cleanup_json_ struct json_object *hello = NULL, *welcome = NULL;
        _cleanup_free_ char *told = NULL;
        const char *name, *protocol;
        int64_t version, chosen;
        int r;

        c->what = "the hello from";
        r = conn_next_control(c, deadline, &hello, error);
        if (r == -EBADMSG)
                server_refuse(c, "ProtocolError", *error ?: "malformed hello", deadline);
        if (r < 0)
                return r;
        if (!streq(message_type(hello), "hello")) {
                server_refuse(c, "ProtocolError", "the first message must be \"hello\"", deadline);
                return conn_protocol_error(c, error, "expected \"hello\", got \"%s\"", message_type(hello));
        }

        protocol = message_string(hello, "protocol");
        if (!streq(protocol, PEER_PROTOCOL_NAME)) {
                server_refuse(c, "ProtocolMismatch", "this end speaks \"" PEER_PROTOCOL_NAME "\"", deadline);
                return set_error(error, -EPROTONOSUPPORT, "%s speaks the protocol \"%s\", not \"%s\"", c->label,
                                 protocol, PEER_PROTOCOL_NAME);
        }

        version = message_int(hello, "version");
        chosen = MIN(version, (int64_t) PEER_PROTOCOL_VERSION);
        if (chosen < PEER_PROTOCOL_VERSION_MIN) {
                if (asprintf(&told, "this end speaks protocol version %d, the client offered version %" PRId64,
                             PEER_PROTOCOL_VERSION, version) < 0)
                        told = NULL;
                server_refuse(c, "VersionMismatch", told ?: "unsupported protocol version", deadline);
                return set_error(error, -EPROTONOSUPPORT,
                                 "version mismatch: %s offered protocol version %" PRId64 ", this end speaks version %d",
                                 c->label, version, PEER_PROTOCOL_VERSION);
        }

        name = message_string(hello, "name");
        if (c->session) {
                r = server_check_name(c, name, deadline, error);
                if (r < 0)
                        return r;
        }

        c->remote_name = strdup(name);
        if (!c->remote_name)
                return -ENOMEM;
        c->version = (uint32_t) chosen;
        r = capabilities_intersect(hello, &c->capabilities);
        if (r < 0)
                return r;

        r = handshake_message_new("welcome", c->version, local_name, &welcome);
        if (r < 0)
                return r;
        return conn_send_message(c, welcome, deadline, error);
}

int peer_connect(const char *host, uint16_t port, const PeerTls *tls, const char *local_name, uint64_t timeout_usec,
                 PeerConn **ret, char **ret_error) {
        _cleanup_(credentials_freep) gnutls_certificate_credentials_t creds = NULL;
        _cleanup_(peer_conn_freep) PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL, *label = NULL;
        uint64_t deadline;
        int fd = -1, r;

        assert(host);
        assert(tls);
        assert(local_name);
        assert(ret);

        deadline = add_usec(now_usec(), timeout_usec);
        label = address_format(host, port);
        if (!label)
                return -ENOMEM;
        /* Configuration errors come first, without touching the network. */
        if (!tls->insecure) {
                r = tls_credentials_load(tls, &creds, &error);
                if (r < 0)
                        return conn_fail(NULL, r, &error, ret_error);
        }

        r = tcp_connect(host, port, label, deadline, timeout_usec, &fd, &error);
        if (r < 0)
                return conn_fail(NULL, r, &error, ret_error);
        r = conn_new(fd, false, label, &c);
        if (r < 0)
                return r;
        c->call_timeout_usec = timeout_usec;

        if (tls->insecure)
                log_insecure(c);
        else {
                r = conn_tls_setup(c, TAKE_PTR(creds), tls, host, &error);
                if (r < 0)
                        return conn_fail(NULL, r, &error, ret_error);
                r = conn_tls_handshake(c, deadline, &error);
                if (r < 0) {
                        conn_linger(c);
                        return conn_fail(NULL, r, &error, ret_error);
                }
        }

        r = client_handshake(c, local_name, deadline, &error);
        if (r < 0) {
                conn_linger(c);
                return conn_fail(NULL, r, &error, ret_error);
        }
        r = conn_establish(c);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int peer_accept(int fd, const PeerTls *tls, const char *local_name, uint64_t timeout_usec, PeerConn **ret,
                char **ret_error) {
        _cleanup_(credentials_freep) gnutls_certificate_credentials_t creds = NULL;
        _cleanup_(peer_conn_freep) PeerConn *c = NULL;
        _cleanup_free_ char *error = NULL, *label = NULL;
        struct sockaddr_storage sa = {};
        socklen_t len = sizeof(sa);
        uint64_t deadline;
        int r;

        assert(fd >= 0);
        assert(tls);
        assert(local_name);
        assert(ret);

        deadline = add_usec(now_usec(), timeout_usec);
        if (getpeername(fd, (struct sockaddr *) &sa, &len) < 0)
                sa.ss_family = AF_UNSPEC;
        label = sockaddr_format(&sa);
        if (!label) {
                close(fd);
                return -ENOMEM;
        }
        r = conn_new(fd, true, label, &c);
        if (r < 0)
                return r;
        c->call_timeout_usec = timeout_usec;
        r = socket_setup(c->fd);
        if (r < 0)
                return r;

        if (tls->insecure)
                log_insecure(c);
        else {
                r = tls_credentials_load(tls, &creds, &error);
                if (r < 0)
                        return conn_fail(NULL, r, &error, ret_error);
                r = server_refuse_plaintext(c, deadline, &error);
                if (r >= 0)
                        r = conn_tls_setup(c, TAKE_PTR(creds), tls, NULL, &error);
                if (r >= 0)
                        r = conn_tls_handshake(c, deadline, &error);
                if (r < 0) {
                        conn_linger(c);
                        return conn_fail(NULL, r, &error, ret_error);
                }
        }

        r = server_handshake(c, local_name, deadline, &error);
        if (r < 0) {
                conn_linger(c);
                return conn_fail(NULL, r, &error, ret_error);
        }
        r = conn_establish(c);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- control messages ---- */

int peer_send(PeerConn *c, struct json_object *msg, uint64_t timeout_usec) {
        _cleanup_free_ char *error = NULL;
        uint64_t deadline;
        int r;

        assert(c);
        assert(msg);

        r = conn_begin(c, timeout_usec, "room to send to", &deadline, &error);
        if (r >= 0)
                r = conn_send_message(c, msg, deadline, &error);
        if (r < 0)
                return conn_fail(c, r, &error, NULL);
        return 0;
}

int peer_recv(PeerConn *c, uint64_t timeout_usec, struct json_object **ret, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        struct json_object *m;
        uint64_t deadline;
        int r;

        assert(c);
        assert(ret);

        r = conn_begin(c, timeout_usec, "a message from", &deadline, &error);
        if (r < 0)
                return conn_fail(c, r, &error, ret_error);
        m = queue_pop(c);
        if (!m) {
                r = conn_next_control(c, deadline, &m, &error);
                if (r < 0)
                        return conn_fail(c, r, &error, ret_error);
        }
        *ret = m;
        return 0;
}

/* ---- the data stream ---- */

static int hash_init(gnutls_hash_hd_t *h) {
        if (*h)
                return 0;
        return gnutls_hash_init(h, GNUTLS_DIG_SHA256) < 0 ? -ENOMEM : 0;
}

/* Reads one frame as a sender must: acknowledgements move the window, other messages wait for peer_recv. */
static int sender_pump(PeerConn *c, uint64_t deadline, bool nonblock, char **error) {
        struct json_object *m = NULL;
        int r;

        r = conn_read_frame(c, deadline, nonblock, error);
        if (r < 0)
                return r;
        if (c->rx_type == FRAME_DATA)
                return conn_protocol_error(c, error, "a data frame arrived while this end was sending data");
        r = conn_parse_control(c, &m, error);
        if (r < 0)
                return r;
        r = conn_handle_internal(c, m, error);
        if (r != 0) {
                json_object_put(m);
                return MIN(r, 0);
        }
        return queue_push(c, m, false);
}

int peer_stream_write(PeerConn *c, const void *buf, size_t n, uint64_t timeout_usec) {
        _cleanup_free_ char *error = NULL;
        const uint8_t *p = buf;
        uint64_t deadline;
        int r;

        assert(c);
        assert(buf || n == 0);

        r = conn_begin(c, timeout_usec, "an acknowledgement from", &deadline, &error);
        if (r < 0)
                return conn_fail(c, r, &error, NULL);
        if (c->tx_finished) {
                set_error(&error, -EALREADY, "the data stream to %s is already finished", c->label);
                return conn_fail(c, -EALREADY, &error, NULL);
        }
        r = hash_init(&c->tx_hash);
        if (r < 0)
                return conn_fail(c, r, &error, NULL);

        while (n > 0) {
                size_t chunk;

                /* Take what is there without waiting, so the window is as open as it can be. */
                do
                        r = sender_pump(c, deadline, true, &error);
                while (r >= 0);
                if (r != -EAGAIN)
                        return conn_fail(c, r, &error, NULL);

                while (c->tx_bytes - c->tx_acked >= PEER_DATA_WINDOW) {
                        r = sender_pump(c, deadline, false, &error);
                        if (r < 0)
                                return conn_fail(c, r, &error, NULL);
                }

                chunk = MIN(n, (size_t) PEER_DATA_MAX);
                chunk = MIN(chunk, (size_t) (PEER_DATA_WINDOW - (c->tx_bytes - c->tx_acked)));
                gnutls_hash(c->tx_hash, p, chunk);
                r = conn_send_frame(c, FRAME_DATA, p, chunk, deadline, &error);
                if (r < 0)
                        return conn_fail(c, r, &error, NULL);
                c->tx_bytes += chunk;
                c->max_in_flight = MAX(c->max_in_flight, c->tx_bytes - c->tx_acked);
                p += chunk;
                n -= chunk;
        }
        return 0;
}

int peer_stream_finish(PeerConn *c, uint64_t timeout_usec) {
        _cleanup_json_ struct json_object *m = NULL;
        _cleanup_free_ char *error = NULL;
        uint8_t digest[PEER_SHA256_SIZE];
        char hex[PEER_SHA256_SIZE * 2 + 1];
        uint64_t deadline;
        int r;

        assert(c);

        r = conn_begin(c, timeout_usec, "room to send to", &deadline, &error);
        if (r < 0)
                return conn_fail(c, r, &error, NULL);
        if (c->tx_finished) {
                set_error(&error, -EALREADY, "the data stream to %s is already finished", c->label);
                return conn_fail(c, -EALREADY, &error, NULL);
        }
        r = hash_init(&c->tx_hash);
        if (r < 0)
                return conn_fail(c, r, &error, NULL);
        gnutls_hash_output(c->tx_hash, digest);
        hex_encode(digest, sizeof(digest), hex);

        m = message_new("data-end");
        if (!m || json_add(m, "bytes", json_object_new_int64((int64_t) c->tx_bytes)) < 0 ||
            json_add(m, "sha256", json_object_new_string(hex)) < 0)
                return conn_fail(c, -ENOMEM, &error, NULL);
        r = conn_send_message(c, m, deadline, &error);
        if (r < 0)
                return conn_fail(c, r, &error, NULL);
        c->tx_finished = true;
        return 0;
}

static int receiver_ack(PeerConn *c, uint64_t deadline, char **error) {
        _cleanup_json_ struct json_object *m = NULL;
        int r;

        if (c->rx_bytes == c->rx_acked)
                return 0;
        m = message_new("ack");
        if (!m || json_add(m, "bytes", json_object_new_int64((int64_t) c->rx_bytes)) < 0)
                return -ENOMEM;
        r = conn_send_message(c, m, deadline, error);
        if (r < 0)
                return r;
        c->rx_acked = c->rx_bytes;
        return 0;
}

static int write_fully(PeerConn *c, int fd, const uint8_t *p, size_t n, uint64_t deadline, char **error) {
        while (n > 0) {
                ssize_t k;

                if (atomic_load(&c->aborted))
                        return conn_cancelled(c, error);
                k = write(fd, p, n);
                if (k < 0) {
                        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                        uint64_t now = now_usec();

                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return set_error(error, -errno, "data stream: cannot write to the device: %s",
                                                 strerror(errno));
                        if (now >= deadline)
                                return set_error(error, -ETIMEDOUT,
                                                 "data stream: timed out after %.1f s writing to the device",
                                                 seconds(c->call_timeout_usec));
                        (void) poll(&pfd, 1,
                                    deadline == UINT64_MAX ? -1 : (int) MIN((deadline - now + 999) / 1000, (uint64_t) INT_MAX));
                        continue;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int receiver_data(PeerConn *c, int fd, uint64_t deadline, void (*on_progress)(uint64_t bytes, void *u),
                         void *userdata, char **error) {
        int r;

        if (c->rx_finished)
                return conn_protocol_error(c, error, "a data frame arrived after the end of the data stream");
        r = write_fully(c, fd, c->rx_buf, c->rx_len, deadline, error);
        if (r < 0)
                return r;
        gnutls_hash(c->rx_hash, c->rx_buf, c->rx_len);
        c->rx_bytes += c->rx_len;
        if (on_progress)
                on_progress(c->rx_bytes, userdata);
        if (c->rx_bytes - c->rx_acked >= ACK_EVERY)
                return receiver_ack(c, deadline, error);
        return 0;
}

static int receiver_end(PeerConn *c, struct json_object *m, uint64_t deadline, char **error) {
        uint8_t digest[PEER_SHA256_SIZE];
        char hex[PEER_SHA256_SIZE * 2 + 1];
        uint64_t announced = (uint64_t) message_int(m, "bytes");
        const char *expected = message_string(m, "sha256");
        int r;

        if (c->rx_finished)
                return conn_protocol_error(c, error, "a second \"data-end\" arrived");
        r = receiver_ack(c, deadline, error);
        if (r < 0)
                return r;
        gnutls_hash_output(c->rx_hash, digest);
        hex_encode(digest, sizeof(digest), hex);
        c->rx_finished = true;

        if (announced != c->rx_bytes)
                return set_error(error, -EBADMSG, "data stream: %" PRIu64 " bytes announced, %" PRIu64 " received",
                                 announced, c->rx_bytes);
        if (!streq(expected, hex))
                return set_error(error, -EBADMSG,
                                 "data stream: SHA-256 mismatch after %" PRIu64 " bytes (expected %s, got %s)",
                                 c->rx_bytes, expected, hex);
        return 0;
}

/* Returns 0 when until_type arrived, 1 when the stream ended and checked out. */
static int stream_receive(PeerConn *c, int fd, const char *until_type, uint64_t timeout_usec,
                          void (*on_progress)(uint64_t bytes, void *u), void *userdata, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        uint64_t deadline;
        int r;

        assert(c);
        assert(fd >= 0);

        r = conn_begin(c, timeout_usec, "data from", &deadline, &error);
        if (r < 0)
                return conn_fail(c, r, &error, ret_error);
        r = hash_init(&c->rx_hash);
        if (r < 0)
                return conn_fail(c, r, &error, ret_error);

        for (;;) {
                _cleanup_json_ struct json_object *m = queue_pop(c);
                const char *type;

                if (!m) {
                        r = conn_read_frame(c, deadline, false, &error);
                        if (r < 0)
                                return conn_fail(c, r, &error, ret_error);
                        if (c->rx_type == FRAME_DATA) {
                                r = receiver_data(c, fd, deadline, on_progress, userdata, &error);
                                if (r < 0)
                                        return conn_fail(c, r, &error, ret_error);
                                continue;
                        }
                        r = conn_parse_control(c, &m, &error);
                        if (r >= 0)
                                r = conn_handle_internal(c, m, &error);
                        if (r < 0)
                                return conn_fail(c, r, &error, ret_error);
                        if (r > 0)
                                continue;
                }

                type = message_type(m);
                if (streq(type, "data-end")) {
                        r = receiver_end(c, m, deadline, &error);
                        if (r < 0)
                                return conn_fail(c, r, &error, ret_error);
                        return 1;
                }
                if (until_type && streq(type, until_type)) {
                        /* Empty the sender's window: it may wait for us while we leave the stream. */
                        r = receiver_ack(c, deadline, &error);
                        if (r < 0)
                                return conn_fail(c, r, &error, ret_error);
                        return 0;
                }
                if (streq(type, "error") || streq(type, "cancel") || streq(type, "rollback")) {
                        /* The caller must see why: the message stays for its peer_recv. */
                        set_error(&error, -ECONNABORTED, "data stream from %s interrupted by \"%s\": %s", c->label,
                                  type, message_string(m, streq(type, "error") ? "message" : "reason"));
                        r = queue_push(c, TAKE_PTR(m), true);
                        return conn_fail(c, r < 0 ? r : -ECONNABORTED, &error, ret_error);
                }
                r = conn_protocol_error(c, &error, "unexpected message \"%s\" during the data stream", type);
                return conn_fail(c, r, &error, ret_error);
        }
}

int peer_stream_receive(PeerConn *c, int fd, uint64_t timeout_usec, void (*on_progress)(uint64_t bytes, void *u),
                        void *userdata, char **ret_error) {
        int r;

        r = stream_receive(c, fd, NULL, timeout_usec, on_progress, userdata, ret_error);
        return MIN(r, 0);
}

int peer_stream_receive_until(PeerConn *c, int fd, const char *until_type, uint64_t timeout_usec,
                              void (*on_progress)(uint64_t bytes, void *u), void *userdata, char **ret_error) {
        assert(until_type);

        return stream_receive(c, fd, until_type, timeout_usec, on_progress, userdata, ret_error);
}

void peer_stream_stats(const PeerConn *c, PeerStreamStats *ret) {
        assert(c);
        assert(ret);

        /* The sending end reports what it sent; an end that only received reports what it received. */
        if (c->tx_bytes > 0 || c->tx_finished)
                *ret = (PeerStreamStats) {
                        .bytes = c->tx_bytes,
                        .acked = c->tx_acked,
                        .max_in_flight = c->max_in_flight,
                };
        else
                *ret = (PeerStreamStats) {
                        .bytes = c->rx_bytes,
                        .acked = c->rx_acked,
                };
}
