// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests for balloon_hint's round, without a device: every state and
 * event through hint_next(), and how command IDs read from config become
 * events. Included at the end of balloon_hint.c, whose static functions they
 * test; they run when the module loads with kunit.enable=1.
 */
#include <kunit/test.h>

struct hint_row {
	enum hint_state state;
	enum hint_event event;
	enum hint_state next;
	unsigned int actions;
};

#define GIVE_BACK_DONE_AND_COUNT	(HINT_DO_GIVE_BACK_DONE | HINT_DO_COUNT_DONE)

/* Every state and every event, and what must follow. */
static const struct hint_row hint_table[] = {
	{ HINT_IDLE, HINT_EV_SAME_ID, HINT_IDLE, HINT_DO_COUNT_REPEAT },
	{ HINT_IDLE, HINT_EV_NEW_ID, HINT_ACTIVE, HINT_DO_START_ROUND },
	{ HINT_IDLE, HINT_EV_STOP_ID, HINT_IDLE, HINT_DO_COUNT_STOP },
	{ HINT_IDLE, HINT_EV_DONE_ID, HINT_IDLE, GIVE_BACK_DONE_AND_COUNT },
	{ HINT_IDLE, HINT_EV_RAN_DRY, HINT_IDLE, 0 },
	{ HINT_IDLE, HINT_EV_QUEUE_ERROR, HINT_IDLE, 0 },
	{ HINT_IDLE, HINT_EV_RESET, HINT_IDLE, HINT_DO_GIVE_BACK_RESET },

	{ HINT_ACTIVE, HINT_EV_SAME_ID, HINT_ACTIVE, HINT_DO_COUNT_REPEAT },
	{ HINT_ACTIVE, HINT_EV_NEW_ID, HINT_ACTIVE,
	  HINT_DO_START_ROUND | HINT_DO_GIVE_BACK_RESERVE },
	{ HINT_ACTIVE, HINT_EV_STOP_ID, HINT_HOLDING,
	  HINT_DO_COUNT_STOP | HINT_DO_GIVE_BACK_RESERVE },
	{ HINT_ACTIVE, HINT_EV_DONE_ID, HINT_IDLE, GIVE_BACK_DONE_AND_COUNT },
	{ HINT_ACTIVE, HINT_EV_RAN_DRY, HINT_HOLDING, HINT_DO_GIVE_BACK_RESERVE },
	{ HINT_ACTIVE, HINT_EV_QUEUE_ERROR, HINT_HOLDING,
	  HINT_DO_GIVE_BACK_RESERVE },
	{ HINT_ACTIVE, HINT_EV_RESET, HINT_IDLE, HINT_DO_GIVE_BACK_RESET },

	{ HINT_HOLDING, HINT_EV_SAME_ID, HINT_HOLDING, HINT_DO_COUNT_REPEAT },
	{ HINT_HOLDING, HINT_EV_NEW_ID, HINT_ACTIVE, HINT_DO_START_ROUND },
	{ HINT_HOLDING, HINT_EV_STOP_ID, HINT_HOLDING, HINT_DO_COUNT_STOP },
	{ HINT_HOLDING, HINT_EV_DONE_ID, HINT_IDLE, GIVE_BACK_DONE_AND_COUNT },
	{ HINT_HOLDING, HINT_EV_RAN_DRY, HINT_HOLDING, 0 },
	{ HINT_HOLDING, HINT_EV_QUEUE_ERROR, HINT_HOLDING, 0 },
	{ HINT_HOLDING, HINT_EV_RESET, HINT_IDLE, HINT_DO_GIVE_BACK_RESET },
};

#define HINT_STATES	(HINT_HOLDING + 1)
#define HINT_EVENTS	(HINT_EV_RESET + 1)

static void table_covers_every_state_and_event(struct kunit *test)
{
	bool seen[HINT_STATES][HINT_EVENTS] = {};
	int i, s, e;

	for (i = 0; i < ARRAY_SIZE(hint_table); i++)
		seen[hint_table[i].state][hint_table[i].event] = true;
	for (s = 0; s < HINT_STATES; s++)
		for (e = 0; e < HINT_EVENTS; e++)
			KUNIT_EXPECT_TRUE_MSG(test, seen[s][e],
					      "state %d event %d missing", s, e);
}

static void round_follows_table(struct kunit *test)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(hint_table); i++) {
		const struct hint_row *row = &hint_table[i];
		struct hint_transition t = hint_next(row->state, row->event);

		KUNIT_EXPECT_EQ_MSG(test, t.next, row->next, "row %d", i);
		KUNIT_EXPECT_EQ_MSG(test, t.actions, row->actions, "row %d", i);
	}
}

/* Blocks are never given back twice, nor both ways, in one transition. */
static void one_give_back_at_most(struct kunit *test)
{
	const unsigned int both = HINT_DO_GIVE_BACK_DONE |
				  HINT_DO_GIVE_BACK_RESET;
	int s, e;

	for (s = 0; s < HINT_STATES; s++)
		for (e = 0; e < HINT_EVENTS; e++)
			KUNIT_EXPECT_NE(test, hint_next(s, e).actions & both,
					both);
}

static void cmd_ids_become_events(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, cmd_id_event(5, 5), HINT_EV_SAME_ID);
	KUNIT_EXPECT_EQ(test, cmd_id_event(5, 6), HINT_EV_NEW_ID);
	KUNIT_EXPECT_EQ(test, cmd_id_event(5, 4), HINT_EV_NEW_ID);
	KUNIT_EXPECT_EQ(test, cmd_id_event(5, VIRTIO_BALLOON_CMD_ID_STOP),
			HINT_EV_STOP_ID);
	KUNIT_EXPECT_EQ(test, cmd_id_event(5, VIRTIO_BALLOON_CMD_ID_DONE),
			HINT_EV_DONE_ID);
	/* A repeated STOP or DONE is a repeat, not a second stop or done. */
	KUNIT_EXPECT_EQ(test, cmd_id_event(VIRTIO_BALLOON_CMD_ID_STOP,
					   VIRTIO_BALLOON_CMD_ID_STOP),
			HINT_EV_SAME_ID);
	KUNIT_EXPECT_EQ(test, cmd_id_event(VIRTIO_BALLOON_CMD_ID_DONE,
					   VIRTIO_BALLOON_CMD_ID_DONE),
			HINT_EV_SAME_ID);
	/* After a reset the driver reads STOP as the last ID. */
	KUNIT_EXPECT_EQ(test, cmd_id_event(VIRTIO_BALLOON_CMD_ID_STOP, 0x80000001),
			HINT_EV_NEW_ID);
}

static struct kunit_case balloon_hint_cases[] = {
	KUNIT_CASE(table_covers_every_state_and_event),
	KUNIT_CASE(round_follows_table),
	KUNIT_CASE(one_give_back_at_most),
	KUNIT_CASE(cmd_ids_become_events),
	{}
};

static struct kunit_suite balloon_hint_suite = {
	.name = "balloon_hint",
	.test_cases = balloon_hint_cases,
};

kunit_test_suite(balloon_hint_suite);
