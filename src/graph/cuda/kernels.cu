// CUDA paths of aullm's own training operations (src/graph/conv.rs, src/graph/laplacian.rs), so that
// a GPU runs the same im2col convolution as the CPU instead of candle's direct conv_transpose2d.
// Compiled to PTX by build.rs when the `cuda` feature is on. One thread per output element; the
// layouts and index orders are those of the CPU kernels.

// Channels-first convolution geometry: input [C, N, H, W], kernel kh x kw, one stride both ways,
// zero padding (ph, pw), output Ho x Wo; the column matrix is [C·kh·kw, N·Ho·Wo].
struct Geometry {
    int c, n, h, w, kh, kw, stride, ph, pw, ho, wo;
};

extern "C" __global__ void aullm_im2col(const float* x, float* cols, unsigned long long total,
                                        Geometry g) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= total) return;
    unsigned long long ncols = (unsigned long long)g.n * g.ho * g.wo;
    unsigned long long row = i / ncols, col = i % ncols;
    int taps = g.kh * g.kw;
    int ci = (int)(row / taps), t = (int)(row % taps);
    int ki = t / g.kw, kj = t % g.kw;
    int img = (int)(col / ((unsigned long long)g.ho * g.wo));
    int rem = (int)(col % ((unsigned long long)g.ho * g.wo));
    int iy = (rem / g.wo) * g.stride + ki - g.ph;
    int ix = (rem % g.wo) * g.stride + kj - g.pw;
    float v = 0.0f;
    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
        v = x[(((unsigned long long)ci * g.n + img) * g.h + iy) * g.w + ix];
    cols[i] = v;
}

// The adjoint of aullm_im2col: each input element gathers the column entries that read it.
extern "C" __global__ void aullm_col2im(const float* cols, float* x, unsigned long long total,
                                        Geometry g) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int ix = (int)(i % g.w);
    unsigned long long r = i / g.w;
    int iy = (int)(r % g.h);
    r /= g.h;
    int img = (int)(r % g.n);
    int ci = (int)(r / g.n);
    unsigned long long ncols = (unsigned long long)g.n * g.ho * g.wo;
    float sum = 0.0f;
    for (int ki = 0; ki < g.kh; ++ki) {
        int ty = iy + g.ph - ki;
        if (ty < 0 || ty % g.stride != 0) continue;
        int oy = ty / g.stride;
        if (oy >= g.ho) continue;
        for (int kj = 0; kj < g.kw; ++kj) {
            int tx = ix + g.pw - kj;
            if (tx < 0 || tx % g.stride != 0) continue;
            int ox = tx / g.stride;
            if (ox >= g.wo) continue;
            unsigned long long row = ((unsigned long long)ci * g.kh + ki) * g.kw + kj;
            unsigned long long col = ((unsigned long long)img * g.ho + oy) * g.wo + ox;
            sum += cols[row * ncols + col];
        }
    }
    x[i] = sum;
}

struct Plane {
    int h, w;
};

// The 4-neighbour Laplacian of every h x w plane, zero padding (its own adjoint).
extern "C" __global__ void aullm_laplacian(const float* x, float* y, unsigned long long total,
                                           Plane p) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= total) return;
    int h = p.h, w = p.w;
    int c = (int)(i % w);
    int r = (int)((i / w) % h);
    float s = -4.0f * x[i];
    if (c > 0) s += x[i - 1];
    if (c + 1 < w) s += x[i + 1];
    if (r > 0) s += x[i - w];
    if (r + 1 < h) s += x[i + w];
    y[i] = s;
}
