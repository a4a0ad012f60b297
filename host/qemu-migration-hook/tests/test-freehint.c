/*
 * Unit tests of the pure freehint logic: every state and event of the round
 * state machine, command IDs and range validation at every edge.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <glib.h>
#include <stdint.h>

#include "migration/freehint.h"

#define NSTATES 4

#define S FREEHINT_STOP
#define R FREEHINT_REQUESTED
#define T FREEHINT_START
#define D FREEHINT_DONE
#define NEW FREEHINT_ACT_NEW_CMD_ID
#define NOT FREEHINT_ACT_NOTIFY
#define APP FREEHINT_ACT_APPLY_HINT
#define IGN FREEHINT_ACT_IGNORE_HINT

/* expected[state][event], written out from the protocol, not the code */
static const FreeHintStep expected[NSTATES][FREEHINT_EV__MAX] = {
    [FREEHINT_STOP] = {
        [FREEHINT_EV_BEFORE_SYNC] = { S, 0 },
        [FREEHINT_EV_AFTER_SYNC] = { R, NEW },
        [FREEHINT_EV_END] = { D, NOT },
        [FREEHINT_EV_ECHO] = { S, 0 },
        [FREEHINT_EV_STALE_ECHO] = { S, 0 },
        [FREEHINT_EV_GUEST_STOP] = { S, 0 },
        [FREEHINT_EV_HINT] = { S, IGN },
        [FREEHINT_EV_RESET] = { S, 0 },
    },
    [FREEHINT_REQUESTED] = {
        [FREEHINT_EV_BEFORE_SYNC] = { S, NOT },
        [FREEHINT_EV_AFTER_SYNC] = { R, NEW },
        [FREEHINT_EV_END] = { D, NOT },
        [FREEHINT_EV_ECHO] = { T, 0 },
        [FREEHINT_EV_STALE_ECHO] = { R, 0 },
        [FREEHINT_EV_GUEST_STOP] = { R, 0 },
        [FREEHINT_EV_HINT] = { R, IGN },
        [FREEHINT_EV_RESET] = { S, 0 },
    },
    [FREEHINT_START] = {
        [FREEHINT_EV_BEFORE_SYNC] = { S, NOT },
        [FREEHINT_EV_AFTER_SYNC] = { R, NEW },
        [FREEHINT_EV_END] = { D, NOT },
        [FREEHINT_EV_ECHO] = { T, 0 },
        [FREEHINT_EV_STALE_ECHO] = { T, 0 },
        [FREEHINT_EV_GUEST_STOP] = { S, 0 },
        [FREEHINT_EV_HINT] = { T, APP },
        [FREEHINT_EV_RESET] = { S, 0 },
    },
    [FREEHINT_DONE] = {
        [FREEHINT_EV_BEFORE_SYNC] = { D, 0 },
        [FREEHINT_EV_AFTER_SYNC] = { R, NEW },
        [FREEHINT_EV_END] = { D, 0 },
        [FREEHINT_EV_ECHO] = { D, 0 },
        [FREEHINT_EV_STALE_ECHO] = { D, 0 },
        [FREEHINT_EV_GUEST_STOP] = { D, 0 },
        [FREEHINT_EV_HINT] = { D, IGN },
        [FREEHINT_EV_RESET] = { D, 0 },
    },
};

static void test_every_transition(void)
{
    int s, e;

    for (s = 0; s < NSTATES; s++) {
        for (e = 0; e < FREEHINT_EV__MAX; e++) {
            FreeHintStep got = freehint_next((FreeHintState)s,
                                             (FreeHintEvent)e);

            if (got.state != expected[s][e].state ||
                got.actions != expected[s][e].actions) {
                g_test_message("state %d event %d: got (%d, 0x%x)",
                               s, e, got.state, got.actions);
            }
            g_assert_cmpint(got.state, ==, expected[s][e].state);
            g_assert_cmpuint(got.actions, ==, expected[s][e].actions);
        }
    }
}

/* Whatever the guest sends, hints are applied only inside a started round. */
static void test_hints_applied_only_when_started(void)
{
    int s, e;

    for (s = 0; s < NSTATES; s++) {
        for (e = 0; e < FREEHINT_EV__MAX; e++) {
            unsigned actions = freehint_next((FreeHintState)s,
                                             (FreeHintEvent)e).actions;

            g_assert_false((actions & APP) && !(s == T && e == FREEHINT_EV_HINT));
            g_assert_false((actions & APP) && (actions & IGN));
        }
    }
}

/* A round that was stopped never restarts from guest input alone. */
static void test_guest_cannot_reopen_a_stopped_round(void)
{
    FreeHintEvent guest[] = { FREEHINT_EV_ECHO, FREEHINT_EV_STALE_ECHO,
                              FREEHINT_EV_GUEST_STOP, FREEHINT_EV_HINT };
    FreeHintState stopped[] = { FREEHINT_STOP, FREEHINT_DONE };
    size_t s, i;

    for (s = 0; s < G_N_ELEMENTS(stopped); s++) {
        for (i = 0; i < G_N_ELEMENTS(guest); i++) {
            g_assert_cmpint(freehint_next(stopped[s], guest[i]).state, ==,
                            stopped[s]);
        }
    }
}

static void test_cmd_ids(void)
{
    g_assert_cmphex(freehint_next_cmd_id(0), ==, FREEHINT_CMD_ID_MIN);
    g_assert_cmphex(freehint_next_cmd_id(1), ==, FREEHINT_CMD_ID_MIN);
    g_assert_cmphex(freehint_next_cmd_id(0x12345), ==, FREEHINT_CMD_ID_MIN);
    g_assert_cmphex(freehint_next_cmd_id(FREEHINT_CMD_ID_MIN), ==,
                    FREEHINT_CMD_ID_MIN + 1);
    g_assert_cmphex(freehint_next_cmd_id(UINT32_MAX - 1), ==, UINT32_MAX);
    g_assert_cmphex(freehint_next_cmd_id(UINT32_MAX), ==, FREEHINT_CMD_ID_MIN);

    g_assert_cmphex(freehint_config_cmd_id(R, 0x80000007), ==, 0x80000007);
    g_assert_cmphex(freehint_config_cmd_id(T, 0x80000007), ==, 0x80000007);
    g_assert_cmphex(freehint_config_cmd_id(S, 0x80000007), ==,
                    FREEHINT_CMD_ID_STOP);
    g_assert_cmphex(freehint_config_cmd_id(D, 0x80000007), ==,
                    FREEHINT_CMD_ID_DONE);
}

#define PAGE_BITS 12
#define PAGE (UINT64_C(1) << PAGE_BITS)
#define USED (UINT64_C(1) << 30)

static void check_block(uint64_t offset, uint64_t len,
                        const FreeHintBlock *block, FreeHintRangeVerdict want,
                        uint64_t want_first, uint64_t want_npages)
{
    FreeHintRange r = { 123, 456 };
    FreeHintRangeVerdict verdict;

    verdict = freehint_clip_range(offset, len, block, PAGE_BITS, &r);
    g_assert_cmpint(verdict, ==, want);
    g_assert_cmpint(freehint_range_applied(verdict), ==, r.npages != 0);
    g_assert_cmpuint(r.first_page, ==, want_first);
    g_assert_cmpuint(r.npages, ==, want_npages);
    /* Whatever comes back stays inside the block. */
    g_assert_cmpuint(r.first_page + r.npages, <=,
                     block->used_length_bytes >> PAGE_BITS);
}

/* A tracked block of guest RAM unless @ram is false. */
static void check_range(uint64_t offset, uint64_t len, uint64_t used,
                        bool ram, FreeHintRangeVerdict want,
                        uint64_t want_first, uint64_t want_npages)
{
    FreeHintBlock block = { .used_length_bytes = used, .system_ram = ram,
                            .tracked = true };

    check_block(offset, len, &block, want, want_first, want_npages);
}

static void test_ranges(void)
{
    uint64_t mib4 = UINT64_C(4) << 20;

    check_range(0, mib4, USED, true, FREEHINT_RANGE_OK, 0, 1024);
    check_range(USED - mib4, mib4, USED, true, FREEHINT_RANGE_OK,
                (USED - mib4) >> PAGE_BITS, 1024);
    check_range(USED - PAGE, PAGE, USED, true, FREEHINT_RANGE_OK,
                (USED >> PAGE_BITS) - 1, 1);
    check_range(USED - PAGE, mib4, USED, true, FREEHINT_RANGE_CLIPPED,
                (USED >> PAGE_BITS) - 1, 1);
    check_range(0, UINT64_MAX & ~(PAGE - 1), USED, true,
                FREEHINT_RANGE_CLIPPED, 0, USED >> PAGE_BITS);
    check_range(USED, PAGE, USED, true, FREEHINT_RANGE_OUTSIDE, 0, 0);
    check_range((UINT64_MAX & ~(PAGE - 1)) - PAGE, PAGE, USED, true,
                FREEHINT_RANGE_OUTSIDE, 0, 0);
    /* Ends exactly at 2^64: the end does not fit in 64 bits. */
    check_range(UINT64_MAX & ~(PAGE - 1), PAGE, USED, true,
                FREEHINT_RANGE_WRAPS, 0, 0);
    check_range(PAGE, UINT64_MAX & ~(PAGE - 1), USED, true,
                FREEHINT_RANGE_WRAPS, 0, 0);
    check_range(0, 0, USED, true, FREEHINT_RANGE_EMPTY, 0, 0);
    check_range(1, PAGE, USED, true, FREEHINT_RANGE_UNALIGNED, 0, 0);
    check_range(0, PAGE + 1, USED, true, FREEHINT_RANGE_UNALIGNED, 0, 0);
    check_range(PAGE - 1, 1, USED, true, FREEHINT_RANGE_UNALIGNED, 0, 0);
    check_range(0, mib4, USED, false, FREEHINT_RANGE_NOT_RAM, 0, 0);
    /* A used length that is not whole pages: its tail page is not RAM. */
    check_range(USED - PAGE, PAGE, USED - 1, true, FREEHINT_RANGE_OUTSIDE,
                0, 0);
    check_range(0, USED, USED - 1, true, FREEHINT_RANGE_CLIPPED, 0,
                (USED >> PAGE_BITS) - 1);
}

/*
 * A block the migration does not copy (x-ignore-shared, no migration, a
 * cancel under way) has no bitmap: nothing of a well-formed hint is applied,
 * and a malformed one is still named for what is wrong with it.
 */
static void test_untracked_block(void)
{
    FreeHintBlock block = { .used_length_bytes = USED, .system_ram = true,
                            .tracked = false };
    uint64_t mib4 = UINT64_C(4) << 20;

    check_block(0, mib4, &block, FREEHINT_RANGE_UNTRACKED, 0, 0);
    check_block(USED - PAGE, mib4, &block, FREEHINT_RANGE_UNTRACKED, 0, 0);
    check_block(0, UINT64_MAX & ~(PAGE - 1), &block,
                FREEHINT_RANGE_UNTRACKED, 0, 0);
    check_block(0, 0, &block, FREEHINT_RANGE_EMPTY, 0, 0);
    check_block(1, PAGE, &block, FREEHINT_RANGE_UNALIGNED, 0, 0);
    check_block(PAGE, UINT64_MAX & ~(PAGE - 1), &block,
                FREEHINT_RANGE_WRAPS, 0, 0);
    check_block(USED, PAGE, &block, FREEHINT_RANGE_OUTSIDE, 0, 0);
    block.system_ram = false;
    check_block(0, mib4, &block, FREEHINT_RANGE_NOT_RAM, 0, 0);
}

static void test_gpa_floor(void)
{
    g_assert_cmpint(freehint_check_gpa(0, PAGE), ==,
                    FREEHINT_RANGE_BELOW_FLOOR);
    g_assert_cmpint(freehint_check_gpa(0xc0000, PAGE), ==,
                    FREEHINT_RANGE_BELOW_FLOOR);
    g_assert_cmpint(freehint_check_gpa(FREEHINT_GPA_FLOOR - PAGE, 2 * PAGE),
                    ==, FREEHINT_RANGE_BELOW_FLOOR);
    g_assert_cmpint(freehint_check_gpa(FREEHINT_GPA_FLOOR, PAGE), ==,
                    FREEHINT_RANGE_OK);
    g_assert_cmpint(freehint_check_gpa(UINT64_MAX - PAGE, PAGE), ==,
                    FREEHINT_RANGE_OK);
    g_assert_cmpint(freehint_check_gpa(UINT64_MAX - PAGE + 1, PAGE), ==,
                    FREEHINT_RANGE_WRAPS);
    g_assert_cmpint(freehint_check_gpa(FREEHINT_GPA_FLOOR, UINT64_MAX), ==,
                    FREEHINT_RANGE_WRAPS);
}

/*
 * Every verdict has its own name and goes to exactly one counter: only
 * untracked RAM is not the guest's fault.
 */
static void test_verdict_names_and_reasons(void)
{
    FreeHintRangeVerdict v, w;

    for (v = FREEHINT_RANGE_OK; v < FREEHINT_RANGE__MAX; v++) {
        const char *name = freehint_range_verdict_name(v);

        g_assert_nonnull(name);
        g_assert_cmpstr(name, !=, "?");
        for (w = FREEHINT_RANGE_OK; w < v; w++) {
            g_assert_cmpstr(name, !=, freehint_range_verdict_name(w));
        }
        if (!freehint_range_applied(v)) {
            g_assert_cmpint(freehint_ignored_reason(v), ==,
                            v == FREEHINT_RANGE_UNTRACKED ?
                            FREEHINT_IGNORED_UNTRACKED :
                            FREEHINT_IGNORED_INVALID);
        }
    }
    g_assert_cmpstr(freehint_range_verdict_name(FREEHINT_RANGE_UNTRACKED), ==,
                    "untracked");
    g_assert_cmpstr(freehint_range_verdict_name(FREEHINT_RANGE__MAX), ==, "?");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/freehint/round/every-transition", test_every_transition);
    g_test_add_func("/freehint/round/hints-applied-only-when-started",
                    test_hints_applied_only_when_started);
    g_test_add_func("/freehint/round/guest-cannot-reopen-a-stopped-round",
                    test_guest_cannot_reopen_a_stopped_round);
    g_test_add_func("/freehint/round/cmd-ids", test_cmd_ids);
    g_test_add_func("/freehint/range/edges", test_ranges);
    g_test_add_func("/freehint/range/untracked-block", test_untracked_block);
    g_test_add_func("/freehint/range/gpa-floor", test_gpa_floor);
    g_test_add_func("/freehint/range/verdict-names-and-reasons",
                    test_verdict_names_and_reasons);
    return g_test_run();
}
