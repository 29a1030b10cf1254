/* CPU feature detection and the one switch that selects every SIMD kernel. */
#include "parser/simd.h"
#include "parser/scan.h"
#include "parser/utf8.h"

static enum simd_level current_level = SIMD_SCALAR;
static int initialised;

enum simd_level simd_detect(void)
{
#if defined(STANZA_SIMD_SCALAR_ONLY) || !(defined(__x86_64__) || defined(__i386__))
	return SIMD_SCALAR;
#else
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
		return SIMD_AVX512;
	if (__builtin_cpu_supports("avx2"))
		return SIMD_AVX2;
	if (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("ssse3"))
		return SIMD_SSE42;
	return SIMD_SCALAR;
#endif
}

enum simd_level simd_set_level(enum simd_level level)
{
	enum simd_level best = simd_detect();

	if (level > best)
		level = best;
	xml_scan_select(level);
	xml_utf8_select(level);
	current_level = level;
	initialised = 1;
	return level;
}

void simd_init(void)
{
	if (!initialised)
		simd_set_level(simd_detect());
}

enum simd_level simd_current(void)
{
	return current_level;
}

const char *simd_level_name(enum simd_level level)
{
	switch (level) {
	case SIMD_SCALAR: return "scalar";
	case SIMD_SSE42:  return "sse4.2";
	case SIMD_AVX2:   return "avx2";
	case SIMD_AVX512: return "avx512";
	}
	return "?";
}
