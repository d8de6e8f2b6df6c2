// Test seam of the pipeline, for tests/io only: not part of the public API.
#ifndef DP_IO_PIPELINE_INTERNAL_H
#define DP_IO_PIPELINE_INTERNAL_H

#include <stdint.h>

#include "io/pipeline.h"

// dp_pipeline_create, except that the worker that comes to decode record fail_record (>= 0;
// -1: never) fails with DP_ERR_INTERNAL "pipeline: injected worker failure at record R"
// instead, so that tests can drive a worker's error to the consumer (decoding itself cannot
// fail: it is arithmetic on records the reader has checked).
DP_MUST_CHECK dp_status dp__pipeline_create_failing(dp_pipeline **out,
                                                    const dp_pipeline_config *cfg,
                                                    int64_t fail_record);

#endif
