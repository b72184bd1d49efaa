/* strtab.c — a string table for dataset plugins: (space, string) -> small dense id.
 *
 * What it is for: interning categorical values, words, trigrams and query keys while a dataset
 * reads its files. Each namespace ("space": an attribute, a column, a vocabulary) numbers its
 * strings 0, 1, 2, ... in order of first appearance, so ids are reproducible from the file
 * order alone. Keys are copied into an arena of large blocks that never move (no malloc per
 * string), so ts_strtab_str pointers stay valid until ts_strtab_free.
 * What it is not: a general map (no values, no deletion), nor thread-safe, nor for the training
 * loop: look-ups hash the key, so a dataset interns at open() and keeps integer ids afterwards.
 *
 * One open-addressing table (linear probing, load kept under 1/2) holds the keys of every space;
 * an entry keeps its 64-bit hash, so growing never re-reads the strings and a probe compares
 * strings only when the hashes match.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BLOCK ((size_t)1 << 16)   /* arena block size; a longer key gets a block of its own */

typedef struct entry {
    const char *s;     /* NUL-terminated copy in the arena */
    uint64_t hash;     /* of (space, bytes) */
    uint32_t n;        /* key length in bytes */
    int32_t space, id;
} entry;

typedef struct block { struct block *next; size_t used, cap; char data[]; } block;

/* The ids of one space: ent[id] is the entry index of id, for ts_strtab_str. */
typedef struct space_ids { int32_t *ent; int32_t n, cap; } space_ids;

struct ts_strtab {
    block *arena;              /* newest block first */
    entry *ent; int32_t nent, entcap;
    uint32_t *slot; size_t nslot;   /* (nslot) entry index + 1, 0 = empty; nslot a power of 2 */
    space_ids *sp; int32_t nsp;   /* (nsp) spaces seen so far */
};

ts_strtab *ts_strtab_new(void) { return calloc(1, sizeof(ts_strtab)); }

/* A hash of (space, bytes), 8 bytes at a time (a multiply and a fold per word, then a final
 * mix): the slot of a key depends on it, never an id (ids count first appearances), so any good
 * hash gives the same ids. It replaced FNV-1a's byte-at-a-time multiply chain, which cost about a
 * fifth of a streamed census row's parsing (docs/scale.md). */
static uint64_t hash_key(int32_t space, const char *s, size_t n)
{
    uint64_t h = ((uint64_t)(uint32_t)space + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)n * 0xff51afd7ed558ccdull;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = ts_tail_word(s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static int grow_slots(ts_strtab *t)
{
    size_t ns = t->nslot ? 2 * t->nslot : 1024;
    uint32_t *sl = calloc(ns, sizeof *sl);
    if (!sl) return -1;
    for (int32_t i = 0; i < t->nent; i++) {
        size_t j = (size_t)t->ent[i].hash & (ns - 1);
        while (sl[j]) j = (j + 1) & (ns - 1);
        sl[j] = (uint32_t)i + 1;
    }
    free(t->slot);
    t->slot = sl;
    t->nslot = ns;
    return 0;
}

/* A copy of s[0..n) plus a NUL in the arena, or NULL when out of memory. */
static const char *arena_copy(ts_strtab *t, const char *s, size_t n)
{
    block *b = t->arena;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > BLOCK ? n + 1 : BLOCK;
        if (!(b = malloc(sizeof *b + cap))) return NULL;
        b->cap = cap;
        b->used = 0;
        if (t->arena && cap > BLOCK) {   /* an oversized key: keep filling the current block */
            b->next = t->arena->next;
            t->arena->next = b;
        } else {
            b->next = t->arena;
            t->arena = b;
        }
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

int32_t ts_strtab_id(ts_strtab *t, int32_t space, const char *s, size_t n, int add)
{
    if (!t || space < 0 || n > UINT32_MAX) return -2;
    uint64_t h = hash_key(space, s, n);
    if (t->nslot) {
        for (size_t j = (size_t)h & (t->nslot - 1); t->slot[j]; j = (j + 1) & (t->nslot - 1)) {
            const entry *x = &t->ent[t->slot[j] - 1];
            if (x->hash == h && x->space == space && x->n == n && memcmp(x->s, s, n) == 0)
                return x->id;
        }
    }
    if (!add) return -1;
    if (t->nent == INT32_MAX - 1) return -2;
    if (2 * ((size_t)t->nent + 1) > t->nslot && grow_slots(t) < 0) return -2;
    if (space >= t->nsp) {            /* new spaces, numbered up to this one */
        space_ids *ns = realloc(t->sp, ((size_t)space + 1) * sizeof *ns);
        if (!ns) return -2;
        memset(ns + t->nsp, 0, ((size_t)space + 1 - (size_t)t->nsp) * sizeof *ns);
        t->sp = ns;
        t->nsp = space + 1;
    }
    space_ids *sp = &t->sp[space];
    if (sp->n == sp->cap) {
        int32_t nc = sp->cap ? (sp->cap > INT32_MAX / 2 ? INT32_MAX : 2 * sp->cap) : 16;
        int32_t *ne = realloc(sp->ent, (size_t)nc * sizeof *ne);
        if (!ne) return -2;
        sp->ent = ne;
        sp->cap = nc;
    }
    if (t->nent == t->entcap) {
        int32_t nc = t->entcap ? (t->entcap > INT32_MAX / 2 ? INT32_MAX : 2 * t->entcap) : 1024;
        entry *ne = realloc(t->ent, (size_t)nc * sizeof *ne);
        if (!ne) return -2;
        t->ent = ne;
        t->entcap = nc;
    }
    const char *copy = arena_copy(t, s, n);
    if (!copy) return -2;
    /* The table grew above if needed: probe again for the empty slot. */
    size_t j = (size_t)h & (t->nslot - 1);
    while (t->slot[j]) j = (j + 1) & (t->nslot - 1);
    entry *x = &t->ent[t->nent];
    x->s = copy; x->hash = h; x->n = (uint32_t)n; x->space = space; x->id = sp->n;
    t->slot[j] = (uint32_t)t->nent + 1;
    sp->ent[sp->n] = t->nent++;
    return sp->n++;
}

int32_t ts_strtab_count(const ts_strtab *t, int32_t space)
{
    return t && space >= 0 && space < t->nsp ? t->sp[space].n : 0;
}

const char *ts_strtab_str(const ts_strtab *t, int32_t space, int32_t id)
{
    if (!t || space < 0 || space >= t->nsp || id < 0 || id >= t->sp[space].n) return NULL;
    return t->ent[t->sp[space].ent[id]].s;
}

void ts_strtab_free(ts_strtab *t)
{
    if (!t) return;
    for (block *b = t->arena, *next; b; b = next) { next = b->next; free(b); }
    for (int32_t i = 0; i < t->nsp; i++) free(t->sp[i].ent);
    free(t->sp); free(t->ent); free(t->slot);
    free(t);
}
