/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The peer protocol between two migd instances: TLS (or declared-insecure) TCP, JSON control, binary data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define PEER_PROTOCOL_NAME "migd-peer"
#define PEER_PROTOCOL_VERSION 1
#define PEER_DEFAULT_PORT 7480
#define PEER_CONTROL_MAX (64u * 1024u)       /* largest JSON control frame */
#define PEER_DATA_MAX (1024u * 1024u)        /* largest data frame payload */
#define PEER_DATA_WINDOW (16u * 1024u * 1024u) /* data bytes a sender may have un-acknowledged */
#define PEER_SHA256_SIZE 32

typedef struct PeerTls {
        bool insecure;   /* plaintext; both ends log that they run without TLS */
        char *ca_file;   /* default /etc/pki/migd/ca-cert.pem */
        char *cert_file; /* server-cert.pem when accepting, client-cert.pem when connecting */
        char *key_file;  /* server-key.pem / client-key.pem */
} PeerTls;

void peer_tls_done(PeerTls *t);
/* Fills the defaults under dir (MIGD_PKI_DIR when NULL) for the given side. */
int peer_tls_init_default(PeerTls *t, const char *dir, bool server);

typedef struct PeerConn PeerConn;

/* "HOST:PORT", "[V6]:PORT", or "HOST" (default port). Host may be a name; both ends resolve with getaddrinfo. */
int peer_parse_address(const char *s, char **ret_host, uint16_t *ret_port);

/* A listening TCP socket (SO_REUSEADDR, CLOEXEC, non-blocking accept is the caller's business). */
int peer_listen(const char *address, int *ret_fd);

/* Connects, runs TLS (verifying that the server's certificate names `host`, signed by the CA; presenting the
 * client certificate) and the versioned hello/welcome handshake. local_name is this host's name as sent in
 * the hello. On failure *ret_error (if given) gets a sentence: refused, timed out, certificate from another
 * CA, certificate for another host, version mismatch... */
int peer_connect(const char *host, uint16_t port, const PeerTls *tls, const char *local_name, uint64_t timeout_usec,
                 PeerConn **ret, char **ret_error);
/* Server side of the same, on an fd already accepted. Requires a client certificate signed by the CA that
 * names the host the client claims in its hello. Takes ownership of fd, also on failure. */
int peer_accept(int fd, const PeerTls *tls, const char *local_name, uint64_t timeout_usec, PeerConn **ret,
                char **ret_error);

PeerConn *peer_conn_free(PeerConn *c);
void peer_conn_freep(PeerConn **c);
const char *peer_conn_remote_name(const PeerConn *c); /* the name the peer's hello gave */
bool peer_conn_is_tls(const PeerConn *c);
uint32_t peer_conn_version(const PeerConn *c);
/* Capabilities both ends announced, e.g. "precopy", "postcopy-v1". */
bool peer_conn_has_capability(const PeerConn *c, const char *cap);
/* Makes blocked and future calls fail with -ECANCELED (thread-safe; used by Cancel and shutdown). */
void peer_conn_abort(PeerConn *c);

/* Control messages: {"type": T, ...}. Sending validates too, so a bug cannot put a bad message on the wire. */
int peer_send(PeerConn *c, struct json_object *msg, uint64_t timeout_usec);
/* Waits for the next control message (data frames that arrive meanwhile are a protocol error) and checks it
 * against the schema of its type: -EBADMSG with *ret_error naming the field for a malformed message,
 * -ETIMEDOUT for a silent peer (keepalives are answered and skipped internally), -ECONNRESET when the peer
 * went away. An {"type":"error"} from the peer is returned like any message. */
int peer_recv(PeerConn *c, uint64_t timeout_usec, struct json_object **ret, char **ret_error);
/* Checks one message against the schema (exported for tests and for the engine's own messages). */
int peer_message_validate(struct json_object *msg, char **ret_error);

/* The device data stream: one per connection direction, digest over every byte. */
typedef struct PeerStreamStats {
        uint64_t bytes;
        uint64_t acked;     /* bytes the receiver confirmed written to its device */
        uint64_t max_in_flight;
} PeerStreamStats;

/* Sender: appends bytes to the stream; blocks while PEER_DATA_WINDOW bytes are unacknowledged (control
 * messages that arrive meanwhile are queued for peer_recv). */
int peer_stream_write(PeerConn *c, const void *buf, size_t n, uint64_t timeout_usec);
/* Sender: ends the stream with {"type":"data-end","bytes":N,"sha256":HEX}. */
int peer_stream_finish(PeerConn *c, uint64_t timeout_usec);
/* Receiver: copies incoming data into fd (blocking writes) until data-end; verifies byte count and SHA-256.
 * -EBADMSG with *ret_error on a digest or length mismatch; the data already written stays written (the
 * caller must not let the device run: safety invariant S2). on_progress may be NULL. */
int peer_stream_receive(PeerConn *c, int fd, uint64_t timeout_usec, void (*on_progress)(uint64_t bytes, void *u),
                        void *userdata, char **ret_error);
/* Receiver, pre-copy: like peer_stream_receive but returns when a {"type":"precopy-done"} control message
 * arrives (the stream continues afterwards). */
int peer_stream_receive_until(PeerConn *c, int fd, const char *until_type, uint64_t timeout_usec,
                              void (*on_progress)(uint64_t bytes, void *u), void *userdata, char **ret_error);
void peer_stream_stats(const PeerConn *c, PeerStreamStats *ret);

/* Additions for the engine and for tests. Note: peer_stream_receive_until() returns 0 when until_type arrived
 * and 1 when the stream ended with a verified data-end instead. */

/* The port a listening socket is bound to (useful after peer_listen("127.0.0.1:0")). */
int peer_listen_port(int fd, uint16_t *ret);
/* How long a connection may stay without any frame from the peer (default 5 s; keepalives come every 1 s)
 * before peer_recv and the stream functions fail with -ETIMEDOUT. */
void peer_conn_set_silence_timeout(PeerConn *c, uint64_t usec);
/* The sentence of the last failure on this connection, for the calls that have no ret_error (peer_send,
 * peer_stream_write, peer_stream_finish); NULL before any failure. Valid until the next call. */
const char *peer_conn_last_error(const PeerConn *c);
/* Test hook: stops (and resumes) this end's keepalives, to play a silent peer. */
void peer_conn_suspend_keepalive(PeerConn *c, bool suspended);
