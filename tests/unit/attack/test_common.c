// The attacks' shared scaffolding (lib/attack/common.c): rr__atk_active / gather / scatter (a
// roundtrip), rr__atk_rank (ties, against the selection fab.c and deepfool.c used), rr__atk_margin
// and rr__atk_csearch (against C&W's formulas written out).
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_impl.h"
#include "core/rng.h"

Test(attack_common, active_gather_scatter_roundtrip)
{
    enum { B = 37, D = 5 };
    rr_rng g;
    rr_rng_init(&g, 25, 1);
    float src[B * D], rows[B * D], back[B * D];
    bool live[B];
    size_t act[B];
    for (size_t k = 0; k < B * D; k++)
        src[k] = (float)rr_rng_uniform(&g) + 1.0f;
    for (int want = 0; want < 2; want++) {
        size_t expect = 0;
        for (size_t b = 0; b < B; b++) {
            live[b] = rr_rng_uniform(&g) < 0.6;
            expect += live[b] == (bool)want;
        }
        const size_t n = rr__atk_active(live, want, B, act);
        cr_assert(n == expect, "%zu rows, expected %zu", n, expect);
        for (size_t j = 0; j < n; j++) {
            cr_assert(live[act[j]] == (bool)want);
            cr_assert(j == 0 || act[j] > act[j - 1], "rows out of order");
        }
        memset(rows, 0, sizeof rows);
        rr__atk_gather(src, act, n, D, rows);
        for (size_t j = 0; j < n; j++)
            cr_assert(memcmp(rows + j * D, src + act[j] * D, D * sizeof(float)) == 0, "row %zu", j);
        memset(back, 0, sizeof back);
        rr__atk_scatter(rows, act, n, D, back);
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < D; i++)
                cr_assert(back[b * D + i] == (live[b] == (bool)want ? src[b * D + i] : 0.0f),
                          "sample %zu feature %zu", b, i);
    }
}

// The oracle: repeated selection of the largest logit not taken yet, ties to the lower class
// (fab.c's and deepfool.c's loops before rr__atk_rank).
static void rank_naive(const float *z, int K, int *order)
{
    for (int q = 0; q < K; q++) {
        int pick = -1;
        for (int k = 0; k < K; k++) {
            bool taken = false;
            for (int p = 0; p < q; p++)
                taken = taken || order[p] == k;
            if (!taken && (pick < 0 || z[k] > z[pick]))
                pick = k;
        }
        order[q] = pick;
    }
}

Test(attack_common, rank_with_ties_matches_selection)
{
    rr_rng g;
    rr_rng_init(&g, 25, 2);
    float z[16];
    int o1[16], o2[16];
    size_t ties = 0;
    for (int rep = 0; rep < 2000; rep++) {
        const int K = 1 + rep % 16;
        const int levels = 1 + rep % 5; // few levels: many ties
        for (int k = 0; k < K; k++)
            z[k] = (float)(rr_rng_next(&g) % (uint64_t)levels) - 1.5f;
        rr__atk_rank(z, K, o1);
        rank_naive(z, K, o2);
        cr_assert(memcmp(o1, o2, (size_t)K * sizeof(int)) == 0, "K %d rep %d", K, rep);
        cr_assert(o1[0] == rr__atk_argmax(z, K));
        for (int k = 1; k < K; k++)
            ties += z[o1[k]] == z[o1[k - 1]];
    }
    cr_assert(ties > 1000, "only %zu ties drawn", ties);
}

Test(attack_common, margin_and_csearch)
{
    rr_rng g;
    rr_rng_init(&g, 25, 3);
    const int K = 7;
    float z[7];
    int64_t tgt[1] = {4}, lab[1] = {2};
    rr__atk a = {.K = K, .labels = lab};
    a.p.confidence = 0.25;
    for (int rep = 0; rep < 500; rep++) {
        for (int k = 0; k < K; k++)
            z[k] = (float)(rr_rng_next(&g) % 4);
        a.targets = rep % 2 ? tgt : NULL;
        const int64_t t = a.targets ? tgt[0] : lab[0];
        int jo = -1, want_jo = -1;
        for (int k = 0; k < K; k++)
            if (k != t && (want_jo < 0 || z[k] > z[want_jo]))
                want_jo = k;
        const double other = z[want_jo];
        const double want = a.targets ? other - z[t] + 0.25 : z[t] - other + 0.25;
        const double got = rr__atk_margin(&a, 0, z, &jo);
        cr_assert(got == want && jo == want_jo, "rep %d: %g (%d), expected %g (%d)", rep, got, jo,
                  want, want_jo);
    }
    // Binary search over c: x10 until a success, then bisection.
    double lo = 0.0, up = 1e10, c = 1e-3;
    rr__atk_csearch(false, &lo, &up, &c);
    cr_assert(lo == 1e-3 && up == 1e10 && c == 1e-2);
    rr__atk_csearch(true, &lo, &up, &c);
    cr_assert(lo == 1e-3 && up == 1e-2 && c == (1e-3 + 1e-2) / 2);
    rr__atk_csearch(false, &lo, &up, &c);
    cr_assert(lo == (1e-3 + 1e-2) / 2 && up == 1e-2 && c == (lo + up) / 2);
}
