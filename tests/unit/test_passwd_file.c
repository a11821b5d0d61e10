/* passwd-file parsing: columns, extra fields, comments, errors, duplicates,
   loading, and a 100k-user file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "passwd_file.h"

static struct passwd_file *parse_ok(const char *text)
{
	char err[256] = "";
	struct passwd_file *pf = passwd_file_parse(text, strlen(text), err,
						   sizeof(err));

	if (pf == NULL)
		fail_msg("parse failed: %s", err);
	return pf;
}

static void parse_fails(const char *text, size_t len, const char *want)
{
	char err[256] = "";

	assert_null(passwd_file_parse(text, len, err, sizeof(err)));
	assert_string_equal(err, want);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_all_columns(void **state)
{
	struct passwd_file *pf = parse_ok(
		"alice:{PLAIN}a:1000:1001:Alice A:/home/alice:/bin/sh:"
		"quota=1G nopassword\n");
	const struct passwd_entry *e = passwd_file_lookup(pf, "alice");

	assert_non_null(e);
	assert_string_equal(e->user, "alice");
	assert_string_equal(e->password, "{PLAIN}a");
	assert_string_equal(e->uid, "1000");
	assert_string_equal(e->gid, "1001");
	assert_string_equal(e->home, "/home/alice");
	assert_int_equal(e->field_count, 2);
	assert_string_equal(e->fields[0].key, "quota");
	assert_string_equal(e->fields[0].value, "1G");
	assert_string_equal(e->fields[1].key, "nopassword");
	assert_string_equal(e->fields[1].value, "");
	assert_int_equal(passwd_file_count(pf), 1);
	passwd_file_free(pf);
}

static void test_fewer_columns(void **state)
{
	struct passwd_file *pf = parse_ok(
		"bob:{PLAIN}b\n"
		"carol:{PLAIN}c:1:2\n"
		"onlyuser\n"
		"emptypw:\n"
		"sixcols:x:1:2:gecos:/home/six\n"
		"last:{PLAIN}no newline");
	const struct passwd_entry *e;

	assert_int_equal(passwd_file_count(pf), 6);
	e = passwd_file_lookup(pf, "bob");
	assert_non_null(e);
	assert_string_equal(e->password, "{PLAIN}b");
	assert_string_equal(e->uid, "");
	assert_string_equal(e->gid, "");
	assert_string_equal(e->home, "");
	assert_int_equal(e->field_count, 0);
	assert_null(e->fields);
	e = passwd_file_lookup(pf, "carol");
	assert_string_equal(e->uid, "1");
	assert_string_equal(e->gid, "2");
	assert_string_equal(e->home, "");
	assert_string_equal(passwd_file_lookup(pf, "onlyuser")->password, "");
	assert_string_equal(passwd_file_lookup(pf, "emptypw")->password, "");
	assert_string_equal(passwd_file_lookup(pf, "sixcols")->home, "/home/six");
	assert_string_equal(passwd_file_lookup(pf, "last")->password,
			    "{PLAIN}no newline");
	passwd_file_free(pf);
}

/* Behaviour checked against Dovecot 2.3.19's passwd-file passdb. */
static void test_extra_fields(void **state)
{
	struct passwd_file *pf = parse_ok(
		"u:{PLAIN}p::::::userdb_mail=maildir:~/Maildir  x=a=b   bare z=\n"
		"dup:{PLAIN}p::::::k=1 k=2 j=0\n"
		"old:{PLAIN}p:::::::mail=maildir:/x\n"
		"empty8:{PLAIN}p:::::::\n"
		"tail:{PLAIN}p::::::a=1 \n");
	const struct passwd_entry *e = passwd_file_lookup(pf, "u");

	assert_int_equal(e->field_count, 4);
	/* colons belong to the value: column 8 runs to the end of the line */
	assert_string_equal(passwd_entry_field(e, "userdb_mail"),
			    "maildir:~/Maildir");
	assert_string_equal(passwd_entry_field(e, "x"), "a=b");
	assert_string_equal(passwd_entry_field(e, "bare"), "");
	assert_string_equal(passwd_entry_field(e, "z"), "");
	assert_null(passwd_entry_field(e, "missing"));
	assert_null(passwd_entry_field(e, "userdb"));
	/* a later field overrides an earlier one */
	e = passwd_file_lookup(pf, "dup");
	assert_int_equal(e->field_count, 3);
	assert_string_equal(passwd_entry_field(e, "k"), "2");
	assert_string_equal(passwd_entry_field(e, "j"), "0");
	/* empty 8th column then more: Dovecot's old userdb format, no fields */
	assert_int_equal(passwd_file_lookup(pf, "old")->field_count, 0);
	assert_int_equal(passwd_file_lookup(pf, "empty8")->field_count, 0);
	assert_int_equal(passwd_file_lookup(pf, "tail")->field_count, 1);
	passwd_file_free(pf);
}

static void test_comments_and_blanks(void **state)
{
	struct passwd_file *pf = parse_ok(
		"# a comment\n"
		"\n"
		"   \t \n"
		"#alice:{PLAIN}x\n"
		"crlf:{PLAIN}pw\r\n"
		"hash:{PLAIN}#notacomment\n"
		"\r\n");

	assert_int_equal(passwd_file_count(pf), 2);
	assert_null(passwd_file_lookup(pf, "#alice"));
	assert_string_equal(passwd_file_lookup(pf, "crlf")->password, "{PLAIN}pw");
	assert_string_equal(passwd_file_lookup(pf, "hash")->password,
			    "{PLAIN}#notacomment");
	passwd_file_free(pf);

	pf = parse_ok("");
	assert_int_equal(passwd_file_count(pf), 0);
	assert_null(passwd_file_lookup(pf, "x"));
	passwd_file_free(pf);
}

static void test_errors(void **state)
{
	char err[8];

	parse_fails("a:b\n\n# c\n:nouser\n", 17, "line 4: empty user name");
	parse_fails(":x", 2, "line 1: empty user name");
	parse_fails("a:b\nb:c\0d\n", 10, "line 2: NUL byte in line");
	parse_fails("a:b::::::=v\n", 12, "line 1: extra field without a name");
	/* no errbuf, or a tiny one, is fine */
	assert_null(passwd_file_parse(":x", 2, NULL, 0));
	assert_null(passwd_file_parse(":x", 2, err, sizeof(err)));
	assert_string_equal(err, "line 1:");
}

static void test_duplicates(void **state)
{
	struct passwd_file *pf = parse_ok(
		"dup:{PLAIN}first::::::n=1\n"
		"other:{PLAIN}o\n"
		"dup:{PLAIN}second::::::n=2\n"
		"dup:{PLAIN}third\n");
	const struct passwd_entry *e = passwd_file_lookup(pf, "dup");
	const char *first = NULL;

	assert_string_equal(e->password, "{PLAIN}first");
	assert_string_equal(passwd_entry_field(e, "n"), "1");
	assert_int_equal(passwd_file_count(pf), 2);
	assert_int_equal(passwd_file_duplicates(pf, &first), 2);
	assert_non_null(first);
	assert_non_null(strstr(first, "line 3"));
	assert_non_null(strstr(first, "dup"));
	/* fields of the ignored entries did not shift the kept ones */
	assert_int_equal(passwd_file_lookup(pf, "other")->field_count, 0);
	passwd_file_free(pf);

	pf = parse_ok("a:b\n");
	assert_int_equal(passwd_file_duplicates(pf, &first), 0);
	assert_null(first);
	passwd_file_free(pf);
}

static void test_lookup_absent(void **state)
{
	struct passwd_file *pf = parse_ok("alice:x\nbob:y\n");

	assert_null(passwd_file_lookup(pf, "carol"));
	assert_null(passwd_file_lookup(pf, "alic"));
	assert_null(passwd_file_lookup(pf, "alicee"));
	assert_null(passwd_file_lookup(pf, "Alice"));   /* exact match only */
	assert_null(passwd_file_lookup(pf, ""));
	assert_null(passwd_file_lookup(pf, NULL));
	assert_null(passwd_file_lookup(NULL, "alice"));
	assert_null(passwd_entry_field(NULL, "k"));
	assert_int_equal(passwd_file_count(NULL), 0);
	passwd_file_free(NULL);
	passwd_file_free(pf);
}

static char *write_temp(const char *text, size_t len)
{
	char *path = strdup("/tmp/dg-test-passwd-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_load(void **state)
{
	char err[512] = "", want[512];
	char *path = write_temp("alice:{PLAIN}a::::::k=v\n", 24);
	struct passwd_file *pf = passwd_file_load(path, err, sizeof(err));

	assert_non_null(pf);
	assert_string_equal(passwd_entry_field(passwd_file_lookup(pf, "alice"),
					       "k"), "v");
	passwd_file_free(pf);
	unlink(path);
	free(path);

	path = write_temp("ok:x\n:bad\n", 10);
	assert_null(passwd_file_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: line 2: empty user name", path);
	assert_string_equal(err, want);
	unlink(path);

	assert_null(passwd_file_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);
	free(path);
}

/* 100k users with fields, parsed and loaded well under a second. */
static char *synthetic(size_t users, size_t *len_r)
{
	size_t cap = users * 120, len = 0;
	char *text = malloc(cap);

	assert_non_null(text);
	len += (size_t)snprintf(text, cap, "# synthetic\n");
	for (size_t i = 0; i < users; i++)
		len += (size_t)snprintf(text + len, cap - len,
			"user%zu@example.org:{SHA512-CRYPT}$6$salt%zu$hash:%zu:%zu::"
			"/home/u%zu::host=10.0.%zu.%zu nologin\n",
			i, i, 1000 + i, 1000 + i, i, i / 256 % 256, i % 256);
	*len_r = len;
	return text;
}

static void check_synthetic(const struct passwd_file *pf, size_t users)
{
	char user[64], host[32];

	assert_int_equal(passwd_file_count(pf), users);
	for (size_t i = 0; i < users; i++) {
		const struct passwd_entry *e;

		snprintf(user, sizeof(user), "user%zu@example.org", i);
		e = passwd_file_lookup(pf, user);
		if (e == NULL)
			fail_msg("%s not found", user);
		snprintf(host, sizeof(host), "10.0.%zu.%zu", i / 256 % 256, i % 256);
		assert_string_equal(passwd_entry_field(e, "host"), host);
		assert_string_equal(passwd_entry_field(e, "nologin"), "");
	}
	assert_null(passwd_file_lookup(pf, "user100000000@example.org"));
	assert_null(passwd_file_lookup(pf, "user1@example.com"));
}

/* The budget is the plain build's; ASan (scripts/run-tests' sanitizer
   variant) makes parsing several times slower. */
#if defined(__SANITIZE_ADDRESS__)
#define LOAD_BUDGET_S 5.0
#else
#define LOAD_BUDGET_S 1.0
#endif

static void test_100k_users(void **state)
{
	const size_t users = 100000;
	size_t len;
	char *text = synthetic(users, &len), *path, err[256] = "";
	struct passwd_file *pf;
	double t0 = now(), t;

	pf = passwd_file_parse(text, len, err, sizeof(err));
	t = now() - t0;
	assert_non_null(pf);
	check_synthetic(pf, users);
	passwd_file_free(pf);
	if (t >= LOAD_BUDGET_S)
		fail_msg("parsing 100k users took %.3f s", t);

	path = write_temp(text, len);
	t0 = now();
	pf = passwd_file_load(path, err, sizeof(err));
	t = now() - t0;
	assert_non_null(pf);
	check_synthetic(pf, users);
	passwd_file_free(pf);
	if (t >= LOAD_BUDGET_S)
		fail_msg("loading 100k users took %.3f s", t);
	print_message("100k users: loaded in %.3f s\n", t);
	unlink(path);
	free(path);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_columns),
		cmocka_unit_test(test_fewer_columns),
		cmocka_unit_test(test_extra_fields),
		cmocka_unit_test(test_comments_and_blanks),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_lookup_absent),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_100k_users),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
