// Shapes and non-owning tensor views. A dp_tensor never owns its data: memory comes from an
// arena or a flat parameter buffer, and the view lives no longer than that owner.
#ifndef DP_CORE_TENSOR_H
#define DP_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

enum { DP_MAX_DIMS = 6 };

typedef enum dp_dtype {
    DP_DTYPE_F32 = 0,
    DP_DTYPE_F16,
    DP_DTYPE_BF16,
    DP_DTYPE_U8,
    DP_DTYPE_I32,
} dp_dtype;

typedef enum dp_device_kind {
    DP_DEVICE_CPU = 0,
    DP_DEVICE_CUDA,
} dp_device_kind;

typedef struct dp_device {
    dp_device_kind kind;
    int index; // CUDA device ordinal; 0 for the CPU
} dp_device;

// Dims are outermost first; for activations (N, C, H, W) NCHW unless the field says otherwise.
typedef struct dp_shape {
    int ndim;
    int64_t dims[DP_MAX_DIMS];
} dp_shape;

typedef struct dp_tensor {
    void *data; // borrowed; memory space given by device
    dp_shape shape;
    dp_dtype dtype;
    dp_device device;
} dp_tensor;

// Bytes of one element of dtype (2 for F16/BF16).
size_t dp_dtype_bytes(dp_dtype dtype);
const char *dp_dtype_name(dp_dtype dtype);

// Builds a shape from ndim dims; ndim must be in [0, DP_MAX_DIMS] (asserted).
dp_shape dp_shape_make(int ndim, const int64_t *dims);
static inline dp_shape dp_shape_4d(int64_t n, int64_t c, int64_t h, int64_t w)
{
    dp_shape s = {4, {n, c, h, w, 0, 0}};
    return s;
}

// Number of elements (1 for a 0-d shape).
int64_t dp_shape_count(const dp_shape *s);
int dp_shape_equal(const dp_shape *a, const dp_shape *b);

// Writes "2x3x4" (or "scalar") into buf of size bytes and returns buf.
char *dp_shape_str(const dp_shape *s, char *buf, size_t size);

// Element count times element size.
size_t dp_tensor_bytes(const dp_tensor *t);

// A view of data with the given shape on the CPU.
dp_tensor dp_tensor_cpu(void *data, dp_shape shape, dp_dtype dtype);

#endif
