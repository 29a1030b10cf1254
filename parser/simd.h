/* Run-time selection of the SIMD kernels used by the parser.
 *
 * Every kernel exists in a scalar version and in one or more vector versions
 * compiled with __attribute__((target(...))) in the same file; none of them
 * needs special compiler flags. The level is chosen once, at start-up, from
 * CPUID (simd_init) and can be lowered for tests and fuzzing (simd_set_level),
 * which must give identical results at every level.
 *
 * Not thread-safe: call simd_init / simd_set_level before any worker runs.
 */
#ifndef STANZA_PARSER_SIMD_H
#define STANZA_PARSER_SIMD_H

enum simd_level {
	SIMD_SCALAR = 0,
	SIMD_SSE42  = 1,   /* SSE4.2 (and the SSSE3 pshufb it implies) */
	SIMD_AVX2   = 2,
	SIMD_AVX512 = 3,   /* AVX-512 F + BW */
};

/* The best level this CPU (and this build) supports. */
enum simd_level simd_detect(void);

/* Select the kernels for min(level, simd_detect()). Returns the level set.
 * Every module with SIMD kernels registers with simd_set_level (see simd.c). */
enum simd_level simd_set_level(enum simd_level level);

/* simd_set_level(simd_detect()), done once; later calls are no-ops. */
void simd_init(void);

enum simd_level simd_current(void);
const char *simd_level_name(enum simd_level level);

#endif
