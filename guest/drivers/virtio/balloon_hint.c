// SPDX-License-Identifier: GPL-2.0
/*
 * Free page hinting for the virtio balloon without writing hinted memory.
 *
 * The host writes a command ID into the config space when a migration starts
 * and after each dirty bitmap sync; VIRTIO_BALLOON_CMD_ID_STOP ends the round
 * and VIRTIO_BALLOON_CMD_ID_DONE lets the guest reuse everything. For each new
 * ID the guest posts the ID as a device-readable buffer on the free page
 * queue, then one device-writable buffer per free block mm lends it
 * (isolate_free_block()), keeping the queue full, then STOP once no block is
 * left to lend. The host clears hinted blocks in its migration bitmap and never
 * sends them.
 *
 * A block goes back to the allocator only when the host can no longer act on
 * its hint: after the device used the hint's buffer (the host has cleared its
 * bits, and any later write shows up in the next dirty bitmap sync), after
 * DONE (the host acts on no more hints) or after a device reset. Blocks the
 * device has used are "held" and may go back early under memory pressure.
 * Until then a block is out of reach of memory pressure, so hints of blocks
 * not from the reserve (below) wait for the device to use earlier ones once
 * they name as much memory as the reserve keeps free (one block always): a
 * slow device leaves the guest its reserve to allocate from.
 *
 * Every held block is hinted once per round: blocks held from an earlier
 * round are hinted again first, since the host ignores hints it received
 * after stopping a round. Held blocks are kept in an XArray rather than on
 * lists through their struct pages: hinting one again writes no memory map,
 * which the migration would have to send again, the last round's with the
 * guest stopped.
 *
 * What each zone keeps free above its high watermark (the reserve, and the
 * share of free memory not lent) is lent too, once per round, as much as
 * was above the watermark when the round got to it, and only after the
 * device used the round's other hints: until then no held block can go
 * back under memory pressure, and the guest allocates from the reserve.
 * Once the host used such a block's hint, any write to it shows up in the
 * next dirty bitmap sync, so it is held only until the round lends no more
 * (else it would be lent again in the same round), and goes back first
 * under memory pressure. Not on guests whose free pages hold poison or
 * zeroes: given back, a block would be rewritten, and sent all the same.
 *
 * The round's state changes in hint_next() only, driven by the work item
 * (and by reset and destroy once the work item is stopped):
 *
 *   any     --new ID--> ACTIVE    post the ID, then hints, then STOP (a round
 *                                 under way is abandoned, its reserve given
 *                                 back)
 *   ACTIVE  --STOP, ran dry or queue error--> HOLDING    reserve given back
 *   any     --DONE or device reset--> IDLE    every block given back
 *   any     --same ID--> same     counted
 *
 * Outside IDLE the work also runs every HINT_RECHECK_MS, reads the command
 * ID and reaps used buffers, so that a lost interrupt costs a second.
 */
#include <linux/debugfs.h>
#include <linux/free_block_lending.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/oom.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "balloon_hint.h"

/*
 * Buffers added between two notifications of the device: each notification
 * is a VM exit, and 32 buffers keep the host busy while the guest borrows
 * the next blocks. The work also notifies whenever it stops adding, as when
 * the hints awaiting the device reach the reserve (may_post_lent()).
 */
#define HINT_KICK_BATCH		32
#define HINT_ORDERS	(FREE_BLOCK_MAX_ORDER - FREE_BLOCK_MIN_ORDER + 1)
/* pending bit: the config space changed since the work last read it */
#define HINT_CONFIG_CHANGED	0
/* pending bit: the recheck asks the work to read the command ID again */
#define HINT_RECHECK		1
/*
 * While a round is under way or blocks are held, the work reads the command
 * ID again this often, interrupt or not: a host may lose a config or queue
 * interrupt (upstream QEMU 10.0 raises them from its iothread without the
 * BQL), and a lost DONE would keep every held block from the allocator
 * until memory pressure took it back.
 */
#define HINT_RECHECK_MS		1000
/* A held block not hinted this round yet. */
#define HELD_STALE	XA_MARK_0
/* A held block hinted again, whose buffer the device has not used yet. */
#define HELD_POSTED	XA_MARK_1
/* A block lent from the reserve, held until the round lends no more. */
#define HELD_RESERVE	XA_MARK_2

static unsigned int reserve_mib = 32;
module_param(reserve_mib, uint, 0644);
MODULE_PARM_DESC(reserve_mib,
		 "Free MiB each zone keeps above its high watermark while hinting, and the most hinted memory awaiting the device (default 32)");

/*
 * Each zone keeps at least 1% of its free memory: on large guests that is
 * more than the reserve above, and it scales with the zone as the
 * watermarks do, while hinting still covers nearly all free memory.
 */
static unsigned int max_lent_percent = 99;
module_param(max_lent_percent, uint, 0644);
MODULE_PARM_DESC(max_lent_percent,
		 "Share of each zone's free memory held for hinting at a time (default 99)");

static bool lend_reserve = true;
module_param(lend_reserve, bool, 0644);
MODULE_PARM_DESC(lend_reserve,
		 "Hint the reserve and share too, at the end of each round (default on)");

static struct dentry *debugfs_root;

enum hint_state {
	HINT_IDLE,	/* no round since the last DONE or reset, nothing held */
	HINT_ACTIVE,	/* posting this round's command ID, then its hints */
	HINT_HOLDING,	/* round over: hold the blocks until DONE */
};

enum hint_event {
	HINT_EV_SAME_ID,	/* the config changed, the command ID did not */
	HINT_EV_NEW_ID,		/* a new command ID: a new round */
	HINT_EV_STOP_ID,	/* the host stopped the round */
	HINT_EV_DONE_ID,	/* the host acts on no hint any more */
	HINT_EV_RAN_DRY,	/* no zone lends another block; STOP posted */
	HINT_EV_QUEUE_ERROR,	/* the free page queue refused a buffer */
	HINT_EV_RESET,		/* the device was reset or goes away */
};

/* What a transition asks the driver to do, besides changing state. */
enum hint_action {
	HINT_DO_START_ROUND	= BIT(0),	/* post the ID, then hints */
	HINT_DO_GIVE_BACK_DONE	= BIT(1),	/* every block; contents settled */
	HINT_DO_GIVE_BACK_RESET	= BIT(2),	/* every block; may still be skipped */
	HINT_DO_COUNT_REPEAT	= BIT(3),
	HINT_DO_COUNT_STOP	= BIT(4),
	HINT_DO_COUNT_DONE	= BIT(5),
	HINT_DO_GIVE_BACK_RESERVE = BIT(6),	/* the round lends no more */
};

struct hint_transition {
	enum hint_state next;
	unsigned int actions;	/* enum hint_action bits */
};

enum post_result {
	POST_OK,
	POST_WAIT,		/* wait for the device to use a buffer */
	POST_NOTHING_LEFT,	/* no zone can lend another block */
	POST_FAILED,		/* the queue refused a buffer */
};

/* Why blocks go back; it decides how their contents are restored. */
enum give_back_reason {
	GIVE_BACK_DONE,		/* the host acts on no hint any more */
	GIVE_BACK_RESET,	/* device reset; a migration may be under way */
	GIVE_BACK_PRESSURE,	/* shrinker or OOM, maybe mid-migration */
	GIVE_BACK_RESERVE,	/* lent from the reserve, its hint used */
};

/* Where a hinted block comes from. */
enum hint_kind {
	HINT_NEW,		/* lent within the limits, held once used */
	HINT_HELD,		/* held, hinted again this round */
	HINT_RESERVE,		/* lent from the reserve until the round ends */
};

/*
 * One per descriptor of the free page queue; the slot is the buffer's token.
 * A slot the device holds carries a command ID or a hinted block; once the
 * block went back (DONE) or for a command ID, block is NULL.
 */
struct hint_slot {
	__virtio32 cmd_id;	/* command ID buffer: what the device reads */
	struct page *block;	/* hint buffer: head page of the block */
	unsigned int order;	/* of block */
	u32 round;		/* round block was posted in */
	bool held;		/* a re-hint of a block in held */
	bool reserve;		/* block was lent from the reserve */
};

struct hint_stats {
	u64 repeats;			/* config changes with the same ID */
	u64 stops;
	u64 dones;
	u64 blocks[HINT_ORDERS];	/* blocks borrowed and hinted, by order */
	u64 rehints;			/* held blocks hinted again */
	u64 reserve_pages;		/* pages hinted from the reserve */
	u64 returned_early;		/* blocks given back under pressure */
	u64 post_errors;		/* buffers the queue refused */
	u64 rechecked_ids;		/* command IDs first read by a recheck */
	u64 last_round_ns;		/* command ID to last hint, last round */
	u64 hint_ns;			/* command ID to last hint, all rounds */
	u64 work_ns;			/* time in the work item */
	unsigned long borrowed;		/* blocks borrowed now, held or posted */
};

struct balloon_hint {
	struct virtio_device *vdev;
	struct workqueue_struct *wq;
	struct work_struct work;
	struct delayed_work recheck;	/* queues work with HINT_RECHECK */
	unsigned long pending;		/* HINT_CONFIG_CHANGED, HINT_RECHECK;
					 * atomic bitops
					 */

	/*
	 * Owned by the work item; reset and destroy touch them only after
	 * cancelling it.
	 */
	struct virtqueue *vq;
	enum hint_state state;
	u32 host_cmd_id;		/* last ID read from config */
	u32 round_cmd_id;		/* ID of the current round */
	u32 round;			/* rounds started since create; debugfs reads it */
	bool cmd_id_posted;		/* the current round's ID is queued */
	ktime_t round_start;
	u32 timed_round;		/* round of stats.last_round_ns */
	unsigned int unkicked;		/* buffers added since the last kick */
	struct hint_slot *slots;
	unsigned int max_slots;		/* allocated */
	unsigned int nr_slots;		/* in use: at most the ring size */
	unsigned int *free_slots;	/* stack of free slot indices */
	unsigned int nr_free_slots;
	/*
	 * Hints the device has not used, of blocks not from the reserve and
	 * from it: never both at once (next_block()).
	 */
	unsigned int nr_posted_lent;
	unsigned int nr_posted_reserve;
	unsigned long posted_lent_pages;	/* of nr_posted_lent; debugfs
						 * reads it
						 */
	bool reserve_measured;		/* reserve_left set this round */
	unsigned long reserve_left;	/* pages the round may still lend
					 * from the reserve
					 */

	/*
	 * lock protects stopping and stats. Taken from interrupt context
	 * (config change, queue callback) and by the shrinker and the OOM
	 * notifier.
	 */
	spinlock_t lock;
	bool stopping;			/* queue no more work */
	struct hint_stats stats;

	/*
	 * Blocks the device used a hint of, by held_index(), the order as a
	 * value entry; marked HELD_STALE, HELD_POSTED and HELD_RESERVE. Its
	 * lock protects
	 * the entries, their marks and held_pages; taken by the work item, the
	 * shrinker and the OOM notifier, never from interrupt context.
	 */
	struct xarray held;
	unsigned long held_pages;	/* pages of the held blocks */

	struct shrinker *shrinker;
	struct notifier_block oom_nb;
	struct dentry *debugfs;
};

static unsigned long reserve_pages(void)
{
	return (unsigned long)READ_ONCE(reserve_mib) << (20 - PAGE_SHIFT);
}

static void hint_limits(struct free_block_limits *limits)
{
	limits->reserve_pages = reserve_pages();
	limits->max_lent_percent = READ_ONCE(max_lent_percent);
}

/*
 * A block whose hint the host may still act on (a migration under way may
 * skip it) could read back stale: every page is rewritten, so the migration
 * sees it dirty. After DONE what the pages hold is settled.
 */
static enum free_block_putback putback_how(enum give_back_reason reason)
{
	return reason == GIVE_BACK_DONE ? FREE_BLOCK_REPAIR : FREE_BLOCK_REWRITE;
}

/* The whole protocol: what a command ID read from config means. */
static enum hint_event cmd_id_event(u32 last_cmd_id, u32 cmd_id)
{
	if (cmd_id == last_cmd_id)
		return HINT_EV_SAME_ID;
	if (cmd_id == VIRTIO_BALLOON_CMD_ID_STOP)
		return HINT_EV_STOP_ID;
	if (cmd_id == VIRTIO_BALLOON_CMD_ID_DONE)
		return HINT_EV_DONE_ID;
	return HINT_EV_NEW_ID;
}

/*
 * The round's state machine: the next state and the actions for @event in
 * @state. A round ends (HOLDING) only while one is under way; a new ID
 * starts one from any state, since the host never waits for the guest to
 * finish a round before the next.
 */
static struct hint_transition hint_next(enum hint_state state,
					enum hint_event event)
{
	struct hint_transition t = { .next = state };

	switch (event) {
	case HINT_EV_SAME_ID:
		t.actions = HINT_DO_COUNT_REPEAT;
		break;
	case HINT_EV_NEW_ID:
		t.next = HINT_ACTIVE;
		t.actions = HINT_DO_START_ROUND;
		break;
	case HINT_EV_STOP_ID:
		t.actions = HINT_DO_COUNT_STOP;
		fallthrough;
	case HINT_EV_RAN_DRY:
	case HINT_EV_QUEUE_ERROR:
		if (state == HINT_ACTIVE)
			t.next = HINT_HOLDING;
		break;
	case HINT_EV_DONE_ID:
		t.next = HINT_IDLE;
		t.actions = HINT_DO_GIVE_BACK_DONE | HINT_DO_COUNT_DONE;
		break;
	case HINT_EV_RESET:
		t.next = HINT_IDLE;
		t.actions = HINT_DO_GIVE_BACK_RESET;
		break;
	}
	/* A round that lends no more gives the reserve back. */
	if (state == HINT_ACTIVE &&
	    (t.next == HINT_HOLDING || event == HINT_EV_NEW_ID))
		t.actions |= HINT_DO_GIVE_BACK_RESERVE;
	return t;
}

static void queue_hint_work(struct balloon_hint *hint)
{
	unsigned long flags;

	spin_lock_irqsave(&hint->lock, flags);
	if (!hint->stopping)
		queue_work(hint->wq, &hint->work);
	spin_unlock_irqrestore(&hint->lock, flags);
}

/* Read the command ID again in HINT_RECHECK_MS, unless already due. */
static void queue_recheck(struct balloon_hint *hint)
{
	spin_lock_irq(&hint->lock);
	if (!hint->stopping)
		queue_delayed_work(hint->wq, &hint->recheck,
				   msecs_to_jiffies(HINT_RECHECK_MS));
	spin_unlock_irq(&hint->lock);
}

static void hint_recheck(struct work_struct *work)
{
	struct balloon_hint *hint = container_of(to_delayed_work(work),
						 struct balloon_hint, recheck);

	set_bit(HINT_RECHECK, &hint->pending);
	queue_hint_work(hint);
}

/*
 * Stop queueing the work item and the recheck, and wait for running ones to
 * finish. Once stopping is set, neither queues the other again, so the
 * order of the two cancels does not matter.
 */
static void stop_hint_work(struct balloon_hint *hint)
{
	spin_lock_irq(&hint->lock);
	hint->stopping = true;
	spin_unlock_irq(&hint->lock);
	cancel_delayed_work_sync(&hint->recheck);
	cancel_work_sync(&hint->work);
}

static void reset_slots(struct balloon_hint *hint)
{
	unsigned int i;

	for (i = 0; i < hint->nr_slots; i++) {
		hint->slots[i].block = NULL;
		hint->free_slots[i] = i;
	}
	hint->nr_free_slots = hint->nr_slots;
	hint->nr_posted_lent = 0;
	hint->nr_posted_reserve = 0;
	WRITE_ONCE(hint->posted_lent_pages, 0);
}

static struct hint_slot *get_slot(struct balloon_hint *hint)
{
	if (!hint->nr_free_slots)
		return NULL;
	return &hint->slots[hint->free_slots[--hint->nr_free_slots]];
}

/* The device will not use @slot's hint any more, or the block went back. */
static void forget_slot_block(struct balloon_hint *hint, struct hint_slot *slot)
{
	unsigned int *posted = slot->reserve ? &hint->nr_posted_reserve :
					       &hint->nr_posted_lent;

	if (slot->block && !WARN_ON_ONCE(!*posted)) {
		(*posted)--;
		if (!slot->reserve)
			WRITE_ONCE(hint->posted_lent_pages,
				   hint->posted_lent_pages -
				   (1UL << slot->order));
	}
	slot->block = NULL;
}

static void put_slot(struct balloon_hint *hint, struct hint_slot *slot)
{
	forget_slot_block(hint, slot);
	hint->free_slots[hint->nr_free_slots++] = slot - hint->slots;
}

static void give_back_block(struct balloon_hint *hint, struct page *block,
			    unsigned int order, enum give_back_reason reason)
{
	putback_free_block(block, order, putback_how(reason));
	spin_lock_irq(&hint->lock);
	hint->stats.borrowed--;
	if (reason == GIVE_BACK_PRESSURE)
		hint->stats.returned_early++;
	spin_unlock_irq(&hint->lock);
}

static unsigned long held_index(struct page *block)
{
	return page_to_pfn(block) >> FREE_BLOCK_MIN_ORDER;
}

static struct page *held_block(unsigned long index)
{
	return pfn_to_page(index << FREE_BLOCK_MIN_ORDER);
}

/*
 * The device used the first hint of @slot's block: the host is done with
 * it. A reserve block is marked so, a block from an earlier round stale. A
 * block that cannot be held (no memory for the XArray) goes back.
 */
static void hold_block(struct balloon_hint *hint, struct hint_slot *slot,
		       bool stale)
{
	unsigned long index = held_index(slot->block);
	void *old;

	xa_lock(&hint->held);
	old = __xa_store(&hint->held, index, xa_mk_value(slot->order),
			 GFP_KERNEL);
	if (!xa_is_err(old)) {
		/* A block is lent once: no entry can be there. */
		WARN_ON_ONCE(old);
		if (slot->reserve)
			__xa_set_mark(&hint->held, index, HELD_RESERVE);
		else if (stale)
			__xa_set_mark(&hint->held, index, HELD_STALE);
		WRITE_ONCE(hint->held_pages,
			   hint->held_pages + (1UL << slot->order));
	}
	xa_unlock(&hint->held);
	if (xa_is_err(old))
		give_back_block(hint, slot->block, slot->order,
				GIVE_BACK_PRESSURE);
}

/* The device used a held block's hint again, or the queue refused it. */
static void settle_rehint(struct balloon_hint *hint, struct page *block,
			  bool stale)
{
	unsigned long index = held_index(block);

	xa_lock(&hint->held);
	__xa_clear_mark(&hint->held, index, HELD_POSTED);
	if (stale)
		__xa_set_mark(&hint->held, index, HELD_STALE);
	xa_unlock(&hint->held);
}

/* A held block not hinted this round yet, marked posted; it stays held. */
static struct page *take_stale_block(struct balloon_hint *hint,
				     unsigned int *order)
{
	XA_STATE(xas, &hint->held, 0);
	struct page *block = NULL;
	void *entry;

	xas_lock(&xas);
	entry = xas_find_marked(&xas, ULONG_MAX, HELD_STALE);
	if (entry) {
		xas_clear_mark(&xas, HELD_STALE);
		xas_set_mark(&xas, HELD_POSTED);
		*order = xa_to_value(entry);
		block = held_block(xas.xa_index);
	}
	xas_unlock(&xas);
	return block;
}

/*
 * Let others take the XArray's lock now and then on a long walk. The walk
 * goes on after the entry it is at, which it may have erased: xas_pause()
 * after an erase that freed the node could skip entries.
 */
static void pause_walk(struct xa_state *xas, unsigned int *walked)
{
	unsigned long index = xas->xa_index;

	if (++*walked % XA_CHECK_SCHED)
		return;
	xas_unlock(xas);
	cond_resched();
	xas_lock(xas);
	xas_set(xas, index + 1);
}

/* Every held block is to be hinted again, once its posted hint is used. */
static void mark_held_stale(struct balloon_hint *hint)
{
	XA_STATE(xas, &hint->held, 0);
	unsigned int walked = 0;
	void *entry;

	xas_lock(&xas);
	xas_for_each(&xas, entry, ULONG_MAX) {
		if (!xas_get_mark(&xas, HELD_POSTED) &&
		    !xas_get_mark(&xas, HELD_RESERVE))
			xas_set_mark(&xas, HELD_STALE);
		pause_walk(&xas, &walked);
	}
	xas_unlock(&xas);
}

/*
 * Take held blocks off the XArray onto @taken (through their lru, with the
 * order in private) until at least @max_pages pages are taken: only those
 * marked @mark (any with XA_PRESENT); those whose hint the device has not
 * used yet only if @posted_too.
 */
static unsigned long take_held(struct balloon_hint *hint,
			       struct list_head *taken, unsigned long max_pages,
			       xa_mark_t mark, bool posted_too)
{
	XA_STATE(xas, &hint->held, 0);
	unsigned long pages = 0;
	unsigned int walked = 0;
	struct page *block;
	void *entry;

	xas_lock(&xas);
	while (pages < max_pages) {
		entry = mark == XA_PRESENT ? xas_find(&xas, ULONG_MAX) :
			xas_find_marked(&xas, ULONG_MAX, mark);
		if (!entry)
			break;
		if (posted_too || !xas_get_mark(&xas, HELD_POSTED)) {
			block = held_block(xas.xa_index);
			set_page_private(block, xa_to_value(entry));
			list_add_tail(&block->lru, taken);
			pages += 1UL << xa_to_value(entry);
			xas_store(&xas, NULL);
		}
		pause_walk(&xas, &walked);
	}
	WRITE_ONCE(hint->held_pages, hint->held_pages - pages);
	xas_unlock(&xas);
	return pages;
}

/* Put back the blocks take_held() took. */
static void put_back_taken(struct balloon_hint *hint, struct list_head *taken,
			   enum give_back_reason reason)
{
	struct page *block, *next;
	unsigned long blocks = 0;

	list_for_each_entry_safe(block, next, taken, lru) {
		unsigned int order = page_private(block);

		list_del(&block->lru);
		set_page_private(block, 0);
		putback_free_block(block, order, putback_how(reason));
		blocks++;
		cond_resched();
	}
	spin_lock_irq(&hint->lock);
	hint->stats.borrowed -= blocks;
	if (reason == GIVE_BACK_PRESSURE)
		hint->stats.returned_early += blocks;
	spin_unlock_irq(&hint->lock);
}

/*
 * Give back held blocks, those lent from the reserve first, then those not
 * hinted this round, until at least @max_pages pages went back. Under
 * memory pressure a hint the device has not used yet keeps its block: the
 * host may clear the block's dirty bits after the allocator wrote it.
 */
static unsigned long give_back_held(struct balloon_hint *hint,
				    unsigned long max_pages,
				    enum give_back_reason reason)
{
	static const xa_mark_t marks[] = { HELD_RESERVE, HELD_STALE,
					   XA_PRESENT };
	bool posted_too = reason != GIVE_BACK_PRESSURE;
	unsigned long pages = 0;
	unsigned int i;
	LIST_HEAD(taken);

	for (i = 0; i < ARRAY_SIZE(marks) && pages < max_pages; i++)
		pages += take_held(hint, &taken, max_pages - pages, marks[i],
				   posted_too);
	put_back_taken(hint, &taken, reason);
	return pages;
}

/* The round lends no more: the reserve blocks it holds go back. */
static void give_back_reserve(struct balloon_hint *hint)
{
	LIST_HEAD(taken);

	take_held(hint, &taken, ULONG_MAX, HELD_RESERVE, true);
	put_back_taken(hint, &taken, GIVE_BACK_RESERVE);
}

/*
 * Give back every block. After DONE the device may still hold buffers of
 * posted hints: their slots stay in use until it returns them. After a
 * device reset it holds nothing.
 */
static void give_back_all(struct balloon_hint *hint,
			  enum give_back_reason reason)
{
	struct hint_slot *slot;

	for (slot = hint->slots; slot < hint->slots + hint->nr_slots; slot++) {
		if (!slot->block)
			continue;
		/* A held block goes back with the others below. */
		if (!slot->held)
			give_back_block(hint, slot->block, slot->order, reason);
		forget_slot_block(hint, slot);
		cond_resched();
	}
	give_back_held(hint, ULONG_MAX, reason);
}

static void start_round(struct balloon_hint *hint)
{
	WRITE_ONCE(hint->round, hint->round + 1);
	hint->round_cmd_id = hint->host_cmd_id;
	hint->cmd_id_posted = false;
	hint->round_start = ktime_get();
	hint->reserve_measured = false;
	mark_held_stale(hint);
	drain_free_blocks();
}

static void count(struct balloon_hint *hint, u64 *counter)
{
	spin_lock_irq(&hint->lock);
	(*counter)++;
	spin_unlock_irq(&hint->lock);
}

/* Move the round on by @event and carry out what the transition asks. */
static void hint_step(struct balloon_hint *hint, enum hint_event event)
{
	struct hint_transition t = hint_next(hint->state, event);

	hint->state = t.next;
	if (t.actions & HINT_DO_GIVE_BACK_RESERVE)
		give_back_reserve(hint);
	if (t.actions & HINT_DO_START_ROUND)
		start_round(hint);
	if (t.actions & HINT_DO_GIVE_BACK_DONE)
		give_back_all(hint, GIVE_BACK_DONE);
	if (t.actions & HINT_DO_GIVE_BACK_RESET)
		give_back_all(hint, GIVE_BACK_RESET);
	if (t.actions & HINT_DO_COUNT_REPEAT)
		count(hint, &hint->stats.repeats);
	if (t.actions & HINT_DO_COUNT_STOP)
		count(hint, &hint->stats.stops);
	if (t.actions & HINT_DO_COUNT_DONE)
		count(hint, &hint->stats.dones);
}

/*
 * Read the command ID; @notified if a config interrupt said it changed,
 * else for a recheck, where the same ID is no repeat by the host.
 */
static void handle_cmd_id(struct balloon_hint *hint, bool notified)
{
	enum hint_event event;
	u32 cmd_id;

	virtio_cread_le(hint->vdev, struct virtio_balloon_config,
			free_page_hint_cmd_id, &cmd_id);
	event = cmd_id_event(hint->host_cmd_id, cmd_id);
	/*
	 * A recheck acts on a new ID or DONE only. Upstream QEMU shows STOP
	 * while a round runs, once the guest echoed its ID; and a STOP missed
	 * costs no more than hints the host ignores.
	 */
	if (!notified) {
		if (event != HINT_EV_NEW_ID && event != HINT_EV_DONE_ID)
			return;
		count(hint, &hint->stats.rechecked_ids);
	}
	hint->host_cmd_id = cmd_id;
	hint_step(hint, event);
}

static void kick(struct balloon_hint *hint)
{
	if (hint->unkicked)
		virtqueue_kick(hint->vq);
	hint->unkicked = 0;
}

static int add_buffer(struct balloon_hint *hint, struct hint_slot *slot,
		      struct scatterlist *sg, bool device_writes)
{
	int err;

	/* Indirect descriptors are off: adding never allocates. */
	if (device_writes)
		err = virtqueue_add_inbuf(hint->vq, sg, 1, slot, GFP_KERNEL);
	else
		err = virtqueue_add_outbuf(hint->vq, sg, 1, slot, GFP_KERNEL);
	if (err) {
		dev_warn_ratelimited(&hint->vdev->dev,
				     "free page queue refused a buffer: %d\n", err);
		count(hint, &hint->stats.post_errors);
		return err;
	}
	if (++hint->unkicked >= HINT_KICK_BATCH)
		kick(hint);
	return 0;
}

/* A device-readable buffer with a command ID: the round's own, or STOP. */
static enum post_result post_id(struct balloon_hint *hint, u32 cmd_id)
{
	struct hint_slot *slot = get_slot(hint);
	struct scatterlist sg;

	if (!slot)
		return POST_WAIT;
	slot->cmd_id = cpu_to_virtio32(hint->vdev, cmd_id);
	sg_init_one(&sg, &slot->cmd_id, sizeof(slot->cmd_id));
	if (add_buffer(hint, slot, &sg, false)) {
		put_slot(hint, slot);
		return POST_FAILED;
	}
	return POST_OK;
}

static void account_hint(struct balloon_hint *hint, unsigned int order,
			 enum hint_kind kind)
{
	u64 round_ns = ktime_to_ns(ktime_sub(ktime_get(), hint->round_start));

	spin_lock_irq(&hint->lock);
	if (kind == HINT_HELD) {
		hint->stats.rehints++;
	} else {
		if (kind == HINT_NEW)
			hint->stats.blocks[order - FREE_BLOCK_MIN_ORDER]++;
		else
			hint->stats.reserve_pages += 1UL << order;
		hint->stats.borrowed++;
	}
	/* The round's first hint adds all of round_ns, later ones the rest */
	if (hint->timed_round != hint->round) {
		hint->timed_round = hint->round;
		hint->stats.last_round_ns = 0;
	}
	hint->stats.hint_ns += round_ns - hint->stats.last_round_ns;
	hint->stats.last_round_ns = round_ns;
	spin_unlock_irq(&hint->lock);
}

/*
 * A block from the reserve, down to the high watermark (which lending always
 * leaves): no more per round than was above it when the round got here, so
 * that the round ends although the guest keeps freeing memory. Only once
 * the device used every other hint of the round, ERR_PTR(-EBUSY) until
 * then: a held block whose hint is posted cannot go back under memory
 * pressure, and the reserve is what the guest allocates from meanwhile.
 */
static struct page *lend_from_reserve(struct balloon_hint *hint,
				      unsigned int *order)
{
	const struct free_block_limits limits = { .max_lent_percent = 100 };
	struct page *block;

	if (!READ_ONCE(lend_reserve) || page_poisoning_enabled_static() ||
	    want_init_on_free())
		return NULL;
	if (!hint->reserve_measured) {
		if (hint->nr_posted_lent)
			return ERR_PTR(-EBUSY);
		hint->reserve_left = free_block_lendable_pages(&limits);
		hint->reserve_measured = true;
	}
	if (hint->reserve_left < (1UL << FREE_BLOCK_MIN_ORDER))
		return NULL;
	block = isolate_free_block(&limits, order);
	if (block)
		hint->reserve_left -= min(hint->reserve_left, 1UL << *order);
	return block;
}

/*
 * Whether another block may be hinted before the device uses the hints
 * posted: their blocks are out of reach of memory pressure until then, and
 * the reserve is what the guest allocates from meanwhile. One block always.
 */
static bool may_post_lent(struct balloon_hint *hint)
{
	return !hint->posted_lent_pages ||
	       hint->posted_lent_pages + (1UL << FREE_BLOCK_MAX_ORDER) <=
	       reserve_pages();
}

/*
 * The next block to hint: a held block not hinted this round yet, else a
 * block lent within the limits, else one lent from the reserve, which once
 * begun is all the round lends. ERR_PTR(-EBUSY) to wait for used hints:
 * another round's reserve hints are still posted, the posted hints name as
 * much as the reserve (may_post_lent()), or the reserve waits
 * (lend_from_reserve()).
 */
static struct page *next_block(struct balloon_hint *hint, unsigned int *order,
			       enum hint_kind *kind)
{
	struct free_block_limits limits;
	struct page *block;

	*kind = HINT_RESERVE;
	if (hint->reserve_measured)
		return lend_from_reserve(hint, order);
	if (hint->nr_posted_reserve || !may_post_lent(hint))
		return ERR_PTR(-EBUSY);
	*kind = HINT_HELD;
	block = take_stale_block(hint, order);
	if (block)
		return block;
	*kind = HINT_NEW;
	hint_limits(&limits);
	block = isolate_free_block(&limits, order);
	if (block)
		return block;
	*kind = HINT_RESERVE;
	return lend_from_reserve(hint, order);
}

static enum post_result post_hint(struct balloon_hint *hint)
{
	struct hint_slot *slot;
	struct scatterlist sg;
	enum hint_kind kind;
	struct page *block;
	unsigned int order;

	/* The last free slot is kept for the next round's command ID. */
	if (hint->nr_free_slots < 2)
		return POST_WAIT;
	block = next_block(hint, &order, &kind);
	if (IS_ERR(block))
		return POST_WAIT;
	if (!block)
		return POST_NOTHING_LEFT;

	slot = get_slot(hint);
	slot->block = block;
	slot->order = order;
	slot->round = hint->round;
	slot->held = kind == HINT_HELD;
	slot->reserve = kind == HINT_RESERVE;
	if (slot->reserve) {
		hint->nr_posted_reserve++;
	} else {
		hint->nr_posted_lent++;
		WRITE_ONCE(hint->posted_lent_pages,
			   hint->posted_lent_pages + (1UL << order));
	}
	sg_init_table(&sg, 1);
	sg_set_page(&sg, block, PAGE_SIZE << order, 0);
	if (add_buffer(hint, slot, &sg, true)) {
		/* A new block was never hinted; a held block stays held. */
		put_slot(hint, slot);
		if (kind == HINT_HELD)
			settle_rehint(hint, block, true);
		else
			putback_free_block(block, order, FREE_BLOCK_REPAIR);
		return POST_FAILED;
	}
	account_hint(hint, order, kind);
	return POST_OK;
}

/*
 * The round's command ID, then one hint per block, then STOP when no zone
 * lends another block: the host may stop waiting for this round (upstream
 * guests end their rounds the same way).
 */
static enum post_result post_next(struct balloon_hint *hint)
{
	enum post_result result;

	if (!hint->cmd_id_posted) {
		result = post_id(hint, hint->round_cmd_id);
		hint->cmd_id_posted = result == POST_OK;
		return result;
	}
	result = post_hint(hint);
	if (result != POST_NOTHING_LEFT)
		return result;
	/* post_hint() left a slot free: STOP cannot find the queue full. */
	result = post_id(hint, VIRTIO_BALLOON_CMD_ID_STOP);
	return result == POST_OK ? POST_NOTHING_LEFT : result;
}

static void reap_used(struct balloon_hint *hint)
{
	struct hint_slot *slot;
	unsigned int len;
	bool stale;

	while ((slot = virtqueue_get_buf(hint->vq, &len))) {
		stale = slot->round != hint->round;
		/* A reserve block is held only while its round lends. */
		if (slot->block && slot->reserve &&
		    (stale || hint->state != HINT_ACTIVE))
			give_back_block(hint, slot->block, slot->order,
					GIVE_BACK_RESERVE);
		else if (slot->block && slot->held)
			settle_rehint(hint, slot->block, stale);
		else if (slot->block)
			hold_block(hint, slot, stale);
		put_slot(hint, slot);
	}
}

static void count_work(struct balloon_hint *hint, ktime_t start)
{
	u64 ns = ktime_to_ns(ktime_sub(ktime_get(), start));

	spin_lock_irq(&hint->lock);
	hint->stats.work_ns += ns;
	spin_unlock_irq(&hint->lock);
}

static void hint_work(struct work_struct *work)
{
	struct balloon_hint *hint = container_of(work, struct balloon_hint,
						 work);
	ktime_t start = ktime_get();
	enum post_result result;
	bool notified, recheck;

	virtqueue_disable_cb(hint->vq);
	for (;;) {
		notified = test_and_clear_bit(HINT_CONFIG_CHANGED,
					      &hint->pending);
		recheck = test_and_clear_bit(HINT_RECHECK, &hint->pending);
		if (notified || recheck)
			handle_cmd_id(hint, notified);
		reap_used(hint);
		if (hint->state == HINT_ACTIVE) {
			result = post_next(hint);
			if (result == POST_OK) {
				cond_resched();
				continue;
			}
			if (result == POST_NOTHING_LEFT)
				hint_step(hint, HINT_EV_RAN_DRY);
			else if (result == POST_FAILED)
				hint_step(hint, HINT_EV_QUEUE_ERROR);
		}
		kick(hint);
		/*
		 * Let the device's next used buffer queue this work again,
		 * unless buffers came back meanwhile.
		 */
		if (virtqueue_enable_cb(hint->vq))
			break;
		virtqueue_disable_cb(hint->vq);
	}
	/* Used buffers are reaped by the recheck's work, interrupt or not. */
	if (hint->state != HINT_IDLE)
		queue_recheck(hint);
	count_work(hint, start);
}

static unsigned long hint_shrink_count(struct shrinker *shrinker,
				       struct shrink_control *sc)
{
	struct balloon_hint *hint = shrinker->private_data;
	unsigned long pages = READ_ONCE(hint->held_pages);

	return pages ? pages : SHRINK_EMPTY;
}

static unsigned long hint_shrink_scan(struct shrinker *shrinker,
				      struct shrink_control *sc)
{
	struct balloon_hint *hint = shrinker->private_data;
	unsigned long pages = give_back_held(hint, sc->nr_to_scan,
					     GIVE_BACK_PRESSURE);

	return pages ? pages : SHRINK_STOP;
}

/* Out of memory with blocks borrowed and none to give back: say why. */
static void log_none_to_give(struct balloon_hint *hint)
{
	unsigned int posted, reserve;
	unsigned long borrowed;

	spin_lock_irq(&hint->lock);
	borrowed = hint->stats.borrowed;
	spin_unlock_irq(&hint->lock);
	if (!borrowed)
		return;
	/* The work item owns the posted counts: a racy read, for the log. */
	posted = data_race(hint->nr_posted_lent);
	/* The same. */
	reserve = data_race(hint->nr_posted_reserve);
	dev_info_ratelimited(&hint->vdev->dev,
			     "out of memory: %lu blocks borrowed, %lu pages held, %u hints posted and %u of the reserve: none can go back yet\n",
			     borrowed, READ_ONCE(hint->held_pages), posted,
			     reserve);
}

static int hint_oom_notify(struct notifier_block *nb, unsigned long unused,
			   void *parm)
{
	struct balloon_hint *hint = container_of(nb, struct balloon_hint,
						 oom_nb);
	unsigned long *freed = parm;
	unsigned long pages;

	pages = give_back_held(hint, ULONG_MAX, GIVE_BACK_PRESSURE);
	*freed += pages;
	if (!pages)
		log_none_to_give(hint);
	return NOTIFY_OK;
}

static int hint_stats_show(struct seq_file *m, void *unused)
{
	struct balloon_hint *hint = m->private;
	struct hint_stats stats;
	unsigned long held_pages;
	u64 bytes = 0;
	int i;

	spin_lock_irq(&hint->lock);
	stats = hint->stats;
	spin_unlock_irq(&hint->lock);
	held_pages = READ_ONCE(hint->held_pages);

	seq_printf(m, "cmd_ids %u\n", READ_ONCE(hint->round));
	seq_printf(m, "repeats %llu\n", stats.repeats);
	seq_printf(m, "stops %llu\n", stats.stops);
	seq_printf(m, "dones %llu\n", stats.dones);
	for (i = 0; i < HINT_ORDERS; i++) {
		unsigned int order = FREE_BLOCK_MIN_ORDER + i;

		seq_printf(m, "order_%u_blocks %llu\n", order, stats.blocks[i]);
		seq_printf(m, "order_%u_bytes %llu\n", order,
			   stats.blocks[i] << (order + PAGE_SHIFT));
		bytes += stats.blocks[i] << (order + PAGE_SHIFT);
	}
	seq_printf(m, "hinted_bytes %llu\n", bytes);
	seq_printf(m, "rehints %llu\n", stats.rehints);
	seq_printf(m, "reserve_bytes %llu\n", stats.reserve_pages << PAGE_SHIFT);
	seq_printf(m, "blocks_borrowed %lu\n", stats.borrowed);
	seq_printf(m, "held_bytes %lu\n", held_pages << PAGE_SHIFT);
	seq_printf(m, "posted_bytes %lu\n",
		   READ_ONCE(hint->posted_lent_pages) << PAGE_SHIFT);
	seq_printf(m, "returned_early %llu\n", stats.returned_early);
	seq_printf(m, "post_errors %llu\n", stats.post_errors);
	seq_printf(m, "rechecked_ids %llu\n", stats.rechecked_ids);
	seq_printf(m, "last_round_us %llu\n", stats.last_round_ns / NSEC_PER_USEC);
	seq_printf(m, "hint_us %llu\n", stats.hint_ns / NSEC_PER_USEC);
	seq_printf(m, "work_us %llu\n", stats.work_ns / NSEC_PER_USEC);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hint_stats);

/**
 * balloon_hint_create - take over free page hinting for a balloon device
 * @vdev: the balloon device, with VIRTIO_BALLOON_F_FREE_PAGE_HINT negotiated
 * @vq: its free page queue, whose callback calls balloon_hint_vq_done()
 *
 * Context: Process context, before the device is ready.
 * Return: The hint state, or an ERR_PTR: -ENOSPC if @vq cannot hold a command
 * ID and a hint, -ENOMEM, or the error of registering the OOM notifier.
 */
struct balloon_hint *balloon_hint_create(struct virtio_device *vdev,
					 struct virtqueue *vq)
{
	unsigned int size = virtqueue_get_vring_size(vq);
	struct balloon_hint *hint;
	int err = -ENOMEM;

	if (size < 2)
		return ERR_PTR(-ENOSPC);
	hint = kzalloc(sizeof(*hint), GFP_KERNEL);
	if (!hint)
		return ERR_PTR(-ENOMEM);
	hint->slots = kcalloc(size, sizeof(*hint->slots), GFP_KERNEL);
	hint->free_slots = kcalloc(size, sizeof(*hint->free_slots), GFP_KERNEL);
	if (!hint->slots || !hint->free_slots)
		goto err_free;
	hint->wq = alloc_workqueue("balloon-hint",
				   WQ_FREEZABLE | WQ_CPU_INTENSIVE, 0);
	if (!hint->wq)
		goto err_free;

	hint->vdev = vdev;
	hint->vq = vq;
	hint->max_slots = size;
	hint->nr_slots = size;
	reset_slots(hint);
	hint->state = HINT_IDLE;
	hint->host_cmd_id = VIRTIO_BALLOON_CMD_ID_STOP;
	INIT_WORK(&hint->work, hint_work);
	INIT_DELAYED_WORK(&hint->recheck, hint_recheck);
	spin_lock_init(&hint->lock);
	xa_init(&hint->held);

	hint->shrinker = shrinker_alloc(0, "virtio-balloon-hint");
	if (!hint->shrinker)
		goto err_wq;
	hint->shrinker->count_objects = hint_shrink_count;
	hint->shrinker->scan_objects = hint_shrink_scan;
	hint->shrinker->private_data = hint;
	shrinker_register(hint->shrinker);
	hint->oom_nb.notifier_call = hint_oom_notify;
	err = register_oom_notifier(&hint->oom_nb);
	if (err)
		goto err_shrinker;
	hint->debugfs = debugfs_create_dir(dev_name(&vdev->dev), debugfs_root);
	debugfs_create_file("stats", 0444, hint->debugfs, hint,
			    &hint_stats_fops);
	return hint;

err_shrinker:
	shrinker_free(hint->shrinker);
err_wq:
	destroy_workqueue(hint->wq);
err_free:
	kfree(hint->free_slots);
	kfree(hint->slots);
	kfree(hint);
	return ERR_PTR(err);
}
EXPORT_SYMBOL_GPL(balloon_hint_create);

/**
 * balloon_hint_config_changed - the device's config space changed
 * @hint: from balloon_hint_create()
 *
 * Context: Any context; only queues work that reads the command ID.
 */
void balloon_hint_config_changed(struct balloon_hint *hint)
{
	set_bit(HINT_CONFIG_CHANGED, &hint->pending);
	queue_hint_work(hint);
}
EXPORT_SYMBOL_GPL(balloon_hint_config_changed);

/**
 * balloon_hint_vq_done - the device used buffers of the free page queue
 * @hint: from balloon_hint_create()
 *
 * Context: Any context; only queues work.
 */
void balloon_hint_vq_done(struct balloon_hint *hint)
{
	queue_hint_work(hint);
}
EXPORT_SYMBOL_GPL(balloon_hint_vq_done);

/**
 * balloon_hint_stop - stop hinting before the device is reset
 * @hint: from balloon_hint_create()
 *
 * No work is queued from now on and a running one has finished, so the free
 * page queue is left alone until balloon_hint_reset() attaches a new one.
 *
 * Context: Process context.
 */
void balloon_hint_stop(struct balloon_hint *hint)
{
	stop_hint_work(hint);
}
EXPORT_SYMBOL_GPL(balloon_hint_stop);

/**
 * balloon_hint_reset - the device was reset
 * @hint: from balloon_hint_create()
 * @vq: the free page queue from now on, or NULL while the device is down
 *
 * Forgets every buffer of the old queue and gives back every block: the
 * device was reset, so the host can act on no hint any more, though a
 * migration under way may have skipped hinted blocks.
 *
 * Context: Process context, after virtio_reset_device().
 */
void balloon_hint_reset(struct balloon_hint *hint, struct virtqueue *vq)
{
	stop_hint_work(hint);
	hint_step(hint, HINT_EV_RESET);
	/* A smaller ring than at create time uses fewer slots. */
	if (vq)
		hint->nr_slots = min(hint->max_slots,
				     virtqueue_get_vring_size(vq));
	reset_slots(hint);
	hint->host_cmd_id = VIRTIO_BALLOON_CMD_ID_STOP;
	hint->unkicked = 0;
	hint->vq = vq;
	if (vq) {
		spin_lock_irq(&hint->lock);
		hint->stopping = false;
		spin_unlock_irq(&hint->lock);
	}
}
EXPORT_SYMBOL_GPL(balloon_hint_reset);

/**
 * balloon_hint_destroy - free the hint state
 * @hint: from balloon_hint_create()
 *
 * Context: Process context, after balloon_hint_reset() or before the device
 * was ever ready.
 */
void balloon_hint_destroy(struct balloon_hint *hint)
{
	stop_hint_work(hint);
	debugfs_remove_recursive(hint->debugfs);
	unregister_oom_notifier(&hint->oom_nb);
	shrinker_free(hint->shrinker);
	hint_step(hint, HINT_EV_RESET);
	WARN_ON(!xa_empty(&hint->held));
	destroy_workqueue(hint->wq);
	kfree(hint->free_slots);
	kfree(hint->slots);
	kfree(hint);
}
EXPORT_SYMBOL_GPL(balloon_hint_destroy);

static int __init balloon_hint_init(void)
{
	debugfs_root = debugfs_create_dir("balloon_hint", NULL);
	return 0;
}

static void __exit balloon_hint_exit(void)
{
	debugfs_remove_recursive(debugfs_root);
}

module_init(balloon_hint_init);
module_exit(balloon_hint_exit);
MODULE_DESCRIPTION("Virtio balloon free page hinting without writing hinted memory");
MODULE_LICENSE("GPL");

#ifdef CONFIG_VIRTIO_BALLOON_HINT_KUNIT_TEST
#include "balloon_hint_test.c"
#endif
