#include <string.h>
#include "router/ring.h"

#define REC_HDR ((uint32_t)sizeof(struct ring_rec))

static inline uint64_t rec_size(uint32_t len)
{
	return REC_HDR + (((uint64_t)len + 7) & ~(uint64_t)7);
}

int ring_init(struct ring *r, void *mem, uint64_t size)
{
	if (size < 256 || (size & (size - 1)) || ((uintptr_t)mem & 7))
		return -1;
	memset(r, 0, sizeof(*r));
	r->buf = mem;
	r->size = size;
	atomic_store_explicit(&r->head, 0, memory_order_relaxed);
	atomic_store_explicit(&r->tail, 0, memory_order_relaxed);
	return 0;
}

uint32_t ring_max_record(const struct ring *r)
{
	/* Half the ring: a record and the padding before it always fit once
	 * the consumer has caught up. */
	return (uint32_t)(r->size / 2 - REC_HDR);
}

void *ring_sp_reserve(struct ring *r, uint16_t type, uint16_t flags, uint64_t arg, uint32_t len)
{
	uint64_t need = rec_size(len);
	uint64_t at = r->wpos & (r->size - 1);
	uint64_t room_to_end = r->size - at;
	uint64_t pad = room_to_end < need ? room_to_end : 0;

	if (len > ring_max_record(r))
		return NULL;
	if (r->wpos + pad + need - r->tail_seen > r->size) {
		r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (r->wpos + pad + need - r->tail_seen > r->size)
			return NULL;
	}
	if (pad) {
		/* The record would wrap: fill the end with a pad record. An
		 * 8-byte end (sizes are multiples of 8) has no room for a
		 * header; the consumer skips it by position. */
		if (pad >= REC_HDR) {
			struct ring_rec *p = (struct ring_rec *)(r->buf + at);
			p->len = (uint32_t)(pad - REC_HDR);
			p->type = RING_PAD;
			p->flags = 0;
			p->arg = 0;
		}
		r->wpos += pad;
		at = 0;
	}
	struct ring_rec *rec = (struct ring_rec *)(r->buf + at);
	rec->len = len;
	rec->type = type;
	rec->flags = flags;
	rec->arg = arg;
	r->wpos += need;
	return rec->data;
}

bool ring_sp_publish(struct ring *r)
{
	uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);

	if (h == r->wpos)
		return false;
	atomic_store_explicit(&r->head, r->wpos, memory_order_release);
	return true;
}

const struct ring_rec *ring_sc_peek(struct ring *r)
{
	for (;;) {
		if (r->rpos == r->head_seen) {
			r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
			if (r->rpos == r->head_seen)
				return NULL;
		}
		uint64_t at = r->rpos & (r->size - 1);
		uint64_t room_to_end = r->size - at;
		if (room_to_end < REC_HDR) {
			/* Too little room at the end for a header: the producer
			 * skipped it without writing a pad record. */
			r->rpos += room_to_end;
			continue;
		}
		const struct ring_rec *rec = (const struct ring_rec *)(r->buf + at);
		if (rec->type == RING_PAD) {
			r->rpos += rec_size(rec->len);
			continue;
		}
		return rec;
	}
}

void ring_sc_next(struct ring *r, const struct ring_rec *rec)
{
	r->rpos += rec_size(rec->len);
}

void ring_sc_release(struct ring *r)
{
	if (atomic_load_explicit(&r->tail, memory_order_relaxed) != r->rpos)
		atomic_store_explicit(&r->tail, r->rpos, memory_order_release);
}

bool ring_sc_empty(struct ring *r)
{
	return r->rpos == atomic_load_explicit(&r->head, memory_order_acquire);
}
