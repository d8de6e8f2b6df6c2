// The dptrain command line as a user meets it: exit codes (0 ok, 1 error, 2 usage), the one
// "dptrain: error: ..." line naming file:line and key, --help, --version, --check and --set.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    int status;
    char out[1 << 16];
    char err[1 << 16];
} run_result;

static void read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

// The last size - 1 bytes of path (a long run's log: what it says at the end).
static void read_file_tail(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    long from = len > (long)size - 1 ? len - ((long)size - 1) : 0;
    cr_assert_eq(fseek(f, from, SEEK_SET), 0);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

// Runs build/dptrain with args (NULL-terminated), capturing stdout and stderr.
static void run_dptrain(run_result *r, const char *const *args)
{
    const char *build = getenv("DP_BUILD_ROOT");
    cr_assert_not_null(build, "DP_BUILD_ROOT is not set (run through meson test)");
    char exe[1024];
    snprintf(exe, sizeof exe, "%s/dptrain", build);
    char out_path[] = "/tmp/dptrain_out_XXXXXX", err_path[] = "/tmp/dptrain_err_XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    cr_assert(out_fd >= 0 && err_fd >= 0);
    const char *argv[64] = {exe};
    int argc = 1;
    for (; args[argc - 1] != NULL && argc < 63; argc++) {
        argv[argc] = args[argc - 1];
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int wstatus;
    cr_assert_eq(waitpid(pid, &wstatus, 0), pid);
    cr_assert(WIFEXITED(wstatus), "dptrain did not exit normally");
    r->status = WEXITSTATUS(wstatus);
    close(out_fd);
    close(err_fd);
    read_file(out_path, r->out, sizeof r->out);
    read_file(err_path, r->err, sizeof r->err);
    unlink(out_path);
    unlink(err_path);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_geq(fputs(text, f), 0);
    cr_assert_eq(fclose(f), 0);
}

static run_result r;

Test(dptrain_cli, help_lists_every_option_and_exits_0)
{
    const char *args[] = {"--help", NULL};
    run_dptrain(&r, args);
    cr_expect_eq(r.status, 0);
    const char *options[] = {"--check", "--set", "--version", "--help", "DP_LOG_LEVEL"};
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        cr_expect_not_null(strstr(r.out, options[i]), "help lacks %s", options[i]);
    }
}

Test(dptrain_cli, version_reports_build_features)
{
    const char *args[] = {"--version", NULL};
    run_dptrain(&r, args);
    cr_expect_eq(r.status, 0);
    const char *lines[] = {"dptrain ", "cuda:", "nccl:", "mpi:", "openblas: core ", "hdf5:"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        cr_expect_not_null(strstr(r.out, lines[i]), "no '%s' in:\n%s", lines[i], r.out);
    }
}

Test(dptrain_cli, wrong_usage_exits_2_with_usage_line)
{
    const char *none[] = {NULL};
    run_dptrain(&r, none);
    cr_expect_eq(r.status, 2);
    cr_expect_not_null(strstr(r.err, "usage: dptrain"), "%s", r.err);
    const char *bad[] = {"--frobnicate", "x.cfg", NULL};
    run_dptrain(&r, bad);
    cr_expect_eq(r.status, 2);
    cr_expect_not_null(strstr(r.err, "unknown option '--frobnicate'"), "%s", r.err);
    const char *dangling[] = {"x.cfg", "--set", NULL};
    run_dptrain(&r, dangling);
    cr_expect_eq(r.status, 2);
    const char *two[] = {"a.cfg", "b.cfg", NULL};
    run_dptrain(&r, two);
    cr_expect_eq(r.status, 2);
}

Test(dptrain_cli, check_accepts_shipped_config)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/fmnist-resnet20.cfg", getenv("DP_SOURCE_ROOT"));
    const char *args[] = {"--check", path, NULL};
    run_dptrain(&r, args);
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect_not_null(strstr(r.out, "\ncheck: layers=35 params=272186 output=1x1x10 flops="),
                       "%s", r.out);
    cr_expect_not_null(strstr(r.out, "[train]  epochs=7"), "%s", r.out);
    cr_expect_eq(r.err[0], '\0', "no warnings for a dptrain cfg: %s", r.err);
}

Test(dptrain_cli, malformed_cfg_names_file_line_and_key_once)
{
    const char *path = "dptrain_cli_bad.cfg";
    write_text(path, "[net]\nheight=28\nwidth=28\nchannels=1\nbatch=12x8\n");
    const char *args[] = {"--check", path, NULL};
    run_dptrain(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.err, "dptrain: error: dptrain_cli_bad.cfg:5: [net] batch: expected an "
                            "integer, got '12x8'\n");
    remove(path);
}

Test(dptrain_cli, set_overrides_and_bad_set_is_reported_as_command_line)
{
    const char *path = "dptrain_cli_set.cfg";
    write_text(path, "[net]\nheight=28\nwidth=28\nchannels=1\nbatch=32\n[connected]\noutput=10\n");
    const char *ok[] = {"--check", path, "--set", "net.batch=64", "--set=train.epochs=1", NULL};
    run_dptrain(&r, ok);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "batch=64"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "[train]  epochs=1"), "%s", r.out);
    const char *bad[] = {"--check", path, "--set", "net.batch=-4", NULL};
    run_dptrain(&r, bad);
    cr_expect_eq(r.status, 1);
    cr_expect_not_null(strstr(r.err, "dptrain: error: --set net.batch=-4: [net] batch: value -4 is "
                                     "out of range"),
                       "%s", r.err);
    remove(path);
}

Test(dptrain_cli, missing_cfg_file_is_an_error_naming_it)
{
    const char *args[] = {"--check", "/no/such/dir/net.cfg", NULL};
    run_dptrain(&r, args);
    cr_expect_eq(r.status, 1);
    cr_expect_not_null(strstr(r.err, "dptrain: error: cannot open cfg '/no/such/dir/net.cfg'"),
                       "%s", r.err);
}

Test(dptrain_cli, darknet_cfg_warns_once_about_ignored_keys)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/darknet/darknet19.cfg", getenv("DP_SOURCE_ROOT"));
    const char *args[] = {"--check", path, NULL};
    run_dptrain(&r, args);
    cr_expect_eq(r.status, 0, "%s", r.err);
    int warnings = 0;
    for (const char *p = strstr(r.err, "warn:"); p != NULL; p = strstr(p + 1, "warn:")) {
        warnings++;
    }
    cr_expect_eq(warnings, 1, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "[net] max_crop"), "%s", r.err);
}

Test(dptrain_cli, sigint_finishes_the_step_writes_a_checkpoint_and_exits_0, .timeout = 60)
{
    const char *cfg = "dptrain_cli_signal.cfg";
    write_text(cfg, "[net]\nbatch=16\nheight=8\nwidth=8\nchannels=1\nlearning_rate=0.05\n"
                    "[data]\nsource=synthetic\nsamples=64\ntest_samples=16\n"
                    "[train]\nepochs=1000000\nlog_every=100000\nthreads=1\n"
                    "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=relu\n"
                    "[connected]\noutput=4\nactivation=linear\n[softmax]\n");
    char exe[1024], out_path[] = "/tmp/dptrain_sig_XXXXXX", dir[] = "/tmp/dptrain_sigdir_XXXXXX";
    snprintf(exe, sizeof exe, "%s/dptrain", getenv("DP_BUILD_ROOT"));
    int out_fd = mkstemp(out_path);
    cr_assert(out_fd >= 0 && mkdtemp(dir) != NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(out_fd, 1);
        execl(exe, exe, cfg, "--out", dir, (char *)NULL);
        _exit(127);
    }
    sleep(2);
    cr_assert_eq(kill(pid, SIGINT), 0);
    int wstatus;
    cr_assert_eq(waitpid(pid, &wstatus, 0), pid);
    cr_expect(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "status %d", wstatus);
    close(out_fd);
    // An epoch is 4 steps here, so 2 s print hundreds of epoch lines: the end is what counts.
    read_file_tail(out_path, r.out, sizeof r.out);
    const char *line = strstr(r.out, "stopped by a signal at step ");
    cr_assert_not_null(line, "%s", r.out);
    const char *ck = strstr(line, "checkpoint: ");
    cr_assert_not_null(ck, "%s", line);
    char path[512];
    cr_assert_eq(sscanf(ck + strlen("checkpoint: "), "%511s", path), 1);
    cr_expect_eq(access(path, R_OK), 0, "checkpoint %s", path);
    cr_expect_not_null(strstr(r.out, "\nfinal: epochs="), "%s", r.out);
    unlink(out_path);
    remove(cfg);
}
