// Tensor-core tile products of one warpgroup (the 4 warps of a 128-thread
// block) on 16-bit tiles in shared memory, for the attention kernels.
//
// Tiles are stored without padding, in the layout Hopper's wgmma reads:
// column blocks of 64 elements (32 when D = 32), each a stack of 128-byte
// (64-byte) rows whose 16-byte chunks are XOR-swizzled by the row, so that
// 8 consecutive rows of one chunk fall in different banks. The same layout
// serves as a K-major operand (rows are M or N, columns K) and as an
// MN-major one (rows are K, columns N), so one tile of K feeds both S = Q K^T
// and dq += dS K.
//
// Built for sm_90a, the products are wgmma: the warpgroup issues them
// together and each warp gets the accumulator rows 16 w .. 16 w + 15. Built
// for any other architecture they are ldmatrix + mma.sync per warp over the
// same rows. Both leave the accumulators in the layout of mma.sync m16n8:
// element e of n-block nb is row lane/4 + 8 (e/2), column 8 nb + 2 (lane%4) + e%2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/attention_tiles.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MA_KERNELS_WGMMA 1
#endif

namespace ma_kernels::tiles {

// Shared memory as handed to a kernel, rounded up to the 1024-byte boundary
// the swizzle pattern is anchored to (launches ask for kSmemSlack more).
constexpr int kSmemSlack = 1024;
__device__ __forceinline__ unsigned char* swizzle_aligned(unsigned char* smem) {
  return smem + ((kSmemSlack - smem_addr(smem) % kSmemSlack) % kSmemSlack);
}

// A [Rows x D] tile of 16-bit T at a 1024-byte aligned address.
template <int Rows, int D, typename T>
struct Tile {
  static_assert(sizeof(T) == 2 && D % 32 == 0 && Rows % 16 == 0);
  static constexpr int kBlockCols = D < 64 ? D : 64;
  static constexpr int kRowBytes = kBlockCols * 2;  // 64 or 128: the swizzle width
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static constexpr int kBlockBytes = Rows * kRowBytes;
  static constexpr int kBytes = Rows * D * 2;
  unsigned char* base;

  // Byte offset of the 16-byte chunk `chunk` (columns 8 chunk ..) of row r.
  __device__ __forceinline__ static int offset(int r, int chunk) {
    const int off =
        chunk / kChunksPerRow * kBlockBytes + r * kRowBytes + chunk % kChunksPerRow * 16;
    return off ^ ((off >> 3) & (kRowBytes - 16));  // chunk bits ^= row bits (mod 8 rows)
  }
  __device__ __forceinline__ T* at(int r, int col) const {
    return reinterpret_cast<T*>(base + offset(r, col / 8) + col % 8 * 2);
  }
  __device__ __forceinline__ std::uint32_t address(int r, int chunk) const {
    return smem_addr(base + offset(r, chunk));
  }

#ifdef MA_KERNELS_WGMMA
  // wgmma shared-memory descriptors (PTX ISA, "Matrix Descriptor Format"):
  // start >> 4, leading byte offset >> 4 at bit 16, stride byte offset >> 4
  // at bit 32, swizzle mode at bit 62 (1: 128 bytes, 2: 64 bytes).
  __device__ __forceinline__ static std::uint64_t descriptor(std::uint32_t start, int leading,
                                                             int stride) {
    constexpr std::uint64_t kSwizzle = kRowBytes == 128 ? 1 : 2;
    return (start & 0x3FFFF) >> 4 | static_cast<std::uint64_t>(leading >> 4) << 16 |
           static_cast<std::uint64_t>(stride >> 4) << 32 | kSwizzle << 62;
  }
  // K-major operand (rows are M or N), columns 16 ks .. 16 ks + 15; groups of
  // 8 rows lie 8 rows apart (the leading offset is unused when swizzled).
  // Steps along K move the start address only (row 0 is not swizzled).
  __device__ __forceinline__ std::uint64_t k_major(int ks) const {
    return descriptor(smem_addr(base), 16, 8 * kRowBytes) + (offset(0, 2 * ks) >> 4);
  }
  // MN-major operand (rows are K), rows 16 ks .. 16 ks + 15: groups of 8 rows
  // 8 rows apart, column blocks one block apart.
  __device__ __forceinline__ std::uint64_t mn_major(int ks) const {
    return descriptor(smem_addr(base), kBlockBytes, 8 * kRowBytes) + (offset(16 * ks, 0) >> 4);
  }
#endif
};

// Copies [Rows x D] tiles of [rows, D] views with one row stride into shared
// tiles by cp.async, rows past the end as 0. Thread t copies chunk t % (D/8)
// of rows t / (D/8) + i kRowStep; kRowStep is a multiple of 8, so the swizzle
// leaves those chunks one row step apart and both offsets are computed once
// (recomputed per chunk, the tile loads were a third of the forward's
// instructions).
template <int Rows, int D, typename T>
struct TileCopy {
  using Dst = Tile<Rows, D, T>;
  static constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
  static_assert(kRowStep % 8 == 0 && Rows % kRowStep == 0);
  // offset: of this thread's first chunk in a view; step: to its next (kRowStep rows)
  std::int64_t stride, offset, step;
  int row, smem_offset;  // this thread's first row, its chunk's place in a tile

  __device__ __forceinline__ explicit TileCopy(std::int64_t row_stride)
      : stride(row_stride), step(kRowStep * row_stride) {
    row = threadIdx.x / kChunks;
    const int chunk = threadIdx.x % kChunks;
    offset = row * stride + chunk * 8;
    smem_offset = Dst::offset(row, chunk);
  }
  // Rows row0 .. row0 + Rows of `view` (of `rows` rows) into `dst`.
  __device__ __forceinline__ void operator()(const Dst& dst, const T* view, std::int64_t row0,
                                             std::int64_t rows) const {
    const T* base = view + row0 * stride + offset;
    const int left = static_cast<int>(rows - row0 < Rows ? rows - row0 : Rows);
#pragma unroll
    for (int i = 0; i < Rows / kRowStep; ++i) {
      const bool ok = row + i * kRowStep < left;
      cp_async_16(dst.base + smem_offset + i * kRowStep * Dst::kRowBytes,
                  ok ? base + i * step : view, ok);
    }
  }
};

// ---- PTX wrappers --------------------------------------------------------

template <typename T>
__device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&v);
  }
}

// Shared memory that cp.async (or plain stores) wrote and wgmma reads next
// needs this fence in each writing thread before the barrier.
__device__ __forceinline__ void fence_for_tensor_cores() {
#ifdef MA_KERNELS_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

#ifdef MA_KERNELS_WGMMA

// Registers an in-flight wgmma writes (accumulators) or reads (A fragments):
// the compiler may neither touch nor reuse them across this point.
template <int N>
__device__ __forceinline__ void fence_registers(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(r[i][e])::"memory");
  }
}
template <int N>
__device__ __forceinline__ void fence_registers(std::uint32_t (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(r[i][e])::"memory");
  }
}

#define MA_ACC4(i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define MA_ACC16(i) MA_ACC4(i), MA_ACC4(i + 1), MA_ACC4(i + 2), MA_ACC4(i + 3)
#define MA_REGS16 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define MA_REGS32                                                                                \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24," \
  "%25,%26,%27,%28,%29,%30,%31}"
#define MA_REGS64                                                                                \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24," \
  "%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,"    \
  "%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"

// d[64 x N] (+)= A B^T, A and B K-major in shared memory; `accumulate`
// false overwrites d.
template <int N, typename T>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], std::uint64_t a, std::uint64_t b,
                                         bool accumulate) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  const int scale = accumulate;
  if constexpr (N == 32 && kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " MA_REGS16
                 ", %16, %17, p, 1, 1, 0, 0;\n}\n"
                 : MA_ACC16(0)
                 : "l"(a), "l"(b), "r"(scale));
  } else if constexpr (N == 32) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 " MA_REGS16
                 ", %16, %17, p, 1, 1, 0, 0;\n}\n"
                 : MA_ACC16(0)
                 : "l"(a), "l"(b), "r"(scale));
  } else if constexpr (N == 64 && kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " MA_REGS32
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : MA_ACC16(0), MA_ACC16(4)
                 : "l"(a), "l"(b), "r"(scale));
  } else if constexpr (N == 64) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " MA_REGS32
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : MA_ACC16(0), MA_ACC16(4)
                 : "l"(a), "l"(b), "r"(scale));
  } else {
    static_assert(N == 32 || N == 64, "S tiles are 32 or 64 keys wide");
  }
}

// d[64 x N] += A B: A from registers (the mma.sync A-fragment layout), B
// MN-major in shared memory.
template <int N, typename T>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const std::uint32_t (&a)[4],
                                         std::uint64_t b) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (N == 32 && kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " MA_REGS16
                 ", {%16,%17,%18,%19}, %20, p, 1, 1, 1;\n}\n"
                 : MA_ACC16(0)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
  } else if constexpr (N == 32) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 " MA_REGS16
                 ", {%16,%17,%18,%19}, %20, p, 1, 1, 1;\n}\n"
                 : MA_ACC16(0)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
  } else if constexpr (N == 64 && kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " MA_REGS32
                 ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                 : MA_ACC16(0), MA_ACC16(4)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
  } else if constexpr (N == 64) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " MA_REGS32
                 ", {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                 : MA_ACC16(0), MA_ACC16(4)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
  } else if constexpr (N == 128 && kBf16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " MA_REGS64
                 ", {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                 : MA_ACC16(0), MA_ACC16(4), MA_ACC16(8), MA_ACC16(12)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
  } else if constexpr (N == 128) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " MA_REGS64
                 ", {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                 : MA_ACC16(0), MA_ACC16(4), MA_ACC16(8), MA_ACC16(12)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
  } else {
    static_assert(N == 32 || N == 64 || N == 128, "head dims are 32, 64 or 128");
  }
}

#undef MA_ACC4
#undef MA_ACC16
#undef MA_REGS16
#undef MA_REGS32
#undef MA_REGS64

__device__ __forceinline__ void wgmma_issue_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

#else  // mma.sync

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// c[16x8] += a[16x16] b[16x8], 16-bit operands, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                    std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

#endif

// ---- warpgroup products --------------------------------------------------
// On sm_90a a product is issued to the tensor cores and runs while the
// warpgroup goes on; wait_products<n>(registers...) waits until at most n
// issued products are unfinished and hands the registers they write or read
// back to ordinary code (every product's accumulators and A fragments must be
// named at the wait that covers it). Elsewhere products run on the spot.

// acc = this warp's 16 rows of A B^T: A [64 x K] and B [N x K] in shared memory.
template <int N, int K, typename T>
__device__ __forceinline__ void issue_abt(float (&acc)[N / 8][4], const Tile<64, K, T>& a,
                                          const Tile<N, K, T>& b) {
#ifdef MA_KERNELS_WGMMA
  wgmma_issue_fence();
#pragma unroll
  for (int ks = 0; ks < K / 16; ++ks) wgmma_ss<N, T>(acc, a.k_major(ks), b.k_major(ks), ks > 0);
  wgmma_commit();
#else
  const int lane = threadIdx.x % 32, row0 = threadIdx.x / 32 * 16;
#pragma unroll
  for (int nb = 0; nb < N / 8; ++nb) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.f;
#pragma unroll
  for (int ks = 0; ks < K / 16; ks += 2) {
    std::uint32_t a0[4], a1[4];
    ldmatrix_x4(a0, a.address(row0 + lane % 16, 2 * ks + lane / 16));
    ldmatrix_x4(a1, a.address(row0 + lane % 16, 2 * ks + 2 + lane / 16));
#pragma unroll
    for (int nb = 0; nb < N / 8; ++nb) {
      std::uint32_t bf[4];
      ldmatrix_x4(bf, b.address(nb * 8 + lane % 8, 2 * ks + lane / 8));
      mma<T>(acc[nb], a0, bf[0], bf[1]);
      mma<T>(acc[nb], a1, bf[2], bf[3]);
    }
  }
#endif
}

// acc += A B for this warp's 16 rows: A as register fragments a[K/16][4]
// (see to_fragments), B [K x N] in shared memory.
template <int N, int K, typename T>
__device__ __forceinline__ void issue_ab(float (&acc)[N / 8][4],
                                         const std::uint32_t (&a)[K / 16][4],
                                         const Tile<K, N, T>& b) {
#ifdef MA_KERNELS_WGMMA
  wgmma_issue_fence();
#pragma unroll
  for (int ks = 0; ks < K / 16; ++ks) wgmma_rs<N, T>(acc, a[ks], b.mn_major(ks));
  wgmma_commit();
#else
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int ks = 0; ks < K / 16; ++ks) {
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      std::uint32_t bf[4];
      ldmatrix_x4_trans(bf, b.address(ks * 16 + lane % 16, 2 * np + lane / 16));
      mma<T>(acc[2 * np], a[ks], bf[0], bf[1]);
      mma<T>(acc[2 * np + 1], a[ks], bf[2], bf[3]);
    }
  }
#endif
}

template <int Pending, typename... Registers>
__device__ __forceinline__ void wait_products(Registers&... registers) {
#ifdef MA_KERNELS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
  (fence_registers(registers), ...);
#endif
}

// A 16 x K accumulator tile as 16-bit A fragments (P or dS fed back in).
template <int K, typename T>
__device__ __forceinline__ void to_fragments(std::uint32_t (&a)[K / 16][4],
                                             const float (&acc)[K / 8][4]) {
#pragma unroll
  for (int kc = 0; kc < K / 16; ++kc) {
    a[kc][0] = pack<T>(acc[2 * kc][0], acc[2 * kc][1]);
    a[kc][1] = pack<T>(acc[2 * kc][2], acc[2 * kc][3]);
    a[kc][2] = pack<T>(acc[2 * kc + 1][0], acc[2 * kc + 1][1]);
    a[kc][3] = pack<T>(acc[2 * kc + 1][2], acc[2 * kc + 1][3]);
  }
}

__device__ __forceinline__ int acc_row(int e) { return threadIdx.x % 32 / 4 + 8 * (e / 2); }
__device__ __forceinline__ int acc_col(int nb, int e) {
  return 8 * nb + 2 * (threadIdx.x % 4) + e % 2;
}

}  // namespace ma_kernels::tiles
