// Blocked float/double sums shared by the CPU kernels (see cpu_internal.h): 8 float lanes that
// the compiler can vectorize without -ffast-math, blocks of DP__SUM_BLOCK added in double.
#include "nn/cpu/cpu_internal.h"

// Lanes are combined pairwise in a fixed order.
static double combine(const float lane[8], float tail)
{
    float a = (lane[0] + lane[4]) + (lane[1] + lane[5]);
    float b = (lane[2] + lane[6]) + (lane[3] + lane[7]);
    return (double)(a + b) + (double)tail;
}

static double block_sum(const float *x, size_t n)
{
    float lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            lane[l] += x[i + l];
        }
    }
    float tail = 0.0f;
    for (; i < n; i++) {
        tail += x[i];
    }
    return combine(lane, tail);
}

static double block_sum_sq_dev(const float *x, size_t n, float shift)
{
    float lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            float d = x[i + l] - shift;
            lane[l] += d * d;
        }
    }
    float tail = 0.0f;
    for (; i < n; i++) {
        float d = x[i] - shift;
        tail += d * d;
    }
    return combine(lane, tail);
}

// Both sums of dp__sum_dot_dev over one block, in one pass.
static void block_sum_dot_dev(const float *a, const float *b, size_t n, float shift, double *sum,
                              double *dot)
{
    float ls[8] = {0}, ld[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            ls[l] += a[i + l];
            ld[l] += a[i + l] * (b[i + l] - shift);
        }
    }
    float ts = 0.0f, td = 0.0f;
    for (; i < n; i++) {
        ts += a[i];
        td += a[i] * (b[i] - shift);
    }
    *sum += combine(ls, ts);
    *dot += combine(ld, td);
}

void dp__sum_dot_dev(const float *a, const float *b, size_t n, float shift, double *sum,
                     double *dot)
{
    for (size_t i = 0; i < n; i += DP__SUM_BLOCK) {
        size_t len = n - i < DP__SUM_BLOCK ? n - i : DP__SUM_BLOCK;
        block_sum_dot_dev(a + i, b + i, len, shift, sum, dot);
    }
}

double dp__sum(const float *x, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i += DP__SUM_BLOCK) {
        sum += block_sum(x + i, n - i < DP__SUM_BLOCK ? n - i : DP__SUM_BLOCK);
    }
    return sum;
}

double dp__sum_sq_dev(const float *x, size_t n, float shift)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i += DP__SUM_BLOCK) {
        sum += block_sum_sq_dev(x + i, n - i < DP__SUM_BLOCK ? n - i : DP__SUM_BLOCK, shift);
    }
    return sum;
}
