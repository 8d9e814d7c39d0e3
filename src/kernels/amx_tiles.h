// AMX tile configuration shared by the AMX kernels (include only from files compiled with the amx
// flags). Every tile is 16 rows x 64 bytes; tile state is per thread, so each task loads it.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace tz::kernels {

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

// Tiles 0-7 as 16 rows x 64 bytes.
inline void load_tile_config_16x64() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC 12 does not treat LDTILECFG as a read of cfg and may drop the stores above (seen: the
  // loop vanished, leaving an all-zero config and SIGILL on the first tile load). Force them.
  __asm__ __volatile__("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

}  // namespace tz::kernels
