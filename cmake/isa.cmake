# The one table of ISA name -> compiler flags. The library is baseline x86-64; each
# src/kernels/<family>/<isa>.cpp gets only its own ISA's flags (see tz_isa_sources),
# so one binary runs on any x86-64 and dispatch picks the variant at run time.
set(TZ_ISA_FLAGS_scalar "")
set(TZ_ISA_FLAGS_avx2   -mavx2 -mfma -mf16c -mbmi2)
set(TZ_ISA_FLAGS_avxvnni ${TZ_ISA_FLAGS_avx2} -mavxvnni)
set(TZ_ISA_FLAGS_avx512vnni ${TZ_ISA_FLAGS_avx2} -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni)
set(TZ_ISA_FLAGS_avx512 -mavx2 -mfma -mf16c -mbmi2 -mavx512f -mavx512bw -mavx512vl -mavx512dq
                        -mavx512vnni -mavx512bf16 -mavx512vbmi)
set(TZ_ISA_FLAGS_amx    ${TZ_ISA_FLAGS_avx512} -mamx-tile -mamx-bf16 -mamx-int8)

# tz_isa_sources(<target> <isa> files...): add files compiled with that ISA's flags only.
function(tz_isa_sources target isa)
  target_sources(${target} PRIVATE ${ARGN})
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "${TZ_ISA_FLAGS_${isa}}")
endfunction()
