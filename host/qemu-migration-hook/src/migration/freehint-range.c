/*
 * freehint: validation of hinted ranges
 *
 * The guest is not trusted: a hint is applied only to whole target pages of
 * guest system RAM, inside the RAM block's used length, and every addition
 * is checked for overflow.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "migration/freehint.h"

/*
 * Clip the hint [@offset_bytes, +@len_bytes) of @block, pages of
 * 1 << @page_bits bytes, to the pages to clear. Returns OK or CLIPPED with
 * @range set, or why nothing is cleared. A malformed hint is named as such
 * before the question whether the block is tracked.
 */
FreeHintRangeVerdict freehint_clip_range(uint64_t offset_bytes,
                                         uint64_t len_bytes,
                                         const FreeHintBlock *block,
                                         unsigned page_bits,
                                         FreeHintRange *range)
{
    uint64_t page_mask = (UINT64_C(1) << page_bits) - 1;
    uint64_t used_end = block->used_length_bytes & ~page_mask;
    uint64_t end;
    FreeHintRangeVerdict verdict = FREEHINT_RANGE_OK;

    range->first_page = 0;
    range->npages = 0;
    if (!block->system_ram) {
        return FREEHINT_RANGE_NOT_RAM;
    }
    if (!len_bytes) {
        return FREEHINT_RANGE_EMPTY;
    }
    if ((offset_bytes | len_bytes) & page_mask) {
        return FREEHINT_RANGE_UNALIGNED;
    }
    if (offset_bytes > UINT64_MAX - len_bytes) {
        return FREEHINT_RANGE_WRAPS;
    }
    if (offset_bytes >= used_end) {
        return FREEHINT_RANGE_OUTSIDE;
    }
    if (!block->tracked) {
        return FREEHINT_RANGE_UNTRACKED;
    }
    end = offset_bytes + len_bytes;
    if (end > used_end) {
        end = used_end;
        verdict = FREEHINT_RANGE_CLIPPED;
    }
    range->first_page = offset_bytes >> page_bits;
    range->npages = (end - offset_bytes) >> page_bits;
    return verdict;
}

/* Whether any of a hint with @verdict was applied. */
bool freehint_range_applied(FreeHintRangeVerdict verdict)
{
    return verdict == FREEHINT_RANGE_OK || verdict == FREEHINT_RANGE_CLIPPED;
}

/* @verdict in a word, for trace events; "?" for a value out of range. */
const char *freehint_range_verdict_name(FreeHintRangeVerdict verdict)
{
    static const char *const names[FREEHINT_RANGE__MAX] = {
        [FREEHINT_RANGE_OK] = "ok",
        [FREEHINT_RANGE_CLIPPED] = "clipped",
        [FREEHINT_RANGE_EMPTY] = "empty",
        [FREEHINT_RANGE_UNALIGNED] = "unaligned",
        [FREEHINT_RANGE_WRAPS] = "wraps",
        [FREEHINT_RANGE_OUTSIDE] = "outside",
        [FREEHINT_RANGE_NOT_RAM] = "not-ram",
        [FREEHINT_RANGE_BELOW_FLOOR] = "below-floor",
        [FREEHINT_RANGE_UNTRACKED] = "untracked",
    };

    if ((unsigned)verdict >= FREEHINT_RANGE__MAX) {
        return "?";
    }
    return names[verdict];
}

/*
 * The counter a refused hint buffer goes to: on untracked RAM the guest did
 * nothing wrong, the migration just copies nothing there; any other refusal
 * is input the guest should not have sent.
 */
FreeHintIgnored freehint_ignored_reason(FreeHintRangeVerdict verdict)
{
    if (verdict == FREEHINT_RANGE_UNTRACKED) {
        return FREEHINT_IGNORED_UNTRACKED;
    }
    return FREEHINT_IGNORED_INVALID;
}

/*
 * Whether a hint may name guest-physical [@gpa, +@len) at all: OK, or
 * BELOW_FLOOR or WRAPS. Whether it is writable RAM is QEMU's to say.
 */
FreeHintRangeVerdict freehint_check_gpa(uint64_t gpa, uint64_t len)
{
    if (gpa > UINT64_MAX - len) {
        return FREEHINT_RANGE_WRAPS;
    }
    if (gpa < FREEHINT_GPA_FLOOR) {
        return FREEHINT_RANGE_BELOW_FLOOR;
    }
    return FREEHINT_RANGE_OK;
}
