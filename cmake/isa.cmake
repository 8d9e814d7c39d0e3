# The one table of ISA name -> compiler flags. The library is baseline x86-64; each
# src/kernels/<family>/<isa>.cpp gets only its own ISA's flags (see tz_isa_sources), so one
# binary runs on any x86-64, dispatch picks the variant at run time, and a variant chosen on a
# CPU can only contain instructions that CPU has: the flag set of a file is exactly what the
# variants it defines declare in their config (level features + extra_features).
set(TZ_ISA_FLAGS_scalar "")
set(TZ_ISA_FLAGS_avx2       -mavx2 -mfma -mf16c -mbmi2)
set(TZ_ISA_FLAGS_avxvnni    ${TZ_ISA_FLAGS_avx2} -mavxvnni)
# AVX-512 level: F/BW/VL/DQ only (Skylake-SP); each extension below is its own object set.
set(TZ_ISA_FLAGS_avx512     ${TZ_ISA_FLAGS_avx2} -mavx512f -mavx512bw -mavx512vl -mavx512dq)
set(TZ_ISA_FLAGS_avx512vnni ${TZ_ISA_FLAGS_avx512} -mavx512vnni)
# The VBMI LUT kernel sums its VPERMB lookups with VPDPBUSD: it needs (and declares) both.
set(TZ_ISA_FLAGS_avx512vbmi ${TZ_ISA_FLAGS_avx512} -mavx512vbmi -mavx512vnni)
set(TZ_ISA_FLAGS_avx512bf16 ${TZ_ISA_FLAGS_avx512} -mavx512bf16)
set(TZ_ISA_FLAGS_amx        ${TZ_ISA_FLAGS_avx512} -mavx512vnni -mavx512bf16 -mavx512vbmi
                            -mamx-tile -mamx-bf16 -mamx-int8)

# tz_isa_sources(<target> <isa> files...): add files compiled with that ISA's flags only.
function(tz_isa_sources target isa)
  if(NOT DEFINED TZ_ISA_FLAGS_${isa})
    message(FATAL_ERROR "tz_isa_sources: unknown ISA flag set '${isa}' (cmake/isa.cmake)")
  endif()
  target_sources(${target} PRIVATE ${ARGN})
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "${TZ_ISA_FLAGS_${isa}}")
endfunction()
