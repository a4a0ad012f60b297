// SPDX-License-Identifier: GPL-2.0
/*
 * Lend whole free blocks for free page hinting; the contract is in
 * include/linux/free_page_query.h.
 *
 * A block is lent by taking it off its free list the way compaction and page
 * reporting isolate free pages: no allocation-time initialisation, no poison
 * check, no refcount, no write. It goes back to the free list it came from,
 * its pageblocks' migratetypes unchanged, and with its contents unchanged
 * except where init_on_free or page poisoning promise the allocator contents
 * the hypervisor may have dropped while the block was hinted.
 */
#include <linux/free_page_query.h>
#include <linux/highmem.h>
#include <linux/kasan.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/page-isolation.h>
#include <linux/poison.h>
#include <linux/string.h>
#include "internal.h"

/*
 * Lending must never be the reason an allocation has to reclaim: a zone
 * lends only while it stays above its high watermark plus the borrower's
 * reserve, counting the protection lower zones keep against allocations
 * that could have used a higher zone.
 */
static bool zone_may_lend(struct zone *zone, unsigned int order,
			  unsigned long reserve_pages)
{
	unsigned long mark = high_wmark_pages(zone) + reserve_pages +
			     (1UL << order);

	return zone_watermark_ok(zone, 0, mark, MAX_NR_ZONES - 1, ALLOC_CMA);
}

/*
 * Movable pageblocks first: that is where free user memory lives. Isolated
 * pageblocks belong to memory offlining or alloc_contig_range(), CMA areas
 * must stay allocatable by cma_alloc() at any time, and the highatomic
 * reserve is kept for high-order atomic allocations: none of them is lent.
 */
static const int lend_order_of_types[] = {
	MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE,
};

/* Pageblocks in a block of the largest order lent. */
#define MAX_LENT_PAGEBLOCKS \
	(1 << (FREE_PAGE_QUERY_MAX_ORDER - FREE_PAGE_QUERY_MIN_ORDER))

/*
 * Take @block off its free list. __isolate_free_page() relabels the block's
 * pageblocks movable, as compaction wants; a lent block goes back where it
 * came from, so their migratetypes are restored. Called with zone->lock held.
 */
static bool isolate_block(struct page *block, unsigned int order)
{
	unsigned long nr = 1UL << (order - pageblock_order);
	int mt[MAX_LENT_PAGEBLOCKS];
	unsigned long i;

	for (i = 0; i < nr; i++)
		mt[i] = get_pageblock_migratetype(block + i * pageblock_nr_pages);
	if (!__isolate_free_page(block, order))
		return false;
	for (i = 0; i < nr; i++)
		set_pageblock_migratetype(block + i * pageblock_nr_pages, mt[i]);
	return true;
}

/* Lend the first free block of @order from @zone; NULL if there is none. */
static struct page *take_from_zone(struct zone *zone, unsigned int order,
				   unsigned long reserve_pages)
{
	struct page *block = NULL;
	unsigned long flags;
	int i;

	/* zone->lock protects the free lists and the zone's free counters. */
	spin_lock_irqsave(&zone->lock, flags);
	if (!zone_may_lend(zone, order, reserve_pages))
		goto out;
	for (i = 0; i < ARRAY_SIZE(lend_order_of_types); i++) {
		block = get_page_from_free_area(&zone->free_area[order],
						lend_order_of_types[i]);
		if (!block)
			continue;
		if (!isolate_block(block, order))
			block = NULL;
		break;
	}
out:
	spin_unlock_irqrestore(&zone->lock, flags);
	return block;
}

/**
 * free_page_query_take - borrow one whole free block
 * @reserve_pages: free pages each zone must keep above its high watermark
 * @order: where the order of the block is stored
 *
 * Looks for a free block of FREE_PAGE_QUERY_MAX_ORDER in every populated
 * zone, then for smaller orders down to FREE_PAGE_QUERY_MIN_ORDER. Never
 * reclaims, compacts, sleeps or retries. The block is neither initialised
 * nor checked nor written; its contents are whatever the free pages held.
 *
 * Context: Any context that may take zone->lock with interrupts disabled.
 * Return: The head page of a block of 2^@order pages, off every free list
 * until given back with free_page_query_give_back(), or NULL if no zone can
 * lend a block without going below its high watermark plus @reserve_pages.
 */
struct page *free_page_query_take(unsigned long reserve_pages,
				  unsigned int *order)
{
	struct page *block;
	struct zone *zone;
	int o;

	for (o = FREE_PAGE_QUERY_MAX_ORDER; o >= FREE_PAGE_QUERY_MIN_ORDER; o--) {
		for_each_populated_zone(zone) {
			/* Unlocked peek; take_from_zone() decides. */
			if (!data_race(zone->free_area[o].nr_free))
				continue;
			block = take_from_zone(zone, o, reserve_pages);
			if (block) {
				*order = o;
				return block;
			}
		}
	}
	return NULL;
}
EXPORT_SYMBOL_GPL(free_page_query_take);

/*
 * A hinted block may have lost its contents: after a migration the
 * destination holds zeroes, or a copy sent before the block was hinted, where
 * the source held the block. When page poisoning or init_on_free promise the
 * allocator what free pages contain, the promise is kept again here.
 *
 * Once the hypervisor is done with the hint, a page that still keeps the
 * promise is only read, so a block that was never dropped is not written and
 * a page the host never backed stays unbacked. While it may still act on the
 * hint (a migration under way has skipped the block), every page is written,
 * so that the migration sees it dirty and sends it.
 */
static void restore_free_contents(struct page *block, unsigned int order,
				  bool hint_done)
{
	unsigned long i;
	int expect;

	if (page_poisoning_enabled_static())
		expect = PAGE_POISON;
	else if (want_init_on_free())
		expect = 0;
	else
		return;

	/*
	 * Free pages may be KASAN-poisoned and, with debug_pagealloc, unmapped;
	 * these reads and writes are ours.
	 */
	debug_pagealloc_map_pages(block, 1 << order);
	kasan_disable_current();
	for (i = 0; i < (1UL << order); i++) {
		void *addr = kasan_reset_tag(kmap_local_page(block + i));

		if (!hint_done || memchr_inv(addr, expect, PAGE_SIZE))
			memset(addr, expect, PAGE_SIZE);
		kunmap_local(addr);
	}
	kasan_enable_current();
	debug_pagealloc_unmap_pages(block, 1 << order);
}

/**
 * free_page_query_give_back - return a borrowed block to the free lists
 * @block: head page returned by free_page_query_take()
 * @order: the order free_page_query_take() stored for it
 * @hint_done: the hypervisor acts on no hint of this block any more (it said
 *	so, or it never received one); false if it may still skip the block
 *
 * The block may merge with its free buddies. Without page poisoning or
 * init_on_free its contents are left alone. With either, every page of the
 * block is rewritten to what they promise free pages hold, unless @hint_done,
 * when only pages that no longer hold it are.
 *
 * Context: Any context that may take zone->lock with interrupts disabled.
 */
void free_page_query_give_back(struct page *block, unsigned int order,
			       bool hint_done)
{
	struct zone *zone = page_zone(block);
	unsigned long flags;

	restore_free_contents(block, order, hint_done);
	spin_lock_irqsave(&zone->lock, flags);
	__putback_isolated_page(block, order, get_pageblock_migratetype(block));
	spin_unlock_irqrestore(&zone->lock, flags);
}
EXPORT_SYMBOL_GPL(free_page_query_give_back);
