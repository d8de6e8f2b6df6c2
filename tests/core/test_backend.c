// The backend choice ([train] backend= and precision=): names parse and print, the resolution
// against a described machine (no device, Ampere/Hopper, Turing, several devices per node), and
// on this machine: backend=cuda without a usable GPU is a clear error naming the reason, both
// from the registry and from a whole dptrain run, whose message also names the cfg line.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "train/trainer.h"

static dp_cuda_info machine(int count, int cc_major, int cc_minor)
{
    dp_cuda_info info;
    memset(&info, 0, sizeof info);
    info.runtime_version = 13000;
    info.driver_version = 13000;
    info.device_count = count;
    for (int i = 0; i < count; i++) {
        info.devices[i].ordinal = i;
        snprintf(info.devices[i].name, sizeof info.devices[i].name, "GPU %d", i);
        info.devices[i].cc_major = cc_major;
        info.devices[i].cc_minor = cc_minor;
        info.devices[i].total_mem_bytes = (size_t)80 << 30;
        info.devices[i].multiprocessors = 132;
    }
    return info;
}

// Whether this build and machine have a usable GPU (then the no-GPU tests cannot run).
static int gpu_usable(void)
{
    dp_cuda_info info;
    return dp_backend_have_cuda() && dp_backend_cuda_query(&info) == DP_OK;
}

Test(backend, names_parse_and_print)
{
    dp_backend_kind k = DP_BACKEND_CPU;
    cr_expect_eq(dp_backend_kind_parse(&k, "auto"), DP_OK);
    cr_expect_eq(k, DP_BACKEND_AUTO);
    cr_expect_eq(dp_backend_kind_parse(&k, "CUDA"), DP_OK);
    cr_expect_eq(k, DP_BACKEND_CUDA);
    cr_expect_eq(dp_backend_kind_parse(&k, "cpu"), DP_OK);
    cr_expect_eq(k, DP_BACKEND_CPU);
    cr_expect_eq(dp_backend_kind_parse(&k, "gpu"), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "'gpu'"), "%s", dp_error_message());
    cr_expect_str_eq(dp_backend_kind_str(DP_BACKEND_CUDA), "cuda");
    cr_expect_str_eq(dp_backend_kind_str((dp_backend_kind)7), "unknown");

    const char *names[] = {"fp32", "tf32", "bf16", "fp16"};
    for (int i = 0; i < 4; i++) {
        dp_precision p = DP_PRECISION_AUTO;
        cr_expect_eq(dp_precision_parse(&p, names[i]), DP_OK);
        cr_expect_eq(p, (dp_precision)i, "%s", names[i]);
        cr_expect_str_eq(dp_precision_str(p), names[i]);
    }
    dp_precision p = DP_PRECISION_FP32;
    cr_expect_eq(dp_precision_parse(&p, "auto"), DP_OK);
    cr_expect_eq(p, DP_PRECISION_AUTO);
    cr_expect_eq(dp_precision_parse(&p, "fp8"), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "'fp8'"), "%s", dp_error_message());
}

Test(backend, cpu_is_fp32_and_refuses_other_precisions)
{
    dp_backend_choice c;
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_CPU, DP_PRECISION_AUTO, 0, NULL, NULL), DP_OK);
    cr_expect_eq(c.kind, DP_BACKEND_CPU);
    cr_expect_eq(c.precision, DP_PRECISION_FP32);
    cr_expect_eq(c.device, -1);
    char line[400];
    cr_expect_str_eq(dp_backend_choice_str(&c, line, sizeof line), "cpu");
    dp_cuda_info gpu = machine(1, 9, 0);
    cr_expect_eq(dp_backend_resolve(&c, DP_BACKEND_CPU, DP_PRECISION_BF16, 0, &gpu, NULL),
                 DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "precision=bf16 needs backend=cuda"), "%s",
                       dp_error_message());
}

Test(backend, auto_without_a_device_is_the_cpu_saying_why)
{
    dp_backend_choice c;
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_AUTO, DP_PRECISION_BF16, 0, NULL,
                                    "cudaGetDeviceCount: no CUDA-capable device"),
                 DP_OK);
    cr_expect_eq(c.kind, DP_BACKEND_CPU);
    cr_expect_eq(c.precision, DP_PRECISION_FP32);
    cr_expect_str_eq(c.why_cpu, "cudaGetDeviceCount: no CUDA-capable device");
}

Test(backend, cuda_without_a_device_is_an_error_naming_the_reason)
{
    dp_backend_choice c;
    cr_expect_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_AUTO, 0, NULL,
                                    "this dptrain was built without CUDA (-Dcuda)"),
                 DP_ERR_UNSUPPORTED);
    cr_expect_str_eq(dp_error_message(),
                     "backend=cuda: no usable GPU: this dptrain was built without CUDA (-Dcuda)");
}

Test(backend, precision_defaults_to_bf16_from_ampere_and_fp32_below)
{
    dp_backend_choice c;
    dp_cuda_info hopper = machine(1, 9, 0), turing = machine(1, 7, 5);
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_AUTO, DP_PRECISION_AUTO, 0, &hopper, NULL),
                 DP_OK);
    cr_expect_eq(c.kind, DP_BACKEND_CUDA);
    cr_expect_eq(c.device, 0);
    cr_expect_eq(c.precision, DP_PRECISION_BF16);
    cr_expect_str_eq(c.why_cpu, "");
    char line[400];
    cr_expect_str_eq(dp_backend_choice_str(&c, line, sizeof line),
                     "cuda device 0 (GPU 0, cc 9.0), bf16");
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_AUTO, 0, &turing, NULL),
                 DP_OK);
    cr_expect_eq(c.precision, DP_PRECISION_FP32);
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_FP16, 0, &turing, NULL),
                 DP_OK);
    cr_expect_eq(c.precision, DP_PRECISION_FP16);
    cr_expect_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_BF16, 0, &turing, NULL),
                 DP_ERR_UNSUPPORTED);
    cr_expect_not_null(strstr(dp_error_message(), "compute capability >= 8.0"), "%s",
                       dp_error_message());
    cr_expect_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_TF32, 0, &turing, NULL),
                 DP_ERR_UNSUPPORTED);
}

Test(backend, each_rank_takes_the_device_of_its_local_rank)
{
    dp_backend_choice c;
    dp_cuda_info four = machine(4, 8, 0), one = machine(1, 8, 0);
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_AUTO, 3, &four, NULL), DP_OK);
    cr_expect_eq(c.device, 3);
    cr_expect_str_eq(c.device_name, "GPU 3");
    // A launcher that gives each rank one visible device: every rank uses device 0.
    cr_assert_eq(dp_backend_resolve(&c, DP_BACKEND_CUDA, DP_PRECISION_AUTO, 5, &one, NULL), DP_OK);
    cr_expect_eq(c.device, 0);
    cr_expect_eq(dp_backend_resolve(&c, DP_BACKEND_AUTO, DP_PRECISION_AUTO, 4, &four, NULL),
                 DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "local rank 4 has no GPU of its own"), "%s",
                       dp_error_message());
}

Test(backend, this_machine_without_a_gpu_refuses_cuda_naming_the_reason)
{
    if (gpu_usable()) {
        cr_skip_test("this machine has a usable GPU");
    }
    dp_backend_choice c;
    cr_expect_eq(dp_backend_select(&c, DP_BACKEND_CUDA, DP_PRECISION_AUTO, 0), DP_ERR_UNSUPPORTED);
    const char *msg = dp_error_message();
    cr_expect_not_null(strstr(msg, "backend=cuda: no usable GPU: "), "%s", msg);
    if (!dp_backend_have_cuda()) {
        cr_expect_not_null(strstr(msg, "built without CUDA"), "%s", msg);
    } else {
        cr_expect_not_null(strstr(msg, "cuda"), "the runtime's reason: %s", msg);
    }
    cr_assert_eq(dp_backend_select(&c, DP_BACKEND_AUTO, DP_PRECISION_AUTO, 0), DP_OK);
    cr_expect_eq(c.kind, DP_BACKEND_CPU);
    cr_expect_neq(c.why_cpu[0], '\0');
}

static dp_status run_cfg(const char *set, const char *set2, dp_train_result *res)
{
    static const char *text = "[net]\nbatch=8\nheight=4\nwidth=4\nchannels=1\n"
                              "learning_rate=0.05\n"
                              "[data]\nsource=synthetic\nsamples=16\ntest_samples=8\n"
                              "[train]\nepochs=1\nthreads=1\nbackend=cuda\n"
                              "[connected]\noutput=2\nactivation=linear\n"
                              "[softmax]\n";
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, text, strlen(text), "nogpu.cfg"), DP_OK, "%s",
                 dp_error_message());
    const char *sets[] = {set, set2};
    for (int i = 0; i < 2; i++) {
        if (sets[i] != NULL) {
            cr_assert_eq(dp_cfg_set(cfg, sets[i]), DP_OK, "%s", dp_error_message());
        }
    }
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.bench_steps = 1; // no output directory
    dp_status st = dp_train_run(cfg, &opt, res);
    dp_cfg_destroy(cfg);
    return st;
}

Test(backend, a_run_with_backend_cuda_and_no_gpu_stops_naming_the_cfg_line, .timeout = 60)
{
    if (gpu_usable()) {
        cr_skip_test("this machine has a usable GPU");
    }
    dp_train_result res;
    cr_expect_eq(run_cfg(NULL, NULL, &res), DP_ERR_UNSUPPORTED);
    const char *msg = dp_error_message();
    cr_expect_not_null(strstr(msg, "nogpu.cfg:14: backend=cuda: no usable GPU: "), "%s", msg);
    cr_expect_eq(run_cfg("train.precision=bf16", NULL, &res), DP_ERR_UNSUPPORTED);
    msg = dp_error_message();
    cr_expect_not_null(strstr(msg, "nogpu.cfg:14, --set train.precision=bf16: backend=cuda: no "
                                   "usable GPU"),
                       "%s", msg);
    // A precision the CPU does not compute in is refused on backend=cpu, and ignored (fp32) by
    // auto when it falls back to the CPU.
    cr_expect_eq(run_cfg("train.backend=cpu", "train.precision=fp16", &res), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "precision=fp16 needs backend=cuda"), "%s",
                       dp_error_message());
    cr_expect_eq(run_cfg("train.backend=auto", "train.precision=bf16", &res), DP_OK, "%s",
                 dp_error_message());
    // The same cfg on the CPU runs.
    cr_expect_eq(run_cfg("train.backend=cpu", NULL, &res), DP_OK, "%s", dp_error_message());
    cr_expect_eq(run_cfg("train.backend=cpu", "train.precision=fp32", &res), DP_OK, "%s",
                 dp_error_message());
}
