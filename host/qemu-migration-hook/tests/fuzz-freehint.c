/*
 * libFuzzer target for what the host makes of a guest's hint: any offset,
 * length, used length and page size through range validation, with the
 * invariants a hostile guest must never break: what is applied lies inside
 * the block and the hint, and a block the migration does not track (it has
 * no bitmap) never has a range applied.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migration/freehint.h"

/* A small RAM block keeps the inputs dense around its end. */
#define MAX_PAGES 4096

struct input {
    uint64_t offset;
    uint64_t len;
    uint16_t used_pages;
    uint8_t page_bits;
    uint8_t flags;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { 0 };
    FreeHintBlock block;
    FreeHintRange range;
    FreeHintRangeVerdict verdict;
    unsigned page_bits;
    uint64_t used;

    memcpy(&in, data, size < sizeof(in) ? size : sizeof(in));
    page_bits = 12 + in.page_bits % 10;
    used = ((uint64_t)(in.used_pages % MAX_PAGES) << page_bits) +
           (in.flags & 2 ? 1 : 0);
    block.used_length_bytes = used;
    block.system_ram = in.flags & 1;
    /* A block the migration does not track has no bitmap to clear. */
    block.tracked = !(in.flags & 4);
    verdict = freehint_clip_range(in.offset, in.len, &block, page_bits,
                                  &range);
    if (verdict >= FREEHINT_RANGE__MAX ||
        freehint_range_applied(verdict) != (range.npages != 0) ||
        freehint_ignored_reason(verdict) >= FREEHINT_IGNORED__MAX) {
        abort();
    }
    if (!freehint_range_applied(verdict)) {
        return 0;
    }
    if (!block.tracked) {
        abort();
    }
    /* Inside the block, inside the hint, never empty. */
    if (!range.npages || range.first_page + range.npages > used >> page_bits ||
        range.first_page << page_bits != in.offset ||
        range.npages << page_bits > in.len) {
        abort();
    }
    return 0;
}
