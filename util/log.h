/* Logging: one line per event, levels, nothing per stanza at the default
 * level. Lines go to stderr (the journal under systemd) as
 *   2026-11-22T15:20:00.123Z info  w0: text
 * A line is written with one write(2), so lines from several threads never
 * interleave. Thread-safe; callable from any thread; never allocates.
 */
#ifndef STANZA_UTIL_LOG_H
#define STANZA_UTIL_LOG_H

enum log_level {
	LOG_ERR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

extern int log_threshold;   /* messages above it are dropped before formatting */

void log_set_level(enum log_level level);
/* "error", "warn", "info", "debug" → 0, or -1 if unknown. */
int log_parse_level(const char *name, enum log_level *level);
/* A short tag for this thread's lines ("main", "w0", "ctl"): at most 15 bytes. */
void log_set_thread_tag(const char *tag);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...) do { if ((int)(lvl) <= log_threshold) log_write((lvl), __VA_ARGS__); } while (0)
#define log_err(...)   log_at(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

#endif
