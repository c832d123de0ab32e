/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The sim device's migration stream format: encoding helpers, checksum and the destination's parser. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sim-stream.h"
#include "util.h"

#define FNV64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV64_PRIME UINT64_C(0x100000001b3)
/* The page generator's interleaved xorshift64 sequences (docs/sim.md). */
#define PAGE_FILL_LANES 16u
#define PAGE_FILL_BLOCK (PAGE_FILL_LANES * 8u)

void sim_hash_init(SimHash *h) {
        assert(h);

        *h = (SimHash) {};
        for (size_t j = 0; j < SIM_HASH_LANES; j++)
                h->lane[j] = FNV64_OFFSET;
}

static void hash_word(uint64_t *h, uint64_t w) {
        *h ^= w;
        *h *= FNV64_PRIME;
}

static uint64_t load_le64(const uint8_t *p) {
        uint64_t w;

        memcpy(&w, p, sizeof(w));
        return le64toh(w);
}

static uint32_t load_le32(const uint8_t *p) {
        uint32_t w;

        memcpy(&w, p, sizeof(w));
        return le32toh(w);
}

static void store_le64(uint8_t *p, uint64_t v) {
        v = htole64(v);
        memcpy(p, &v, sizeof(v));
}

static void store_le32(uint8_t *p, uint32_t v) {
        v = htole32(v);
        memcpy(p, &v, sizeof(v));
}

/* x86-64 CPUs with AVX-512 multiply 64-bit lanes natively: a clone of the hash loop for them runs several
 * times faster than the SSE2 baseline, which has to piece each multiply together from 32-bit ones. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#  define _hash_clones_ __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#  define _hash_clones_
#endif

/* Whole blocks only; kept apart so that the compiler sees one simple loop over local lanes. */
_hash_clones_ static void hash_blocks(uint64_t lane[static SIM_HASH_LANES], const uint8_t *b, size_t n_blocks) {
        uint64_t x[SIM_HASH_LANES];

        memcpy(x, lane, sizeof(x));
        for (; n_blocks > 0; n_blocks--, b += SIM_HASH_BLOCK)
                for (size_t j = 0; j < SIM_HASH_LANES; j++)
                        hash_word(&x[j], load_le64(b + 8 * j));
        memcpy(lane, x, sizeof(x));
}

void sim_hash_update(SimHash *h, const void *p, size_t n) {
        const uint8_t *b = p;
        size_t k;

        assert(h);
        assert(p || n == 0);

        if (n == 0)
                return;
        /* Chunks split the stream anywhere, so a partial block waits for the next chunk. */
        if (h->n_carry > 0) {
                k = n < SIM_HASH_BLOCK - h->n_carry ? n : SIM_HASH_BLOCK - h->n_carry;
                memcpy(h->carry + h->n_carry, b, k);
                h->n_carry += k;
                b += k;
                n -= k;
                if (h->n_carry < SIM_HASH_BLOCK)
                        return;
                hash_blocks(h->lane, h->carry, 1);
                h->n_carry = 0;
        }
        hash_blocks(h->lane, b, n / SIM_HASH_BLOCK);
        k = n % SIM_HASH_BLOCK;
        if (k > 0)
                memcpy(h->carry, b + n - k, k);
        h->n_carry = k;
}

uint64_t sim_hash_final(const SimHash *h) {
        uint64_t v = FNV64_OFFSET;

        assert(h);

        for (size_t j = 0; j < SIM_HASH_LANES; j++)
                hash_word(&v, h->lane[j]);
        for (size_t i = 0; i < h->n_carry; i++)
                hash_word(&v, h->carry[i]);
        return v;
}

uint64_t sim_page_count(uint64_t state_size) {
        return state_size / SIM_PAGE_SIZE + (state_size % SIM_PAGE_SIZE != 0);
}

size_t sim_page_length(uint64_t state_size, uint64_t index) {
        uint64_t start = index * SIM_PAGE_SIZE;

        assert(start < state_size);
        return state_size - start < SIM_PAGE_SIZE ? (size_t) (state_size - start) : SIM_PAGE_SIZE;
}

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t xorshift64(uint64_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* One word of every lane per block: independent xorshift sequences instead of one long dependency chain. */
static void page_fill_blocks(uint64_t lane[static PAGE_FILL_LANES], uint8_t *buf, size_t n_blocks) {
        uint64_t s[PAGE_FILL_LANES];

        memcpy(s, lane, sizeof(s));
        for (; n_blocks > 0; n_blocks--, buf += PAGE_FILL_BLOCK)
                for (size_t j = 0; j < PAGE_FILL_LANES; j++)
                        store_le64(buf + 8 * j, xorshift64(&s[j]));
        memcpy(lane, s, sizeof(s));
}

void sim_page_fill(uint64_t seed, uint64_t index, uint64_t generation, uint8_t *buf, size_t len) {
        uint64_t x = seed ^ (index * UINT64_C(0xd6e8feb86659fd93)) ^ (generation * UINT64_C(0xa0761d6478bd642f));
        uint64_t lane[PAGE_FILL_LANES];
        size_t whole = len / PAGE_FILL_BLOCK * PAGE_FILL_BLOCK;

        assert(buf || len == 0);

        for (size_t j = 0; j < PAGE_FILL_LANES; j++)
                lane[j] = splitmix64(&x) | 1; /* xorshift never leaves 0 */
        page_fill_blocks(lane, buf, whole / PAGE_FILL_BLOCK);
        if (whole < len) {
                uint8_t last[PAGE_FILL_BLOCK];

                page_fill_blocks(lane, last, 1);
                memcpy(buf + whole, last, len - whole);
        }
}

void sim_irq_config_done(SimIrqConfig *c) {
        if (!c)
                return;
        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++)
                free(c->enabled[i]);
        *c = (SimIrqConfig) {};
}

size_t sim_irq_config_size(const uint32_t count[static _IRQ_INDEX_MAX]) {
        size_t n = 0;

        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++)
                n += sizeof(uint32_t) + count[i];
        return n;
}

void sim_stream_put_header(uint8_t *buf, uint32_t flags, uint64_t state_size, uint64_t seed) {
        assert(buf);

        memcpy(buf, SIM_STREAM_MAGIC, 8);
        store_le32(buf + 8, SIM_STREAM_VERSION);
        store_le32(buf + 12, flags);
        store_le64(buf + 16, state_size);
        store_le64(buf + 24, seed);
        store_le32(buf + 32, SIM_PAGE_SIZE);
        store_le32(buf + 36, SIM_REGISTER_SIZE);
}

void sim_stream_put_record(uint8_t *buf, uint32_t tag, uint32_t length, uint64_t arg0, uint64_t arg1) {
        assert(buf);

        store_le32(buf, tag);
        store_le32(buf + 4, length);
        store_le64(buf + 8, arg0);
        store_le64(buf + 16, arg1);
}

void sim_stream_put_irqs(uint8_t *buf, const SimIrqConfig *c) {
        assert(buf);
        assert(c);

        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++) {
                store_le32(buf, c->count[i]);
                buf += sizeof(uint32_t);
                for (uint32_t v = 0; v < c->count[i]; v++)
                        *buf++ = c->enabled[i] && c->enabled[i][v] ? 1 : 0;
        }
}

uint64_t sim_stream_irqs_record_size(bool with_irqs, const uint32_t count[static _IRQ_INDEX_MAX]) {
        return with_irqs ? SIM_RECORD_HEADER_SIZE + sim_irq_config_size(count) : 0;
}

uint64_t sim_stream_initial_size(uint64_t state_size, bool with_irqs, const uint32_t count[static _IRQ_INDEX_MAX]) {
        return SIM_HEADER_SIZE + SIM_RECORD_HEADER_SIZE + SIM_REGISTER_SIZE +
               sim_stream_irqs_record_size(with_irqs, count) + sim_page_count(state_size) * SIM_RECORD_HEADER_SIZE +
               state_size;
}

int sim_parser_init(SimParser *p, uint64_t state_size) {
        uint64_t n_pages = sim_page_count(state_size);

        assert(p);

        if (state_size > SIM_STATE_SIZE_MAX)
                return -EINVAL;

        *p = (SimParser) {
                .state_size = state_size,
                .n_pages = n_pages,
                .phase = SIM_PARSE_HEADER,
                .need = SIM_HEADER_SIZE,
        };
        sim_hash_init(&p->hash);
        /* One element more, so that a device without state still gets real allocations. */
        p->gens = calloc(n_pages + 1, sizeof(uint32_t));
        p->seen = calloc(n_pages + 1, 1);
        if (!p->gens || !p->seen) {
                sim_parser_done(p);
                return -ENOMEM;
        }
        return 0;
}

void sim_parser_done(SimParser *p) {
        if (!p)
                return;
        free(p->irq_buf);
        free(p->gens);
        free(p->seen);
        sim_irq_config_done(&p->irqs);
        *p = (SimParser) {};
}

static int parser_fail(SimParser *p, const char *reason) {
        p->phase = SIM_PARSE_FAILED;
        p->error = reason;
        return -EIO;
}

static int parser_expect(SimParser *p, SimParsePhase phase, size_t need) {
        p->phase = phase;
        p->need = need;
        p->have = 0;
        return 0;
}

/* Hashes a completed unit that precedes the trailer. */
static void parser_consume(SimParser *p, const uint8_t *buf, size_t n) {
        sim_hash_update(&p->hash, buf, n);
        p->offset += n;
}

static int parser_header(SimParser *p) {
        const uint8_t *b = p->small;

        if (memcmp(b, SIM_STREAM_MAGIC, 8) != 0)
                return parser_fail(p, "bad magic");
        if (load_le32(b + 8) != SIM_STREAM_VERSION)
                return parser_fail(p, "unsupported version");
        p->flags = load_le32(b + 12);
        if (p->flags & ~(uint32_t) (SIM_STREAM_FLAG_IRQS | SIM_STREAM_FLAG_PRECOPY))
                return parser_fail(p, "unknown header flags");
        if (load_le64(b + 16) != p->state_size)
                return parser_fail(p, "state_size mismatch");
        if (load_le32(b + 32) != SIM_PAGE_SIZE || load_le32(b + 36) != SIM_REGISTER_SIZE)
                return parser_fail(p, "page or register size mismatch");
        p->seed = load_le64(b + 24);
        parser_consume(p, b, SIM_HEADER_SIZE);
        return parser_expect(p, SIM_PARSE_RECORD, SIM_RECORD_HEADER_SIZE);
}

static int parser_trailer(SimParser *p, uint32_t length, uint64_t arg0, uint64_t arg1) {
        if (length != 0 || arg0 != p->offset)
                return parser_fail(p, "trailer length mismatch");
        if (arg1 != sim_hash_final(&p->hash))
                return parser_fail(p, "checksum mismatch");
        p->phase = SIM_PARSE_DONE;
        return 0;
}

static int parser_page(SimParser *p, uint32_t length, uint64_t index, uint64_t generation) {
        if (index >= p->n_pages)
                return parser_fail(p, "page index out of range");
        if (length != sim_page_length(p->state_size, index))
                return parser_fail(p, "bad page length");
        if (generation > UINT32_MAX)
                return parser_fail(p, "bad page generation");
        p->gens[index] = (uint32_t) generation;
        if (!p->seen[index]) {
                p->seen[index] = 1;
                p->n_seen++;
        }
        p->n_page_records++;
        p->data_left = length;
        p->phase = SIM_PARSE_PAGE_DATA;
        return 0;
}

static int parser_record(SimParser *p) {
        const uint8_t *b = p->small;
        uint32_t tag = load_le32(b), length = load_le32(b + 4);
        uint64_t arg0 = load_le64(b + 8), arg1 = load_le64(b + 16);
        uint8_t *nb;

        if (tag == SIM_TAG_TRLR)
                return parser_trailer(p, length, arg0, arg1);

        parser_consume(p, b, SIM_RECORD_HEADER_SIZE);
        switch (tag) {
        case SIM_TAG_PAGE:
                return parser_page(p, length, arg0, arg1);
        case SIM_TAG_REGS:
                if (length != SIM_REGISTER_SIZE)
                        return parser_fail(p, "bad register block length");
                return parser_expect(p, SIM_PARSE_REGS, SIM_REGISTER_SIZE);
        case SIM_TAG_IRQS:
                if (length < sizeof(uint32_t) * _IRQ_INDEX_MAX ||
                    length > (sizeof(uint32_t) + SIM_IRQ_VECTORS_MAX) * _IRQ_INDEX_MAX)
                        return parser_fail(p, "bad interrupt record length");
                nb = realloc(p->irq_buf, length);
                if (!nb)
                        return parser_fail(p, "out of memory");
                p->irq_buf = nb;
                return parser_expect(p, SIM_PARSE_IRQS, length);
        default:
                return parser_fail(p, "unknown record");
        }
}

static int parser_irqs(SimParser *p) {
        SimIrqConfig c = {};
        size_t pos = 0;

        for (size_t i = 0; i < _IRQ_INDEX_MAX; i++) {
                if (p->need - pos < sizeof(uint32_t))
                        goto bad;
                c.count[i] = load_le32(p->irq_buf + pos);
                pos += sizeof(uint32_t);
                if (c.count[i] > SIM_IRQ_VECTORS_MAX || p->need - pos < c.count[i])
                        goto bad;
                c.enabled[i] = malloc(c.count[i] + 1);
                if (!c.enabled[i]) {
                        sim_irq_config_done(&c);
                        return parser_fail(p, "out of memory");
                }
                memcpy(c.enabled[i], p->irq_buf + pos, c.count[i]);
                pos += c.count[i];
        }
        if (pos != p->need)
                goto bad;

        sim_irq_config_done(&p->irqs);
        p->irqs = c;
        p->have_irqs = true;
        parser_consume(p, p->irq_buf, p->need);
        return parser_expect(p, SIM_PARSE_RECORD, SIM_RECORD_HEADER_SIZE);

bad:
        sim_irq_config_done(&c);
        return parser_fail(p, "bad interrupt record");
}

static int parser_complete(SimParser *p) {
        switch (p->phase) {
        case SIM_PARSE_HEADER:
                return parser_header(p);
        case SIM_PARSE_RECORD:
                return parser_record(p);
        case SIM_PARSE_REGS:
                memcpy(p->regs, p->small, SIM_REGISTER_SIZE);
                p->have_regs = true;
                parser_consume(p, p->small, SIM_REGISTER_SIZE);
                return parser_expect(p, SIM_PARSE_RECORD, SIM_RECORD_HEADER_SIZE);
        case SIM_PARSE_IRQS:
                return parser_irqs(p);
        default:
                assert(!"unexpected parser phase");
                return -EINVAL;
        }
}

void sim_parser_feed(SimParser *p, const uint8_t *buf, size_t n) {
        assert(p);
        assert(buf || n == 0);

        while (n > 0) {
                uint8_t *dst;
                size_t k;

                switch (p->phase) {
                case SIM_PARSE_FAILED:
                        return;
                case SIM_PARSE_DONE:
                        (void) parser_fail(p, "data after the trailer");
                        return;
                case SIM_PARSE_PAGE_DATA:
                        k = n < p->data_left ? n : (size_t) p->data_left;
                        parser_consume(p, buf, k);
                        p->data_left -= k;
                        buf += k;
                        n -= k;
                        if (p->data_left == 0)
                                parser_expect(p, SIM_PARSE_RECORD, SIM_RECORD_HEADER_SIZE);
                        continue;
                default:
                        break;
                }

                dst = p->phase == SIM_PARSE_IRQS ? p->irq_buf : p->small;
                k = n < p->need - p->have ? n : p->need - p->have;
                memcpy(dst + p->have, buf, k);
                p->have += k;
                buf += k;
                n -= k;
                if (p->have == p->need)
                        (void) parser_complete(p);
        }
}

int sim_parser_finish(SimParser *p, const char **ret_reason) {
        const char *reason = NULL;

        assert(p);

        if (p->phase == SIM_PARSE_FAILED)
                reason = p->error;
        else if (p->phase != SIM_PARSE_DONE)
                reason = "truncated stream";
        else if (!p->have_regs)
                reason = "no register block";
        else if (p->n_seen != p->n_pages)
                reason = "pages missing";
        if (!reason)
                return 0;
        if (ret_reason)
                *ret_reason = reason;
        return -EIO;
}
