// The attacks and their options (attack.h, lib/attack/options.c): the table is consistent with
// rr_attack_params and with rr_attack_resolve. Every attack of rr_attack_name has one row with a
// unique name that parses back; option names are unique and their offsets are the fields of
// those names, inside rr_attack_params; an attack's uses point into the options' table, once
// each; resolving an attack's defaults sets exactly the numbers and counts it takes (so every
// option it echoes has a value to answer); each number's range is the one rr_attack_resolve
// enforces; and the targets column matches what rr_attack_resolve refuses.
#include <criterion/criterion.h>
#include <math.h>
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#include "attack/attack.h"

#define N_NAMES ((int)RR_ATTACK_AUTOATTACK + 1)

static const rr_attack_option *table(size_t *n)
{
    const rr_attack_option *ops;
    *n = rr_attack_options(&ops);
    return ops;
}

static double *number(rr_attack_params *p, const rr_attack_option *op)
{
    return (double *)((char *)p + op->offset);
}

static int *count(rr_attack_params *p, const rr_attack_option *op)
{
    return (int *)((char *)p + op->offset);
}

Test(attack_options, every_attack_has_one_row_and_its_name_parses_back)
{
    const rr_attack_info *ai;
    const size_t n = rr_attack_infos(&ai);
    cr_assert_eq(n, (size_t)N_NAMES, "%zu rows for %d attacks", n, N_NAMES);
    for (int id = 0; id < N_NAMES; id++) {
        int rows = 0;
        for (size_t i = 0; i < n; i++)
            rows += ai[i].id == (rr_attack_name)id;
        cr_assert_eq(rows, 1, "attack %d has %d rows", id, rows);
        const rr_attack_info *a = rr_attack_info_of((rr_attack_name)id);
        cr_assert(a && a->name && a->name[0], "attack %d has no name", id);
        cr_assert_str_eq(rr_attack_name_string((rr_attack_name)id), a->name);
        rr_attack_name back;
        cr_assert(rr_attack_name_parse(a->name, &back) && back == (rr_attack_name)id, "%s",
                  a->name);
        cr_assert(a->n_uses > 0 && a->uses, "%s takes no options", a->name);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            cr_assert_str_neq(ai[i].name, ai[j].name, "two attacks named %s", ai[i].name);
    cr_assert_null(rr_attack_info_of((rr_attack_name)N_NAMES));
    cr_assert_null(rr_attack_name_string((rr_attack_name)N_NAMES));
    rr_attack_name x;
    cr_assert_not(rr_attack_name_parse("pgdd", &x));
    cr_assert_not(rr_attack_name_parse(NULL, &x));
}

Test(attack_options, names_unique_and_offsets_are_their_fields)
{
    // The fields the API's names stand for, written out here as a second source.
    static const struct {
        const char *name;
        size_t offset;
    } want[] = {
        {"norm", offsetof(rr_attack_params, norm)},
        {"epsilon", offsetof(rr_attack_params, epsilon)},
        {"step_size", offsetof(rr_attack_params, step_size)},
        {"overshoot", offsetof(rr_attack_params, overshoot)},
        {"learning_rate", offsetof(rr_attack_params, learning_rate)},
        {"c", offsetof(rr_attack_params, c)},
        {"confidence", offsetof(rr_attack_params, confidence)},
        {"theta", offsetof(rr_attack_params, theta)},
        {"gamma", offsetof(rr_attack_params, gamma)},
        {"beta", offsetof(rr_attack_params, beta)},
        {"h", offsetof(rr_attack_params, h)},
        {"p_init", offsetof(rr_attack_params, p_init)},
        {"steps", offsetof(rr_attack_params, steps)},
        {"restarts", offsetof(rr_attack_params, restarts)},
        {"max_iter", offsetof(rr_attack_params, max_iter)},
        {"binary_search_steps", offsetof(rr_attack_params, binary_search_steps)},
        {"queries", offsetof(rr_attack_params, queries)},
        {"random_start", offsetof(rr_attack_params, random_start)},
        {"suite", offsetof(rr_attack_params, suite)},
        {"stages", offsetof(rr_attack_params, suite)},
    };
    size_t n;
    const rr_attack_option *ops = table(&n);
    cr_assert_eq(n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n; i++) {
        const rr_attack_option *op = &ops[i];
        cr_assert(op->name && op->name[0]);
        for (size_t j = i + 1; j < n; j++)
            cr_assert_str_neq(op->name, ops[j].name, "two options named %s", op->name);
        cr_assert_eq(rr_attack_option_find(op->name), op, "%s", op->name);
        size_t size = 0, align = 1;
        switch (op->type) {
            case RR_ATTACK_OPTION_NUMBER:
                size = sizeof(double), align = alignof(double);
                break;
            case RR_ATTACK_OPTION_COUNT:
            case RR_ATTACK_OPTION_BOOL:
                size = sizeof(int), align = alignof(int);
                break;
            case RR_ATTACK_OPTION_NORM:
                size = sizeof(rr_norm), align = alignof(rr_norm);
                break;
            case RR_ATTACK_OPTION_SUITE:
            case RR_ATTACK_OPTION_STAGES:
                size = sizeof(rr_autoattack_suite), align = alignof(rr_autoattack_suite);
                break;
        }
        cr_assert(size > 0, "%s has no type", op->name);
        cr_assert(op->offset + size <= sizeof(rr_attack_params) && op->offset % align == 0,
                  "%s at %zu is not a field of rr_attack_params", op->name, op->offset);
        cr_assert_eq(op->type == RR_ATTACK_OPTION_NUMBER, op->range != NULL, "%s", op->name);
        size_t k = 0;
        while (k < n && strcmp(want[k].name, op->name))
            k++;
        cr_assert(k < n, "unexpected option %s", op->name);
        cr_assert_eq(op->offset, want[k].offset, "%s is at %zu, its field at %zu", op->name,
                     op->offset, want[k].offset);
    }
    cr_assert_null(rr_attack_option_find("epsilonn"));
    cr_assert_null(rr_attack_option_find(NULL));
}

Test(attack_options, uses_point_into_the_table_once_each)
{
    size_t n;
    const rr_attack_option *ops = table(&n);
    const rr_attack_option *eps = rr_attack_option_find("epsilon");
    const rr_attack_info *ai;
    const size_t na = rr_attack_infos(&ai);
    for (size_t i = 0; i < na; i++) {
        const rr_attack_info *a = &ai[i];
        bool suite = false;
        for (size_t u = 0; u < a->n_uses; u++) {
            const rr_attack_option *op = a->uses[u].option;
            cr_assert(op >= ops && op < ops + n, "%s: use %zu is not in the table", a->name, u);
            cr_assert(rr_attack_takes(a->id, op), "%s", a->name);
            for (size_t v = u + 1; v < a->n_uses; v++)
                cr_assert_neq(a->uses[v].option, op, "%s takes %s twice", a->name, op->name);
            // Only epsilon is set by a report; stages follow the suite they list.
            cr_assert(!(a->uses[u].flags & RR_ATTACK_USE_REPORT_SETS) || op == eps, "%s: %s",
                      a->name, op->name);
            cr_assert(op->type != RR_ATTACK_OPTION_STAGES || suite, "%s: stages before suite",
                      a->name);
            suite |= op->type == RR_ATTACK_OPTION_SUITE;
            cr_assert_eq(a->uses[u].flags & ~(RR_ATTACK_USE_IF_SET | RR_ATTACK_USE_REPORT_SETS),
                         0u);
        }
        cr_assert_not(rr_attack_takes(a->id, NULL));
    }
    cr_assert_not(rr_attack_takes((rr_attack_name)N_NAMES, eps));
}

// Resolving an attack's defaults (K = 10) sets every number and count it takes (but those
// answered only when set) and none it does not: each option it echoes has a value.
Test(attack_options, defaults_set_exactly_the_options_taken)
{
    size_t n;
    const rr_attack_option *ops = table(&n);
    const rr_attack_info *ai;
    const size_t na = rr_attack_infos(&ai);
    for (size_t i = 0; i < na; i++) {
        rr_attack_params in, o;
        rr_attack_params_init(&in, ai[i].id);
        rr_error err = {0};
        cr_assert_eq(rr_attack_resolve(&in, 10, &o, &err), RR_OK, "%s: %s", ai[i].name, err.msg);
        for (size_t k = 0; k < n; k++) {
            const rr_attack_option *op = &ops[k];
            if (op->type != RR_ATTACK_OPTION_NUMBER && op->type != RR_ATTACK_OPTION_COUNT)
                continue;
            unsigned flags = 0;
            bool takes = false;
            for (size_t u = 0; u < ai[i].n_uses; u++)
                if (ai[i].uses[u].option == op)
                    takes = true, flags = ai[i].uses[u].flags;
            const bool set =
                op->type == RR_ATTACK_OPTION_NUMBER ? !isnan(*number(&o, op)) : *count(&o, op) > 0;
            if (takes && !(flags & RR_ATTACK_USE_IF_SET))
                cr_assert(set, "%s takes %s but leaves it without a default", ai[i].name, op->name);
            if (!takes)
                cr_assert_not(set, "%s sets %s, which it does not take", ai[i].name, op->name);
        }
    }
}

// Each number's range is what rr_attack_resolve enforces, with the option's name and range in
// the error; every number is taken by some attack.
Test(attack_options, number_ranges_are_enforced_as_written)
{
    size_t n;
    const rr_attack_option *ops = table(&n);
    const rr_attack_info *ai;
    const size_t na = rr_attack_infos(&ai);
    for (size_t k = 0; k < n; k++) {
        const rr_attack_option *op = &ops[k];
        if (op->type != RR_ATTACK_OPTION_NUMBER)
            continue;
        size_t i = 0;
        while (i < na && !rr_attack_takes(ai[i].id, op))
            i++;
        cr_assert(i < na, "no attack takes %s", op->name);
        const double bad[] = {op->lo_open ? op->lo : op->lo - 1,
                              isfinite(op->hi) ? op->hi + 1 : NAN};
        for (size_t b = 0; b < 2; b++) {
            if (isnan(bad[b]))
                continue;
            rr_attack_params in, o;
            rr_attack_params_init(&in, ai[i].id);
            *number(&in, op) = bad[b];
            rr_error err = {0};
            cr_assert_eq(rr_attack_resolve(&in, 10, &o, &err), RR_EINVAL, "%s %s = %g", ai[i].name,
                         op->name, bad[b]);
            cr_assert_str_eq(err.field, op->name);
            cr_assert(strstr(err.msg, op->range), "%s: %s", op->name, err.msg);
        }
        rr_attack_params in, o;
        rr_attack_params_init(&in, ai[i].id);
        *number(&in, op) = isfinite(op->hi) ? op->hi : op->lo + 1;
        rr_error err = {0};
        cr_assert_eq(rr_attack_resolve(&in, 10, &o, &err), RR_OK, "%s: %s", op->name, err.msg);
    }
}

// The targets column: GIVEN attacks take target labels, the others refuse them by name.
Test(attack_options, targets_column_matches_resolve)
{
    static const int64_t tl[2] = {1, 2};
    const rr_attack_info *ai;
    const size_t na = rr_attack_infos(&ai);
    for (size_t i = 0; i < na; i++) {
        rr_attack_params in, o;
        rr_attack_params_init(&in, ai[i].id);
        in.targeted = true;
        in.target_labels = tl;
        rr_error err = {0};
        const rr_status st = rr_attack_resolve(&in, 10, &o, &err);
        if (ai[i].targets == RR_ATTACK_TARGETS_GIVEN) {
            cr_assert_eq(st, RR_OK, "%s: %s", ai[i].name, err.msg);
            continue;
        }
        cr_assert_eq(st, RR_EINVAL, "%s takes targets", ai[i].name);
        cr_assert_str_eq(err.field, "targeted");
        cr_assert(strstr(err.msg, ai[i].name) &&
                      strstr(err.msg, ai[i].targets == RR_ATTACK_TARGETS_OWN ? "its own targets"
                                                                             : "untargeted"),
                  "%s: %s", ai[i].name, err.msg);
    }
}
