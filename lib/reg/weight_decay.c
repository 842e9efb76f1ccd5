// weight_decay (math.md; tf.nn.l2_loss): value = 1/2 sum ||W||^2 over linear and conv weights
// (not biases, not batchnorm), whatever the reduction; not per sample; its gradient is W for
// those weights and 0 elsewhere; grad_x = 0.
#include "nn/model_impl.h"
#include "reg/reg_impl.h"

void rr__reg_weight_decay(const rr_model *m, rr_reg_result *o, size_t B, size_t D)
{
    (void)B;
    (void)D;
    double v = 0.0;
    for (int i = 0; i < m->nops; i++) {
        const rr_op *op = &m->ops[i];
        if (op->kind != RR_OP_LINEAR && op->kind != RR_OP_CONV2D)
            continue;
        const rr_param *w = &m->params[op->p_weight];
        for (size_t j = 0; j < w->numel; j++) {
            v += 0.5 * (double)w->data[j] * w->data[j];
            if (o->grad_parameters)
                o->grad_parameters[w->offset + j] = w->data[j];
        }
    }
    o->value = v;
}
