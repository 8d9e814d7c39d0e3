# OpenBLAS, LAPACKE, PCRE2 and ICU as imported targets. The library links these names, so the exported
# package carries names, not this machine's paths: tensorzipConfig.cmake includes this file again
# on the consumer's machine, where find_package / find_library locate the libraries anew.
find_package(OpenBLAS CONFIG REQUIRED)
find_library(TENSORZIP_LAPACKE_LIBRARY NAMES lapacke REQUIRED)
find_library(TENSORZIP_PCRE2_LIBRARY NAMES pcre2-8 REQUIRED)  # byte-level BPE pre-tokenizers (Unicode regexes)
find_package(ICU REQUIRED COMPONENTS uc)                      # WordPiece: Unicode properties, NFD, case mapping
if(NOT TARGET tensorzip_dep::openblas)
  add_library(tensorzip_dep::openblas INTERFACE IMPORTED)
  set_target_properties(tensorzip_dep::openblas PROPERTIES
    INTERFACE_LINK_LIBRARIES "${OpenBLAS_LIBRARIES}" INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIRS}")
endif()
if(NOT TARGET tensorzip_dep::lapacke)
  add_library(tensorzip_dep::lapacke UNKNOWN IMPORTED)
  set_target_properties(tensorzip_dep::lapacke PROPERTIES IMPORTED_LOCATION "${TENSORZIP_LAPACKE_LIBRARY}")
endif()
if(NOT TARGET tensorzip_dep::pcre2)
  add_library(tensorzip_dep::pcre2 UNKNOWN IMPORTED)
  set_target_properties(tensorzip_dep::pcre2 PROPERTIES IMPORTED_LOCATION "${TENSORZIP_PCRE2_LIBRARY}")
endif()
if(NOT TARGET tensorzip_dep::icu)
  add_library(tensorzip_dep::icu INTERFACE IMPORTED)
  set_target_properties(tensorzip_dep::icu PROPERTIES INTERFACE_LINK_LIBRARIES ICU::uc)
endif()
