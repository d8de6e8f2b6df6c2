// Whether a backward kernel overwrites its gradient outputs or adds to them. dx is accumulated
// when a tensor feeds several consumers (route, shortcut); parameter gradients are accumulated
// across micro-batches. The two are independent, hence two flags.
#ifndef DP_NN_CPU_ACCUM_H
#define DP_NN_CPU_ACCUM_H

enum {
    DP_ACCUM_NONE = 0,          // dx = ..., dparams = ...
    DP_ACCUM_DX = 1u << 0,      // dx += ...
    DP_ACCUM_DPARAMS = 1u << 1, // dw += ..., db += ... (every parameter gradient)
    DP_ACCUM_ALL = DP_ACCUM_DX | DP_ACCUM_DPARAMS,
};

#endif
