/* Allocation for the data path: mimalloc, whose heaps are per thread, so a
 * worker allocates from its own heap without locks and a block freed by
 * another thread goes back to its owner's heap. Sanitizer builds use the
 * libc allocator so that ASan sees every allocation. */
#ifndef STANZA_UTIL_MEM_H
#define STANZA_UTIL_MEM_H

#include <stddef.h>

#ifdef STANZA_NO_MIMALLOC
#include <stdlib.h>
static inline void *mem_alloc(size_t n) { return malloc(n); }
static inline void *mem_calloc(size_t k, size_t n) { return calloc(k, n); }
static inline void *mem_realloc(void *p, size_t n) { return realloc(p, n); }
static inline void mem_free(void *p) { free(p); }
#else
#include <mimalloc.h>
static inline void *mem_alloc(size_t n) { return mi_malloc(n); }
static inline void *mem_calloc(size_t k, size_t n) { return mi_calloc(k, n); }
static inline void *mem_realloc(void *p, size_t n) { return mi_realloc(p, n); }
static inline void mem_free(void *p) { mi_free(p); }
#endif

#endif
