// Optimizers over the flat parameter buffer, one loop per kind, transcribing PyTorch's
// single-tensor implementations (torch/optim/*.py) operation by operation: hyperparameters are
// Python floats (double here), tensor arithmetic is float32, and a Python scalar meets a float
// tensor rounded to float, as in ATen. Results match torch to a few ulp (ATen fuses some
// multiply-adds; this file does not). NAdam follows PyTorch >= 2.0 and its docs: torch 1.13
// multiplied mu_product_next by mu once too often (pytorch/pytorch#92699).
// Not here: the schedule, GPU kernels, parameter groups (a decay mask stands in for them).
#include "nn/optim.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { STATE_MAX = 4 };

struct dp_optim {
    dp_optim_config cfg; // resolved: no UNSET fields, decay_mode not DEFAULT
    size_t n;
    long t; // updates taken
    int n_state;
    const char *state_name[STATE_MAX];
    float *state[STATE_MAX]; // each (state_n[i]), host, owned
    size_t state_n[STATE_MAX];
    float *scratch; // (n) clipped gradients, when clip_global_norm > 0
    double last_norm;
    dp_optim_rows *rows; // (n_rows) blocks renormed when max_norm > 0
    int n_rows;
};

static const char *const kind_names[DP_OPTIM_KIND_COUNT_] = {
    "sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "nadam",
};

// --- names ---

const char *dp_optim_kind_name(dp_optim_kind kind)
{
    return (unsigned)kind < DP_OPTIM_KIND_COUNT_ ? kind_names[kind] : "?";
}

dp_status dp_optim_kind_from_name(const char *name, dp_optim_kind *kind)
{
    for (int k = 0; k < DP_OPTIM_KIND_COUNT_; k++) {
        if (name != NULL && strcmp(name, kind_names[k]) == 0) {
            *kind = (dp_optim_kind)k;
            return DP_OK;
        }
    }
    return dp_error_set(DP_ERR_UNSUPPORTED,
                        "unknown optimizer '%s' (valid: sgd, adam, adamw, adagrad, adadelta, "
                        "rmsprop, nadam)",
                        name != NULL ? name : "(null)");
}

// --- create ---

static void resolve_defaults(dp_optim_config *c)
{
    static const double def_lr[DP_OPTIM_KIND_COUNT_] = {0.01, 0.01, 1.0, 0.01, 1e-3, 1e-3, 2e-3};
    static const double def_eps[DP_OPTIM_KIND_COUNT_] = {1e-8, 1e-10, 1e-6, 1e-8, 1e-8, 1e-8, 1e-8};
    if (isnan(c->lr)) {
        c->lr = def_lr[c->kind];
    }
    if (isnan(c->eps)) {
        c->eps = def_eps[c->kind];
    }
    if (isnan(c->weight_decay)) {
        c->weight_decay = c->kind == DP_OPTIM_ADAMW ? 1e-2 : 0.0;
    }
    if (c->decay_mode == DP_OPTIM_DECAY_DEFAULT) {
        c->decay_mode = c->kind == DP_OPTIM_ADAMW ? DP_OPTIM_DECAY_DECOUPLED : DP_OPTIM_DECAY_L2;
    }
}

// DP_ERR_ARG naming the field unless lo <= v <= hi (hi_open: v < hi).
static dp_status check_range(const char *field, double v, double lo, double hi, int hi_open)
{
    if (!(v >= lo) || (hi_open ? !(v < hi) : !(v <= hi))) {
        return dp_error_set(DP_ERR_ARG, "optimizer: %s = %g outside %s%g, %g%s", field, v, "[", lo,
                            hi, hi_open ? ")" : "]");
    }
    return DP_OK;
}

static dp_status check_config(const dp_optim_config *c)
{
    if ((unsigned)c->kind >= DP_OPTIM_KIND_COUNT_) {
        return dp_error_set(DP_ERR_ARG, "optimizer: unknown kind %d", (int)c->kind);
    }
    if ((unsigned)c->decay_mode > DP_OPTIM_DECAY_DECOUPLED) {
        return dp_error_set(DP_ERR_ARG, "optimizer: unknown decay mode %d", (int)c->decay_mode);
    }
    DP_TRY(check_range("lr", c->lr, 0, DBL_MAX, 0));
    DP_TRY(check_range("momentum", c->momentum, 0, DBL_MAX, 0));
    DP_TRY(check_range("dampening", c->dampening, -DBL_MAX, DBL_MAX, 0));
    DP_TRY(check_range("beta1", c->beta1, 0, 1, 1));
    DP_TRY(check_range("beta2", c->beta2, 0, 1, 1));
    DP_TRY(check_range("eps", c->eps, 0, DBL_MAX, 0));
    DP_TRY(check_range("weight_decay", c->weight_decay, 0, DBL_MAX, 0));
    DP_TRY(check_range("rho", c->rho, 0, 1, 0));
    DP_TRY(check_range("alpha", c->alpha, 0, DBL_MAX, 0));
    DP_TRY(check_range("lr_decay", c->lr_decay, 0, DBL_MAX, 0));
    DP_TRY(check_range("initial_accumulator_value", c->initial_accumulator_value, 0, DBL_MAX, 0));
    DP_TRY(check_range("momentum_decay", c->momentum_decay, 0, DBL_MAX, 0));
    DP_TRY(check_range("clip_global_norm", c->clip_global_norm, 0, DBL_MAX, 0));
    DP_TRY(check_range("max_norm", c->max_norm, 0, DBL_MAX, 0));
    if (c->kind == DP_OPTIM_SGD && c->nesterov && (c->momentum <= 0 || c->dampening != 0)) {
        return dp_error_set(DP_ERR_ARG,
                            "optimizer: nesterov needs momentum > 0 and dampening 0 "
                            "(momentum %g, dampening %g)",
                            c->momentum, c->dampening);
    }
    return DP_OK;
}

// Adds a zeroed state buffer of count floats.
static dp_status add_state(dp_optim *o, const char *name, size_t count)
{
    DP_ASSERT(o->n_state < STATE_MAX);
    float *p = calloc(count, sizeof *p);
    if (p == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "optimizer: cannot allocate state '%s' (%zu floats)",
                            name, count);
    }
    o->state_name[o->n_state] = name;
    o->state[o->n_state] = p;
    o->state_n[o->n_state] = count;
    o->n_state++;
    return DP_OK;
}

static dp_status add_kind_state(dp_optim *o)
{
    const dp_optim_config *c = &o->cfg;
    switch (c->kind) {
    case DP_OPTIM_SGD:
        return c->momentum != 0 ? add_state(o, "momentum_buffer", o->n) : DP_OK;
    case DP_OPTIM_ADAGRAD:
        return add_state(o, "sum", o->n);
    case DP_OPTIM_ADADELTA:
        DP_TRY(add_state(o, "square_avg", o->n));
        return add_state(o, "acc_delta", o->n);
    case DP_OPTIM_RMSPROP:
        DP_TRY(add_state(o, "square_avg", o->n));
        if (c->momentum > 0) {
            DP_TRY(add_state(o, "momentum_buffer", o->n));
        }
        return c->centered ? add_state(o, "grad_avg", o->n) : DP_OK;
    case DP_OPTIM_ADAM:
    case DP_OPTIM_ADAMW:
        DP_TRY(add_state(o, "exp_avg", o->n));
        DP_TRY(add_state(o, "exp_avg_sq", o->n));
        return c->amsgrad ? add_state(o, "max_exp_avg_sq", o->n) : DP_OK;
    case DP_OPTIM_NADAM:
        DP_TRY(add_state(o, "exp_avg", o->n));
        DP_TRY(add_state(o, "exp_avg_sq", o->n));
        return add_state(o, "mu_product", 1);
    case DP_OPTIM_KIND_COUNT_:
        break;
    }
    return dp_error_set(DP_ERR_INTERNAL, "optimizer: kind %d has no state layout", (int)c->kind);
}

dp_status dp_optim_create(dp_optim **out, const dp_optim_config *cfg, size_t n)
{
    *out = NULL;
    if (cfg == NULL || n == 0) {
        return dp_error_set(DP_ERR_ARG, "optimizer: %s", cfg == NULL ? "NULL config" : "n == 0");
    }
    dp_optim_config c = *cfg;
    if ((unsigned)c.kind < DP_OPTIM_KIND_COUNT_) {
        resolve_defaults(&c);
    }
    DP_TRY(check_config(&c));
    dp_optim *o = calloc(1, sizeof *o);
    if (o == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "optimizer: cannot allocate");
    }
    o->cfg = c;
    o->n = n;
    dp_status st;
    DP_TRY_GOTO(add_kind_state(o), st, fail);
    if (c.clip_global_norm > 0) {
        o->scratch = malloc(n * sizeof *o->scratch);
        if (o->scratch == NULL) {
            st = dp_error_set(DP_ERR_NOMEM, "optimizer: cannot allocate %zu floats", n);
            goto fail;
        }
    }
    dp_optim_reset(o);
    *out = o;
    return DP_OK;
fail:
    dp_optim_destroy(o);
    return st;
}

void dp_optim_destroy(dp_optim *opt)
{
    if (opt == NULL) {
        return;
    }
    for (int i = 0; i < opt->n_state; i++) {
        free(opt->state[i]);
    }
    free(opt->scratch);
    free(opt->rows);
    free(opt);
}

void dp_optim_reset(dp_optim *opt)
{
    for (int i = 0; i < opt->n_state; i++) {
        float v = 0.0f;
        if (strcmp(opt->state_name[i], "sum") == 0) {
            v = (float)opt->cfg.initial_accumulator_value;
        } else if (strcmp(opt->state_name[i], "mu_product") == 0) {
            v = 1.0f;
        }
        for (size_t j = 0; j < opt->state_n[i]; j++) {
            opt->state[i][j] = v;
        }
    }
    opt->t = 0;
    opt->last_norm = 0.0;
}

// --- update rules ---
// Each loop mirrors the torch expression named beside it. "a + s*b" is torch's add(b, alpha=s),
// "a + s*b*c" addcmul, "a + s*b/c" addcdiv, with s rounded to float.

// Weight decay of one step: L2 adds l2 * p to the gradient, decoupled scales p by keep.
typedef struct decay {
    int l2_on, keep_on;
    float l2, keep;
} decay;

static decay decay_of(const dp_optim *o, float lr)
{
    decay d = {0, 0, 0.0f, 1.0f};
    double wd = o->cfg.weight_decay;
    if (wd != 0 && o->cfg.decay_mode == DP_OPTIM_DECAY_L2) {
        d.l2_on = 1;
        d.l2 = (float)wd;
    } else if (wd != 0) {
        d.keep_on = 1;
        d.keep = (float)(1.0 - (double)lr * wd); // param.mul_(1 - lr * weight_decay)
    }
    return d;
}

// Applies the decay to element i: may scale *p, returns the gradient to use.
static inline float apply_decay(const decay *d, const uint8_t *mask, size_t i, float *p, float g)
{
    if (mask != NULL && mask[i] == 0) {
        return g;
    }
    if (d->keep_on) {
        *p = *p * d->keep;
    }
    return d->l2_on ? g + d->l2 * *p : g; // grad.add(param, alpha=weight_decay)
}

static void step_sgd(dp_optim *o, float *p, const float *g, const uint8_t *mask, float lr)
{
    const decay d = decay_of(o, lr);
    const int use_buf = o->cfg.momentum != 0, first = o->t == 0, nesterov = o->cfg.nesterov;
    const float m = (float)o->cfg.momentum, damp1 = (float)(1.0 - o->cfg.dampening);
    const float neg_lr = -lr;
    float *buf = use_buf ? o->state[0] : NULL;
    for (size_t i = 0; i < o->n; i++) {
        float pi = p[i];
        float dp = apply_decay(&d, mask, i, &pi, g[i]);
        if (use_buf) {
            buf[i] = first ? dp : buf[i] * m + damp1 * dp; // buf.mul_(m).add_(d_p, 1 - damp)
            dp = nesterov ? dp + m * buf[i] : buf[i];      // d_p.add(buf, alpha=momentum)
        }
        p[i] = pi + neg_lr * dp; // param.add_(d_p, alpha=-lr)
    }
}

static void step_adagrad(dp_optim *o, float *p, const float *g, const uint8_t *mask, float lr)
{
    const decay d = decay_of(o, lr);
    const double step = (double)(o->t + 1);
    const double clr = (double)lr / (1.0 + (step - 1.0) * o->cfg.lr_decay);
    const float neg_clr = (float)-clr, eps = (float)o->cfg.eps;
    float *sum = o->state[0];
    for (size_t i = 0; i < o->n; i++) {
        float pi = p[i];
        float gi = apply_decay(&d, mask, i, &pi, g[i]);
        sum[i] = sum[i] + gi * gi;       // state_sum.addcmul_(grad, grad, value=1)
        float std = sqrtf(sum[i]) + eps; // state_sum.sqrt().add_(eps)
        p[i] = pi + neg_clr * gi / std;  // param.addcdiv_(grad, std, value=-clr)
    }
}

static void step_adadelta(dp_optim *o, float *p, const float *g, const uint8_t *mask, float lr)
{
    const decay d = decay_of(o, lr);
    const float rho = (float)o->cfg.rho, one_rho = (float)(1.0 - o->cfg.rho);
    const float eps = (float)o->cfg.eps, neg_lr = -lr;
    float *sq = o->state[0], *acc = o->state[1];
    for (size_t i = 0; i < o->n; i++) {
        float pi = p[i];
        float gi = apply_decay(&d, mask, i, &pi, g[i]);
        sq[i] = sq[i] * rho + one_rho * gi * gi;         // mul_(rho).addcmul_(g, g, 1 - rho)
        float std = sqrtf(sq[i] + eps);                  // square_avg.add(eps).sqrt_()
        float delta = sqrtf(acc[i] + eps) / std * gi;    // acc.add(eps).sqrt_().div_(std).mul_(g)
        acc[i] = acc[i] * rho + one_rho * delta * delta; // mul_(rho).addcmul_(d, d, 1 - rho)
        p[i] = pi + neg_lr * delta;                      // param.add_(delta, alpha=-lr)
    }
}

static void step_rmsprop(dp_optim *o, float *p, const float *g, const uint8_t *mask, float lr)
{
    const decay d = decay_of(o, lr);
    const float a = (float)o->cfg.alpha, one_a = (float)(1.0 - o->cfg.alpha);
    const float eps = (float)o->cfg.eps, m = (float)o->cfg.momentum, neg_lr = -lr;
    const int use_buf = o->cfg.momentum > 0, centered = o->cfg.centered;
    float *sq = o->state[0];
    float *buf = use_buf ? o->state[1] : NULL;
    float *gavg = centered ? o->state[use_buf ? 2 : 1] : NULL;
    for (size_t i = 0; i < o->n; i++) {
        float pi = p[i];
        float gi = apply_decay(&d, mask, i, &pi, g[i]);
        sq[i] = sq[i] * a + one_a * gi * gi; // square_avg.mul_(alpha).addcmul_(g, g, 1 - alpha)
        float avg;
        if (centered) {
            gavg[i] = gavg[i] * a + one_a * gi;      // grad_avg.mul_(alpha).add_(g, 1 - alpha)
            avg = sqrtf(sq[i] + -gavg[i] * gavg[i]); // square_avg.addcmul(ga, ga, -1).sqrt_()
        } else {
            avg = sqrtf(sq[i]);
        }
        avg = avg + eps;
        if (use_buf) {
            buf[i] = buf[i] * m + gi / avg; // buf.mul_(momentum).addcdiv_(grad, avg)
            p[i] = pi + neg_lr * buf[i];    // param.add_(buf, alpha=-lr)
        } else {
            p[i] = pi + neg_lr * gi / avg; // param.addcdiv_(grad, avg, value=-lr)
        }
    }
}

// Adam and AdamW (whose decoupled decay is the decay mode).
static void step_adam(dp_optim *o, float *p, const float *g, const uint8_t *mask, float lr)
{
    const decay d = decay_of(o, lr);
    const double step = (double)(o->t + 1), b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const double step_size = (double)lr / (1.0 - pow(b1, step));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, step));
    const float fb1 = (float)b1, one_b1 = (float)(1.0 - b1);
    const float fb2 = (float)b2, one_b2 = (float)(1.0 - b2);
    const float eps = (float)o->cfg.eps, neg_step = (float)-step_size;
    float *m = o->state[0], *v = o->state[1];
    float *vmax = o->cfg.amsgrad ? o->state[2] : NULL;
    for (size_t i = 0; i < o->n; i++) {
        float pi = p[i];
        float gi = apply_decay(&d, mask, i, &pi, g[i]);
        m[i] = m[i] * fb1 + one_b1 * gi;      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        v[i] = v[i] * fb2 + one_b2 * gi * gi; // exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
        float vi = v[i];
        if (vmax != NULL) {
            vmax[i] = vmax[i] > vi ? vmax[i] : vi; // torch.maximum(max_exp_avg_sq, exp_avg_sq)
            vi = vmax[i];
        }
        float denom = sqrtf(vi) / bc2_sqrt + eps; // (v.sqrt() / bias_correction2_sqrt).add_(eps)
        p[i] = pi + neg_step * m[i] / denom;      // param.addcdiv_(exp_avg, denom, -step_size)
    }
}

static void step_nadam(dp_optim *o, float *p, const float *g, const uint8_t *mask, float lr)
{
    const decay d = decay_of(o, lr);
    const double step = (double)(o->t + 1), b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const double md = o->cfg.momentum_decay;
    const float bc2 = (float)(1.0 - pow(b2, step));
    const double mu = b1 * (1.0 - 0.5 * pow(0.96, step * md));
    const double mu_next = b1 * (1.0 - 0.5 * pow(0.96, (step + 1.0) * md));
    float *mu_product = o->state[2];
    mu_product[0] = mu_product[0] * (float)mu; // mu_product *= mu (a float32 tensor)
    const double mu_product_next = (double)mu_product[0] * mu_next;
    const float c_grad = (float)(-(double)lr * (1.0 - mu) / (1.0 - (double)mu_product[0]));
    const float c_avg = (float)(-(double)lr * mu_next / (1.0 - mu_product_next));
    const float fb1 = (float)b1, one_b1 = (float)(1.0 - b1);
    const float fb2 = (float)b2, one_b2 = (float)(1.0 - b2);
    const float eps = (float)o->cfg.eps;
    float *m = o->state[0], *v = o->state[1];
    for (size_t i = 0; i < o->n; i++) {
        float pi = p[i];
        float gi = apply_decay(&d, mask, i, &pi, g[i]);
        m[i] = m[i] * fb1 + one_b1 * gi;
        v[i] = v[i] * fb2 + one_b2 * gi * gi;
        float denom = sqrtf(v[i] / bc2) + eps; // exp_avg_sq.div(bias_correction2).sqrt().add_(eps)
        pi = pi + c_grad * gi / denom;         // param.addcdiv_(grad, denom, value=c_grad)
        p[i] = pi + c_avg * m[i] / denom;      // param.addcdiv_(exp_avg, denom, value=c_avg)
    }
}

// --- step ---

double dp_optim_grad_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += (double)g[i] * (double)g[i];
    }
    return sqrt(s);
}

// Clipping: returns the gradients to use (grads or the scratch), or NULL for a norm that is
// not finite (error set).
static const float *clip_grads(dp_optim *o, const float *grads)
{
    double norm = dp_optim_grad_norm(grads, o->n);
    if (!isfinite(norm)) {
        dp_error_set(DP_ERR_DATA, "optimizer: gradient norm is %g; step skipped", norm);
        return NULL;
    }
    o->last_norm = norm;
    double coef = o->cfg.clip_global_norm / (norm + 1e-6);
    if (coef >= 1.0) {
        return grads; // torch multiplies by the clamped 1.0: the same values
    }
    const float c = (float)coef;
    for (size_t i = 0; i < o->n; i++) {
        o->scratch[i] = grads[i] * c;
    }
    return o->scratch;
}

dp_status dp_optim_step(dp_optim *opt, float *params, const float *grads, const uint8_t *decay_mask,
                        float lr)
{
    if (opt == NULL || params == NULL || grads == NULL) {
        return dp_error_set(DP_ERR_ARG, "optimizer step: NULL %s",
                            opt == NULL      ? "optimizer"
                            : params == NULL ? "params"
                                             : "grads");
    }
    if (!(lr >= 0.0f) || !isfinite(lr)) {
        return dp_error_set(DP_ERR_ARG, "optimizer step: learning rate %g is not finite and >= 0",
                            (double)lr);
    }
    const float *g = grads;
    if (opt->cfg.clip_global_norm > 0) {
        g = clip_grads(opt, grads);
        if (g == NULL) {
            return dp_error_status();
        }
    }
    switch (opt->cfg.kind) {
    case DP_OPTIM_SGD:
        step_sgd(opt, params, g, decay_mask, lr);
        break;
    case DP_OPTIM_ADAGRAD:
        step_adagrad(opt, params, g, decay_mask, lr);
        break;
    case DP_OPTIM_ADADELTA:
        step_adadelta(opt, params, g, decay_mask, lr);
        break;
    case DP_OPTIM_RMSPROP:
        step_rmsprop(opt, params, g, decay_mask, lr);
        break;
    case DP_OPTIM_ADAM:
    case DP_OPTIM_ADAMW:
        step_adam(opt, params, g, decay_mask, lr);
        break;
    case DP_OPTIM_NADAM:
        step_nadam(opt, params, g, decay_mask, lr);
        break;
    case DP_OPTIM_KIND_COUNT_:
        return dp_error_set(DP_ERR_INTERNAL, "optimizer: invalid kind");
    }
    opt->t++;
    if (opt->cfg.max_norm > 0) {
        for (int b = 0; b < opt->n_rows; b++) {
            const dp_optim_rows *r = &opt->rows[b];
            DP_TRY(
                dp_optim_max_norm_apply(params + r->offset, r->rows, r->cols, opt->cfg.max_norm));
        }
    }
    return DP_OK;
}

// --- max-norm constraint ---

dp_status dp_optim_max_norm_apply(float *w, size_t rows, size_t cols, double max_norm)
{
    if (w == NULL || !(max_norm > 0)) {
        return dp_error_set(DP_ERR_ARG, "max-norm: %s",
                            w == NULL ? "NULL weights" : "max_norm must be > 0");
    }
    for (size_t r = 0; r < rows; r++) {
        float *row = w + r * cols;
        double norm = dp_optim_grad_norm(row, cols);
        if (norm > max_norm) {
            const float s = (float)(max_norm / (norm + 1e-7));
            for (size_t c = 0; c < cols; c++) {
                row[c] *= s;
            }
        }
    }
    return DP_OK;
}

dp_status dp_optim_set_max_norm_rows(dp_optim *opt, const dp_optim_rows *blocks, int count)
{
    if (count < 0 || (count > 0 && blocks == NULL)) {
        return dp_error_set(DP_ERR_ARG, "max-norm rows: bad block list (count %d)", count);
    }
    for (int b = 0; b < count; b++) {
        const dp_optim_rows *r = &blocks[b];
        if (r->rows == 0 || r->cols == 0 || r->offset > opt->n ||
            r->rows > (opt->n - r->offset) / r->cols) {
            return dp_error_set(DP_ERR_ARG,
                                "max-norm rows: block %d (offset %zu, %zu x %zu) is empty or "
                                "outside the %zu parameters",
                                b, r->offset, r->rows, r->cols, opt->n);
        }
    }
    dp_optim_rows *copy = NULL;
    if (count > 0) {
        copy = malloc((size_t)count * sizeof *copy);
        if (copy == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "max-norm rows: cannot allocate %d blocks", count);
        }
        memcpy(copy, blocks, (size_t)count * sizeof *copy);
    }
    free(opt->rows);
    opt->rows = copy;
    opt->n_rows = count;
    return DP_OK;
}

// --- accessors and state ---

double dp_optim_last_grad_norm(const dp_optim *opt)
{
    return opt->last_norm;
}

const dp_optim_config *dp_optim_config_get(const dp_optim *opt)
{
    return &opt->cfg;
}

size_t dp_optim_param_count(const dp_optim *opt)
{
    return opt->n;
}

int dp_optim_state_count(const dp_optim *opt)
{
    return opt->n_state;
}

dp_status dp_optim_state_at(dp_optim *opt, int i, const char **name, float **data, size_t *n)
{
    if (i < 0 || i >= opt->n_state) {
        return dp_error_set(DP_ERR_ARG, "optimizer %s: state %d out of range [0, %d)",
                            kind_names[opt->cfg.kind], i, opt->n_state);
    }
    *name = opt->state_name[i];
    *data = opt->state[i];
    *n = opt->state_n[i];
    return DP_OK;
}

long dp_optim_step_count(const dp_optim *opt)
{
    return opt->t;
}

dp_status dp_optim_step_count_set(dp_optim *opt, long count)
{
    if (count < 0) {
        return dp_error_set(DP_ERR_ARG, "optimizer: step count %ld < 0", count);
    }
    opt->t = count;
    return DP_OK;
}

// --- cfg ---

// A float key of s (s may be NULL: def), checked against [lo, hi] with file:line.
static dp_status cfg_float(const dp_cfg_section *s, const char *key, double def, double lo,
                           double hi, double *out)
{
    *out = def;
    if (s == NULL || !dp_cfg_has(s, key)) {
        return DP_OK;
    }
    DP_TRY(dp_cfg_get_float(s, key, def, out));
    if (!(*out >= lo && *out <= hi)) {
        char where[256];
        return dp_error_set(DP_ERR_CFG, "%s: [%s] %s: %g outside [%g, %g]",
                            dp_cfg_where(s, key, where, sizeof where), dp_cfg_section_header(s),
                            key, *out, lo, hi);
    }
    return DP_OK;
}

static dp_status cfg_bool(const dp_cfg_section *s, const char *key, int def, int *out)
{
    *out = def;
    return s != NULL ? dp_cfg_get_bool(s, key, def, out) : DP_OK;
}

static dp_status cfg_error(const dp_cfg_section *s, const char *key, const char *what)
{
    char where[256];
    return dp_error_set(DP_ERR_CFG, "%s: [%s] %s: %s", dp_cfg_where(s, key, where, sizeof where),
                        dp_cfg_section_header(s), key, what);
}

// [train] optimizer, checked against [net] adam.
static dp_status cfg_kind(const dp_cfg_section *net, const dp_cfg_section *train, int dk_adam,
                          dp_optim_kind *kind)
{
    const char *name = dk_adam ? "adam" : "sgd";
    if (train != NULL) {
        DP_TRY(dp_cfg_get_str(train, "optimizer", name, &name));
    }
    if (dp_optim_kind_from_name(name, kind) != DP_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dp_error_message());
        return cfg_error(train, "optimizer", msg);
    }
    if (dk_adam && *kind != DP_OPTIM_ADAM) {
        char where[256], msg[512];
        snprintf(msg, sizeof msg, "'%s' conflicts with [net] adam=1 (%s)", name,
                 dp_cfg_where(net, "adam", where, sizeof where));
        return cfg_error(train, "optimizer", msg);
    }
    return DP_OK;
}

static dp_status cfg_train_keys(dp_optim_config *c, const dp_cfg_section *t)
{
    const double big = 1e30;
    DP_TRY(cfg_bool(t, "nesterov", 0, &c->nesterov));
    DP_TRY(cfg_float(t, "dampening", 0, 0, 1, &c->dampening));
    DP_TRY(cfg_bool(t, "amsgrad", 0, &c->amsgrad));
    DP_TRY(cfg_float(t, "rho", c->rho, 0, 1, &c->rho));
    DP_TRY(cfg_float(t, "alpha", c->alpha, 0, big, &c->alpha));
    DP_TRY(cfg_bool(t, "centered", 0, &c->centered));
    DP_TRY(cfg_float(t, "lr_decay", 0, 0, big, &c->lr_decay));
    DP_TRY(cfg_float(t, "momentum_decay", c->momentum_decay, 0, big, &c->momentum_decay));
    DP_TRY(cfg_float(t, "clip_grad_norm", 0, 0, big, &c->clip_global_norm));
    DP_TRY(cfg_float(t, "max_norm", 0, 0, big, &c->max_norm));
    if (t != NULL && dp_cfg_has(t, "weight_decay_mode")) {
        const char *mode = NULL;
        DP_TRY(dp_cfg_get_str(t, "weight_decay_mode", "", &mode));
        if (strcmp(mode, "l2") == 0) {
            c->decay_mode = DP_OPTIM_DECAY_L2;
        } else if (strcmp(mode, "decoupled") == 0) {
            c->decay_mode = DP_OPTIM_DECAY_DECOUPLED;
        } else {
            return cfg_error(t, "weight_decay_mode", "expected l2 or decoupled");
        }
    }
    if (c->nesterov && c->kind == DP_OPTIM_SGD && (c->momentum <= 0 || c->dampening != 0)) {
        return cfg_error(t, "nesterov", "needs [net] momentum > 0 and dampening 0");
    }
    return DP_OK;
}

dp_status dp_optim_config_from_cfg(dp_optim_config *out, const dp_cfg *cfg)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    const dp_cfg_section *net = dp_cfg_find(cfg, "net"), *train = dp_cfg_find(cfg, "train");
    const double big = 1e30, below_one = 1.0 - 1e-12;
    int dk_adam = 0;
    DP_TRY(cfg_bool(net, "adam", 0, &dk_adam));
    DP_TRY(cfg_kind(net, train, dk_adam, &c.kind));
    DP_TRY(cfg_float(net, "learning_rate", 0.001, 0, big, &c.lr));
    // Darknet's defaults where Darknet's own optimizers run (SGD, [net] adam=1); otherwise
    // PyTorch's defaults for the kind.
    const int darknet_like = c.kind == DP_OPTIM_SGD || dk_adam;
    DP_TRY(cfg_float(net, "momentum", c.kind == DP_OPTIM_SGD ? 0.9 : 0.0, 0, big, &c.momentum));
    DP_TRY(cfg_float(net, "decay", darknet_like ? 1e-4 : DP_OPTIM_UNSET, 0, big, &c.weight_decay));
    DP_TRY(cfg_float(net, "B1", 0.9, 0, below_one, &c.beta1));
    DP_TRY(cfg_float(net, "B2", 0.999, 0, below_one, &c.beta2));
    DP_TRY(cfg_float(net, "eps", dk_adam ? 1e-7 : DP_OPTIM_UNSET, 0, big, &c.eps));
    DP_TRY(cfg_train_keys(&c, train));
    resolve_defaults(&c);
    if (check_config(&c) != DP_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dp_error_message());
        return dp_error_set(DP_ERR_CFG, "%s: %s", dp_cfg_path(cfg), msg);
    }
    *out = c;
    return DP_OK;
}
