// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for free block lending. Built in, as they label pageblocks
 * and isolate page ranges; run at boot with kunit.enable=1, plainly, with
 * page_poison=1 and with init_on_free=1 (the putback cases check what each
 * of those says free pages hold), and with a CMA area (cma=16M) for the CMA
 * case.
 */
#include <kunit/test.h>
#include <linux/free_block_lending.h>
#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/page-isolation.h>
#include <linux/poison.h>
#include <linux/string.h>
#include <linux/vmstat.h>

/* Pages other tasks may allocate or free while a case runs (4 MiB). */
#define SLACK_PAGES	1024UL
/* Reserve used by the watermark case (16 MiB). */
#define RESERVE_PAGES	4096UL
/* Share of free memory lent in the bound case. */
#define SMALL_SHARE	10U
/* A byte neither PAGE_POISON nor zero. */
#define PATTERN		0x5a

static const struct free_block_limits no_limits = {
	.reserve_pages = 0,
	.max_lent_percent = 100,
};

struct lent {
	struct list_head blocks;	/* head pages, linked through lru */
	unsigned long npages;
};

static void lent_init(struct lent *lent)
{
	INIT_LIST_HEAD(&lent->blocks);
	lent->npages = 0;
}

static void lent_add(struct lent *lent, struct page *block, unsigned int order)
{
	set_page_private(block, order);
	list_add_tail(&block->lru, &lent->blocks);
	lent->npages += 1UL << order;
}

/* Lend every block @limits allow. */
static void lend_all(struct lent *lent, const struct free_block_limits *limits)
{
	struct page *block;
	unsigned int order;

	while ((block = isolate_free_block(limits, &order)))
		lent_add(lent, block, order);
}

static void putback_all(struct lent *lent)
{
	struct page *block, *next;

	list_for_each_entry_safe(block, next, &lent->blocks, lru) {
		unsigned int order = page_private(block);

		list_del(&block->lru);
		putback_free_block(block, order, FREE_BLOCK_REPAIR);
	}
	lent->npages = 0;
}

/* Whether a lent block overlaps [@pfn, @pfn + @nr). */
static bool lent_overlaps(struct lent *lent, unsigned long pfn,
			  unsigned long nr)
{
	struct page *block;

	list_for_each_entry(block, &lent->blocks, lru) {
		unsigned long start = page_to_pfn(block);

		if (start < pfn + nr && pfn < start + (1UL << page_private(block)))
			return true;
	}
	return false;
}

static bool blocks_overlap(struct lent *lent)
{
	struct page *a, *b;

	list_for_each_entry(a, &lent->blocks, lru) {
		unsigned long a_pfn = page_to_pfn(a);
		unsigned long a_end = a_pfn + (1UL << page_private(a));

		b = a;
		list_for_each_entry_continue(b, &lent->blocks, lru) {
			unsigned long b_pfn = page_to_pfn(b);

			if (b_pfn < a_end &&
			    a_pfn < b_pfn + (1UL << page_private(b)))
				return true;
		}
	}
	return false;
}

static unsigned long lent_pages_total(void)
{
	unsigned long pages = 0;
	struct zone *zone;

	for_each_populated_zone(zone)
		pages += zone_page_state_snapshot(zone, NR_FREE_LENT);
	return pages;
}

/*
 * Lend the free block holding @want, putting back every other block lent;
 * NULL if @want is not free any more. *@order is the order of the block.
 */
static struct page *lend_block_holding(struct page *want, unsigned int *order)
{
	unsigned long pfn = page_to_pfn(want);
	struct page *block;
	struct lent others;

	lent_init(&others);
	while ((block = isolate_free_block(&no_limits, order))) {
		if (pfn >= page_to_pfn(block) &&
		    pfn < page_to_pfn(block) + (1UL << *order))
			break;
		lent_add(&others, block, *order);
	}
	putback_all(&others);
	return block;
}

/* Whether @page heads a free block on @zone's free list of @mt. */
static bool on_free_list(struct zone *zone, struct page *page, int mt)
{
	struct page *entry;
	unsigned long flags;
	bool found = false;
	unsigned int o;

	spin_lock_irqsave(&zone->lock, flags);
	for (o = 0; o <= MAX_PAGE_ORDER && !found; o++)
		list_for_each_entry(entry, &zone->free_area[o].free_list[mt],
				    buddy_list)
			if (entry == page) {
				found = true;
				break;
			}
	spin_unlock_irqrestore(&zone->lock, flags);
	return found;
}

/*
 * Allocate a block of FREE_BLOCK_MAX_ORDER (never on a per-cpu list, so it
 * goes straight back to the buddy lists when freed) with @gfp.
 */
static struct page *alloc_max_block(struct kunit *test, gfp_t gfp)
{
	struct page *page = alloc_pages(gfp | __GFP_NOWARN,
					FREE_BLOCK_MAX_ORDER);

	if (!page)
		kunit_skip(test, "no free block of order %u",
			   FREE_BLOCK_MAX_ORDER);
	return page;
}

static void set_block_migratetype(struct page *block, int mt)
{
	unsigned long i;

	for (i = 0; i < (1UL << FREE_BLOCK_MAX_ORDER); i += pageblock_nr_pages)
		set_pageblock_migratetype(block + i, mt);
}

static void lends_aligned_block_off_free_lists(struct kunit *test)
{
	unsigned int order;
	struct page *block = isolate_free_block(&no_limits, &order);

	KUNIT_ASSERT_NOT_NULL(test, block);
	KUNIT_EXPECT_GE(test, order, (unsigned int)FREE_BLOCK_MIN_ORDER);
	KUNIT_EXPECT_LE(test, order, (unsigned int)FREE_BLOCK_MAX_ORDER);
	KUNIT_EXPECT_TRUE(test, IS_ALIGNED(page_to_pfn(block), 1UL << order));
	KUNIT_EXPECT_FALSE(test, PageBuddy(block));
	KUNIT_EXPECT_EQ(test, page_count(block), 0);
	putback_free_block(block, order, FREE_BLOCK_REPAIR);
}

/*
 * Lent pages leave NR_FREE_PAGES for NR_FREE_LENT, exactly, and come back.
 */
static void free_counters_balance(struct kunit *test)
{
	unsigned long free_before = global_zone_page_state(NR_FREE_PAGES);
	unsigned int order;
	struct page *block;
	struct lent lent;
	int i;

	KUNIT_ASSERT_EQ(test, lent_pages_total(), 0UL);
	lent_init(&lent);
	for (i = 0; i < 8; i++) {
		block = isolate_free_block(&no_limits, &order);
		if (!block)
			break;
		lent_add(&lent, block, order);
	}
	KUNIT_ASSERT_GT(test, lent.npages, 0UL);
	KUNIT_EXPECT_EQ(test, lent_pages_total(), lent.npages);
	KUNIT_EXPECT_LE(test, global_zone_page_state(NR_FREE_PAGES),
			free_before - lent.npages + SLACK_PAGES);
	putback_all(&lent);
	KUNIT_EXPECT_EQ(test, lent_pages_total(), 0UL);
	KUNIT_EXPECT_GE(test, global_zone_page_state(NR_FREE_PAGES) + SLACK_PAGES,
			free_before);
}

/*
 * Leave free memory plentiful but with no block of pageblock order on the
 * free lists a lender may use: allocate such blocks, without reclaim and
 * without touching the reserves, and free every other page of each. The
 * pages kept are linked on @kept through lru.
 */
static void fragment_free_memory(struct list_head *kept)
{
	const gfp_t gfp = (GFP_KERNEL & ~__GFP_RECLAIM) | __GFP_NOWARN |
			  __GFP_NOMEMALLOC;
	struct page *block;
	unsigned long i;

	while ((block = alloc_pages(gfp, FREE_BLOCK_MIN_ORDER))) {
		split_page(block, FREE_BLOCK_MIN_ORDER);
		for (i = 0; i < pageblock_nr_pages; i++) {
			if (i & 1)
				__free_page(block + i);
			else
				list_add(&block[i].lru, kept);
		}
	}
}

static void free_fragments(struct list_head *kept)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, kept, lru) {
		list_del(&page->lru);
		__free_page(page);
	}
}

/*
 * An unmovable or reclaimable block is lent with its pageblocks' migratetype
 * untouched and goes back to the free list of that migratetype.
 */
static void check_keeps_migratetype(struct kunit *test, gfp_t gfp, int mt)
{
	struct page *freed, *block;
	unsigned int order;
	LIST_HEAD(kept);

	freed = alloc_max_block(test, gfp);
	if (get_pageblock_migratetype(freed) != mt) {
		__free_pages(freed, FREE_BLOCK_MAX_ORDER);
		kunit_skip(test, "allocated from a pageblock of another type");
	}
	/*
	 * The freed block is then the only one to lend: else lending may stop
	 * at the watermark before it reaches the list of @mt.
	 */
	fragment_free_memory(&kept);
	__free_pages(freed, FREE_BLOCK_MAX_ORDER);
	block = lend_block_holding(freed, &order);
	if (!block) {
		free_fragments(&kept);
		kunit_skip(test, "the freed block was allocated again");
	}
	KUNIT_EXPECT_EQ(test, get_pageblock_migratetype(block), mt);
	KUNIT_EXPECT_EQ(test, get_pageblock_migratetype(block + (1UL << order) - 1),
			mt);
	putback_free_block(block, order, FREE_BLOCK_REPAIR);
	KUNIT_EXPECT_EQ(test, get_pageblock_migratetype(block), mt);
	KUNIT_EXPECT_TRUE(test, on_free_list(page_zone(block), block, mt));
	free_fragments(&kept);
}

static void unmovable_block_keeps_migratetype(struct kunit *test)
{
	check_keeps_migratetype(test, GFP_KERNEL, MIGRATE_UNMOVABLE);
}

static void reclaimable_block_keeps_migratetype(struct kunit *test)
{
	check_keeps_migratetype(test, GFP_KERNEL | __GFP_RECLAIMABLE,
				MIGRATE_RECLAIMABLE);
}

/*
 * With no other block left to lend but those of [@pfn, @pfn + @nr), and free
 * memory well above the watermark, lend everything: nothing of the range may
 * be lent. Without the fragmenting, lending would stop at the watermark
 * before it reached the range.
 */
static void check_range_not_lent(struct kunit *test, unsigned long pfn,
				 unsigned long nr)
{
	struct lent lent;
	LIST_HEAD(kept);

	fragment_free_memory(&kept);
	lent_init(&lent);
	lend_all(&lent, &no_limits);
	KUNIT_EXPECT_FALSE(test, lent_overlaps(&lent, pfn, nr));
	putback_all(&lent);
	free_fragments(&kept);
}

static void highatomic_block_not_lent(struct kunit *test)
{
	struct page *block = alloc_max_block(test, GFP_KERNEL);
	unsigned long pfn = page_to_pfn(block);
	unsigned long nr = 1UL << FREE_BLOCK_MAX_ORDER;

	set_block_migratetype(block, MIGRATE_HIGHATOMIC);
	__free_pages(block, FREE_BLOCK_MAX_ORDER);
	KUNIT_EXPECT_TRUE(test, on_free_list(page_zone(block), block,
					     MIGRATE_HIGHATOMIC));
	check_range_not_lent(test, pfn, nr);
	/* Isolating and undoing moves the free block back to movable. */
	KUNIT_ASSERT_EQ(test, start_isolate_page_range(pfn, pfn + nr,
						       MIGRATE_MOVABLE, 0,
						       GFP_KERNEL), 0);
	undo_isolate_page_range(pfn, pfn + nr, MIGRATE_MOVABLE);
	KUNIT_EXPECT_EQ(test, get_pageblock_migratetype(block), MIGRATE_MOVABLE);
}

static void isolated_block_not_lent(struct kunit *test)
{
	struct page *block = alloc_max_block(test, GFP_HIGHUSER_MOVABLE);
	unsigned long pfn = page_to_pfn(block);
	unsigned long nr = 1UL << FREE_BLOCK_MAX_ORDER;

	__free_pages(block, FREE_BLOCK_MAX_ORDER);
	KUNIT_ASSERT_EQ(test, start_isolate_page_range(pfn, pfn + nr,
						       MIGRATE_MOVABLE, 0,
						       GFP_KERNEL), 0);
	check_range_not_lent(test, pfn, nr);
	undo_isolate_page_range(pfn, pfn + nr, MIGRATE_MOVABLE);
}

static void cma_block_not_lent(struct kunit *test)
{
	struct page *block;
	struct lent lent;
	LIST_HEAD(kept);

	if (!global_zone_page_state(NR_FREE_CMA_PAGES))
		kunit_skip(test, "no free CMA pages (boot with cma=16M)");
	fragment_free_memory(&kept);
	lent_init(&lent);
	lend_all(&lent, &no_limits);
	list_for_each_entry(block, &lent.blocks, lru)
		if (is_migrate_cma_page(block)) {
			KUNIT_FAIL(test, "lent CMA block at pfn %lu",
				   page_to_pfn(block));
			break;
		}
	putback_all(&lent);
	free_fragments(&kept);
}

/*
 * With a block of the largest order freed just before, that order comes
 * first: if the first block lent is smaller while the freed one is still
 * free, the order was not respected.
 */
static void lends_largest_order_first(struct kunit *test)
{
	struct page *freed, *first, *again;
	unsigned int order, again_order;

	freed = alloc_max_block(test, GFP_KERNEL);
	__free_pages(freed, FREE_BLOCK_MAX_ORDER);
	first = isolate_free_block(&no_limits, &order);
	KUNIT_ASSERT_NOT_NULL(test, first);
	if (order == FREE_BLOCK_MAX_ORDER) {
		putback_free_block(first, order, FREE_BLOCK_REPAIR);
		return;
	}
	again = lend_block_holding(freed, &again_order);
	putback_free_block(first, order, FREE_BLOCK_REPAIR);
	if (!again)
		kunit_skip(test, "the freed block was allocated again");
	putback_free_block(again, again_order, FREE_BLOCK_REPAIR);
	KUNIT_FAIL(test, "lent order %u while order %u was free", order,
		   again_order);
}

/* Lending everything lends each block once and stops at the watermark. */
static void stops_at_high_watermark(struct kunit *test)
{
	const struct free_block_limits limits = {
		.reserve_pages = RESERVE_PAGES,
		.max_lent_percent = 100,
	};
	struct page *block;
	struct lent lent;

	lent_init(&lent);
	lend_all(&lent, &limits);
	KUNIT_EXPECT_GT(test, lent.npages, 0UL);
	KUNIT_EXPECT_FALSE(test, blocks_overlap(&lent));
	list_for_each_entry(block, &lent.blocks, lru) {
		struct zone *zone = page_zone(block);
		unsigned long free = zone_page_state(zone, NR_FREE_PAGES);

		if (free + SLACK_PAGES < high_wmark_pages(zone) + RESERVE_PAGES) {
			KUNIT_FAIL(test, "zone %s lent down to %lu free pages",
				   zone->name, free);
			break;
		}
	}
	putback_all(&lent);
}

/* What free_block_lendable_pages() counts bounds what lending then takes. */
static void lendable_pages_bound_lending(struct kunit *test)
{
	const struct free_block_limits limits = {
		.reserve_pages = RESERVE_PAGES,
		.max_lent_percent = 100,
	};
	const struct free_block_limits all_reserved = {
		.reserve_pages = totalram_pages(),
		.max_lent_percent = 100,
	};
	unsigned long lendable = free_block_lendable_pages(&limits);
	struct lent lent;

	KUNIT_EXPECT_GT(test, lendable, 0UL);
	KUNIT_EXPECT_EQ(test, free_block_lendable_pages(&all_reserved), 0UL);
	lent_init(&lent);
	lend_all(&lent, &limits);
	KUNIT_EXPECT_GT(test, lent.npages, 0UL);
	KUNIT_EXPECT_LE(test, lent.npages, lendable + SLACK_PAGES);
	putback_all(&lent);
}

static void reserve_larger_than_memory_lends_nothing(struct kunit *test)
{
	const struct free_block_limits limits = {
		.reserve_pages = totalram_pages(),
		.max_lent_percent = 100,
	};
	unsigned int order;

	KUNIT_EXPECT_NULL(test, isolate_free_block(&limits, &order));
}

/* Each zone's lent pages stay within the share of its free memory. */
static void share_bounds_lent_pages(struct kunit *test)
{
	const struct free_block_limits limits = {
		.reserve_pages = 0,
		.max_lent_percent = SMALL_SHARE,
	};
	struct lent lent;
	struct zone *zone;

	lent_init(&lent);
	lend_all(&lent, &limits);
	KUNIT_EXPECT_GT(test, lent.npages, 0UL);
	for_each_populated_zone(zone) {
		unsigned long lent_pages = zone_page_state_snapshot(zone, NR_FREE_LENT);
		unsigned long free = zone_page_state_snapshot(zone, NR_FREE_PAGES) -
				     zone_page_state_snapshot(zone, NR_FREE_CMA_PAGES);

		KUNIT_EXPECT_LE_MSG(test, lent_pages * 100,
				    (free + lent_pages + SLACK_PAGES) * SMALL_SHARE,
				    "zone %s", zone->name);
	}
	putback_all(&lent);
}

static void zero_share_lends_nothing(struct kunit *test)
{
	const struct free_block_limits limits = {
		.reserve_pages = 0,
		.max_lent_percent = 0,
	};
	unsigned int order;

	KUNIT_EXPECT_NULL(test, isolate_free_block(&limits, &order));
}

static bool block_holds(struct page *block, unsigned int order, int byte)
{
	unsigned long i;

	for (i = 0; i < (1UL << order); i++)
		if (memchr_inv(page_address(block + i), byte, PAGE_SIZE))
			return false;
	return true;
}

static void lending_does_not_write(struct kunit *test)
{
	struct page *freed, *block;
	unsigned int order;
	unsigned long i;

	if (page_poisoning_enabled_static() || want_init_on_free())
		kunit_skip(test, "freeing writes pages in this boot");
	if (debug_pagealloc_enabled_static())
		kunit_skip(test, "free pages are unmapped in this boot");
	freed = alloc_max_block(test, GFP_KERNEL);
	for (i = 0; i < (1UL << FREE_BLOCK_MAX_ORDER); i++)
		memset(page_address(freed + i), PATTERN, PAGE_SIZE);
	__free_pages(freed, FREE_BLOCK_MAX_ORDER);

	block = lend_block_holding(freed, &order);
	if (!block)
		kunit_skip(test, "the freed block was allocated again");
	KUNIT_EXPECT_TRUE(test, block == freed);
	KUNIT_EXPECT_EQ(test, order, (unsigned int)FREE_BLOCK_MAX_ORDER);
	KUNIT_EXPECT_TRUE(test, block_holds(block, order, PATTERN));
	putback_free_block(block, order, FREE_BLOCK_REPAIR);
}

/* What free pages hold in this boot, or -1 if nothing says. */
static int free_pattern(void)
{
	if (page_poisoning_enabled_static())
		return PAGE_POISON;
	if (want_init_on_free())
		return 0;
	return -1;
}

/*
 * A lent block whose pages lost what free pages hold goes back holding it
 * (or, when nothing says what free pages hold, untouched). It is lent again
 * to be checked, so that nobody can have allocated it meanwhile.
 */
static void check_putback_contents(struct kunit *test,
				   enum free_block_putback how)
{
	int expect = free_pattern() < 0 ? PATTERN : free_pattern();
	struct page *block, *again;
	unsigned int order, again_order;
	unsigned long i;

	if (debug_pagealloc_enabled_static())
		kunit_skip(test, "free pages are unmapped in this boot");
	block = isolate_free_block(&no_limits, &order);
	KUNIT_ASSERT_NOT_NULL(test, block);
	for (i = 0; i < (1UL << order); i++)
		memset(page_address(block + i), PATTERN, PAGE_SIZE);
	putback_free_block(block, order, how);

	again = lend_block_holding(block, &again_order);
	if (!again)
		kunit_skip(test, "the block was allocated again");
	KUNIT_EXPECT_TRUE(test, block_holds(block, order, expect));
	putback_free_block(again, again_order, FREE_BLOCK_REPAIR);
}

static void repair_restores_free_contents(struct kunit *test)
{
	check_putback_contents(test, FREE_BLOCK_REPAIR);
}

static void rewrite_restores_free_contents(struct kunit *test)
{
	check_putback_contents(test, FREE_BLOCK_REWRITE);
}

/*
 * Of a block whose pages all hold what free pages hold but one, a repair
 * writes that one page and a rewrite every page.
 */
static void repair_writes_only_damaged_pages(struct kunit *test)
{
	int expect = free_pattern();
	struct page *block;
	unsigned int order;
	unsigned long i, nr;

	if (expect < 0)
		kunit_skip(test, "nothing says what free pages hold");
	if (debug_pagealloc_enabled_static())
		kunit_skip(test, "free pages are unmapped in this boot");
	block = isolate_free_block(&no_limits, &order);
	KUNIT_ASSERT_NOT_NULL(test, block);
	nr = 1UL << order;
	for (i = 0; i < nr; i++)
		memset(page_address(block + i), expect, PAGE_SIZE);
	*(char *)page_address(block + nr / 2) = PATTERN;
	KUNIT_EXPECT_EQ(test, putback_free_block(block, order, FREE_BLOCK_REPAIR),
			1UL);

	block = isolate_free_block(&no_limits, &order);
	KUNIT_ASSERT_NOT_NULL(test, block);
	for (i = 0; i < (1UL << order); i++)
		memset(page_address(block + i), expect, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, putback_free_block(block, order, FREE_BLOCK_REWRITE),
			1UL << order);
}

static struct kunit_case free_block_lending_cases[] = {
	KUNIT_CASE(lends_aligned_block_off_free_lists),
	KUNIT_CASE(lends_largest_order_first),
	KUNIT_CASE(free_counters_balance),
	KUNIT_CASE(unmovable_block_keeps_migratetype),
	KUNIT_CASE(reclaimable_block_keeps_migratetype),
	KUNIT_CASE(highatomic_block_not_lent),
	KUNIT_CASE(isolated_block_not_lent),
	KUNIT_CASE(cma_block_not_lent),
	KUNIT_CASE(stops_at_high_watermark),
	KUNIT_CASE(lendable_pages_bound_lending),
	KUNIT_CASE(reserve_larger_than_memory_lends_nothing),
	KUNIT_CASE(share_bounds_lent_pages),
	KUNIT_CASE(zero_share_lends_nothing),
	KUNIT_CASE(lending_does_not_write),
	KUNIT_CASE(repair_restores_free_contents),
	KUNIT_CASE(rewrite_restores_free_contents),
	KUNIT_CASE(repair_writes_only_damaged_pages),
	{}
};

static struct kunit_suite free_block_lending_suite = {
	.name = "free_block_lending",
	.test_cases = free_block_lending_cases,
};

kunit_test_suite(free_block_lending_suite);
