/* stanza-bench: parse the options, provision accounts if asked, run the
 * scenario, report.
 *
 * Exit status: 0 the run completed without errors, 1 it completed with
 * errors (see the report), 2 usage, 3 setup failed (provisioning, TLS,
 * threads). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/harness/engine.h"
#include "bench/harness/report.h"

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	static struct bench_opts o;
	static struct engine e;
	static struct bench_result r;
	char err[512];

	bench_opts_default(&o);
	int pr = bench_opts_parse_args(&o, argc, argv, err, sizeof(err));
	if (pr == 1) {
		bench_opts_usage(stdout, argv[0]);
		return 0;
	}
	if (pr) {
		fprintf(stderr, "stanza-bench: %s\n", err);
		bench_opts_usage(stderr, argv[0]);
		return 2;
	}
	const struct scenario *sc = scenario_get(o.scenario);
	if (!sc) {
		fprintf(stderr, "stanza-bench: no such scenario\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	if (engine_init(&e, &o, sc, err, sizeof(err))) {
		fprintf(stderr, "stanza-bench: %s\n", err);
		engine_free(&e);
		return 3;
	}
	if (sc->setup(&e)) {
		engine_free(&e);
		return 2;
	}
	if (o.provision != PROV_NONE && o.scenario != SC_RAW && provision_accounts(&o, o.users)) {
		engine_free(&e);
		return 3;
	}

	memset(&r, 0, sizeof(r));
	r.opts = &o;
	if (o.server_pid) {
		struct proc_sample s;
		if (proc_sample(o.server_pid, &s) == 0)
			r.server_rss_idle_kib = s.rss_kib;
		else
			fprintf(stderr, "stanza-bench: cannot sample pid %d\n", (int)o.server_pid);
	}
	if (!o.quiet)
		fprintf(stderr, "stanza-bench: %s against %s:%u (%s), %u threads\n", sc->name, o.host, o.port,
			o.label[0] ? o.label : o.domain, e.nthreads);
	if (engine_run(&e, &r)) {
		engine_free(&e);
		return 3;
	}
	report_text(stdout, &r);
	int rc = 0;
	if (o.json_path[0] && report_json(o.json_path, &r)) {
		fprintf(stderr, "stanza-bench: cannot write %s\n", o.json_path);
		rc = 3;
	}
	if (o.series_path[0] && report_series(o.series_path, &r)) {
		fprintf(stderr, "stanza-bench: cannot write %s\n", o.series_path);
		rc = 3;
	}
	if (!rc)
		for (unsigned k = 0; k < ERR_KINDS; k++)
			if (r.errors[k])
				rc = 1;
	free(r.ticks);
	engine_free(&e);
	return rc;
}
