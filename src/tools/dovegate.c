/* dovegate: the command-line companion of dovegate-auth.

   Subcommands live in one table; adding one (keygen, ticket inspect) means
   writing its run function and adding a row. Exit status: 0 success,
   1 failure, 2 usage error. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster_cli.h"
#include "keyring.h"
#include "schemes.h"
#include "ticket.h"
#include "ticket_json.h"

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
static int cmd_keygen(int argc, char **argv);
static int cmd_ticket(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static void pw_help(FILE *out);
static void keygen_help(FILE *out);
static void ticket_help(FILE *out);

static const struct command commands[] = {
	{ "pw", "[-l] [-s SCHEME] [-r ROUNDS] [-p PASSWORD] [-t HASH]",
	  "hash a password for a passwd-file, like doveadm pw", cmd_pw, pw_help },
	{ "keygen", "--kid ID [--dir DIR]",
	  "create a ticket signing key (ID.key) and its public key (ID.pub)",
	  cmd_keygen, keygen_help },
	{ "ticket", "inspect|verify|sign ...",
	  "inspect, verify or sign a login ticket", cmd_ticket, ticket_help },
	{ "cluster", CLUSTER_SYNOPSIS,
	  "show and steer the cluster store: assignments, moves, drained backends",
	  cluster_run, cluster_help },
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

/* ---- keygen --------------------------------------------------------------- */

static void keygen_help(FILE *out)
{
	print_synopsis(out, find_command("keygen"));
	fprintf(out,
		"  --kid ID    key id, named in every ticket's footer: 1-64 of"
		" A-Z a-z 0-9 . _ -\n"
		"              (e.g. the date: 2026-01)\n"
		"  --dir DIR   where to write ID.key and ID.pub (default: the"
		" current directory;\n"
		"              created with mode 0700 if missing)\n"
		"ID.key (mode 0600) is dovegate-auth's [ticket] signing_key. ID.pub"
		" goes into\nevery backend's key ring: cat *.pub > ring. Existing"
		" files are never\noverwritten.\n");
}

static bool write_all(int fd, const char *text, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, text, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		text += n;
		len -= (size_t)n;
	}
	return true;
}

/* Creates path (never over an existing file) and writes text; false after
   a message. */
static bool write_new_file(const char *path, mode_t mode, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	bool ok;

	if (fd < 0) {
		fprintf(stderr, "dovegate keygen: %s: %s\n", path, errno == EEXIST ?
			"already exists (never overwritten; pick another --kid)" :
			strerror(errno));
		return false;
	}
	ok = write_all(fd, text, strlen(text)) && fsync(fd) == 0;
	if (close(fd) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "dovegate keygen: %s: %s\n", path, strerror(errno));
		unlink(path);
	}
	return ok;
}

/* DIR itself is created (0700: it holds signing keys) when missing, so
   `--dir /etc/dovegate/keys` works on a fresh host; its parent must exist,
   as with mkdir(1). false after a message. */
static bool keygen_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0) {
		printf("%s: created (mode 0700)\n", dir);
		return true;
	}
	if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return true;
	fprintf(stderr, "dovegate keygen: %s: %s\n", dir, errno == EEXIST ?
		"exists and is not a directory" : strerror(errno));
	return false;
}

/* The two files' contents for a fresh key pair. */
static bool keygen_texts(const char *kid, char *key, size_t key_size,
			 char *pub, size_t pub_size)
{
	unsigned char pk[TICKET_PK_BYTES], sk[TICKET_SK_BYTES];
	char sec[TICKET_PASERK_SECRET_LEN + 1], pubk[TICKET_PASERK_PUBLIC_LEN + 1];
	char pid[TICKET_PASERK_PID_LEN + 1];
	bool ok;

	crypto_sign_keypair(pk, sk);
	ok = paserk_k4_secret_encode(sk, sec, sizeof(sec)) &&
	     paserk_k4_public_encode(pk, pubk, sizeof(pubk)) &&
	     paserk_k4_pid(pk, pid, sizeof(pid));
	if (ok) {
		snprintf(key, key_size, "# dovegate ticket signing key %s (%s).\n"
			 "# Secret: dovegate-auth's [ticket] signing_key, mode 0600.\n"
			 "%s %s\n", kid, pid, kid, sec);
		snprintf(pub, pub_size, "# dovegate ticket public key %s (%s)\n%s %s\n",
			 kid, pid, kid, pubk);
	}
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(sec, sizeof(sec));
	return ok;
}

static int keygen_parse_args(int argc, char **argv, const char **kid, const char **dir)
{
	static const struct option opts[] = {
		{ "kid", required_argument, NULL, 'k' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct command *c = find_command("keygen");
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': *kid = optarg; break;
		case 'd': *dir = optarg; break;
		case 'h': keygen_help(stdout); return -1;
		case ':': return usage_error(c, "%s needs an argument", argv[optind - 1]);
		default: return usage_error(c, "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (*kid == NULL)
		return usage_error(c, "--kid is required");
	if (!ticket_kid_valid(*kid))
		return usage_error(c, "invalid key id '%s' (1-64 of A-Z a-z 0-9 . _ -, "
				   "starting with a letter or digit)", *kid);
	return 0;
}

static int cmd_keygen(int argc, char **argv)
{
	const char *kid = NULL, *dir = ".";
	char key_path[PATH_MAX], pub_path[PATH_MAX], key[512], pub[256];
	int ret = keygen_parse_args(argc, argv, &kid, &dir);

	if (ret != 0)
		return ret < 0 ? EXIT_SUCCESS : ret;
	if ((size_t)snprintf(key_path, sizeof(key_path), "%s/%s.key", dir, kid) >= sizeof(key_path) ||
	    (size_t)snprintf(pub_path, sizeof(pub_path), "%s/%s.pub", dir, kid) >= sizeof(pub_path)) {
		fprintf(stderr, "dovegate keygen: directory name too long\n");
		return EXIT_FAILURE;
	}
	if (!keygen_dir(dir))
		return EXIT_FAILURE;
	if (!keygen_texts(kid, key, sizeof(key), pub, sizeof(pub))) {
		fprintf(stderr, "dovegate keygen: cannot encode the key\n");
		ret = EXIT_FAILURE;
	} else if (!write_new_file(key_path, 0600, key)) {
		ret = EXIT_FAILURE;
	} else if (!write_new_file(pub_path, 0644, pub)) {
		unlink(key_path);
		ret = EXIT_FAILURE;
	} else {
		printf("%s: signing key, for dovegate-auth ([ticket] signing_key)\n"
		       "%s: public key, for the backends' key ring\n", key_path, pub_path);
	}
	sodium_memzero(key, sizeof(key));
	return ret;
}

/* ---- ticket inspect / verify / sign --------------------------------------- */

#define DEFAULT_SKEW 30

static void ticket_help(FILE *out)
{
	fprintf(out,
		"usage: dovegate ticket inspect TOKEN\n"
		"       dovegate ticket verify --keys RING [--aud X] [--user U]"
		" [--service S]\n"
		"                              [--skew N] [--max-lifetime N] TOKEN\n"
		"       dovegate ticket sign --key FILE.key --claims JSON\n"
		"TOKEN or JSON '-' reads one line from stdin.\n"
		"  inspect  show the key id and claims WITHOUT checking the signature\n"
		"  verify   check the signature against the key ring ('<kid>"
		" k4.public.<...>'\n"
		"           lines), the times (--skew seconds, default %d; exp - iat at"
		" most\n"
		"           --max-lifetime, default %d) and aud/user/service when"
		" given.\n"
		"           Prints 'accepted' (exit 0) or 'refused: REASON' (exit 1).\n"
		"  sign     sign the claims exactly as given (a JSON object; nothing is"
		" added)\n"
		"           with a key file from keygen, e.g. to craft an expired"
		" ticket\n", DEFAULT_SKEW, TICKET_MAX_LIFETIME_DEFAULT);
}

/* arg, or for "-" one line of stdin read into buf; NULL after a message. */
static const char *arg_or_stdin(const char *arg, char *buf, size_t size)
{
	if (strcmp(arg, "-") != 0)
		return arg;
	if (read_line(buf, size) < 0) {
		fprintf(stderr, "dovegate ticket: cannot read stdin (at most %zu bytes)\n",
			size - 1);
		return NULL;
	}
	return buf;
}

/* Token contents are untrusted: control bytes are shown escaped. */
static void print_escaped(const char *label, const unsigned char *s, size_t len)
{
	printf("%s: ", label);
	for (size_t i = 0; i < len; i++) {
		if (s[i] < ' ' || s[i] == 0x7f)
			printf("\\x%02x", s[i]);
		else
			putchar(s[i]);
	}
	putchar('\n');
}

static void print_expiry(const unsigned char *msg, size_t len)
{
	struct ticket_claims c;
	char err[256];
	int64_t now = (int64_t)time(NULL);

	if (!ticket_claims_from_json((const char *)msg, len, &c, err, sizeof(err))) {
		printf("claims unusable: %s\n", err);
		return;
	}
	if (c.exp != 0 && c.exp >= now)
		printf("expires in %lld s\n", (long long)(c.exp - now));
	else if (c.exp != 0)
		printf("expired %lld s ago\n", (long long)(now - c.exp));
}

static void print_footer(const unsigned char *footer, int len)
{
	char kid[TICKET_KID_MAX + 1];

	if (len == 0)
		printf("footer: none, so no key id\n");
	else if (ticket_footer_kid(footer, (size_t)len, kid))
		printf("kid: %s\n", kid);
	else
		print_escaped("footer (no dovegate key id)", footer, (size_t)len);
}

static int ticket_inspect(int argc, char **argv)
{
	unsigned char msg[TICKET_MAX_LEN], footer[TICKET_MAX_LEN];
	char buf[PASSWORD_MAX];
	const char *token;
	int msg_len, footer_len;

	if (argc != 2)
		return usage_error(find_command("ticket"), "inspect wants exactly one TOKEN");
	if ((token = arg_or_stdin(argv[1], buf, sizeof(buf))) == NULL)
		return EXIT_FAILURE;
	msg_len = paseto_v4_peek(token, strlen(token), msg, sizeof(msg));
	footer_len = paseto_v4_footer(token, strlen(token), footer, sizeof(footer));
	if (msg_len < 0 || footer_len < 0) {
		fprintf(stderr, "dovegate ticket inspect: not a v4.public token\n");
		return EXIT_FAILURE;
	}
	printf("NOT VERIFIED: decoded without checking the signature"
	       " (use 'dovegate ticket verify')\n");
	print_footer(footer, footer_len);
	print_escaped("claims", msg, (size_t)msg_len);
	print_expiry(msg, (size_t)msg_len);
	return EXIT_SUCCESS;
}

struct verify_options {
	const char *keys, *aud, *user, *service, *token;
	unsigned int skew, max_lifetime;
};

static int verify_parse_args(int argc, char **argv, struct verify_options *o)
{
	static const struct option opts[] = {
		{ "keys", required_argument, NULL, 'k' },
		{ "aud", required_argument, NULL, 'a' },
		{ "user", required_argument, NULL, 'u' },
		{ "service", required_argument, NULL, 's' },
		{ "skew", required_argument, NULL, 'w' },
		{ "max-lifetime", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	const struct command *c = find_command("ticket");
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': o->keys = optarg; break;
		case 'a': o->aud = optarg; break;
		case 'u': o->user = optarg; break;
		case 's': o->service = optarg; break;
		case 'w':
		case 'l':
			if (!parse_rounds(optarg, opt == 'w' ? &o->skew : &o->max_lifetime))
				return usage_error(c, "%s wants a number of seconds",
						   argv[optind - 1]);
			break;
		case ':': return usage_error(c, "%s needs an argument", argv[optind - 1]);
		default: return usage_error(c, "unknown option %s", argv[optind - 1]);
		}
	}
	if (o->keys == NULL)
		return usage_error(c, "verify needs --keys RING");
	if (optind != argc - 1)
		return usage_error(c, "verify wants exactly one TOKEN");
	o->token = argv[optind];
	return 0;
}

/* Signature, then claims; what is not given on the command line is taken
   from the ticket itself (so only the times are checked). */
static enum ticket_refusal verify_token(const struct keyring *ring, const char *token,
					const struct verify_options *o, char *kid,
					char *detail, size_t detail_size)
{
	unsigned char msg[TICKET_MAX_LEN];
	struct ticket_claims c;
	struct ticket_expect e;
	size_t msg_len;
	enum ticket_refusal r;

	r = keyring_verify(ring, token, strlen(token), kid, msg, sizeof(msg), &msg_len);
	if (r != TICKET_ACCEPTED)
		return r;
	if (!ticket_claims_from_json((const char *)msg, msg_len, &c, detail, detail_size))
		return TICKET_MALFORMED;
	e.aud = o->aud != NULL ? o->aud : c.aud;
	e.sub = o->user != NULL ? o->user : c.sub;
	e.svc = o->service != NULL ? o->service : c.svc;
	e.now = (int64_t)time(NULL);
	e.skew = o->skew;
	e.max_lifetime = o->max_lifetime;
	if ((r = ticket_claims_check(&c, &e)) == TICKET_ACCEPTED)
		snprintf(detail, detail_size, "%s", (const char *)msg);
	return r;
}

static int ticket_verify(int argc, char **argv)
{
	struct verify_options o = { .skew = DEFAULT_SKEW };
	char buf[PASSWORD_MAX], err[1024], kid[TICKET_KID_MAX + 1];
	char detail[TICKET_MAX_LEN + 1] = "";
	struct keyring *ring;
	const char *token;
	enum ticket_refusal r;
	int ret = verify_parse_args(argc, argv, &o);

	if (ret != 0)
		return ret;
	if ((token = arg_or_stdin(o.token, buf, sizeof(buf))) == NULL)
		return EXIT_FAILURE;
	if ((ring = keyring_load(o.keys, err, sizeof(err))) == NULL) {
		fprintf(stderr, "dovegate ticket verify: %s\n", err);
		return EXIT_FAILURE;
	}
	r = verify_token(ring, token, &o, kid, detail, sizeof(detail));
	keyring_free(ring);
	if (r == TICKET_ACCEPTED) {
		printf("accepted kid=%s\n", kid);
		print_escaped("claims", (const unsigned char *)detail, strlen(detail));
		return EXIT_SUCCESS;
	}
	printf("refused: %s%s%s%s%s\n", ticket_refusal_name(r), kid[0] != '\0' ? " kid=" : "",
	       kid, detail[0] != '\0' ? ": " : "", detail);
	return EXIT_FAILURE;
}

static int sign_parse_args(int argc, char **argv, const char **key, const char **claims)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "claims", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const struct command *c = find_command("ticket");
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': *key = optarg; break;
		case 'c': *claims = optarg; break;
		case ':': return usage_error(c, "%s needs an argument", argv[optind - 1]);
		default: return usage_error(c, "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (*key == NULL || *claims == NULL)
		return usage_error(c, "sign needs --key FILE.key and --claims JSON");
	return 0;
}

static int ticket_sign_cmd(int argc, char **argv)
{
	const char *key_path = NULL, *claims = NULL;
	char buf[PASSWORD_MAX], err[1024], kid[TICKET_KID_MAX + 1];
	char token[TICKET_MAX_LEN + 1];
	unsigned char sk[TICKET_SK_BYTES];
	int ret = sign_parse_args(argc, argv, &key_path, &claims), len;

	if (ret != 0)
		return ret;
	if ((claims = arg_or_stdin(claims, buf, sizeof(buf))) == NULL)
		return EXIT_FAILURE;
	if (!ticket_json_is_object(claims, strlen(claims), err, sizeof(err))) {
		fprintf(stderr, "dovegate ticket sign: claims: %s\n", err);
		return EXIT_FAILURE;
	}
	if (!ticket_secret_key_load(key_path, kid, sk, err, sizeof(err))) {
		fprintf(stderr, "dovegate ticket sign: %s\n", err);
		return EXIT_FAILURE;
	}
	len = ticket_sign(sk, kid, claims, strlen(claims), token, sizeof(token));
	sodium_memzero(sk, sizeof(sk));
	if (len < 0) {
		fprintf(stderr, "dovegate ticket sign: claims too large for a ticket"
			" (at most %d bytes)\n", TICKET_MAX_LEN);
		return EXIT_FAILURE;
	}
	puts(token);
	return EXIT_SUCCESS;
}

static int cmd_ticket(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} subs[] = {
		{ "inspect", ticket_inspect },
		{ "verify", ticket_verify },
		{ "sign", ticket_sign_cmd },
	};
	const struct command *c = find_command("ticket");

	if (argc < 2)
		return usage_error(c, "missing inspect, verify or sign");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		ticket_help(stdout);
		return EXIT_SUCCESS;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name) == 0)
			return subs[i].run(argc - 1, argv + 1);
	}
	return usage_error(c, "unknown ticket command '%s'", argv[1]);
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
	/* "dovegate COMMAND --help" (or -h), whatever the command's own parser */
	if (argc == 3 && c->help != NULL &&
	    (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
		c->help(stdout);
		return EXIT_SUCCESS;
	}
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
	/* "dovegate COMMAND --help" (or -h), whatever the command's own parser */
	if (argc == 3 && c->help != NULL &&
	    (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
		c->help(stdout);
		return EXIT_SUCCESS;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "dovegate: libsodium initialisation failed\n");
		return EXIT_FAILURE;
	}
	return c->run(argc - 1, argv + 1);
}
