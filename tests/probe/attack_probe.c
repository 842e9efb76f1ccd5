// attack_probe: runs one attack or certificate of librelureg for the Python reference tests
// (tests/reference/test_attacks.py), which compare it with torch.
//
//   attack_probe MODEL IN OUT
//
// IN (safetensors): inputs F32 [B, ...], labels I64 [B], optional target_labels I64 [B] and
// start F32 [B, ...], and __metadata__["options"], a JSON object: {"op": "attack" | "certify",
// "attack": name, "norm": "linf" | "l2", "trace": steps, "threads": n, "sample_index": [B
// integers], and the numeric options of attack.h by name}. "use_labels": false certifies the
// predicted class.
// OUT (safetensors): attack: adversarial, success U8, l2, linf, predictions I64, iterations I64,
// counts I64 [2] (gradient_calls, forward_calls) and trace [steps, B, D] when asked (APGD:
// "trace" counts the rows, restarts x targets x steps, and trace_eta [rows, B] comes too);
// certify: predictions, decision_distance F64, region_distance F64, certified_radius F64,
// exact U8, adversarial, decision_class I64, region_layer I64, region_unit I64, region_other I64.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relureg.h"
#include "attack/attack_impl.h" // rr__attack_hooked: start and trace

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void die(const char *what, const rr_error *err)
{
    fprintf(stderr, "attack_probe: %s: %s (%s)\n", what, err ? err->msg : "",
            err ? err->field : "");
    exit(1);
}

static double num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? json_number_value(v) : RR_ATTACK_DEFAULT;
}

static int inum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? (int)json_integer_value(v) : 0;
}

// Finishes the writer, writes the file and frees both.
static void write_out(rr_st_writer *w, const char *path, rr_error *err)
{
    uint8_t *ob;
    size_t ol;
    if (err->code || rr_st_writer_finish(w, &ob, &ol, err))
        die("output", err);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(ob, 1, ol, f) != ol)
        die("write", NULL);
    fclose(f);
    free(ob);
    rr_st_writer_free(w);
}

// The attack branch of main: runs the attack of the options o and writes its outputs.
static void run_attack(rr_model *m, rr_workspace *ws, json_t *o, const char *norm, const float *x,
                       const int64_t *y, const int64_t *tgt, const float *start, size_t B, size_t D,
                       rr_st_writer *w, float *adv, int64_t *pred, uint8_t *flag, int64_t *shB,
                       int64_t *shBD, const char *path)
{
    rr_error err = {0};
    const char *an = json_string_value(json_object_get(o, "attack"));
    rr_attack_params p;
    rr_attack_name id;
    if (!rr_attack_name_parse(an, &id))
        die("unknown attack", NULL);
    rr_attack_params_init(&p, id);
    p.norm = norm && !strcmp(norm, "l2") ? RR_NORM_L2 : RR_NORM_LINF;
    p.epsilon = num(o, "epsilon");
    p.step_size = num(o, "step_size");
    p.steps = inum(o, "steps");
    p.restarts = inum(o, "restarts");
    json_t *rs = json_object_get(o, "random_start");
    p.random_start = rs ? json_is_true(rs) : -1;
    p.seed = (uint64_t)inum(o, "seed");
    json_t *si = json_object_get(o, "sample_index");
    size_t *sidx = NULL;
    if (json_is_array(si) && json_array_size(si) == B) {
        sidx = malloc(B * sizeof(size_t));
        for (size_t b = 0; b < B; b++)
            sidx[b] = (size_t)json_integer_value(json_array_get(si, b));
        p.sample_ids = sidx;
    }
    p.overshoot = num(o, "overshoot");
    p.max_iter = inum(o, "max_iter");
    p.candidates = inum(o, "candidates");
    p.binary_search_steps = inum(o, "binary_search_steps");
    p.learning_rate = num(o, "learning_rate");
    p.c = num(o, "c");
    p.confidence = num(o, "confidence");
    p.theta = num(o, "theta");
    p.gamma = num(o, "gamma");
    p.beta = num(o, "beta");
    p.h = num(o, "h");
    p.queries = inum(o, "queries");
    p.p_init = num(o, "p_init");
    p.targeted = tgt != NULL;
    p.target_labels = tgt;
    rr__attack_hooks hooks = {.start = start};
    const int tsteps = inum(o, "trace");
    float *trace = NULL, *trace_eta = NULL;
    if (tsteps > 0) {
        trace = calloc((size_t)tsteps * B * D, sizeof(float));
        trace_eta = calloc((size_t)tsteps * B, sizeof(float));
        hooks.trace = trace;
        if (p.name == RR_ATTACK_APGD_CE || p.name == RR_ATTACK_APGD_T)
            hooks.trace_eta = trace_eta;
    }
    bool *succ = malloc(B);
    float *l2 = malloc(B * 4), *linf = malloc(B * 4);
    int *iters = malloc(B * sizeof(int));
    int64_t *it64 = malloc(B * 8);
    rr_attack_result r = {adv, succ, l2, linf, pred, iters, 0, 0, NULL};
    if (rr__attack_hooked(m, ws, x, y, B, &p, &hooks, &r, &err))
        die("attack", &err);
    for (size_t b = 0; b < B; b++) {
        flag[b] = succ[b];
        it64[b] = iters[b];
    }
    int64_t counts[2] = {r.gradient_calls, r.forward_calls}, sh2[1] = {2};
    rr_st_writer_add(w, "adversarial", RR_DTYPE_F32, shBD, 2, adv, &err);
    rr_st_writer_add(w, "success", RR_DTYPE_U8, shB, 1, flag, &err);
    rr_st_writer_add(w, "l2", RR_DTYPE_F32, shB, 1, l2, &err);
    rr_st_writer_add(w, "linf", RR_DTYPE_F32, shB, 1, linf, &err);
    rr_st_writer_add(w, "predictions", RR_DTYPE_I64, shB, 1, pred, &err);
    rr_st_writer_add(w, "iterations", RR_DTYPE_I64, shB, 1, it64, &err);
    rr_st_writer_add(w, "counts", RR_DTYPE_I64, sh2, 1, counts, &err);
    if (trace) {
        int64_t sh3[3] = {tsteps, (int64_t)B, (int64_t)D};
        rr_st_writer_add(w, "trace", RR_DTYPE_F32, sh3, 3, trace, &err);
        if (hooks.trace_eta)
            rr_st_writer_add(w, "trace_eta", RR_DTYPE_F32, sh3, 2, trace_eta, &err);
    }
    write_out(w, path, &err);
    free(trace);
    free(trace_eta);
    free(sidx);
    free(succ);
    free(l2);
    free(linf);
    free(iters);
    free(it64);
}

int main(int argc, char **argv)
{
    rr_blas_use_fitting_kernels(argv); // before anything else: it may restart the program
    if (argc != 4) {
        fprintf(stderr, "usage: attack_probe MODEL IN OUT\n");
        return 2;
    }
    rr_error err = {0};
    rr_model *m = NULL;
    if (rr_model_load_file(argv[1], &m, &err))
        die("model", &err);
    size_t len;
    uint8_t *buf = slurp(argv[2], &len);
    rr_safetensors *st = NULL;
    if (!buf || rr_safetensors_parse(buf, len, 1 << 20, &st, &err))
        die("input", &err);
    json_error_t je;
    const char *ot = rr_safetensors_metadata(st, "options");
    json_t *o = ot ? json_loads(ot, 0, &je) : json_object();
    if (!o)
        die("options JSON", NULL);
    const rr_st_tensor *ti = rr_safetensors_find(st, "inputs"),
                       *tl = rr_safetensors_find(st, "labels");
    if (!ti || !tl)
        die("inputs and labels are required", NULL);
    const size_t D = rr_model_input_size(m), B = ti->numel / D;
    const int K = rr_model_num_classes(m);
    float *x = malloc(B * D * sizeof(float));
    int64_t *y = malloc(B * sizeof(int64_t)), *tgt = NULL;
    float *start = NULL;
    if (rr_st_tensor_to_f32(ti, x, &err) || rr_st_tensor_to_i64(tl, y, &err))
        die("tensors", &err);
    const rr_st_tensor *tt = rr_safetensors_find(st, "target_labels");
    if (tt) {
        tgt = malloc(B * sizeof(int64_t));
        if (rr_st_tensor_to_i64(tt, tgt, &err))
            die("target_labels", &err);
    }
    const rr_st_tensor *ts = rr_safetensors_find(st, "start");
    if (ts) {
        start = malloc(B * D * sizeof(float));
        if (rr_st_tensor_to_f32(ts, start, &err))
            die("start", &err);
    }
    if (inum(o, "threads") > 0)
        rr_set_num_threads(inum(o, "threads"));
    const char *op = json_string_value(json_object_get(o, "op"));
    const char *norm = json_string_value(json_object_get(o, "norm"));
    const bool certify = op && !strcmp(op, "certify");
    rr_workspace_params wp = {.max_batch = B,
                              .rows_per_sample = certify ? (D < 128 ? D : 128) : (size_t)K};
    rr_workspace *ws = NULL;
    if (rr_workspace_new(m, &wp, &ws, &err))
        die("workspace", &err);
    rr_st_writer *w = rr_st_writer_new();
    int64_t shB[1] = {(int64_t)B}, shBD[2] = {(int64_t)B, (int64_t)D};
    float *adv = malloc(B * D * sizeof(float));
    int64_t *pred = malloc(B * sizeof(int64_t));
    uint8_t *flag = malloc(B);
    if (certify) {
        double *dD = malloc(B * 8), *dB = malloc(B * 8), *rad = malloc(B * 8);
        bool *ex = malloc(B);
        int *jc = malloc(B * sizeof(int)), *rl = malloc(B * sizeof(int));
        int64_t *ru = malloc(B * 8), *ro = malloc(B * 8), *jc64 = malloc(B * 8),
                *rl64 = malloc(B * 8);
        rr_certify_params cp = {.norm = norm && !strcmp(norm, "linf") ? RR_NORM_LINF : RR_NORM_L2};
        json_t *ul = json_object_get(o, "use_labels");
        cp.labels = (ul && json_is_false(ul)) ? NULL : y;
        rr_certify_result cr = {pred, dD, dB, rad, ex, adv, jc, rl, ru, ro};
        if (rr_certify(m, ws, x, B, &cp, &cr, &err))
            die("certify", &err);
        for (size_t b = 0; b < B; b++) {
            flag[b] = ex[b];
            jc64[b] = jc[b];
            rl64[b] = rl[b];
        }
        rr_st_writer_add(w, "predictions", RR_DTYPE_I64, shB, 1, pred, &err);
        rr_st_writer_add(w, "decision_distance", RR_DTYPE_F64, shB, 1, dD, &err);
        rr_st_writer_add(w, "region_distance", RR_DTYPE_F64, shB, 1, dB, &err);
        rr_st_writer_add(w, "certified_radius", RR_DTYPE_F64, shB, 1, rad, &err);
        rr_st_writer_add(w, "exact", RR_DTYPE_U8, shB, 1, flag, &err);
        rr_st_writer_add(w, "adversarial", RR_DTYPE_F32, shBD, 2, adv, &err);
        rr_st_writer_add(w, "decision_class", RR_DTYPE_I64, shB, 1, jc64, &err);
        rr_st_writer_add(w, "region_layer", RR_DTYPE_I64, shB, 1, rl64, &err);
        rr_st_writer_add(w, "region_unit", RR_DTYPE_I64, shB, 1, ru, &err);
        rr_st_writer_add(w, "region_other", RR_DTYPE_I64, shB, 1, ro, &err);
        write_out(w, argv[3], &err);
        free(dD);
        free(dB);
        free(rad);
        free(ex);
        free(jc);
        free(rl);
        free(ru);
        free(ro);
        free(jc64);
        free(rl64);
    } else {
        run_attack(m, ws, o, norm, x, y, tgt, start, B, D, w, adv, pred, flag, shB, shBD, argv[3]);
    }
    free(adv);
    free(pred);
    free(flag);
    free(x);
    free(y);
    free(tgt);
    free(start);
    json_decref(o);
    rr_safetensors_free(st);
    free(buf);
    rr_workspace_free(ws);
    rr_model_release(m);
    return 0;
}
