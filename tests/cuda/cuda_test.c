// See cuda_test.h.
#include "cuda_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"

void ct_skip_without_gpu(void)
{
    if (!dp_backend_have_cuda()) {
        printf("SKIP: this build has no CUDA backend (-Dcuda=disabled or no toolkit)\n");
        exit(CT_EXIT_SKIP);
    }
    dp_cuda_info info;
    if (dp_backend_cuda_query(&info) != DP_OK) {
        printf("SKIP: no CUDA device: %s\n", dp_error_message());
        exit(CT_EXIT_SKIP);
    }
    printf("device 0: %s, cc %d.%d\n", info.devices[0].name, info.devices[0].cc_major,
           info.devices[0].cc_minor);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t ct_f32_to_bf16(float f)
{
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40u); // quiet NaN
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ct_bf16_to_f32(uint16_t h)
{
    return float_of((uint32_t)h << 16);
}

uint16_t ct_f32_to_f16(float f)
{
    const uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u);
    }
    if (a >= 0x477ff000u) { // 65520 and up round to infinity
        return (uint16_t)(sign | 0x7c00u);
    }
    if (a < 0x38800000u) { // below 2^-14: a multiple of 2^-24 (subnormal or zero)
        // a * 2^24 is exact; nearbyintf rounds to nearest even in the default mode
        return (uint16_t)(sign | (uint32_t)nearbyintf(float_of(a) * 16777216.0f));
    }
    uint32_t h = ((((a >> 23) - 127u + 15u) << 10) | ((a & 0x7fffffu) >> 13));
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) {
        h++; // a carry into the exponent is the right encoding
    }
    return (uint16_t)(sign | h);
}

float ct_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31) {
        return float_of(sign | 0x7f800000u | (m << 13));
    }
    return float_of(sign | ((e - 15u + 127u) << 23) | (m << 13));
}

float ct_round(float v, dp_cuda_dtype t)
{
    if (t == DP_CUDA_BF16) {
        return ct_bf16_to_f32(ct_f32_to_bf16(v));
    }
    if (t == DP_CUDA_F16) {
        return ct_f16_to_f32(ct_f32_to_f16(v));
    }
    return v;
}

const char *ct_dtype_name(dp_cuda_dtype t)
{
    return t == DP_CUDA_F32 ? "f32" : t == DP_CUDA_BF16 ? "bf16" : "f16";
}

const char *ct_layout_name(dp_cuda_layout l)
{
    return l == DP_CUDA_NHWC ? "NHWC" : "NCHW";
}
