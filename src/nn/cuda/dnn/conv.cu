// Convolution plans on cuDNN's legacy convolution API (still in cuDNN 9, deprecated but
// complete): descriptors and one algorithm per pass chosen when the plan is built, then
// forward, backward data and backward filter as single cuDNN calls plus the bias and
// weight-copy kernels of dnn_kernels.cu. See dnn.h for the contracts.
#include <limits.h>
#include <stdlib.h>

#include "nn/cuda/dnn/dnn_internal.cuh"

enum { PASS_FWD = 0, PASS_DATA, PASS_FILTER, PASS_COUNT };

struct dp_cuda_conv_plan {
    dp_cuda_ctx *ctx; // borrowed
    dp_conv_params p; // resolved
    dp_cuda_dtype dtype;
    dp_cuda_layout layout;
    dp__dnn_filter filt; // the filter as cuDNN reads it
    dp__dnn_chan ychan;  // the output as the bias kernels see it
    void *wc;            // (K, C / groups, R, S) in filt's layout and dtype, device; NULL: master
    size_t wc_bytes;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd[PASS_COUNT]; // one per pass: each has its algorithm's math
    cudnnConvolutionFwdAlgo_t fwd_algo;
    cudnnConvolutionBwdDataAlgo_t data_algo;
    cudnnConvolutionBwdFilterAlgo_t filter_algo;
    cudnnMathType_t math[PASS_COUNT];
    int deterministic;
    size_t lib_ws[PASS_COUNT]; // what cuDNN's call of each pass is given
    size_t dw_bytes;           // copy plans: the low-precision dw at the workspace's start
    size_t bias_ws;            // scratch of the bias gradient (after dw_bytes)
    size_t ws_bytes;           // max over the passes of their whole need
};

// --- algorithm choice ---

// Index of a usable result: succeeded, deterministic when asked, no tensor-op math when TF32 is
// not allowed (cuDNN may offer tensor-op variants whatever the descriptor says), and a
// workspace under the cap. Results come ordered best first (measured or heuristic): the first
// usable one, or with lowest_id the usable one of the lowest algorithm number, a choice that
// does not depend on timing. -1 when none is usable.
template <typename Perf>
static int pick(const Perf *perf, int n, int deterministic, int fma_only, int lowest_id)
{
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) {
            continue;
        }
        if (deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) {
            continue;
        }
        if (fma_only && (perf[i].mathType == CUDNN_TENSOR_OP_MATH ||
                         perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) {
            continue;
        }
        if (perf[i].memory > DP_CUDA_CONV_WS_LIMIT_BYTES) {
            continue;
        }
        if (!lowest_id) {
            return i;
        }
        if (best < 0 || (int)perf[i].algo < (int)perf[best].algo) {
            best = i;
        }
    }
    return best;
}

// Sets the math type of pass's descriptor to what the chosen result ran with; strict float32
// gets FMA_MATH whatever the result says (cuDNN's default math would allow TF32).
static dp_status set_math(dp_cuda_conv_plan *pl, int pass, cudnnMathType_t math, int fma_only)
{
    pl->math[pass] = fma_only ? CUDNN_FMA_MATH : math;
    DP_CUDNN_TRY(cudnnSetConvolutionMathType(pl->cd[pass], pl->math[pass]));
    return DP_OK;
}

static dp_status no_algo(const char *pass, int n, int deterministic, int fma_only)
{
    return dp_error_set(DP_ERR_UNSUPPORTED,
                        "cuDNN has no %s%salgorithm for %s with a workspace <= %zu MiB "
                        "(%d candidates)",
                        deterministic ? "deterministic " : "", fma_only ? "FMA-only " : "", pass,
                        DP_CUDA_CONV_WS_LIMIT_BYTES >> 20, n);
}

static dp_status choose_fwd(dp_cuda_conv_plan *pl, cudnnHandle_t h, int fma_only)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    cudnnConvolutionDescriptor_t cd = pl->cd[PASS_FWD];
    int i = -1;
    if (pl->deterministic) {
        DP_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(
            h, pl->xd, pl->wd, cd, pl->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        i = pick(perf, n, 1, fma_only, 0);
    }
    if (i < 0) {
        DP_CUDNN_TRY(cudnnFindConvolutionForwardAlgorithm(
            h, pl->xd, pl->wd, cd, pl->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        i = pick(perf, n, pl->deterministic, fma_only, pl->deterministic);
    }
    if (i < 0) {
        return no_algo("forward", n, pl->deterministic, fma_only);
    }
    pl->fwd_algo = perf[i].algo;
    DP_TRY(set_math(pl, PASS_FWD, perf[i].mathType, fma_only));
    DP_CUDNN_TRY(cudnnGetConvolutionForwardWorkspaceSize(h, pl->xd, pl->wd, cd, pl->yd,
                                                         pl->fwd_algo, &pl->lib_ws[PASS_FWD]));
    return DP_OK;
}

static dp_status choose_data(dp_cuda_conv_plan *pl, cudnnHandle_t h, int fma_only)
{
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    cudnnConvolutionDescriptor_t cd = pl->cd[PASS_DATA];
    int i = -1;
    if (pl->deterministic) {
        DP_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            h, pl->wd, pl->yd, cd, pl->xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        i = pick(perf, n, 1, fma_only, 0);
    }
    if (i < 0) {
        DP_CUDNN_TRY(cudnnFindConvolutionBackwardDataAlgorithm(
            h, pl->wd, pl->yd, cd, pl->xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        i = pick(perf, n, pl->deterministic, fma_only, pl->deterministic);
    }
    if (i < 0) {
        return no_algo("backward data", n, pl->deterministic, fma_only);
    }
    pl->data_algo = perf[i].algo;
    DP_TRY(set_math(pl, PASS_DATA, perf[i].mathType, fma_only));
    DP_CUDNN_TRY(cudnnGetConvolutionBackwardDataWorkspaceSize(
        h, pl->wd, pl->yd, cd, pl->xd, pl->data_algo, &pl->lib_ws[PASS_DATA]));
    return DP_OK;
}

static dp_status choose_filter(dp_cuda_conv_plan *pl, cudnnHandle_t h, int fma_only)
{
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    cudnnConvolutionDescriptor_t cd = pl->cd[PASS_FILTER];
    int i = -1;
    if (pl->deterministic) {
        DP_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            h, pl->xd, pl->yd, cd, pl->wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        i = pick(perf, n, 1, fma_only, 0);
    }
    if (i < 0) {
        DP_CUDNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithm(
            h, pl->xd, pl->yd, cd, pl->wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        i = pick(perf, n, pl->deterministic, fma_only, pl->deterministic);
    }
    if (i < 0) {
        return no_algo("backward filter", n, pl->deterministic, fma_only);
    }
    pl->filter_algo = perf[i].algo;
    DP_TRY(set_math(pl, PASS_FILTER, perf[i].mathType, fma_only));
    DP_CUDNN_TRY(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, pl->xd, pl->yd, cd, pl->wd, pl->filter_algo, &pl->lib_ws[PASS_FILTER]));
    return DP_OK;
}

// --- plan ---

// cuDNN's legacy API indexes with int: every tensor must stay under 2^31 elements.
static int fits_int(int a, int b, int c, int d)
{
    return (long long)a * b * c * d <= (long long)INT_MAX;
}

static dp_status make_descriptors(dp_cuda_conv_plan *pl, cudnnMathType_t math)
{
    const dp_conv_params *p = &pl->p;
    const cudnnTensorFormat_t fmt =
        pl->layout == DP_CUDA_NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    const cudnnDataType_t t = dp__dnn_cudnn_type(pl->dtype);
    DP_CUDNN_TRY(cudnnCreateTensorDescriptor(&pl->xd));
    DP_CUDNN_TRY(cudnnCreateTensorDescriptor(&pl->yd));
    DP_CUDNN_TRY(cudnnCreateFilterDescriptor(&pl->wd));
    DP_CUDNN_TRY(cudnnSetTensor4dDescriptor(pl->xd, fmt, t, p->N, p->C, p->H, p->W));
    DP_CUDNN_TRY(cudnnSetTensor4dDescriptor(pl->yd, fmt, t, p->N, p->K, p->out_h, p->out_w));
    DP_CUDNN_TRY(cudnnSetFilter4dDescriptor(pl->wd, t, fmt, p->K, p->C / p->groups, p->R, p->S));
    for (int i = 0; i < PASS_COUNT; i++) {
        DP_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&pl->cd[i]));
        DP_CUDNN_TRY(cudnnSetConvolution2dDescriptor(pl->cd[i], p->pad_h, p->pad_w, p->stride_h,
                                                     p->stride_w, p->dil_h, p->dil_w,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        DP_CUDNN_TRY(cudnnSetConvolutionGroupCount(pl->cd[i], p->groups));
        DP_CUDNN_TRY(cudnnSetConvolutionMathType(pl->cd[i], math));
    }
    // cuDNN's idea of the output must be ours (dp_conv_params_resolve), or every index is off.
    int n, k, h, w;
    DP_CUDNN_TRY(
        cudnnGetConvolution2dForwardOutputDim(pl->cd[PASS_FWD], pl->xd, pl->wd, &n, &k, &h, &w));
    if (n != p->N || k != p->K || h != p->out_h || w != p->out_w) {
        return dp_error_set(
            DP_ERR_INTERNAL,
            "cuDNN's output dims (%d, %d, %d, %d) differ from ours (%d, %d, %d, %d)", n, k, h, w,
            p->N, p->K, p->out_h, p->out_w);
    }
    return DP_OK;
}

// Fills the workspace layout: the forward and backward-data passes need cuDNN's workspace;
// backward filter needs the low-precision dw (copy plans) followed by the larger of cuDNN's
// workspace and the bias-gradient partials, which run after cuDNN on the same stream.
static void plan_workspace(dp_cuda_conv_plan *pl)
{
    pl->dw_bytes = pl->wc ? dp__dnn_align(pl->wc_bytes) : 0;
    pl->bias_ws = dp__dnn_bias_grad_ws_bytes(&pl->ychan);
    size_t tail = pl->lib_ws[PASS_FILTER] > pl->bias_ws ? pl->lib_ws[PASS_FILTER] : pl->bias_ws;
    size_t ws = pl->dw_bytes + dp__dnn_align(tail);
    if (pl->lib_ws[PASS_FWD] > ws) {
        ws = pl->lib_ws[PASS_FWD];
    }
    if (pl->lib_ws[PASS_DATA] > ws) {
        ws = pl->lib_ws[PASS_DATA];
    }
    pl->ws_bytes = dp__dnn_align(ws);
}

static dp_status plan_build(dp_cuda_conv_plan *pl)
{
    const dp_conv_params *p = &pl->p;
    const dp_cuda_ctx_params *cp = dp_cuda_ctx_params_of(pl->ctx);
    cudnnHandle_t h = (cudnnHandle_t)dp_cuda_ctx_cudnn(pl->ctx);
    if (!fits_int(p->N, p->C, p->H, p->W) || !fits_int(p->N, p->K, p->out_h, p->out_w)) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "a tensor has 2^31 elements or more (cuDNN's legacy API indexes "
                            "with int); use a smaller batch");
    }
    pl->deterministic = cp->deterministic != 0;
    // float32 under precision fp32: FMA only (cuDNN's default math allows TF32 on sm_80+).
    const int fma_only = pl->dtype == DP_CUDA_F32 && cp->precision == DP_CUDA_PREC_FP32;
    const cudnnMathType_t math = pl->dtype != DP_CUDA_F32 ? CUDNN_TENSOR_OP_MATH
                                 : fma_only               ? CUDNN_FMA_MATH
                                                          : CUDNN_DEFAULT_MATH;
    const int rs = p->R * p->S;
    pl->filt = dp__dnn_filter{p->K, p->C / p->groups, rs, pl->layout};
    pl->ychan = dp__dnn_chan{p->N, p->K, p->out_h * p->out_w, pl->layout};
    if (pl->dtype != DP_CUDA_F32 || (pl->layout == DP_CUDA_NHWC && rs > 1)) {
        pl->wc_bytes =
            (size_t)p->K * (size_t)(p->C / p->groups) * (size_t)rs * dp_cuda_dtype_size(pl->dtype);
        DP_TRY(dp_cuda_malloc(pl->ctx, &pl->wc, pl->wc_bytes));
    }
    DP_TRY(make_descriptors(pl, math));
    DP_TRY(choose_fwd(pl, h, fma_only));
    DP_TRY(choose_data(pl, h, fma_only));
    DP_TRY(choose_filter(pl, h, fma_only));
    plan_workspace(pl);
    // cudnnFind* ran kernels and synchronized; anything it left broken shows up now.
    return dp_cuda_check(pl->ctx, "cuDNN algorithm search");
}

extern "C" dp_status dp_cuda_conv_plan_create(dp_cuda_conv_plan **out, dp_cuda_ctx *ctx,
                                              const dp_conv_params *p, dp_cuda_dtype dtype,
                                              dp_cuda_layout layout)
{
    DP__DNN_NEED(out, "dp_cuda_conv_plan_create");
    *out = NULL;
    DP__DNN_NEED(ctx, "dp_cuda_conv_plan_create");
    DP__DNN_NEED(p, "dp_cuda_conv_plan_create");
    if (dtype != DP_CUDA_F32 && dtype != DP_CUDA_BF16 && dtype != DP_CUDA_F16) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_conv_plan_create: unknown dtype %d", (int)dtype);
    }
    if (layout != DP_CUDA_NCHW && layout != DP_CUDA_NHWC) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_conv_plan_create: unknown layout %d", (int)layout);
    }
    dp_conv_params q = *p;
    DP_TRY(dp_conv_params_resolve(&q));
    dp_cuda_conv_plan *pl = (dp_cuda_conv_plan *)calloc(1, sizeof *pl);
    if (pl == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "dp_cuda_conv_plan_create: out of host memory");
    }
    pl->ctx = ctx;
    pl->p = q;
    pl->dtype = dtype;
    pl->layout = layout;
    dp_status st = plan_build(pl);
    if (st != DP_OK) {
        dp_cuda_conv_plan_destroy(pl);
        return dp_error_context(st,
                                "convolution plan (N %d, C %d, %dx%d, K %d, %dx%d, stride %d,%d, "
                                "pad %d,%d, dilation %d,%d, groups %d, %s %s)",
                                q.N, q.C, q.H, q.W, q.K, q.R, q.S, q.stride_h, q.stride_w, q.pad_h,
                                q.pad_w, q.dil_h, q.dil_w, q.groups,
                                dtype == DP_CUDA_F32    ? "f32"
                                : dtype == DP_CUDA_BF16 ? "bf16"
                                                        : "f16",
                                layout == DP_CUDA_NHWC ? "NHWC" : "NCHW");
    }
    *out = pl;
    return DP_OK;
}

extern "C" void dp_cuda_conv_plan_destroy(dp_cuda_conv_plan *plan)
{
    if (plan == NULL) {
        return;
    }
    // Return codes are ignored: destroy runs on error paths and has no caller to report to.
    for (int i = 0; i < PASS_COUNT; i++) {
        if (plan->cd[i] != NULL) {
            (void)cudnnDestroyConvolutionDescriptor(plan->cd[i]);
        }
    }
    if (plan->wd != NULL) {
        (void)cudnnDestroyFilterDescriptor(plan->wd);
    }
    if (plan->yd != NULL) {
        (void)cudnnDestroyTensorDescriptor(plan->yd);
    }
    if (plan->xd != NULL) {
        (void)cudnnDestroyTensorDescriptor(plan->xd);
    }
    dp_cuda_free(plan->ctx, plan->wc);
    free(plan);
}

extern "C" size_t dp_cuda_conv_plan_workspace_bytes(const dp_cuda_conv_plan *plan)
{
    return plan->ws_bytes;
}

extern "C" const dp_conv_params *dp_cuda_conv_plan_params(const dp_cuda_conv_plan *plan)
{
    return &plan->p;
}

extern "C" void dp_cuda_conv_plan_get_info(const dp_cuda_conv_plan *plan,
                                           dp_cuda_conv_plan_info *info)
{
    info->fwd_algo = (int)plan->fwd_algo;
    info->bwd_data_algo = (int)plan->data_algo;
    info->bwd_filter_algo = (int)plan->filter_algo;
    info->fwd_math = (int)plan->math[PASS_FWD];
    info->bwd_data_math = (int)plan->math[PASS_DATA];
    info->bwd_filter_math = (int)plan->math[PASS_FILTER];
    info->deterministic = plan->deterministic;
    info->weight_copy = plan->wc != NULL;
    info->workspace_bytes = plan->ws_bytes;
    info->weight_copy_bytes = plan->wc_bytes;
}

// --- launchers ---

extern "C" dp_status dp_cuda_conv_plan_cast_weights(dp_cuda_conv_plan *plan, const float *w)
{
    DP__DNN_NEED(plan, "dp_cuda_conv_plan_cast_weights");
    DP__DNN_NEED(w, "dp_cuda_conv_plan_cast_weights");
    if (plan->wc == NULL) {
        return DP_OK;
    }
    return dp__dnn_weights_cast(plan->ctx, plan->wc, plan->dtype, w, &plan->filt);
}

extern "C" dp_status dp_cuda_conv_forward(dp_cuda_conv_plan *plan, void *y, const void *x,
                                          const float *w, const float *bias, void *ws,
                                          size_t ws_bytes)
{
    static const char what[] = "dp_cuda_conv_forward";
    DP__DNN_NEED(plan, what);
    DP__DNN_NEED(y, what);
    DP__DNN_NEED(x, what);
    DP__DNN_NEED(w, what);
    DP_TRY(dp__dnn_check_ws(what, ws, ws_bytes, plan->ws_bytes));
    cudnnHandle_t h = (cudnnHandle_t)dp_cuda_ctx_cudnn(plan->ctx);
    const float one = 1.0f, zero = 0.0f;
    const void *wp = plan->wc != NULL ? plan->wc : (const void *)w;
    DP_CUDNN_TRY(cudnnConvolutionForward(h, &one, plan->xd, x, plan->wd, wp, plan->cd[PASS_FWD],
                                         plan->fwd_algo, ws, plan->lib_ws[PASS_FWD], &zero,
                                         plan->yd, y));
    if (bias != NULL) {
        DP_TRY(dp__dnn_bias_add(plan->ctx, y, plan->dtype, bias, &plan->ychan));
    }
    return DP_OK;
}

extern "C" dp_status dp_cuda_conv_backward_data(dp_cuda_conv_plan *plan, void *dx, const void *dy,
                                                const float *w, int accumulate, void *ws,
                                                size_t ws_bytes)
{
    static const char what[] = "dp_cuda_conv_backward_data";
    DP__DNN_NEED(plan, what);
    DP__DNN_NEED(dx, what);
    DP__DNN_NEED(dy, what);
    DP__DNN_NEED(w, what);
    DP_TRY(dp__dnn_check_ws(what, ws, ws_bytes, plan->ws_bytes));
    cudnnHandle_t h = (cudnnHandle_t)dp_cuda_ctx_cudnn(plan->ctx);
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const void *wp = plan->wc != NULL ? plan->wc : (const void *)w;
    DP_CUDNN_TRY(cudnnConvolutionBackwardData(h, &one, plan->wd, wp, plan->yd, dy,
                                              plan->cd[PASS_DATA], plan->data_algo, ws,
                                              plan->lib_ws[PASS_DATA], &beta, plan->xd, dx));
    return DP_OK;
}

extern "C" dp_status dp_cuda_conv_backward_filter(dp_cuda_conv_plan *plan, float *dw, float *db,
                                                  const void *dy, const void *x, int accumulate,
                                                  void *ws, size_t ws_bytes)
{
    static const char what[] = "dp_cuda_conv_backward_filter";
    DP__DNN_NEED(plan, what);
    DP__DNN_NEED(dw, what);
    DP__DNN_NEED(dy, what);
    DP__DNN_NEED(x, what);
    DP_TRY(dp__dnn_check_ws(what, ws, ws_bytes, plan->ws_bytes));
    cudnnHandle_t h = (cudnnHandle_t)dp_cuda_ctx_cudnn(plan->ctx);
    const float one = 1.0f, zero = 0.0f, beta = accumulate ? 1.0f : 0.0f;
    char *tail = (char *)ws + plan->dw_bytes;
    if (plan->wc == NULL) {
        DP_CUDNN_TRY(cudnnConvolutionBackwardFilter(
            h, &one, plan->xd, x, plan->yd, dy, plan->cd[PASS_FILTER], plan->filter_algo, tail,
            plan->lib_ws[PASS_FILTER], &beta, plan->wd, dw));
    } else {
        DP_CUDNN_TRY(cudnnConvolutionBackwardFilter(
            h, &one, plan->xd, x, plan->yd, dy, plan->cd[PASS_FILTER], plan->filter_algo, tail,
            plan->lib_ws[PASS_FILTER], &zero, plan->wd, ws));
        DP_TRY(dp__dnn_grad_add(plan->ctx, dw, ws, plan->dtype, &plan->filt, accumulate));
    }
    if (db != NULL) {
        DP_TRY(dp__dnn_bias_grad(plan->ctx, db, dy, plan->dtype, &plan->ychan, accumulate, tail));
    }
    return DP_OK;
}
