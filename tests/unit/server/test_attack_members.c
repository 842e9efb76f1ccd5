// The JSON members of attack requests (server/routes/attack_members.h) against librelureg's
// options table (attack.h): every option a client may set is a member of /attacks, and of a
// report's attack object but the options a report sets (epsilon); answered-only options
// (stages) are members of neither; every other member is one of the request's own fields.
#include <criterion/criterion.h>
#include <stdbool.h>
#include <string.h>

#include "../../../server/routes/attack_members.h"
#include "attack/attack.h"

// Whether the space-separated list holds the word, and how many times.
static int count_word(const char *list, const char *w)
{
    int c = 0;
    const size_t n = strlen(w);
    for (const char *p = list; *p;) {
        const size_t m = strcspn(p, " ");
        c += m == n && !strncmp(p, w, n);
        p += m + strspn(p + m, " ");
    }
    return c;
}

static bool set_by_report(const rr_attack_option *op)
{
    const rr_attack_info *ai;
    const size_t n = rr_attack_infos(&ai);
    for (size_t i = 0; i < n; i++)
        for (size_t u = 0; u < ai[i].n_uses; u++)
            if (ai[i].uses[u].option == op && (ai[i].uses[u].flags & RR_ATTACK_USE_REPORT_SETS))
                return true;
    return false;
}

Test(attack_members, every_settable_option_is_a_member)
{
    const rr_attack_option *ops;
    const size_t n = rr_attack_options(&ops);
    for (size_t i = 0; i < n; i++) {
        const bool settable = ops[i].type != RR_ATTACK_OPTION_STAGES;
        cr_assert_eq(count_word(ATTACKS_MEMBERS, ops[i].name), settable ? 1 : 0, "%s", ops[i].name);
        cr_assert_eq(count_word(REPORT_ATTACK_MEMBERS, ops[i].name),
                     settable && !set_by_report(&ops[i]) ? 1 : 0, "%s", ops[i].name);
    }
}

Test(attack_members, other_members_are_the_requests_own)
{
    static const char *const own[] = {"inputs", "labels",   "version",       "async", "timeout_ms",
                                      "attack", "targeted", "target_labels", "seed"};
    const char *lists[] = {ATTACKS_MEMBERS, REPORT_ATTACK_MEMBERS};
    for (size_t l = 0; l < 2; l++)
        for (const char *p = lists[l]; *p;) {
            const size_t m = strcspn(p, " ");
            char w[64] = {0};
            memcpy(w, p, m < sizeof w - 1 ? m : sizeof w - 1);
            bool known = rr_attack_option_find(w) != NULL;
            for (size_t k = 0; !known && k < sizeof own / sizeof own[0]; k++)
                known = !strcmp(own[k], w);
            cr_assert(known, "member %s is neither an option nor a request field", w);
            cr_assert_eq(count_word(lists[l], w), 1, "member %s listed twice", w);
            p += m + strspn(p + m, " ");
        }
}
