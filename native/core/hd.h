// Marks functions compiled for both the host and, under nvcc, the device. Code shared by the CPU
// and CUDA backends (random streams, sampling, the Adam rule, the rank rule) lives in headers
// that use this, so each piece of math exists once.
#pragma once

#if defined(__CUDACC__)
#define NCF_HD __host__ __device__ __forceinline__
#elif defined(NCF_CUDA_EMULATION)
// The emulated CUDA backend (native/emu) keeps its own copies, apart from the addon's.
#define NCF_HD static inline
#else
#define NCF_HD inline
#endif
