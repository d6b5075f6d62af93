// CUDA emulation for compiling kernels/composite.cu with a host C++ compiler (g++ -include).
//
// Each kernel becomes a plain C function; kernels/emu.py sets the block and thread index with
// emu_set_index() and calls it once per thread, block by block. __syncthreads() is a no-op:
// this is only valid because the kernels in composite.cu share no memory between threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>

struct emu_uint3 {
    unsigned int x, y, z;
};

extern "C" {
emu_uint3 threadIdx, blockIdx, blockDim, gridDim;

void emu_set_dims(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
}

void emu_set_index(unsigned bx, unsigned by, unsigned bz, unsigned tx, unsigned ty, unsigned tz) {
    blockIdx = {bx, by, bz};
    threadIdx = {tx, ty, tz};
}
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

inline void __syncthreads() {}

using std::max;
using std::min;

// IEEE binary16 conversions (round to nearest even, like cvt.rn.f16.f32).
inline float h2f(unsigned short h) {
    _Float16 v;
    std::memcpy(&v, &h, sizeof v);
    return (float)v;
}

inline unsigned short f2h(float f) {
    _Float16 v = (_Float16)f;
    unsigned short h;
    std::memcpy(&h, &v, sizeof h);
    return h;
}
