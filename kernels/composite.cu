// Frame kernels for the cuda backend (prepare, compositing, masked blur, 3D-LUT change), loaded by
// CuPy (cupy.RawModule) from kernels/cupy_ops.py.
//
// The same file is compiled on the CPU by g++ through kernels/cuda_emu.h and launched block by
// block from Python, so its arithmetic is tested against kernels/reference.py without a GPU.
// Every kernel is one thread per output pixel with no shared memory, so the emulation needs
// no cross-thread synchronisation.
//
// Definitions (see kernels/reference.py): bilinear sampling with half-pixel centres, edge clamp,
// no antialias (= torch interpolate(mode="bilinear", align_corners=False)); alpha =
// smoothstep(threshold - feather, threshold + feather, m), feather 0 = hard step m >= threshold;
// uint8 output rounds to nearest (ties to even) and clamps; a 3D LUT is sampled trilinearly with
// align-corners lattice points (0 and 1 on the end points, see lut_delta).
//
// Dtype codes for `void*` tensor arguments: 0 = absent, 1 = float32, 2 = float16.

// ---- compile-time constants, injected by the launcher with -D (no silent defaults)
#ifndef BLOCK_X
#error "BLOCK_X (threads per block along x) must be defined by the launcher"
#endif
#ifndef BLOCK_Y
#error "BLOCK_Y (threads per block along y) must be defined by the launcher"
#endif
#ifndef BLUR_EPS
#error "BLUR_EPS (denominator floor of masked_blur) must be defined by the launcher"
#endif

#define DT_NONE 0
#define DT_F32 1
#define DT_F16 2
#define MODE_IMAGE 0
#define MODE_DELTA 1
#define MODE_MAP 2

#if defined(__CUDACC__)
// fp16 <-> fp32 without cuda_fp16.h: NVRTC ships no headers and CuPy may not find a toolkit.
__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short f2h(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif  // otherwise kernels/cuda_emu.h provides h2f / f2h

__device__ __forceinline__ float load_f(const void* p, int dt, long long i) {
    return dt == DT_F16 ? h2f(((const unsigned short*)p)[i]) : ((const float*)p)[i];
}

__device__ __forceinline__ void store_f(void* p, int dt, long long i, float v) {
    if (dt == DT_F16) {
        ((unsigned short*)p)[i] = f2h(v);
    } else {
        ((float*)p)[i] = v;
    }
}

// Source taps of output index `dst` for a resize in_size -> out_size (torch's formula).
struct Lerp {
    int i0, i1;
    float l0, l1;
};

__device__ __forceinline__ Lerp lerp_coord(int dst, int in_size, int out_size) {
    Lerp t;
    float scale = (float)in_size / (float)out_size;
    float s = fmaxf(((float)dst + 0.5f) * scale - 0.5f, 0.0f);
    int i = (int)s;  // s >= 0: truncation is floor
    if (i > in_size - 1) i = in_size - 1;
    t.i0 = i;
    t.i1 = i + (i < in_size - 1 ? 1 : 0);
    t.l1 = fminf(fmaxf(s - (float)i, 0.0f), 1.0f);
    t.l0 = 1.0f - t.l1;
    return t;
}

// Bilinear sample of plane `plane` of a float [C, h, w] tensor.
__device__ __forceinline__ float sample_plane(const void* p, int dt, int plane, int h, int w,
                                              const Lerp& ly, const Lerp& lx) {
    long long base = (long long)plane * h * w;
    float v00 = load_f(p, dt, base + (long long)ly.i0 * w + lx.i0);
    float v01 = load_f(p, dt, base + (long long)ly.i0 * w + lx.i1);
    float v10 = load_f(p, dt, base + (long long)ly.i1 * w + lx.i0);
    float v11 = load_f(p, dt, base + (long long)ly.i1 * w + lx.i1);
    return ly.l0 * (lx.l0 * v00 + lx.l1 * v01) + ly.l1 * (lx.l0 * v10 + lx.l1 * v11);
}

__device__ __forceinline__ float smooth_alpha(float m, float threshold, float feather) {
    if (feather <= 0.0f) return m >= threshold ? 1.0f : 0.0f;
    float t = (m - (threshold - feather)) / (2.0f * feather);
    t = fminf(fmaxf(t, 0.0f), 1.0f);
    return t * t * (3.0f - 2.0f * t);
}

// Person alpha at output pixel (y, x) of an out_h x out_w image from the low-res mask.
__device__ __forceinline__ float mask_alpha(const void* mask, int mask_dt, int mh, int mw, int y, int x,
                                            int out_h, int out_w, float threshold, float feather) {
    Lerp ly = lerp_coord(y, mh, out_h);
    Lerp lx = lerp_coord(x, mw, out_w);
    return smooth_alpha(sample_plane(mask, mask_dt, 0, mh, mw, ly, lx), threshold, feather);
}

__device__ __forceinline__ unsigned char to_u8(float v) {
    float q = rintf(v * 255.0f);
    return (unsigned char)fminf(fmaxf(q, 0.0f), 255.0f);
}

// uint8 BGR HWC [H, W, 3] -> float RGB planar [3, out_h, out_w] in [0, 1], bilinear resize.
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y)
prepare(const unsigned char* __restrict__ frame,  // [H, W, 3] BGR, contiguous
        int H, int W,
        void* __restrict__ out,                   // [3, out_h, out_w], dtype out_dt
        int out_dt, int out_h, int out_w) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    Lerp ly = lerp_coord(y, H, out_h);
    Lerp lx = lerp_coord(x, W, out_w);
    long long r0 = (long long)ly.i0 * W, r1 = (long long)ly.i1 * W;
    long long plane = (long long)out_h * out_w;
    for (int c = 0; c < 3; ++c) {
        int ch = 2 - c;  // BGR -> RGB
        float v00 = (float)frame[(r0 + lx.i0) * 3 + ch] / 255.0f;
        float v01 = (float)frame[(r0 + lx.i1) * 3 + ch] / 255.0f;
        float v10 = (float)frame[(r1 + lx.i0) * 3 + ch] / 255.0f;
        float v11 = (float)frame[(r1 + lx.i1) * 3 + ch] / 255.0f;
        float v = ly.l0 * (lx.l0 * v00 + lx.l1 * v01) + ly.l1 * (lx.l0 * v10 + lx.l1 * v11);
        store_f(out, out_dt, c * plane + (long long)y * out_w + x, v);
    }
}

// A quadratic colour map (float32 [10, 3]: terms r, g, b, r^2, g^2, b^2, rg, gb, rb, 1 by output
// RGB) on one pixel, clamped: a guided style's look, evaluated at full resolution.
__device__ __forceinline__ void color_map(const float* __restrict__ m, const float rgb[3], float res[3]) {
    float r = rgb[0], g = rgb[1], b = rgb[2];
    float terms[9] = {r, g, b, r * r, g * g, b * b, r * g, g * b, r * b};
    for (int c = 0; c < 3; ++c) {
        float v = m[27 + c];
        for (int k = 0; k < 9; ++k) v += terms[k] * m[k * 3 + c];
        res[c] = fminf(fmaxf(v, 0.0f), 1.0f);
    }
}

// One treatment (person or background) at output pixel (y, x): the original pixel, a bilinear
// sample of an image of any size, original + sample (delta), clamped, or a colour map of the original.
__device__ __forceinline__ void treatment(const void* t, int dt, int mode, int th, int tw,
                                          int y, int x, int H, int W, const float orig[3], float res[3]) {
    if (dt == DT_NONE) {
        res[0] = orig[0];
        res[1] = orig[1];
        res[2] = orig[2];
        return;
    }
    if (mode == MODE_MAP) {
        color_map((const float*)t, orig, res);
        return;
    }
    Lerp ly = lerp_coord(y, th, H);
    Lerp lx = lerp_coord(x, tw, W);
    for (int c = 0; c < 3; ++c) {
        float s = sample_plane(t, dt, c, th, tw, ly, lx);
        res[c] = mode == MODE_DELTA ? fminf(fmaxf(orig[c] + s, 0.0f), 1.0f) : s;
    }
}

// One pass: mask upsample + feather + blend of two treatments + strength mix -> uint8 BGR.
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y)
composite(const unsigned char* __restrict__ frame,  // [H, W, 3] BGR original
          unsigned char* __restrict__ out,          // [H, W, 3] BGR result
          int H, int W,
          const void* __restrict__ mask, int mask_dt, int mh, int mw,  // [mh, mw] person probability
          const void* __restrict__ fg, int fg_dt, int fg_mode, int fgh, int fgw,  // [3, fgh, fgw], [10, 3] map, or absent
          const void* __restrict__ bg, int bg_dt, int bg_mode, int bgh, int bgw,  // [3, bgh, bgw], [10, 3] map, or absent
          float threshold, float feather, float strength) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    long long p = ((long long)y * W + x) * 3;
    float orig[3];
    orig[0] = (float)frame[p + 2] / 255.0f;
    orig[1] = (float)frame[p + 1] / 255.0f;
    orig[2] = (float)frame[p + 0] / 255.0f;
    float alpha = mask_alpha(mask, mask_dt, mh, mw, y, x, H, W, threshold, feather);
    float f[3], b[3];
    treatment(fg, fg_dt, fg_mode, fgh, fgw, y, x, H, W, orig, f);
    treatment(bg, bg_dt, bg_mode, bgh, bgw, y, x, H, W, orig, b);
    for (int c = 0; c < 3; ++c) {
        float blend = alpha * f[c] + (1.0f - alpha) * b[c];
        out[p + 2 - c] = to_u8(orig[c] + strength * (blend - orig[c]));
    }
}

// RGB at (y, x) of the blur input: img_kind 0 = uint8 BGR HWC, else float planar [3, H, W].
__device__ __forceinline__ void load_rgb(const void* img, int img_kind, int H, int W, int y, int x,
                                         float rgb[3]) {
    if (img_kind == 0) {
        const unsigned char* f = (const unsigned char*)img + ((long long)y * W + x) * 3;
        rgb[0] = (float)f[2] / 255.0f;
        rgb[1] = (float)f[1] / 255.0f;
        rgb[2] = (float)f[0] / 255.0f;
    } else {
        long long plane = (long long)H * W, i = (long long)y * W + x;
        rgb[0] = load_f(img, img_kind, i);
        rgb[1] = load_f(img, img_kind, plane + i);
        rgb[2] = load_f(img, img_kind, 2 * plane + i);
    }
}

// Masked blur, pass 1 (along x): tmp = [G*(r w), G*(g w), G*(b w), G*w] with w = 1 - alpha
// computed on the fly from the low-res mask (no full-res weight image is ever written).
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y)
blur_h(const void* __restrict__ img, int img_kind, int H, int W,
       const void* __restrict__ mask, int mask_dt, int mh, int mw, float threshold, float feather,
       const float* __restrict__ taps, int radius,  // [2 radius + 1] normalised Gaussian
       float* __restrict__ tmp) {                   // [4, H, W]
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    Lerp ly = lerp_coord(y, mh, H);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = -radius; k <= radius; ++k) {
        int xx = min(max(x + k, 0), W - 1);
        Lerp lx = lerp_coord(xx, mw, W);
        float w = 1.0f - smooth_alpha(sample_plane(mask, mask_dt, 0, mh, mw, ly, lx), threshold, feather);
        float rgb[3];
        load_rgb(img, img_kind, H, W, y, xx, rgb);
        float g = taps[k + radius];
        acc[0] += g * (rgb[0] * w);
        acc[1] += g * (rgb[1] * w);
        acc[2] += g * (rgb[2] * w);
        acc[3] += g * w;
    }
    long long plane = (long long)H * W, i = (long long)y * W + x;
    for (int c = 0; c < 4; ++c) tmp[c * plane + i] = acc[c];
}

// Masked blur, pass 2 (along y) and normalisation: out = G*(img w) / max(G*w, BLUR_EPS).
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y)
blur_v(const float* __restrict__ tmp, int H, int W,  // [4, H, W] from blur_h
       const float* __restrict__ taps, int radius,
       void* __restrict__ out, int out_dt) {         // [3, H, W]
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    long long plane = (long long)H * W;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = -radius; k <= radius; ++k) {
        long long i = (long long)min(max(y + k, 0), H - 1) * W + x;
        float g = taps[k + radius];
        for (int c = 0; c < 4; ++c) acc[c] += g * tmp[c * plane + i];
    }
    float den = fmaxf(acc[3], BLUR_EPS);
    long long i = (long long)y * W + x;
    for (int c = 0; c < 3; ++c) store_f(out, out_dt, c * plane + i, acc[c] / den);
}

// Linear interpolation written so that t = 0 gives a and t = 1 gives b exactly.
__device__ __forceinline__ float lerp01(float a, float b, float t) {
    return a * (1.0f - t) + b * t;
}

// Lattice cell of an input level v in [0, 1] on a D-point axis: lower index in 0..D-2 and the
// offset in [0, 1] towards the next point; v = 1 lands on the last point with offset 1.
__device__ __forceinline__ void lut_cell(float v, int D, int* i0, float* t) {
    float pos = v * (float)(D - 1);
    int i = (int)pos;  // v >= 0: truncation is floor
    if (i > D - 2) i = D - 2;
    *i0 = i;
    *t = pos - (float)i;
}

// The change a 3D LUT makes to each pixel: out[c] = scale * (LUT(x)[c] - x[c]), x = the pixel's RGB / 255,
// LUT(x) trilinear in the lattice [c, r, g, b] (lerp along b, then g, then r; kernels/reference.py).
extern "C" __global__ void __launch_bounds__(BLOCK_X * BLOCK_Y)
lut_delta(const unsigned char* __restrict__ frame,  // [H, W, 3] BGR, contiguous
          int H, int W,
          const float* __restrict__ lut, int D,     // [3, D, D, D] float32, indexed [c, r, g, b], D >= 2
          float scale,                              // weight of the look (Σ of its styles' mix weights)
          void* __restrict__ out, int out_dt) {     // [3, H, W] RGB change, dtype out_dt
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    long long p = (long long)y * W + x;
    float rgb[3];
    rgb[0] = (float)frame[p * 3 + 2] / 255.0f;
    rgb[1] = (float)frame[p * 3 + 1] / 255.0f;
    rgb[2] = (float)frame[p * 3 + 0] / 255.0f;
    int ir, ig, ib;
    float tr, tg, tb;
    lut_cell(rgb[0], D, &ir, &tr);
    lut_cell(rgb[1], D, &ig, &tg);
    lut_cell(rgb[2], D, &ib, &tb);
    long long sr = (long long)D * D, sg = D;  // strides of r and g in a [D, D, D] plane
    long long base = ir * sr + ig * sg + ib;
    long long plane = sr * D, out_plane = (long long)H * W;
    for (int c = 0; c < 3; ++c) {
        const float* l = lut + c * plane + base;
        float v00 = lerp01(l[0], l[1], tb);                // (r0, g0)
        float v01 = lerp01(l[sg], l[sg + 1], tb);          // (r0, g1)
        float v10 = lerp01(l[sr], l[sr + 1], tb);          // (r1, g0)
        float v11 = lerp01(l[sr + sg], l[sr + sg + 1], tb);  // (r1, g1)
        float v = lerp01(lerp01(v00, v01, tg), lerp01(v10, v11, tg), tr);
        store_f(out, out_dt, c * out_plane + p, (v - rgb[c]) * scale);
    }
}
