// Statistics and tables come from the library (lib/bench, built into
// dist/bench) so `nodularity bench` and this runner compute the same figures.
export { summarize, median } from './built.mjs';
export { fmt, table } from './built.mjs';
