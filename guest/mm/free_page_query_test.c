// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for free_page_query. Run in a guest booted plainly, with
 * page_poison=1 and with init_on_free=1: the give-back cases check what each
 * of those promises about free pages.
 */
#include <kunit/test.h>
#include <linux/free_page_query.h>
#include <linux/gfp.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/poison.h>
#include <linux/string.h>
#include <linux/vmstat.h>

/* Pages other tasks may allocate or free while a case runs (4 MiB). */
#define SLACK_PAGES	1024UL
/* Reserve used by the watermark case (16 MiB). */
#define RESERVE_PAGES	4096UL
/* A byte neither PAGE_POISON nor zero. */
#define PATTERN		0x5a

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

static void lent_give_back(struct lent *lent)
{
	struct page *block, *next;

	list_for_each_entry_safe(block, next, &lent->blocks, lru) {
		unsigned int order = page_private(block);

		list_del(&block->lru);
		set_page_private(block, 0);
		free_page_query_give_back(block, order, true);
	}
	lent->npages = 0;
}

static bool block_holds(struct page *block, unsigned int order, int byte)
{
	unsigned long i;

	for (i = 0; i < (1UL << order); i++)
		if (memchr_inv(page_address(block + i), byte, PAGE_SIZE))
			return false;
	return true;
}

static void take_gives_aligned_block_off_free_lists(struct kunit *test)
{
	unsigned int order;
	struct page *block = free_page_query_take(0, &order);

	KUNIT_ASSERT_NOT_NULL(test, block);
	KUNIT_EXPECT_GE(test, order, (unsigned int)FREE_PAGE_QUERY_MIN_ORDER);
	KUNIT_EXPECT_LE(test, order, (unsigned int)FREE_PAGE_QUERY_MAX_ORDER);
	KUNIT_EXPECT_TRUE(test, IS_ALIGNED(page_to_pfn(block), 1UL << order));
	KUNIT_EXPECT_FALSE(test, PageBuddy(block));
	KUNIT_EXPECT_EQ(test, page_count(block), 0);
	free_page_query_give_back(block, order, true);
}

static void give_back_restores_free_pages(struct kunit *test)
{
	unsigned long before = global_zone_page_state(NR_FREE_PAGES);
	unsigned int order;
	struct page *block;
	struct lent lent;
	int i;

	lent_init(&lent);
	for (i = 0; i < 8; i++) {
		block = free_page_query_take(0, &order);
		if (!block)
			break;
		lent_add(&lent, block, order);
	}
	KUNIT_ASSERT_GT(test, lent.npages, 0UL);
	KUNIT_EXPECT_LE(test, global_zone_page_state(NR_FREE_PAGES),
			before - lent.npages + SLACK_PAGES);
	lent_give_back(&lent);
	KUNIT_EXPECT_GE(test, global_zone_page_state(NR_FREE_PAGES) + SLACK_PAGES,
			before);
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

/* Taking everything lends each block once and stops at the watermark. */
static void take_all_stops_at_high_watermark(struct kunit *test)
{
	unsigned int order;
	struct page *block;
	struct lent lent;

	lent_init(&lent);
	while ((block = free_page_query_take(RESERVE_PAGES, &order)))
		lent_add(&lent, block, order);
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
	lent_give_back(&lent);
}

static void reserve_larger_than_memory_lends_nothing(struct kunit *test)
{
	unsigned int order;

	KUNIT_EXPECT_NULL(test, free_page_query_take(totalram_pages(), &order));
}

/*
 * Take the free block holding @want, giving back every other block taken;
 * NULL if @want is not free any more. *@order is the order of the block.
 */
static struct page *take_block_holding(struct page *want, unsigned int *order)
{
	unsigned long pfn = page_to_pfn(want);
	struct page *block;
	struct lent others;

	lent_init(&others);
	while ((block = free_page_query_take(0, order))) {
		if (pfn >= page_to_pfn(block) &&
		    pfn < page_to_pfn(block) + (1UL << *order))
			break;
		lent_add(&others, block, *order);
	}
	lent_give_back(&others);
	return block;
}

/*
 * With a block of the largest order freed just before, that order comes
 * first: if the first block taken is smaller while the freed one is still
 * free, the order was not respected.
 */
static void take_prefers_largest_order(struct kunit *test)
{
	const unsigned int max_order = FREE_PAGE_QUERY_MAX_ORDER;
	struct page *freed, *first, *again;
	unsigned int order, again_order;

	freed = alloc_pages(GFP_KERNEL | __GFP_NOWARN, max_order);
	if (!freed)
		kunit_skip(test, "no block of order %u", max_order);
	__free_pages(freed, max_order);
	first = free_page_query_take(0, &order);
	KUNIT_ASSERT_NOT_NULL(test, first);
	if (order == max_order) {
		free_page_query_give_back(first, order, true);
		return;
	}
	again = take_block_holding(freed, &again_order);
	free_page_query_give_back(first, order, true);
	if (!again)
		kunit_skip(test, "the freed block was allocated again");
	free_page_query_give_back(again, again_order, true);
	KUNIT_FAIL(test, "took order %u while order %u was free", order,
		   again_order);
}

static void take_does_not_write(struct kunit *test)
{
	const unsigned int want_order = FREE_PAGE_QUERY_MAX_ORDER;
	struct page *freed, *block;
	unsigned int order;
	unsigned long i;

	if (page_poisoning_enabled_static() || want_init_on_free())
		kunit_skip(test, "freeing writes pages in this boot");
	if (debug_pagealloc_enabled_static())
		kunit_skip(test, "free pages are unmapped in this boot");
	freed = alloc_pages(GFP_KERNEL | __GFP_NOWARN, want_order);
	if (!freed)
		kunit_skip(test, "no block of order %u to free", want_order);
	for (i = 0; i < (1UL << want_order); i++)
		memset(page_address(freed + i), PATTERN, PAGE_SIZE);
	__free_pages(freed, want_order);

	block = take_block_holding(freed, &order);
	if (!block)
		kunit_skip(test, "the freed block was allocated again");
	KUNIT_EXPECT_TRUE(test, block == freed);
	KUNIT_EXPECT_EQ(test, order, want_order);
	KUNIT_EXPECT_TRUE(test, block_holds(block, order, PATTERN));
	free_page_query_give_back(block, order, true);
}

/*
 * A block whose contents the hypervisor dropped goes back holding what free
 * pages hold in this boot: poison, zeroes, or (neither in force) whatever
 * it held, untouched. It is taken again to be checked, so that nobody can
 * have allocated it meanwhile.
 */
static void check_restored_contents(struct kunit *test, bool hint_done)
{
	int expect = PATTERN;
	struct page *block, *again;
	unsigned int order, again_order;
	unsigned long i;

	if (debug_pagealloc_enabled_static())
		kunit_skip(test, "free pages are unmapped in this boot");
	if (page_poisoning_enabled_static())
		expect = PAGE_POISON;
	else if (want_init_on_free())
		expect = 0;
	block = free_page_query_take(0, &order);
	KUNIT_ASSERT_NOT_NULL(test, block);
	for (i = 0; i < (1UL << order); i++)
		memset(page_address(block + i), PATTERN, PAGE_SIZE);
	free_page_query_give_back(block, order, hint_done);

	again = take_block_holding(block, &again_order);
	if (!again)
		kunit_skip(test, "the block was allocated again");
	KUNIT_EXPECT_TRUE(test, block_holds(block, order, expect));
	free_page_query_give_back(again, again_order, true);
}

static void give_back_restores_free_contents(struct kunit *test)
{
	check_restored_contents(test, true);
}

static void give_back_mid_hint_restores_free_contents(struct kunit *test)
{
	check_restored_contents(test, false);
}

static struct kunit_case free_page_query_cases[] = {
	KUNIT_CASE(take_gives_aligned_block_off_free_lists),
	KUNIT_CASE(take_prefers_largest_order),
	KUNIT_CASE(give_back_restores_free_pages),
	KUNIT_CASE(take_all_stops_at_high_watermark),
	KUNIT_CASE(reserve_larger_than_memory_lends_nothing),
	KUNIT_CASE(take_does_not_write),
	KUNIT_CASE(give_back_restores_free_contents),
	KUNIT_CASE(give_back_mid_hint_restores_free_contents),
	{}
};

static struct kunit_suite free_page_query_suite = {
	.name = "free_page_query",
	.test_cases = free_page_query_cases,
};
kunit_test_suite(free_page_query_suite);

MODULE_LICENSE("GPL");
