// The scheduler's policy (server/sched.h) on a fake clock: admission by time, lanes, earliest
// deadline first, expiry, the batch lane's limit, and the wait estimate behind Retry-After.
#include <criterion/criterion.h>
#include <math.h>

#include "../../../server/sched.h"

static int tag[64]; // distinct addresses for items' arg

static rrd_sched_item item(int i, rrd_lane lane, double cost, double deadline)
{
    return (rrd_sched_item){.arg = &tag[i], .cost = cost, .deadline = deadline, .lane = lane};
}

static int id(const rrd_sched_item *it)
{
    return (int)((int *)it->arg - tag);
}

static bool push(rrd_sched *s, rrd_sched_item it, double now, double *wait)
{
    bool full;
    double w;
    bool ok = rrd_sched_push(s, it, now, wait ? wait : &w, &full);
    return ok;
}

static int pop(rrd_sched *s, int slot, double now)
{
    rrd_sched_item it, exp[8];
    size_t n;
    return rrd_sched_pop(s, slot, now, &it, exp, 8, &n) ? id(&it) : -1;
}

Test(sched, workers_are_at_least_two)
{
    rrd_sched *s = rrd_sched_new(1, 16);
    cr_assert(s);
    cr_expect_eq(rrd_sched_workers(s), 2);
    cr_expect_eq(rrd_sched_batch_slots(s), 1);
    rrd_sched_free(s);
}

Test(sched, earliest_deadline_first_and_fifo_on_ties)
{
    rrd_sched *s = rrd_sched_new(2, 16);
    const double now = 100;
    cr_assert(push(s, item(0, RRD_LANE_INTERACTIVE, 0.001, now + 5), now, NULL));
    cr_assert(push(s, item(1, RRD_LANE_INTERACTIVE, 0.001, now + 1), now, NULL));
    cr_assert(push(s, item(2, RRD_LANE_INTERACTIVE, 0.001, 0), now, NULL)); // no deadline: last
    cr_assert(push(s, item(3, RRD_LANE_INTERACTIVE, 0.001, now + 1), now, NULL));
    int order[4];
    for (int i = 0; i < 4; i++) {
        order[i] = pop(s, 0, now);
        rrd_sched_done(s, 0);
    }
    cr_expect(order[0] == 1 && order[1] == 3 && order[2] == 0 && order[3] == 2, "order %d %d %d %d",
              order[0], order[1], order[2], order[3]);
    cr_expect_eq(pop(s, 0, now), -1);
    rrd_sched_free(s);
}

Test(sched, batch_never_holds_every_worker)
{
    rrd_sched *s = rrd_sched_new(3, 16);
    const double now = 0;
    for (int i = 0; i < 4; i++)
        cr_assert(push(s, item(i, RRD_LANE_BATCH, 60, 0), now, NULL));
    cr_expect_eq(pop(s, 0, now), 0);
    cr_expect_eq(pop(s, 1, now), 1);
    cr_expect_eq(pop(s, 2, now), -1, "a third batch task took the last worker");
    cr_expect_eq(rrd_sched_running(s, RRD_LANE_BATCH), 2);
    // The free worker serves interactive work at once, ahead of the queued batch tasks.
    cr_assert(push(s, item(10, RRD_LANE_INTERACTIVE, 0.001, now + 1), now, NULL));
    cr_expect_eq(pop(s, 2, now), 10);
    rrd_sched_done(s, 2);
    // A batch task ends: its slot goes to the next batch task, in order.
    rrd_sched_done(s, 0);
    cr_expect_eq(pop(s, 0, now), 2);
    rrd_sched_free(s);
}

Test(sched, interactive_wait_ignores_batch_queue_and_counts_running_work)
{
    rrd_sched *s = rrd_sched_new(2, 64);
    double now = 10, wait;
    for (int i = 0; i < 5; i++)
        cr_assert(push(s, item(i, RRD_LANE_BATCH, 100, 0), now, NULL));
    cr_expect_eq(pop(s, 0, now), 0); // one long batch task runs on worker 0
    // An interactive request waits for nothing: worker 1 is free.
    cr_expect(rrd_sched_wait(s, RRD_LANE_INTERACTIVE, now + 1, now) == 0);
    // Occupy worker 1 with 0.5 s of interactive work: the next one waits 0.5 s.
    cr_assert(push(s, item(10, RRD_LANE_INTERACTIVE, 0.5, now + 5), now, NULL));
    cr_expect_eq(pop(s, 1, now), 10);
    cr_expect(fabs(rrd_sched_wait(s, RRD_LANE_INTERACTIVE, now + 5, now) - 0.5) < 1e-12);
    // 0.2 s later: 0.3 s left.
    now += 0.2;
    cr_expect(fabs(rrd_sched_wait(s, RRD_LANE_INTERACTIVE, now + 5, now) - 0.3) < 1e-12);
    // Two queued 0.1 s tasks with earlier deadlines come first: 0.3 + 0.2.
    cr_assert(push(s, item(11, RRD_LANE_INTERACTIVE, 0.1, now + 1), now, &wait));
    cr_assert(push(s, item(12, RRD_LANE_INTERACTIVE, 0.1, now + 1), now, &wait));
    cr_expect(fabs(rrd_sched_wait(s, RRD_LANE_INTERACTIVE, now + 5, now) - 0.5) < 1e-12);
    // A later-deadline task already queued does not delay an earlier-deadline arrival.
    cr_assert(push(s, item(13, RRD_LANE_INTERACTIVE, 3, now + 30), now, &wait));
    cr_expect(fabs(rrd_sched_wait(s, RRD_LANE_INTERACTIVE, now + 5, now) - 0.5) < 1e-12);
    rrd_sched_free(s);
}

Test(sched, admission_by_time_with_the_wait_for_retry_after)
{
    rrd_sched *s = rrd_sched_new(2, 64);
    const double now = 0;
    // Both workers busy for 2 s and 3 s.
    cr_assert(push(s, item(0, RRD_LANE_INTERACTIVE, 2, 0), now, NULL));
    cr_assert(push(s, item(1, RRD_LANE_INTERACTIVE, 3, 0), now, NULL));
    cr_expect_eq(pop(s, 0, now), 0);
    cr_expect_eq(pop(s, 1, now), 1);
    double wait;
    bool full;
    // Deadline 1 s: 2 s of waiting plus 0.01 s cannot make it; refused with wait = 2 s.
    cr_expect_not(
        rrd_sched_push(s, item(2, RRD_LANE_INTERACTIVE, 0.01, now + 1), now, &wait, &full));
    cr_expect_not(full);
    cr_expect(fabs(wait - 2) < 1e-12, "wait %g", wait);
    // Deadline 2.5 s: 2 + 0.01 fits.
    cr_expect(rrd_sched_push(s, item(3, RRD_LANE_INTERACTIVE, 0.01, now + 2.5), now, &wait, &full));
    // 1 s of cost on top of that wait does not fit 2.5 s.
    cr_expect_not(
        rrd_sched_push(s, item(4, RRD_LANE_INTERACTIVE, 1, now + 2.5), now, &wait, &full));
    // No deadline: always admitted while there is room.
    cr_expect(rrd_sched_push(s, item(5, RRD_LANE_INTERACTIVE, 100, 0), now, &wait, &full));
    rrd_sched_free(s);
}

Test(sched, room_bounds_memory_only)
{
    rrd_sched *s = rrd_sched_new(2, 3);
    double wait;
    bool full;
    for (int i = 0; i < 3; i++)
        cr_assert(rrd_sched_push(s, item(i, RRD_LANE_INTERACTIVE, 0, 0), 0, &wait, &full));
    cr_expect_not(rrd_sched_push(s, item(3, RRD_LANE_BATCH, 0, 0), 0, &wait, &full));
    cr_expect(full);
    rrd_sched_free(s);
}

Test(sched, expired_tasks_are_dropped_unrun)
{
    rrd_sched *s = rrd_sched_new(2, 16);
    cr_assert(push(s, item(0, RRD_LANE_INTERACTIVE, 0.1, 1.0), 0, NULL));
    cr_assert(push(s, item(1, RRD_LANE_INTERACTIVE, 0.1, 2.0), 0, NULL));
    cr_assert(push(s, item(2, RRD_LANE_BATCH, 0.1, 1.5), 0, NULL));
    cr_assert(push(s, item(3, RRD_LANE_INTERACTIVE, 0.1, 9.0), 0, NULL));
    rrd_sched_item it, exp[8];
    size_t n;
    // At t = 2.5 the tasks due at 1, 1.5 and 2 have expired; 3 runs.
    cr_assert(rrd_sched_pop(s, 0, 2.5, &it, exp, 8, &n));
    cr_expect_eq(id(&it), 3);
    cr_expect_eq(n, 2); // the interactive ones met on the way
    cr_expect(n == 2 && id(&exp[0]) == 0 && id(&exp[1]) == 1);
    cr_expect_not(rrd_sched_pop(s, 1, 2.5, &it, exp, 8, &n));
    cr_expect_eq(n, 1);
    cr_expect(n == 1 && id(&exp[0]) == 2);
    cr_expect_eq(rrd_sched_queued(s, RRD_LANE_INTERACTIVE) + rrd_sched_queued(s, RRD_LANE_BATCH),
                 0);
    rrd_sched_free(s);
}

Test(sched, batch_wait_is_a_list_schedule_over_the_batch_slots)
{
    rrd_sched *s = rrd_sched_new(3, 16); // 2 batch slots
    const double now = 0;
    cr_assert(push(s, item(0, RRD_LANE_BATCH, 4, 0), now, NULL));
    cr_assert(push(s, item(1, RRD_LANE_BATCH, 6, 0), now, NULL));
    cr_expect_eq(pop(s, 0, now), 0);
    cr_expect_eq(pop(s, 1, now), 1);
    cr_expect(fabs(rrd_sched_wait(s, RRD_LANE_BATCH, 0, now) - 4) < 1e-12);
    cr_assert(push(s, item(2, RRD_LANE_BATCH, 5, 0), now, NULL)); // runs 4..9
    cr_expect(fabs(rrd_sched_wait(s, RRD_LANE_BATCH, 0, now) - 6) < 1e-12);
    rrd_sched_free(s);
}

Test(sched, drain_empties_both_lanes)
{
    rrd_sched *s = rrd_sched_new(2, 16);
    cr_assert(push(s, item(0, RRD_LANE_INTERACTIVE, 1, 0), 0, NULL));
    cr_assert(push(s, item(1, RRD_LANE_BATCH, 1, 0), 0, NULL));
    rrd_sched_item out[4];
    cr_expect_eq(rrd_sched_drain(s, out, 4), 2);
    cr_expect_eq(pop(s, 0, 0), -1);
    rrd_sched_free(s);
}

Test(sched, expire_removes_only_what_passed_its_deadline)
{
    rrd_sched *s = rrd_sched_new(2, 16);
    cr_assert(push(s, item(0, RRD_LANE_INTERACTIVE, 0.1, 1.0), 0, NULL));
    cr_assert(push(s, item(1, RRD_LANE_INTERACTIVE, 0.1, 5.0), 0, NULL));
    cr_assert(push(s, item(2, RRD_LANE_INTERACTIVE, 0.1, 0.5), 0, NULL));
    cr_assert(push(s, item(3, RRD_LANE_BATCH, 0.1, 2.0), 0, NULL));
    cr_assert(push(s, item(4, RRD_LANE_BATCH, 0.1, 0), 0, NULL));
    rrd_sched_item out[8];
    double next;
    const size_t n = rrd_sched_expire(s, 2.5, out, 8, &next);
    cr_expect_eq(n, 3);
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        seen |= 1 << id(&out[i]);
    cr_expect_eq(seen, (1 << 0) | (1 << 2) | (1 << 3));
    cr_expect(next == 5.0, "next %g", next);
    // What is left still pops in order: 1, then the batch task without deadline.
    cr_expect_eq(pop(s, 0, 2.5), 1);
    cr_expect_eq(pop(s, 1, 2.5), 4);
    rrd_sched_free(s);
}
