/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The benchmark's ceiling: how fast one SHA-256 stream runs here, through GnuTLS like the peer protocol,
 * in 1 MiB pieces like its data frames. Prints "BYTES USEC". */
#include <gnutls/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK (1024 * 1024)

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

int main(int argc, char *argv[]) {
        static unsigned char buf[CHUNK];
        unsigned char digest[32];
        gnutls_hash_hd_t h;
        uint64_t bytes, done = 0, start;

        if (argc != 2 || (bytes = strtoull(argv[1], NULL, 10)) == 0) {
                fprintf(stderr, "usage: sha256-rate BYTES\n");
                return 2;
        }
        memset(buf, 0x5a, sizeof(buf));
        if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
                fprintf(stderr, "sha256-rate: no SHA-256 in GnuTLS\n");
                return 1;
        }
        start = now_usec();
        while (done < bytes) {
                size_t n = bytes - done < CHUNK ? (size_t) (bytes - done) : CHUNK;

                gnutls_hash(h, buf, n);
                done += n;
        }
        gnutls_hash_deinit(h, digest);
        printf("%llu %llu\n", (unsigned long long) done, (unsigned long long) (now_usec() - start));
        return 0;
}
