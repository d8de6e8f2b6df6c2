// The default number of pipeline workers, from the CPUs this process may run on and the ranks
// that share the node (pipeline.h). Linux: sched_getaffinity; elsewhere the online count.
#define _GNU_SOURCE // CPU_COUNT, sched_getaffinity
#include <sched.h>
#include <unistd.h>

#include "core/error.h"
#include "io/pipeline.h"

enum { MAX_WORKERS = 64 };

int dp_pipeline_workers_for(int64_t cpus_available, int64_t cpus_online, int ranks_per_node)
{
    int64_t avail = cpus_available < 1 ? 1 : cpus_available;
    int64_t online = cpus_online < avail ? avail : cpus_online;
    int64_t ranks = ranks_per_node < 1 ? 1 : ranks_per_node;
    // A mask no larger than a rank's share of the node: the launcher bound this rank to it.
    int64_t mine = avail * ranks <= online ? avail : avail / ranks;
    int64_t workers = mine - 1; // one CPU for the training thread
    return workers < 1 ? 1 : workers > MAX_WORKERS ? MAX_WORKERS : (int)workers;
}

dp_status dp_pipeline_default_workers(int *out, int ranks_per_node)
{
    *out = 1;
    if (ranks_per_node < 1) {
        return dp_error_set(DP_ERR_ARG, "pipeline: %d ranks per node; need >= 1", ranks_per_node);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t avail = online > 0 ? online : 1;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        avail = CPU_COUNT(&set);
    }
    *out = dp_pipeline_workers_for(avail, online > 0 ? online : avail, ranks_per_node);
    return DP_OK;
}
