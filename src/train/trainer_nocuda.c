// The device side of the trainer in a build without CUDA (trainer_cuda.c otherwise): the
// backend choice never picks CUDA here (core/backend.c), so these only answer that the build
// has no GPU support, should anything call them.
#include "core/error.h"
#include "train/trainer_internal.h"

static dp_status no_cuda(void)
{
    return dp_error_set(DP_ERR_UNSUPPORTED, "this dptrain was built without CUDA (-Dcuda)");
}

dp_status dp__train_cuda_start(trainer *t)
{
    (void)t;
    return no_cuda();
}

void dp__train_cuda_stop(trainer *t)
{
    t->cuda = NULL;
}

dp_status dp__train_cuda_upload(trainer *t)
{
    (void)t;
    return no_cuda();
}

dp_status dp__train_cuda_download(trainer *t)
{
    (void)t;
    return no_cuda();
}

dp_status dp__train_cuda_buffers(trainer *t, int to_device)
{
    (void)t;
    (void)to_device;
    return no_cuda();
}

dp_status dp__train_cuda_step(trainer *t, const dp_pipeline_batch *b)
{
    (void)t;
    (void)b;
    return no_cuda();
}

dp_status dp__train_cuda_flush(trainer *t)
{
    (void)t;
    return no_cuda();
}

dp_status dp__train_cuda_sync(trainer *t)
{
    (void)t;
    return no_cuda();
}

dp_status dp__train_cuda_eval_batch(trainer *t, const float *images, const int32_t *labels, int n,
                                    int read, dp_net_metrics *out)
{
    (void)t;
    (void)images;
    (void)labels;
    (void)n;
    (void)read;
    (void)out;
    return no_cuda();
}

void *dp__train_cuda_host_alloc(size_t bytes, void *ctx)
{
    (void)bytes;
    (void)ctx;
    return NULL;
}

void dp__train_cuda_host_free(void *ptr, void *ctx)
{
    (void)ptr;
    (void)ctx;
}
