// Shared helpers of the io suites: a scratch directory per test (made in .init, removed with
// everything in it in .fini), message checks and running a command. Test code only.
#ifndef DP_TESTS_IO_TEST_UTIL_H
#define DP_TESTS_IO_TEST_UTIL_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static char scratch_dir[256];

static inline void scratch_make(void)
{
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/dp-io-test-XXXXXX");
    cr_assert_not_null(mkdtemp(scratch_dir), "mkdtemp failed");
}

// Removes dir and everything under it (no symbolic links are followed).
static inline void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        char path[1024];
        struct stat sb;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            int len = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (len < 0 || (size_t)len >= sizeof path) {
                continue;
            }
            if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
                remove_tree(path);
            } else {
                remove(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

static inline void scratch_remove(void)
{
    if (scratch_dir[0] != '\0') {
        remove_tree(scratch_dir);
    }
}

// A path inside the scratch directory, in one of eight rotating static buffers: copy it if it
// must outlive eight more calls.
static inline const char *scratch_path(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", scratch_dir, name);
    return p;
}

static inline int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

// Expects status want and a message that contains every one of the given fragments.
#define expect_error(st, want, ...)                                                               \
    do {                                                                                          \
        dp_status got_ = (st);                                                                    \
        cr_expect_eq(got_, (want), "status %s, expected %s: %s", dp_status_name(got_),           \
                     dp_status_name(want), dp_error_message());                                   \
        const char *frags_[] = {__VA_ARGS__};                                                     \
        for (size_t i_ = 0; i_ < sizeof frags_ / sizeof frags_[0]; i_++) {                        \
            cr_expect_not_null(strstr(dp_error_message(), frags_[i_]),                            \
                               "message lacks '%s': %s", frags_[i_], dp_error_message());         \
        }                                                                                         \
    } while (0)

// 1 if /usr/bin/python3 can import h5py.
static inline int have_h5py(void)
{
    return system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") == 0;
}

#endif
