// Shapes and views.
#include <criterion/criterion.h>
#include <string.h>

#include "core/tensor.h"

Test(tensor, shape_count_equality_and_text)
{
    dp_shape s = dp_shape_4d(2, 3, 4, 5);
    cr_expect_eq(dp_shape_count(&s), 120);
    char buf[64];
    cr_expect_str_eq(dp_shape_str(&s, buf, sizeof buf), "2x3x4x5");
    int64_t d[2] = {6, 20};
    dp_shape t = dp_shape_make(2, d);
    cr_expect_not(dp_shape_equal(&s, &t));
    cr_expect(dp_shape_equal(&s, &s));
    dp_shape scalar = dp_shape_make(0, NULL);
    cr_expect_eq(dp_shape_count(&scalar), 1);
    cr_expect_str_eq(dp_shape_str(&scalar, buf, sizeof buf), "scalar");
}

Test(tensor, view_bytes_follow_dtype)
{
    float x[24];
    dp_tensor t = dp_tensor_cpu(x, dp_shape_4d(1, 2, 3, 4), DP_DTYPE_F32);
    cr_expect_eq(dp_tensor_bytes(&t), sizeof x);
    t.dtype = DP_DTYPE_BF16;
    cr_expect_eq(dp_tensor_bytes(&t), 48);
    cr_expect_eq(t.device.kind, DP_DEVICE_CPU);
    cr_expect_str_eq(dp_dtype_name(DP_DTYPE_U8), "u8");
}

Test(tensor, shape_text_truncates_safely)
{
    dp_shape s = dp_shape_4d(1000, 1000, 1000, 1000);
    char buf[8];
    dp_shape_str(&s, buf, sizeof buf);
    cr_expect_eq(strlen(buf), 7);
}
