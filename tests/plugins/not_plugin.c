/* not_plugin.c — a shared object that is not a tessera plugin (no tessera_plugin_entry), for
 * the loader's "not a tessera plugin" error. Never installed. */
int not_a_plugin_answer(void);
int not_a_plugin_answer(void) { return 42; }
