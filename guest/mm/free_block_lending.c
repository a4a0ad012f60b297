// SPDX-License-Identifier: GPL-2.0
/*
 * Free block lending; the contract is in include/linux/free_block_lending.h.
 *
 * A block is lent the way page reporting isolates free pages, but with
 * __isolate_free_block(): off its free list, with no allocation-time
 * initialisation, poison check, refcount or write, and its pageblocks keep
 * their migratetype. __putback_isolated_page() then returns it to the free
 * list it came from, with the free counters of that migratetype.
 */
#include <linux/free_block_lending.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/kasan.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/poison.h>
#include <linux/string.h>
#include <linux/vmstat.h>
#include "internal.h"

/*
 * Movable pageblocks first: that is where free user memory lives. CMA
 * pageblocks must stay allocatable by cma_alloc() at any time, isolated ones
 * belong to memory offlining or alloc_contig_range(), and the highatomic
 * reserve is kept for high-order atomic allocations: none of them is lent.
 */
static const int lent_migratetypes[] = {
	MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE,
};

/* Free pages lending may count: CMA pages serve movable allocations only. */
static unsigned long zone_lendable_free(struct zone *zone)
{
	long free = zone_page_state(zone, NR_FREE_PAGES) -
		    zone_page_state(zone, NR_FREE_CMA_PAGES);

	return max(free, 0L);
}

/*
 * Lending must never be the reason an allocation has to reclaim: a zone
 * lends only while it stays above its high watermark plus the reserve,
 * counting the protection lower zones keep against allocations that could
 * have used a higher zone. Without ALLOC_CMA and ALLOC_RESERVES the
 * watermark check leaves out free CMA pages and the highatomic reserve,
 * which are never lent. And the zone's lent pages stay within their share of
 * its free memory.
 */
static bool zone_may_lend(struct zone *zone, unsigned int order,
			  const struct free_block_limits *limits)
{
	unsigned long nr = 1UL << order;
	unsigned long mark = high_wmark_pages(zone) + limits->reserve_pages + nr;
	u64 lent = zone_page_state(zone, NR_FREE_LENT);
	u64 share = min(limits->max_lent_percent, 100U);

	if (!zone_watermark_ok(zone, 0, mark, MAX_NR_ZONES - 1, 0))
		return false;
	return (lent + nr) * 100 <= (zone_lendable_free(zone) + lent) * share;
}

/* Lend the first free block of @order from @zone; NULL if there is none. */
static struct page *lend_from_zone(struct zone *zone, unsigned int order,
				   const struct free_block_limits *limits)
{
	struct free_area *area = &zone->free_area[order];
	struct page *block = NULL;
	unsigned long flags;
	int i;

	/* zone->lock protects the free lists and the zone's free counters. */
	spin_lock_irqsave(&zone->lock, flags);
	if (!zone_may_lend(zone, order, limits))
		goto out;
	for (i = 0; i < ARRAY_SIZE(lent_migratetypes) && !block; i++)
		block = list_first_entry_or_null(&area->free_list[lent_migratetypes[i]],
						 struct page, buddy_list);
	if (block) {
		__isolate_free_block(block, order);
		__mod_zone_page_state(zone, NR_FREE_LENT, 1L << order);
	}
out:
	spin_unlock_irqrestore(&zone->lock, flags);
	return block;
}

/**
 * drain_free_blocks - bring free pages cached per CPU back to the free lists
 *
 * Free pages on the per-cpu lists are on no free list and cannot merge into
 * blocks a borrower could take: with the per-cpu high mark tuned up after a
 * burst of frees, that is tens of MiB (63 MiB of a 1 GiB guest with one CPU
 * on 6.12). A borrower about to take many blocks calls this first.
 *
 * Context: Process context; may sleep.
 */
void drain_free_blocks(void)
{
	drain_all_pages(NULL);
}
EXPORT_SYMBOL_GPL(drain_free_blocks);

/**
 * isolate_free_block - lend one whole free block
 * @limits: what the zone lent from must keep
 * @order: where the order of the block is stored
 *
 * Looks for a free block of FREE_BLOCK_MAX_ORDER in every populated zone,
 * then for smaller orders down to FREE_BLOCK_MIN_ORDER. Never reclaims,
 * compacts, sleeps or retries. The block is neither initialised nor checked
 * nor written; its contents are whatever the free pages held.
 *
 * Context: Any context that may take zone->lock with interrupts disabled.
 * Return: The head page of a block of 2^@order pages, off every free list
 * until putback_free_block(), or NULL if no zone can lend a block within
 * @limits.
 */
struct page *isolate_free_block(const struct free_block_limits *limits,
				unsigned int *order)
{
	struct page *block;
	struct zone *zone;
	int o;

	for (o = FREE_BLOCK_MAX_ORDER; o >= FREE_BLOCK_MIN_ORDER; o--) {
		for_each_populated_zone(zone) {
			/* Unlocked peek; lend_from_zone() decides. */
			if (!data_race(zone->free_area[o].nr_free))
				continue;
			block = lend_from_zone(zone, o, limits);
			if (block) {
				*order = o;
				return block;
			}
		}
	}
	return NULL;
}
EXPORT_SYMBOL_GPL(isolate_free_block);

/**
 * free_block_lendable_pages - free pages lending could take now
 * @limits: what each zone must keep; the share is not counted
 *
 * The sum over populated zones of the free pages above their high watermark
 * plus @limits->reserve_pages (free CMA pages not counted), read without
 * locks: for a borrower to bound how much it lends at a time.
 *
 * Context: Any context.
 * Return: A number of pages; 0 if no zone is above its limits.
 */
unsigned long free_block_lendable_pages(const struct free_block_limits *limits)
{
	unsigned long pages = 0, mark, free;
	struct zone *zone;

	for_each_populated_zone(zone) {
		mark = high_wmark_pages(zone) + limits->reserve_pages;
		free = zone_lendable_free(zone);
		if (free > mark)
			pages += free - mark;
	}
	return pages;
}
EXPORT_SYMBOL_GPL(free_block_lendable_pages);

/*
 * Page poisoning and init_on_free say what free pages hold; put that back
 * where it went missing (FREE_BLOCK_REPAIR: a page that still holds it is
 * only read, so it stays clean for whoever dropped it), or everywhere
 * (FREE_BLOCK_REWRITE).
 */
static unsigned long restore_free_contents(struct page *block,
					   unsigned int order,
					   enum free_block_putback how)
{
	unsigned long i, written = 0;
	int expect;

	if (page_poisoning_enabled_static())
		expect = PAGE_POISON;
	else if (want_init_on_free())
		expect = 0;
	else
		return 0;

	/*
	 * Free pages may be KASAN-poisoned and, with debug_pagealloc, unmapped;
	 * these reads and writes are ours.
	 */
	debug_pagealloc_map_pages(block, 1 << order);
	kasan_disable_current();
	for (i = 0; i < (1UL << order); i++) {
		void *addr = kasan_reset_tag(kmap_local_page(block + i));

		if (how == FREE_BLOCK_REWRITE ||
		    memchr_inv(addr, expect, PAGE_SIZE)) {
			memset(addr, expect, PAGE_SIZE);
			written++;
		}
		kunmap_local(addr);
	}
	kasan_enable_current();
	debug_pagealloc_unmap_pages(block, 1 << order);
	return written;
}

/**
 * putback_free_block - return a lent block to its free list
 * @block: head page returned by isolate_free_block()
 * @order: the order isolate_free_block() stored for it
 * @how: how the contents are settled, see enum free_block_putback
 *
 * The block goes back to the free list of its pageblocks' migratetype and
 * may merge with its free buddies.
 *
 * Context: Any context that may take zone->lock with interrupts disabled.
 * Return: The number of pages whose contents were written.
 */
unsigned long putback_free_block(struct page *block, unsigned int order,
				 enum free_block_putback how)
{
	struct zone *zone = page_zone(block);
	unsigned long flags, written;

	written = restore_free_contents(block, order, how);
	spin_lock_irqsave(&zone->lock, flags);
	__mod_zone_page_state(zone, NR_FREE_LENT, -(1L << order));
	__putback_isolated_page(block, order, get_pageblock_migratetype(block));
	spin_unlock_irqrestore(&zone->lock, flags);
	return written;
}
EXPORT_SYMBOL_GPL(putback_free_block);
