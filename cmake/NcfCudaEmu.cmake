# NCF_CUDA_EMU=ON: builds ncf_cuda_emu.so, the CUDA backend (native/cuda/*.cu) compiled by the
# host C++ compiler against the emulation in native/emu (see native/emu/cuda_emu.h), so the
# backend's kernels, launches and cuBLASLt calls run and are checked on a machine without a GPU:
#   NCF_CUDA_PLUGIN=build/Release/ncf_cuda_emu.so npx ncf-native selftest --device cuda
# Needs only headers: the CUDA runtime's (cuda_runtime.h, cuda_fp16.h) and cuBLASLt's and
# cuRAND's (a toolkit, or NCF_CUDA_SDK). Never a replacement for a run on a GPU.
set(NCF_EMU_HINTS "${NCF_CUDA_SDK}/include" "$ENV{CUDA_HOME}/include" /usr/local/cuda/include)
find_path(NCF_EMU_RUNTIME_INCLUDE cuda_runtime.h HINTS ${NCF_EMU_HINTS} NO_CACHE)
find_path(NCF_EMU_CUBLASLT_INCLUDE cublasLt.h HINTS ${NCF_EMU_HINTS} NO_CACHE)
find_path(NCF_EMU_CURAND_INCLUDE curand_philox4x32_x.h HINTS ${NCF_EMU_HINTS} NO_CACHE)
foreach(piece NCF_EMU_RUNTIME_INCLUDE NCF_EMU_CUBLASLT_INCLUDE NCF_EMU_CURAND_INCLUDE)
  if(NOT ${piece})
    message(FATAL_ERROR "NCF_CUDA_EMU=ON but ${piece} was not found (set NCF_CUDA_SDK or CUDA_HOME)")
  endif()
endforeach()

# Each .cu becomes a .cc with its launches and dynamic shared memory in the emulator's terms:
#   k<<<grid, block, smem, stream>>>(args)  ->  ::emu::launch("k", __PRETTY_FUNCTION__, k, grid, block, smem, stream)(args)
#   (k a name, or a template's name with its arguments: k<__half>, k<T, O>)
#   extern __shared__ T x[];               ->  T* x = ::emu::dynamic_shared<T>();
# (a launch configuration must not contain '>'; if one does, its <<< is left and the build fails).
# The headers (.cuh) are rewritten the same way into the same folder, where the generated files'
# quoted includes find them first.
file(GLOB NCF_EMU_CU CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/*.cu ${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/*.cuh)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${NCF_EMU_CU})
set(NCF_EMU_GENERATED)
foreach(cu ${NCF_EMU_CU})
  get_filename_component(name "${cu}" NAME)
  get_filename_component(stem "${cu}" NAME_WE)
  get_filename_component(ext "${cu}" LAST_EXT)
  file(READ "${cu}" text)
  string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_:]*(<[A-Za-z0-9_:, ]*>)?)<<<([^>]*)>>>\\(" "::emu::launch(\"\\1\", __PRETTY_FUNCTION__, \\1, \\3)(" text "${text}")
  string(REGEX REPLACE "extern __shared__ ([A-Za-z_][A-Za-z0-9_]*) ([A-Za-z_][A-Za-z0-9_]*)\\[\\];"
         "\\1* \\2 = ::emu::dynamic_shared<\\1>();" text "${text}")
  if(ext STREQUAL ".cu")
    set(out "${CMAKE_CURRENT_BINARY_DIR}/emu/${stem}.cc")
    list(APPEND NCF_EMU_GENERATED "${out}")
  else()
    set(out "${CMAKE_CURRENT_BINARY_DIR}/emu/${name}")
  endif()
  file(CONFIGURE OUTPUT "${out}" CONTENT "// Generated from native/cuda/${name} by cmake/NcfCudaEmu.cmake\n${text}" @ONLY)
endforeach()

# The emulation itself (kernels' execution, runtime, cuBLASLt, NCCL) and the flags every
# emulated file is compiled with, shared by the plugin and the emulator's own checks.
set(NCF_EMU_DIR ${CMAKE_CURRENT_SOURCE_DIR}/native/emu)
set(NCF_EMU_RUNTIME ${NCF_EMU_DIR}/emu_grid.cc ${NCF_EMU_DIR}/emu_cudart.cc ${NCF_EMU_DIR}/emu_graph.cc
    ${NCF_EMU_DIR}/emu_cublaslt.cc)
add_library(ncf_emu_flags INTERFACE)
target_include_directories(ncf_emu_flags INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/native/cuda ${NCF_EMU_DIR}
                           ${NCF_EMU_RUNTIME_INCLUDE} ${NCF_EMU_CUBLASLT_INCLUDE} ${NCF_EMU_CURAND_INCLUDE})
target_compile_definitions(ncf_emu_flags INTERFACE NCF_CUDA_EMULATION)
target_compile_options(ncf_emu_flags INTERFACE -O2 -fopenmp-simd -Wall -Wno-unused-parameter -Wno-unknown-pragmas
                       -include ${NCF_EMU_DIR}/cuda_emu.h)
target_link_libraries(ncf_emu_flags INTERFACE Threads::Threads)
# NCF_CUDA_EMU_ASAN=ON adds AddressSanitizer, so a kernel reading or writing outside its buffers
# is reported where it happens (run node with LD_PRELOAD=$(gcc -print-file-name=libasan.so)), and
# the alignment check: a float4 / uint4 access that is not 16-byte aligned stops the run, as it
# faults on a GPU (x86 would do it silently).
if(NCF_CUDA_EMU_ASAN)
  set(NCF_EMU_SANITIZE -fsanitize=address,alignment -fno-sanitize-recover=alignment)
  target_compile_options(ncf_emu_flags INTERFACE ${NCF_EMU_SANITIZE} -fno-omit-frame-pointer)
  target_link_options(ncf_emu_flags INTERFACE ${NCF_EMU_SANITIZE})
  target_compile_definitions(ncf_emu_flags INTERFACE NCF_EMU_ASAN)
endif()

# NCF_CUDA_EMU_RACE=ON adds the racecheck (native/emu/emu_race.cc): the CUDA sources (and the
# emulator's own checks) are compiled with -fsanitize=thread, whose calls before each memory
# access emu_race.cc answers itself (ThreadSanitizer's runtime is not linked), and a launch with
# shared-memory hazards between a block's threads reports them and stops the process.
if(NCF_CUDA_EMU_RACE)
  if(NCF_CUDA_EMU_ASAN)
    message(FATAL_ERROR "NCF_CUDA_EMU_RACE and NCF_CUDA_EMU_ASAN are separate builds (-fsanitize=thread and address do not mix)")
  endif()
  list(APPEND NCF_EMU_RUNTIME ${NCF_EMU_DIR}/emu_race.cc)
  target_compile_definitions(ncf_emu_flags INTERFACE NCF_EMU_RACE)
  # (GCC instruments assignments only, not a call's result stored in place, as in
  # `dst[i] = __float2half_rn(x)` with the conversion not inlined: inlining everything it can
  # makes such stores assignments.)
  set_source_files_properties(${NCF_EMU_GENERATED} ${NCF_EMU_DIR}/emu_selftest.cc PROPERTIES
                              COMPILE_OPTIONS "-fsanitize=thread;-finline-limit=100000")
  target_link_libraries(ncf_emu_flags INTERFACE ${CMAKE_DL_LIBS})
endif()

add_library(ncf_cuda_emu MODULE ${NCF_EMU_GENERATED} ${NCF_EMU_RUNTIME} ${NCF_EMU_DIR}/emu_nccl.cc)
set_target_properties(ncf_cuda_emu PROPERTIES PREFIX "" SUFFIX ".so")
target_link_libraries(ncf_cuda_emu PRIVATE ncf_emu_flags)
target_compile_definitions(ncf_cuda_emu PRIVATE NCF_CUDA_DESC="host emulation of the CUDA backend, not a GPU")
# Its own inline functions bind inside it, never to the addon's copies of the shared headers.
target_link_options(ncf_cuda_emu PRIVATE -Wl,--no-undefined -Wl,-Bsymbolic)

# The emulator's own checks (native/emu/emu_selftest.cc), built beside the plugin with it.
add_executable(ncf_cuda_emu_selftest ${NCF_EMU_DIR}/emu_selftest.cc ${NCF_EMU_RUNTIME})
target_link_libraries(ncf_cuda_emu_selftest PRIVATE ncf_emu_flags)
if(CMAKE_LIBRARY_OUTPUT_DIRECTORY)
  set_target_properties(ncf_cuda_emu_selftest PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_LIBRARY_OUTPUT_DIRECTORY}")
endif()
add_dependencies(ncf_cuda_emu ncf_cuda_emu_selftest)
message(STATUS "ncf-native: CUDA emulation plugin enabled (ncf_cuda_emu.so)")

# NCCL under emulation runs over MPI (native/emu/emu_nccl.cc), so `mpirun -np N` exercises the
# CUDA backend's multi-rank path too.
find_package(MPI COMPONENTS C QUIET)
find_path(NCF_EMU_NCCL_INCLUDE nccl.h HINTS ${NCF_EMU_HINTS} ${NCF_NCCL_ROOT}/include NO_CACHE)
if(MPI_C_FOUND AND NCF_EMU_NCCL_INCLUDE)
  target_include_directories(ncf_cuda_emu PRIVATE ${NCF_EMU_NCCL_INCLUDE})
  target_compile_definitions(ncf_cuda_emu PRIVATE NCF_HAVE_NCCL OMPI_SKIP_MPICXX MPICH_SKIP_MPICXX)
  target_link_libraries(ncf_cuda_emu PRIVATE MPI::MPI_C)
  message(STATUS "ncf-native: CUDA emulation with NCCL over MPI")
endif()
