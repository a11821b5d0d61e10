/* dovegate: the command-line companion of dovegate-auth.

   Subcommands live in one table; adding one (keygen, ticket inspect) means
   writing its run function and adding a row. Exit status: 0 success,
   1 failure, 2 usage error. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "schemes.h"

#define EXIT_USAGE 2
#define PASSWORD_MAX 4096
#define DEFAULT_SCHEME "SHA512-CRYPT"

struct command {
	const char *name;
	const char *synopsis;   /* arguments after the name */
	const char *summary;
	int (*run)(int argc, char **argv);  /* argv[0] is the command name */
	void (*help)(FILE *out);            /* details, or NULL */
};

static int cmd_pw(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static void pw_help(FILE *out);

static const struct command commands[] = {
	{ "pw", "[-l] [-s SCHEME] [-r ROUNDS] [-p PASSWORD] [-t HASH]",
	  "hash a password for a passwd-file, like doveadm pw", cmd_pw, pw_help },
	{ "version", "", "print the version", cmd_version, NULL },
	{ "help", "[COMMAND]", "show this help, or a command's", cmd_help, NULL },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static void print_synopsis(FILE *out, const struct command *c)
{
	fprintf(out, "usage: dovegate %s%s%s\n", c->name,
		c->synopsis[0] != '\0' ? " " : "", c->synopsis);
}

static void print_usage(FILE *out)
{
	fprintf(out, "usage: dovegate COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'dovegate help COMMAND' shows a command's options.\n");
}

/* Reports a usage error for `c` (or the whole tool) and returns 2. */
static int usage_error(const struct command *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const struct command *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "dovegate%s%s: ", c != NULL ? " " : "",
		c != NULL ? c->name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c != NULL)
		print_synopsis(stderr, c);
	else
		print_usage(stderr);
	return EXIT_USAGE;
}

/* ---- pw ------------------------------------------------------------------- */

struct pw_options {
	const char *scheme;
	const char *password;   /* -p, or NULL to read stdin */
	const char *test_hash;  /* -t */
	unsigned int rounds;
	bool list;
};

static void pw_help(FILE *out)
{
	print_synopsis(out, find_command("pw"));
	fprintf(out,
		"  -s SCHEME    password scheme (default " DEFAULT_SCHEME ");"
		" append .HEX or .B64 to pick an encoding\n"
		"  -r ROUNDS    cost: rounds for *-CRYPT/PBKDF2/SCRAM, log2 cost"
		" for BLF-CRYPT, opslimit for ARGON2*\n"
		"  -p PASSWORD  the password (default: one line from stdin, or"
		" prompt twice on a terminal)\n"
		"  -t HASH      test the password against HASH instead of"
		" hashing it\n"
		"  -l           list the schemes\n"
		"Prints {SCHEME}hash, ready for a passwd-file.\n");
}

/* One line from fd 0 without stdio, so no copy of it lingers in a buffer.
   Returns its length, or -1 when too long or unreadable. */
static ssize_t read_line(char *buf, size_t size)
{
	size_t len = 0;

	for (;;) {
		char c;
		ssize_t n = read(STDIN_FILENO, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0 || c == '\n')
			break;
		if (len + 1 >= size)
			return -1;
		buf[len++] = c;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	return (ssize_t)len;
}

static ssize_t prompt_noecho(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
	ssize_t len;

	fputs(prompt, stderr);
	fflush(stderr);
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
	}
	len = read_line(buf, size);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
	fputc('\n', stderr);
	return len;
}

/* The password into buf: from -p, a terminal (typed twice when hashing),
   or the first line of stdin. Returns its length, or -1 after a message. */
static ssize_t get_password(const struct pw_options *o, char *buf, size_t size)
{
	char again[PASSWORD_MAX];
	ssize_t len, len2;

	if (o->password != NULL) {
		if (strlen(o->password) >= size) {
			fprintf(stderr, "dovegate pw: password too long\n");
			return -1;
		}
		strcpy(buf, o->password);
		return (ssize_t)strlen(buf);
	}
	if (!isatty(STDIN_FILENO)) {
		if ((len = read_line(buf, size)) < 0)
			fprintf(stderr, "dovegate pw: cannot read the password "
				"from stdin (at most %zu bytes)\n", size - 1);
		return len;
	}
	len = prompt_noecho(o->test_hash != NULL ? "Enter password to verify: " :
			    "Enter new password: ", buf, size);
	if (len < 0 || o->test_hash != NULL)
		return len;
	len2 = prompt_noecho("Retype new password: ", again, sizeof(again));
	if (len2 != len || strcmp(buf, again) != 0) {
		fprintf(stderr, "dovegate pw: passwords don't match\n");
		len = -1;
	}
	sodium_memzero(again, sizeof(again));
	return len;
}

static int pw_list(void)
{
	const char *const *names = scheme_names();

	for (size_t i = 0; names[i] != NULL; i++)
		printf("%s%c", names[i], names[i + 1] != NULL ? ' ' : '\n');
	return EXIT_SUCCESS;
}

static int pw_test(const char *hash, const char *pw, size_t len)
{
	const char *err = NULL;

	switch (scheme_verify(hash, "CRYPT", pw, len, &err)) {
	case SCHEME_OK:
		printf("%s (verified)\n", hash);
		return EXIT_SUCCESS;
	case SCHEME_MISMATCH:
		fprintf(stderr, "dovegate pw: password mismatch\n");
		break;
	default:
		fprintf(stderr, "dovegate pw: %s\n", err != NULL ? err : "cannot verify");
		break;
	}
	return EXIT_FAILURE;
}

static int pw_hash(const struct pw_options *o, const char *pw, size_t len)
{
	const char *err = NULL;
	char *hash = scheme_hash_rounds(o->scheme, o->rounds, pw, len, &err);

	if (hash == NULL) {
		fprintf(stderr, "dovegate pw: %s: %s\n", o->scheme, err);
		return EXIT_FAILURE;
	}
	puts(hash);
	free(hash);
	return EXIT_SUCCESS;
}

/* NAME or NAME.ENC, so that a typo is a usage error rather than a failure. */
static bool known_scheme(const char *scheme)
{
	const char *const *names = scheme_names();
	size_t len = strcspn(scheme, ".");
	const char *enc = scheme[len] == '.' ? scheme + len + 1 : NULL;

	if (enc != NULL && strcasecmp(enc, "hex") != 0 &&
	    strcasecmp(enc, "b64") != 0 && strcasecmp(enc, "base64") != 0)
		return false;
	for (size_t i = 0; names[i] != NULL; i++) {
		if (strlen(names[i]) == len && strncasecmp(names[i], scheme, len) == 0)
			return true;
	}
	return false;
}

static bool parse_rounds(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > UINT_MAX)
		return false;
	*out = (unsigned int)v;
	return true;
}

static int pw_parse_args(int argc, char **argv, struct pw_options *o)
{
	const struct command *c = find_command("pw");
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt(argc, argv, ":s:r:p:t:lh")) != -1) {
		switch (opt) {
		case 's': o->scheme = optarg; break;
		case 'p': o->password = optarg; break;
		case 't': o->test_hash = optarg; break;
		case 'l': o->list = true; break;
		case 'h': pw_help(stdout); return -1;
		case 'r':
			if (!parse_rounds(optarg, &o->rounds))
				return usage_error(c, "-r wants a number, not '%s'", optarg);
			break;
		case ':':
			return usage_error(c, "-%c needs an argument", optopt);
		default:
			return usage_error(c, "unknown option -%c", optopt);
		}
	}
	if (optind < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (!known_scheme(o->scheme))
		return usage_error(c, "unknown scheme '%s' (dovegate pw -l lists them)",
				   o->scheme);
	return 0;
}

static int cmd_pw(int argc, char **argv)
{
	struct pw_options o = { .scheme = DEFAULT_SCHEME };
	char pw[PASSWORD_MAX];
	ssize_t len;
	int ret;

	if ((ret = pw_parse_args(argc, argv, &o)) != 0)
		return ret < 0 ? EXIT_SUCCESS : ret;
	if (o.list)
		return pw_list();
	if ((len = get_password(&o, pw, sizeof(pw))) < 0)
		return EXIT_FAILURE;
	if (len == 0) {
		fprintf(stderr, "dovegate pw: empty password\n");
		ret = EXIT_FAILURE;
	} else if (strpbrk(pw, "\r\n") != NULL) {
		/* dovegate-auth refuses such credentials before any lookup */
		fprintf(stderr, "dovegate pw: password contains CR or LF\n");
		ret = EXIT_FAILURE;
	} else {
		ret = o.test_hash != NULL ? pw_test(o.test_hash, pw, (size_t)len) :
			pw_hash(&o, pw, (size_t)len);
	}
	sodium_memzero(pw, sizeof(pw));
	return ret;
}

/* ---- version, help ------------------------------------------------------- */

static int cmd_version(int argc, char **argv)
{
	if (argc > 1)
		return usage_error(find_command("version"),
				   "unexpected argument '%s'", argv[1]);
	printf("dovegate %s\n", PACKAGE_VERSION);
	return EXIT_SUCCESS;
}

static int cmd_help(int argc, char **argv)
{
	const struct command *c;

	if (argc > 2)
		return usage_error(find_command("help"),
				   "unexpected argument '%s'", argv[2]);
	if (argc < 2) {
		print_usage(stdout);
		return EXIT_SUCCESS;
	}
	if ((c = find_command(argv[1])) == NULL)
		return usage_error(NULL, "unknown command '%s'", argv[1]);
	if (c->help != NULL)
		c->help(stdout);
	else
		print_synopsis(stdout, c);
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2)
		return usage_error(NULL, "%s", "missing command");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		return cmd_help(1, argv);
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)
		return cmd_version(1, argv);
	if ((c = find_command(argv[1])) == NULL)
		return usage_error(NULL, "unknown command '%s'", argv[1]);
	if (sodium_init() < 0) {
		fprintf(stderr, "dovegate: libsodium initialisation failed\n");
		return EXIT_FAILURE;
	}
	return c->run(argc - 1, argv + 1);
}
