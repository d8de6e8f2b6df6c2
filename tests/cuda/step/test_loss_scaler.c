// The fp16 loss-scale state machine (host code, so it runs without a GPU) and the guard's
// verdicts: growth after growth_interval good steps, backoff and skip on overflow, the floor and
// the ceiling, the error at the floor, refused settings.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "nn/cuda/step/step_ops.h"

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "FAIL: %s (%s)\n", what, dp_error_message());
        failures++;
    }
}

int main(void)
{
    if (!dp_backend_have_cuda()) {
        printf("SKIP: this build has no CUDA backend\n");
        return 77;
    }
    const dp_cuda_guard good = {.first_bad = UINT64_MAX, .clip_scale = 1.0f};
    dp_cuda_guard overflow = good;
    overflow.n_bad = 2, overflow.first_bad = 10, overflow.last_bad = 20;
    dp_cuda_guard bad_norm = good;
    bad_norm.norm_bad = 1, bad_norm.norm = INFINITY;
    check(dp_cuda_guard_check(&good) == DP_OK, "a clean guard is OK");
    check(dp_cuda_guard_check(&overflow) == DP_ERR_DATA &&
              strstr(dp_error_message(), "between elements 10 and 20") != NULL,
          "an overflow guard names the range");
    check(dp_cuda_guard_check(&bad_norm) == DP_ERR_DATA &&
              strstr(dp_error_message(), "norm is inf") != NULL,
          "a bad-norm guard says so");

    dp_cuda_loss_scaler s = DP_CUDA_LOSS_SCALER_INIT;
    s.growth_interval = 3;
    int skipped = -1;
    for (int i = 0; i < 2; i++) {
        check(dp_cuda_loss_scaler_update(&s, &good, &skipped) == DP_OK && !skipped, "good step");
    }
    check(s.scale == 65536.0f && s.good_steps == 2, "no growth before the interval");
    check(dp_cuda_loss_scaler_update(&s, &good, &skipped) == DP_OK && !skipped, "good step");
    check(s.scale == 131072.0f && s.good_steps == 0, "x2 after 3 good steps");
    check(dp_cuda_loss_scaler_update(&s, &good, NULL) == DP_OK, "good step");
    check(dp_cuda_loss_scaler_update(&s, &overflow, &skipped) == DP_OK && skipped == 1,
          "overflow skips");
    check(s.scale == 65536.0f && s.good_steps == 0 && s.skipped == 1, "/2 and count restarts");
    check(dp_cuda_loss_scaler_update(&s, &bad_norm, &skipped) == DP_OK && skipped == 1,
          "a bad norm skips too");
    check(s.scale == 32768.0f && s.skipped == 2, "/2 again");

    s.scale = s.max_scale;
    s.good_steps = 0;
    for (int i = 0; i < 3; i++) {
        check(dp_cuda_loss_scaler_update(&s, &good, NULL) == DP_OK, "good step at the ceiling");
    }
    check(s.scale == s.max_scale, "no growth past max_scale");

    s.scale = 2.0f * s.min_scale;
    check(dp_cuda_loss_scaler_update(&s, &overflow, &skipped) == DP_OK && skipped,
          "overflow down to the floor");
    check(s.scale == s.min_scale, "at the floor");
    check(dp_cuda_loss_scaler_update(&s, &overflow, &skipped) == DP_ERR_DATA && skipped &&
              strstr(dp_error_message(), "diverged") != NULL,
          "an overflow at the floor is an error");

    dp_cuda_loss_scaler bad = DP_CUDA_LOSS_SCALER_INIT;
    bad.backoff = 1.0f;
    check(dp_cuda_loss_scaler_update(&bad, &good, NULL) == DP_ERR_ARG, "backoff 1 is refused");
    bad = (dp_cuda_loss_scaler)DP_CUDA_LOSS_SCALER_INIT;
    bad.scale = NAN;
    check(dp_cuda_loss_scaler_update(&bad, &good, NULL) == DP_ERR_ARG, "a NaN scale is refused");
    printf("%s: test_cuda_step_loss_scaler (%d failed check(s))\n", failures ? "FAIL" : "PASS",
           failures);
    return failures ? 1 : 0;
}
