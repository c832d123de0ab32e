/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The sim device's migration stream: record layout, checksum, page generator and an incremental parser. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"

/* All integers are little-endian. docs/sim.md describes the format for people. */
#define SIM_STREAM_MAGIC "MIGDSIM\n"
#define SIM_STREAM_VERSION 2u
#define SIM_PAGE_SIZE 4096u
#define SIM_REGISTER_SIZE 256u
#define SIM_HEADER_SIZE 40u
#define SIM_RECORD_HEADER_SIZE 24u
#define SIM_IRQ_VECTORS_MAX 2048u
/* Beyond this the per-page generation table would stop being small. */
#define SIM_STATE_SIZE_MAX (UINT64_C(64) << 30)

enum {
        SIM_STREAM_FLAG_IRQS = 1u << 0,    /* an IRQS record follows REGS */
        SIM_STREAM_FLAG_PRECOPY = 1u << 1, /* started in PRE_COPY: dirty pages and a final REGS may follow */
};

/* Record tags are four ASCII characters read as a little-endian u32. */
enum {
        SIM_TAG_PAGE = 0x45474150, /* "PAGE": arg0 page index, arg1 generation, page data */
        SIM_TAG_REGS = 0x53474552, /* "REGS": the 256-byte register block */
        SIM_TAG_IRQS = 0x53515249, /* "IRQS": per index u32 vector count, then one byte per vector */
        SIM_TAG_TRLR = 0x524c5254, /* "TRLR": arg0 bytes before it, arg1 checksum of those bytes */
};

/* Word-wise FNV-1a 64 in SIM_HASH_LANES interleaved lanes (docs/sim.md): one multiply chain would bound the
 * device at a few GB/s, independent lanes let the CPU (and the compiler's vectorizer) run them side by side. */
#define SIM_HASH_LANES 16u
#define SIM_HASH_BLOCK (SIM_HASH_LANES * 8u)

typedef struct SimHash {
        uint64_t lane[SIM_HASH_LANES];
        uint8_t carry[SIM_HASH_BLOCK];
        size_t n_carry;
} SimHash;

void sim_hash_init(SimHash *h);
void sim_hash_update(SimHash *h, const void *p, size_t n);
uint64_t sim_hash_final(const SimHash *h);

uint64_t sim_page_count(uint64_t state_size);
size_t sim_page_length(uint64_t state_size, uint64_t index);
/* The content of a page is a pure function of (seed, index, generation). */
void sim_page_fill(uint64_t seed, uint64_t index, uint64_t generation, uint8_t *buf, size_t len);

/* Which vectors of each index were enabled; enabled[i] has count[i] bytes (0 or 1). */
typedef struct SimIrqConfig {
        uint32_t count[_IRQ_INDEX_MAX];
        uint8_t *enabled[_IRQ_INDEX_MAX];
} SimIrqConfig;

void sim_irq_config_done(SimIrqConfig *c);
size_t sim_irq_config_size(const uint32_t count[static _IRQ_INDEX_MAX]);

/* Writers put exactly SIM_HEADER_SIZE / SIM_RECORD_HEADER_SIZE / sim_irq_config_size() bytes. */
void sim_stream_put_header(uint8_t *buf, uint32_t flags, uint64_t state_size, uint64_t seed);
void sim_stream_put_record(uint8_t *buf, uint32_t tag, uint32_t length, uint64_t arg0, uint64_t arg1);
void sim_stream_put_irqs(uint8_t *buf, const SimIrqConfig *c);

uint64_t sim_stream_irqs_record_size(bool with_irqs, const uint32_t count[static _IRQ_INDEX_MAX]);
/* Header, REGS, optional IRQS and every page once: the stop-copy stream without its trailer. */
uint64_t sim_stream_initial_size(uint64_t state_size, bool with_irqs, const uint32_t count[static _IRQ_INDEX_MAX]);

typedef enum SimParsePhase {
        SIM_PARSE_HEADER,
        SIM_PARSE_RECORD,
        SIM_PARSE_PAGE_DATA,
        SIM_PARSE_REGS,
        SIM_PARSE_IRQS,
        SIM_PARSE_DONE,
        SIM_PARSE_FAILED,
} SimParsePhase;

/* Consumes a stream in chunks of any size; nothing is applied until sim_parser_finish() says it is whole. */
typedef struct SimParser {
        uint64_t state_size;
        uint64_t n_pages;

        SimParsePhase phase;
        uint8_t small[SIM_REGISTER_SIZE];
        uint8_t *irq_buf;
        size_t need, have;
        uint64_t data_left;
        uint64_t offset;
        SimHash hash;
        const char *error;

        uint32_t flags;
        uint64_t seed;
        uint8_t regs[SIM_REGISTER_SIZE];
        bool have_regs;
        SimIrqConfig irqs;
        bool have_irqs;
        uint32_t *gens;
        uint8_t *seen;
        uint64_t n_seen;
        uint64_t n_page_records;
} SimParser;

int sim_parser_init(SimParser *p, uint64_t state_size);
void sim_parser_done(SimParser *p);
void sim_parser_feed(SimParser *p, const uint8_t *buf, size_t n);
/* 0 when a whole, verified stream was fed; -EIO with a static reason otherwise. */
int sim_parser_finish(SimParser *p, const char **ret_reason);
