/* make check's side of the fuzzing: feeds every seed (tests/fuzz/corpus/
 * NAME/) and every input that once made a harness fail (tests/fuzz/
 * regress/NAME/) to the harness NAME, built here by gcc without libFuzzer,
 * so that no finding comes back unnoticed.
 *
 * tests/fuzz/regress/KNOWN lists regress files whose fix is not merged
 * yet ("NAME/FILE finding N"): each runs in a subprocess, and while it
 * still fails it is reported as TODO (not a failure); once its fix lands it
 * passes, and its line can go. */
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct harness {
	const char *name;
	fuzz_fn fn;
};

static struct harness harnesses[16];
static GPtrArray *inputs; /* freed at the end: GLib does not own test data */
static size_t n_harnesses;

void fuzz_register(const char *name, fuzz_fn fn)
{
	g_assert_cmpuint(n_harnesses, <, G_N_ELEMENTS(harnesses));
	harnesses[n_harnesses++] = (struct harness){ name, fn };
}

struct input {
	fuzz_fn fn;
	char *path;
	char *known; /* the KNOWN line's reason, or NULL */
};

static void input_free(gpointer p)
{
	struct input *in = p;
	g_free(in->path);
	g_free(in->known);
	g_free(in);
}

static void run_file(fuzz_fn fn, const char *path)
{
	g_autofree char *data = NULL;
	gsize len;
	g_autoptr(GError) err = NULL;

	if (!g_file_get_contents(path, &data, &len, &err))
		g_error("%s", err->message);
	/* A copy of exactly LEN bytes, so reading past the input is seen
	 * (never NULL, as libFuzzer's is not). */
	g_autofree guint8 *copy = g_malloc(len ? len : 1);
	memcpy(copy, data, len);
	fn(copy, len);
}

static void test_input(gconstpointer p)
{
	const struct input *in = p;

	if (!in->known) {
		run_file(in->fn, in->path);
		return;
	}
	if (g_test_subprocess()) {
		run_file(in->fn, in->path);
		return;
	}
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
	if (!g_test_trap_has_passed())
		g_test_incomplete(in->known);
}

/* "NAME/FILE reason..." lines; # comments. */
static GHashTable *read_known(const char *dir)
{
	GHashTable *known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_autofree char *path = g_build_filename(dir, "regress", "KNOWN", NULL);
	g_autofree char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return known;
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l; l++) {
		char *line = g_strstrip(*l);
		if (!*line || *line == '#')
			continue;
		char *sp = strpbrk(line, " \t");
		g_hash_table_replace(known, g_strndup(line, sp ? (size_t)(sp - line) : strlen(line)),
				     g_strdup(sp ? g_strstrip(sp) : "known finding"));
	}
	return known;
}

static gint by_name(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void add_dir(GHashTable *known, const struct harness *h, const char *top, const char *kind)
{
	g_autofree char *dir = g_build_filename(top, kind, h->name, NULL);
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	const char *name;

	if (!d)
		return;
	while ((name = g_dir_read_name(d)))
		if (*name != '.')
			g_ptr_array_add(names, g_strdup(name));
	g_ptr_array_sort(names, by_name);
	for (guint i = 0; i < names->len; i++) {
		const char *file = g_ptr_array_index(names, i);
		g_autofree char *key = g_strdup_printf("%s/%s", h->name, file);
		struct input *in = g_new0(struct input, 1);
		g_ptr_array_add(inputs, in);
		in->fn = h->fn;
		in->path = g_build_filename(dir, file, NULL);
		if (strcmp(kind, "regress") == 0 && g_hash_table_contains(known, key))
			in->known = g_strdup(g_hash_table_lookup(known, key));
		g_autofree char *test = g_strdup_printf("/fuzz/%s/%s/%s", h->name, kind, file);
		g_test_add_data_func(test, in, test_input);
	}
}

/* rm -r of a directory of directories of files. */
static void remove_tree(const char *dir)
{
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	const char *name;

	while (d && (name = g_dir_read_name(d))) {
		g_autofree char *path = g_build_filename(dir, name, NULL);
		if (g_file_test(path, G_FILE_TEST_IS_DIR))
			remove_tree(path);
		else
			unlink(path);
	}
	rmdir(dir);
}

int main(int argc, char **argv)
{
	g_autofree char *tmp = NULL;

	/* Inputs of known findings crash their subprocess before it cleans
	 * up: every scratch directory goes in one, removed at the end. */
	if (!g_getenv("RTCSIGNALD_FUZZ_TMP")) {
		tmp = g_dir_make_tmp("rtcsignald-fuzz-replay-XXXXXX", NULL);
		g_assert_nonnull(tmp);
		g_setenv("RTCSIGNALD_FUZZ_TMP", tmp, TRUE);
		g_setenv("TMPDIR", tmp, TRUE);
	}
	g_test_init(&argc, &argv, NULL);
	const char *top = g_test_get_dir(G_TEST_DIST);
	g_autofree char *fuzzdir = g_build_filename(top, "fuzz", NULL);
	g_autoptr(GHashTable) known = read_known(fuzzdir);

	inputs = g_ptr_array_new_with_free_func(input_free);

	for (size_t i = 0; i < n_harnesses; i++) {
		add_dir(known, &harnesses[i], fuzzdir, "corpus");
		add_dir(known, &harnesses[i], fuzzdir, "regress");
	}
	int rc = g_test_run();
	g_ptr_array_unref(inputs);
	if (tmp)
		remove_tree(tmp);
	return rc;
}
