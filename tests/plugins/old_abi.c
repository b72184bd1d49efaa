/* old_abi.c — a test plugin that claims another plugin ABI version, as a plugin built against
 * an older or newer tessera.h would; the host must refuse it with a sentence. Never installed. */
#include "tessera.h"

static const ts_plugin plugin = {TS_ABI + 41u, sizeof(ts_plugin), TS_LAYER, "old_abi", "0",
                                 "a plugin of another ABI (test only)", NULL, &plugin};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
