/* ckpt_forge.c — the hostile corpus's checkpoint forger: lists the blocks of a TSCK file
 * (docs/checkpoints.md), reads a field, and writes a forged value into a field of one block with
 * the block's CRC-32 recomputed, so that the file passes the CRC check and only validation of the
 * fields themselves can refuse it. `rehash` also fixes HEAD's hash of CONF after CONF was edited.
 * It is a test tool of tests/hostile/run.sh only: not installed, not part of libtessera, and it
 * knows the format only as far as block framing (tag, length, payload, CRC) goes.
 *
 *   ckpt_forge FILE list                         TAG OFFSET LENGTH per block (payload offsets)
 *   ckpt_forge FILE get TAG OFF TYPE             print a field (TYPE u32 i32 u64 i64 f32 f64)
 *   ckpt_forge FILE set TAG OFF TYPE VALUE       write a field, fix the block's CRC
 *   ckpt_forge FILE setlen TAG LENGTH            forge a block's length (CRC fixed where it ends)
 *   ckpt_forge FILE rehash                       recompute HEAD's FNV-1a hash of CONF and both CRCs
 *   ckpt_forge FILE fixcrc                       recompute every block's CRC (after a raw edit)
 * Exit status: 0 done, 1 the file or the request does not fit, 2 usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct block {
    char tag[5];
    size_t at;          /* offset of the tag in the file */
    uint64_t len;       /* payload bytes */
} block;

static unsigned char *buf;
static size_t nbuf;
static block blk[64];
static int nblk;

static int die(const char *what)
{
    fprintf(stderr, "ckpt_forge: %s\n", what);
    return 1;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Splits the file into blocks as far as the framing allows (a forged length ends the walk). */
static void scan(void)
{
    size_t off = 8;
    nblk = 0;
    while (off + 16 <= nbuf && nblk < 64) {
        block *b = &blk[nblk++];
        memcpy(b->tag, buf + off, 4);
        b->tag[4] = 0;
        b->at = off;
        b->len = get_u64(buf + off + 4);
        if (b->len > nbuf - off - 16) break;
        off += 16 + (size_t)b->len;
        if (!strcmp(b->tag, "END ")) break;
    }
}

static block *find(const char *tag)
{
    char t[5];
    snprintf(t, sizeof t, "%-4s", tag);   /* "END" and "RNG" have a trailing space */
    for (int i = 0; i < nblk; i++)
        if (!memcmp(blk[i].tag, t, 4)) return &blk[i];
    return NULL;
}

/* Writes the CRC of tag, length and payload after the payload, if it fits in the file. */
static int fix_crc(const block *b)
{
    if (b->len > nbuf - b->at - 16) return die("the block's CRC would lie past the end");
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, buf + b->at, 12);
    uint64_t o = 0;
    while (o < b->len) {
        uInt piece = (uInt)(b->len - o < (1u << 30) ? b->len - o : (1u << 30));
        c = crc32(c, buf + b->at + 12 + o, piece);
        o += piece;
    }
    put_u32(buf + b->at + 12 + b->len, (uint32_t)c);
    return 0;
}

static size_t type_size(const char *type)
{
    if (!strcmp(type, "u32") || !strcmp(type, "i32") || !strcmp(type, "f32")) return 4;
    if (!strcmp(type, "u64") || !strcmp(type, "i64") || !strcmp(type, "f64")) return 8;
    return 0;
}

static int field(const char *tag, const char *offs, const char *type, unsigned char **p)
{
    block *b = find(tag);
    if (!b) return die("no such block");
    size_t sz = type_size(type);
    if (!sz) return die("TYPE is one of u32 i32 u64 i64 f32 f64");
    char *end;
    unsigned long long off = strtoull(offs, &end, 0);
    if (*end || off + sz > b->len) return die("the offset lies outside the block's payload");
    *p = buf + b->at + 12 + off;
    return 0;
}

static int save(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, nbuf, f) != nbuf || fclose(f)) return die(strerror(errno));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ckpt_forge FILE list|get|set|setlen|rehash|fixcrc ...\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) return die(strerror(errno));
    size_t cap = 1 << 16;
    buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + nbuf, 1, cap - nbuf, f)) > 0;) {
        nbuf += k;
        if (nbuf == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf || nbuf < 8 || memcmp(buf, "TSCK", 4)) return die("not a TSCK file");
    scan();
    const char *cmd = argv[2];
    if (!strcmp(cmd, "list")) {
        for (int i = 0; i < nblk; i++)
            printf("%s %zu %" PRIu64 "\n", blk[i].tag, blk[i].at + 12, blk[i].len);
        return 0;
    }
    if (!strcmp(cmd, "fixcrc")) {
        for (int i = 0; i < nblk; i++)
            if (fix_crc(&blk[i])) return 1;
        return save(argv[1]);
    }
    if (!strcmp(cmd, "rehash")) {
        block *h = find("HEAD"), *c = find("CONF");
        if (!h || !c || h->len < 16) return die("no HEAD or CONF block");
        uint64_t hash = 0xcbf29ce484222325ull;
        for (uint64_t i = 0; i < c->len; i++)
            hash = (hash ^ buf[c->at + 12 + i]) * 0x100000001b3ull;
        put_u64(buf + h->at + 12 + 8, hash);
        if (fix_crc(h) || fix_crc(c)) return 1;
        return save(argv[1]);
    }
    if (!strcmp(cmd, "get") && argc == 6) {
        unsigned char *p;
        if (field(argv[3], argv[4], argv[5], &p)) return 1;
        const char *t = argv[5];
        if (!strcmp(t, "u32")) { uint32_t v; memcpy(&v, p, 4); printf("%" PRIu32 "\n", v); }
        else if (!strcmp(t, "i32")) { int32_t v; memcpy(&v, p, 4); printf("%" PRId32 "\n", v); }
        else if (!strcmp(t, "u64")) { uint64_t v; memcpy(&v, p, 8); printf("%" PRIu64 "\n", v); }
        else if (!strcmp(t, "i64")) { int64_t v; memcpy(&v, p, 8); printf("%" PRId64 "\n", v); }
        else if (!strcmp(t, "f32")) { float v; memcpy(&v, p, 4); printf("%.9g\n", v); }
        else { double v; memcpy(&v, p, 8); printf("%.17g\n", v); }
        return 0;
    }
    if (!strcmp(cmd, "set") && argc == 7) {
        unsigned char *p;
        if (field(argv[3], argv[4], argv[5], &p)) return 1;
        const char *t = argv[5], *s = argv[6];
        if (!strcmp(t, "u32")) { uint32_t v = (uint32_t)strtoul(s, NULL, 0); memcpy(p, &v, 4); }
        else if (!strcmp(t, "i32")) { int32_t v = (int32_t)strtol(s, NULL, 0); memcpy(p, &v, 4); }
        else if (!strcmp(t, "u64")) { uint64_t v = strtoull(s, NULL, 0); memcpy(p, &v, 8); }
        else if (!strcmp(t, "i64")) { int64_t v = strtoll(s, NULL, 0); memcpy(p, &v, 8); }
        else if (!strcmp(t, "f32")) { float v = strtof(s, NULL); memcpy(p, &v, 4); }
        else { double v = strtod(s, NULL); memcpy(p, &v, 8); }
        if (fix_crc(find(argv[3]))) return 1;
        return save(argv[1]);
    }
    if (!strcmp(cmd, "setlen") && argc == 5) {
        block *b = find(argv[3]);
        if (!b) return die("no such block");
        uint64_t len = strtoull(argv[4], NULL, 0);
        put_u64(buf + b->at + 4, len);
        b->len = len;
        if (len <= nbuf - b->at - 16 && fix_crc(b)) return 1;   /* else: a length past the end */
        return save(argv[1]);
    }
    fprintf(stderr, "usage: ckpt_forge FILE list|get|set|setlen|rehash|fixcrc ...\n");
    return 2;
}
