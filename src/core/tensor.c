// Shape arithmetic and tensor views; no allocation here.
#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

size_t dp_dtype_bytes(dp_dtype dtype)
{
    switch (dtype) {
    case DP_DTYPE_F32:
    case DP_DTYPE_I32:
        return 4;
    case DP_DTYPE_F16:
    case DP_DTYPE_BF16:
        return 2;
    case DP_DTYPE_U8:
        return 1;
    }
    DP_ASSERT(!"unknown dtype");
}

const char *dp_dtype_name(dp_dtype dtype)
{
    static const char *const names[] = {"f32", "f16", "bf16", "u8", "i32"};
    DP_ASSERT((unsigned)dtype < sizeof names / sizeof names[0]);
    return names[dtype];
}

dp_shape dp_shape_make(int ndim, const int64_t *dims)
{
    DP_ASSERT(ndim >= 0 && ndim <= DP_MAX_DIMS);
    dp_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        s.dims[i] = dims[i];
    }
    return s;
}

int64_t dp_shape_count(const dp_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        n *= s->dims[i];
    }
    return n;
}

int dp_shape_equal(const dp_shape *a, const dp_shape *b)
{
    if (a->ndim != b->ndim) {
        return 0;
    }
    for (int i = 0; i < a->ndim; i++) {
        if (a->dims[i] != b->dims[i]) {
            return 0;
        }
    }
    return 1;
}

char *dp_shape_str(const dp_shape *s, char *buf, size_t size)
{
    if (size == 0) {
        return buf;
    }
    if (s->ndim == 0) {
        snprintf(buf, size, "scalar");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ndim && used < size; i++) {
        int n = snprintf(buf + used, size - used, i == 0 ? "%lld" : "x%lld",
                         (long long)s->dims[i]);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
    return buf;
}

size_t dp_tensor_bytes(const dp_tensor *t)
{
    return (size_t)dp_shape_count(&t->shape) * dp_dtype_bytes(t->dtype);
}

dp_tensor dp_tensor_cpu(void *data, dp_shape shape, dp_dtype dtype)
{
    dp_tensor t = {data, shape, dtype, {DP_DEVICE_CPU, 0}};
    return t;
}
