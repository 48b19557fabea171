/* store_sqlite: the room store in STATE_DIR/rooms.db.
 *
 * WAL journal with synchronous=NORMAL: a commit costs no fsync, and a
 * crash of the daemon loses nothing (a power cut may lose the last
 * commits, which the daemon's memory had anyway).  Each write is one
 * IMMEDIATE transaction over prepared statements.  Credentials are stored
 * as 32-byte SHA-256 blobs only.
 *
 * A write that fails in the file system (an I/O error, the file system
 * turned read-only under us) lets go of the database: a handle on a file
 * system that failed never works again, and while it is open the operator
 * cannot unmount, repair and mount it again.  The next write opens the
 * file again by its path (never creating it: an empty database in its
 * place would lose every room). */
#include "store/store.h"

#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define DB_NAME "rooms.db"
/* The daemon is the only writer, but an operator's sqlite3 shell or a
 * backup may hold the lock for a while: sqlite waits this long, then the
 * store retries with pauses for its bounded window (store.h). */
#define BUSY_TIMEOUT_MS 200

/* Schema migrations, in order: entry N-1 brings a database from version
 * N-1 to N.  Never edit one that shipped; append. */
static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE IF NOT EXISTS rooms ("
	" id TEXT PRIMARY KEY NOT NULL,"
	" name TEXT,"
	" token_hash BLOB NOT NULL CHECK (length(token_hash) = 32),"
	" created_by TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL DEFAULT 0,"
	" max_peers INTEGER NOT NULL DEFAULT 0,"
	" open_to_issuer INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX IF NOT EXISTS rooms_expires_at ON rooms (expires_at) WHERE expires_at > 0;"
	"CREATE TABLE IF NOT EXISTS api_keys ("
	" key_id TEXT PRIMARY KEY NOT NULL,"
	" key_hash BLOB NOT NULL CHECK (length(key_hash) = 32),"
	" room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,"
	" name TEXT,"
	" created_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL DEFAULT 0,"
	" revoked_at INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX IF NOT EXISTS api_keys_room_id ON api_keys (room_id);",
	/* 2: account keys (an account instead of a room: room_id becomes
	 * optional, which sqlite can only do by rebuilding the table) and
	 * room memberships. */
	"CREATE TABLE api_keys_2 ("
	" key_id TEXT PRIMARY KEY NOT NULL,"
	" key_hash BLOB NOT NULL CHECK (length(key_hash) = 32),"
	" room_id TEXT REFERENCES rooms (id) ON DELETE CASCADE,"
	" account TEXT,"
	" name TEXT,"
	" created_at INTEGER NOT NULL,"
	" expires_at INTEGER NOT NULL DEFAULT 0,"
	" revoked_at INTEGER NOT NULL DEFAULT 0,"
	" CHECK ((room_id IS NULL) <> (account IS NULL))"
	");"
	"INSERT INTO api_keys_2 (key_id, key_hash, room_id, name, created_at, expires_at, revoked_at)"
	" SELECT key_id, key_hash, room_id, name, created_at, expires_at, revoked_at FROM api_keys;"
	"DROP TABLE api_keys;"
	"ALTER TABLE api_keys_2 RENAME TO api_keys;"
	"CREATE INDEX api_keys_room_id ON api_keys (room_id);"
	"CREATE TABLE room_members ("
	" room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,"
	" account TEXT NOT NULL,"
	" added_at INTEGER NOT NULL,"
	" PRIMARY KEY (room_id, account)"
	") WITHOUT ROWID;",
	/* Ed25519 public keys accounts publish (pubkeys.h): 3, after the account
	 * keys and members. */
	"CREATE TABLE IF NOT EXISTS public_keys ("
	" account TEXT NOT NULL,"
	" public_key TEXT NOT NULL,"
	" device_name TEXT,"
	" username TEXT,"
	" created_at INTEGER NOT NULL,"
	" PRIMARY KEY (account, public_key)"
	");",
};

enum stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_PUT_ROOM,
	ST_DELETE_ROOM,
	ST_PUT_KEY,
	ST_REVOKE_KEY,
	ST_PURGE,
	ST_LOAD_ROOMS,
	ST_LOAD_KEYS,
	ST_PUT_MEMBER,
	ST_DELETE_MEMBER,
	ST_LOAD_MEMBERS,
	ST_PUT_PUBKEY,
	ST_LOAD_PUBKEYS,
	ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_PUT_ROOM] =
		"INSERT INTO rooms (id, name, token_hash, created_by, created_at, expires_at,"
		" max_peers, open_to_issuer) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
		" ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
		" token_hash = excluded.token_hash, created_by = excluded.created_by,"
		" created_at = excluded.created_at, expires_at = excluded.expires_at,"
		" max_peers = excluded.max_peers, open_to_issuer = excluded.open_to_issuer",
	[ST_DELETE_ROOM] = "DELETE FROM rooms WHERE id = ?1",
	[ST_PUT_KEY] =
		"INSERT INTO api_keys (key_id, key_hash, room_id, name, created_at, expires_at,"
		" revoked_at, account) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
		" ON CONFLICT (key_id) DO UPDATE SET key_hash = excluded.key_hash,"
		" room_id = excluded.room_id, account = excluded.account, name = excluded.name,"
		" created_at = excluded.created_at, expires_at = excluded.expires_at,"
		" revoked_at = excluded.revoked_at",
	/* Matches a revoked key too (changes() = 1) but keeps its time. */
	[ST_REVOKE_KEY] = "UPDATE api_keys SET revoked_at ="
			  " CASE WHEN revoked_at = 0 THEN ?2 ELSE revoked_at END WHERE key_id = ?1",
	[ST_PURGE] = "DELETE FROM rooms WHERE expires_at > 0 AND expires_at <= ?1",
	[ST_LOAD_ROOMS] = "SELECT id, name, token_hash, created_by, created_at, expires_at,"
			  " max_peers, open_to_issuer FROM rooms",
	[ST_LOAD_KEYS] = "SELECT key_id, key_hash, room_id, name, created_at, expires_at,"
			 " revoked_at, account FROM api_keys",
	[ST_PUT_MEMBER] = "INSERT INTO room_members (room_id, account, added_at) VALUES (?1, ?2, ?3)"
			  " ON CONFLICT DO NOTHING",
	[ST_DELETE_MEMBER] = "DELETE FROM room_members WHERE room_id = ?1 AND account = ?2",
	[ST_LOAD_MEMBERS] = "SELECT room_id, account, added_at FROM room_members",
	[ST_PUT_PUBKEY] = "INSERT INTO public_keys (account, public_key, device_name, username, created_at)"
			  " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account, public_key) DO UPDATE SET"
			  " device_name = excluded.device_name, username = excluded.username",
	[ST_LOAD_PUBKEYS] = "SELECT account, public_key, device_name, username, created_at"
			    " FROM public_keys ORDER BY created_at, rowid",
};

struct sq {
	sqlite3 *db; /* NULL once let go of, until opened again */
	char *path;
	char *state_dir;
	bool lost;   /* the last failure calls for letting go of db */
	sqlite3_stmt *stmt[ST__COUNT];
};

static int errno_from_sqlite(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EBADMSG;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_INTERRUPT:
		return -EINTR;
	case SQLITE_CONSTRAINT:
		return rc == SQLITE_CONSTRAINT_FOREIGNKEY ? -ENOENT : -EINVAL;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		return sys > 0 ? -sys : -EIO;
	default:
		return -EIO;
	}
}

/* Sets ERR to "FILE: WHAT: sqlite's message (the system's)" and returns
 * the errno for RC.  Call it before anything else touches the handle. */
static int fail(struct sq *s, int rc, const char *what, GError **err)
{
	int r = errno_from_sqlite(s->db, rc);
	int sys = s->db ? sqlite3_system_errno(s->db) : 0;
	const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);

	/* The file system failed (not: full, busy, a constraint, a file
	 * replaced under us, which opening it again would not mend). */
	if (((rc & 0xff) == SQLITE_IOERR && rc != SQLITE_IOERR_NOMEM && sys != ENOSPC) ||
	    (rc & 0xff) == SQLITE_CANTOPEN || ((rc & 0xff) == SQLITE_READONLY && rc != SQLITE_READONLY_DBMOVED))
		s->lost = true;

	if (sys > 0 && ((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_CANTOPEN ||
			(rc & 0xff) == SQLITE_FULL))
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: %s: %s (%s)",
			    s->path, what, msg, g_strerror(sys));
	else
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: %s: %s", s->path,
			    what, msg);
	return r;
}

static int fail_with(struct sq *s, int r, GError **err, const char *fmt, ...) G_GNUC_PRINTF(4, 5);
static int fail_with(struct sq *s, int r, GError **err, const char *fmt, ...)
{
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(-r), "%s: %s", s->path, msg);
	return r;
}

/* Runs a statement that returns no rows (or ignores them). */
static int step_done(sqlite3_stmt *stmt)
{
	int rc;

	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		;
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void db_close(struct sq *s)
{
	for (int i = 0; i < ST__COUNT; i++) {
		sqlite3_finalize(s->stmt[i]);
		s->stmt[i] = NULL;
	}
	sqlite3_close(s->db);
	s->db = NULL;
}

static void sq_close(void *be)
{
	struct sq *s = be;

	if (!s)
		return;
	db_close(s);
	g_free(s->path);
	g_free(s->state_dir);
	g_free(s);
}

/* The first row of a pragma that answers text (journal_mode,
 * quick_check), on one line. */
static int pragma_text(struct sq *s, const char *sql, const char *what, char **out, GError **err)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL), r = 0;

	if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(stmt, 0);
		*out = g_strdelimit(g_strdup(text ? text : ""), "\n", ' ');
	} else {
		r = fail(s, rc, what, err);
	}
	sqlite3_finalize(stmt);
	return r;
}

static int migrate(struct sq *s, GError **err)
{
	const int latest = (int)G_N_ELEMENTS(migrations);
	sqlite3_stmt *stmt = NULL;
	int rc, version = 0, r;

	if ((rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE;"
			       "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
			       NULL, NULL, NULL)) != SQLITE_OK)
		return fail(s, rc, "cannot set up the schema", err);
	rc = sqlite3_prepare_v2(s->db, "SELECT coalesce(max(version), 0) FROM schema_version", -1,
				&stmt, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		version = sqlite3_column_int(stmt, 0);
		rc = SQLITE_OK;
	}
	/* Done with it: a statement still open would keep a migration from
	 * dropping a table ("database table is locked"). */
	sqlite3_finalize(stmt);
	stmt = NULL;
	if (rc != SQLITE_OK) {
		r = fail(s, rc, "cannot read the schema version", err);
		goto rollback;
	}
	if (version > latest) {
		r = fail_with(s, -EPROTO, err,
			      "schema version %d is newer than this rtcsignald knows (%d); "
			      "was it written by a later release?", version, latest);
		goto rollback;
	}
	for (int v = version; v < latest; v++)
		if ((rc = sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL)) != SQLITE_OK) {
			r = fail(s, rc, "cannot migrate the schema", err);
			goto rollback;
		}
	if (version < latest) {
		g_autofree char *sql = g_strdup_printf(
			"DELETE FROM schema_version; INSERT INTO schema_version VALUES (%d)", latest);
		if ((rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK) {
			r = fail(s, rc, "cannot record the schema version", err);
			goto rollback;
		}
	}
	sqlite3_finalize(stmt);
	if ((rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
		return fail(s, rc, "cannot commit the schema", err);
	return 0;

rollback:
	sqlite3_finalize(stmt);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

/* Opens s->path (creating it when CREATE) and readies it for use; on
 * failure s->db stays NULL. */
static int db_open(struct sq *s, bool create, GError **err)
{
	const char *state_dir = s->state_dir;
	g_autofree char *mode = NULL, *check = NULL;
	int rc, r;

	s->lost = false;
	/* Checked here: sqlite would fall back to opening read-only, or say
	 * "unable to open database file" with the errno of its last try. */
	if (faccessat(AT_FDCWD, state_dir, W_OK | X_OK, AT_EACCESS) < 0) {
		r = -errno;
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "%s: the state directory is not writable: %s", state_dir, g_strerror(errno));
		goto fail;
	}
	/* NOMUTEX: the store serialises every use of the handle itself. */
	rc = sqlite3_open_v2(s->path, &s->db,
			     SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = fail(s, rc, "cannot open", err);
		goto fail;
	}
	/* sqlite falls back to read-only when the file is: writes would
	 * all fail later, so say it now. */
	if (sqlite3_db_readonly(s->db, "main") == 1) {
		/* And why, which sqlite does not keep. */
		int fd = open(s->path, O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
		r = fail_with(s, -EROFS, err, "the database file is read-only%s%s", fd < 0 ? ": " : "",
			      fd < 0 ? g_strerror(errno) : "");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

	/* The first statement reads the file: a corrupt or foreign file
	 * fails here, and quick_check finds damage deeper in. */
	if ((r = pragma_text(s, "PRAGMA journal_mode=WAL", "cannot read", &mode, err)) < 0)
		goto fail;
	if (g_ascii_strcasecmp(mode, "wal") != 0) {
		r = fail_with(s, -EROFS, err, "cannot use a WAL journal (journal mode is %s)", mode);
		goto fail;
	}
	if ((r = pragma_text(s, "PRAGMA quick_check", "cannot check", &check, err)) < 0)
		goto fail;
	if (strcmp(check, "ok") != 0) {
		r = fail_with(s, -EBADMSG, err, "the database is corrupt: %.200s", check);
		goto fail;
	}
	if ((rc = sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL,
			       NULL, NULL)) != SQLITE_OK) {
		r = fail(s, rc, "cannot set pragmas", err);
		goto fail;
	}
	if ((r = migrate(s, err)) < 0)
		goto fail;
	for (int i = 0; i < ST__COUNT; i++)
		if ((rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					     &s->stmt[i], NULL)) != SQLITE_OK) {
			r = fail(s, rc, "cannot prepare a statement", err);
			goto fail;
		}
	return 0;
fail:
	db_close(s);
	return r;
}

static int sq_open(const struct store_params *p, void **out, GError **err)
{
	struct sq *s = g_new0(struct sq, 1);
	int r;

	s->state_dir = g_strdup(p->state_dir);
	s->path = g_build_filename(s->state_dir, DB_NAME, NULL);
	if (g_mkdir_with_parents(s->state_dir, 0700) < 0) {
		r = -errno;
		g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(errno),
			    "%s: cannot create the state directory: %s", s->state_dir, g_strerror(errno));
		goto fail;
	}
	if ((r = db_open(s, true, err)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	sq_close(s);
	return r;
}

/* Opens the database again if it was let go of. */
static int reopen(struct sq *s, GError **err)
{
	int r;

	if (s->db)
		return 0;
	if ((r = db_open(s, false, err)) == 0)
		log_notice("room store: %s: opened again", s->path);
	return r;
}

/* At the end of an operation that failed with R: lets go of the database
 * when the failure calls for it, and tries to open it again at once,
 * which says why when the failure did not (sqlite often loses the
 * errno of a failed write). */
static int settle(struct sq *s, int r, GError **err)
{
	g_autoptr(GError) again = NULL;

	if (!s->db || !s->lost)
		return r;
	db_close(s);
	if (db_open(s, false, &again) < 0) {
		log_warning("room store: let go of the database after a failure, until it can be "
			    "opened again: %s", again->message);
		if (err && *err) {
			/* Named once: the path starts both. */
			const char *why = again->message;
			if (g_str_has_prefix(why, s->path) && g_str_has_prefix(why + strlen(s->path), ": "))
				why += strlen(s->path) + 2;
			char *msg = g_strdup_printf("%s; let go of it: %s", (*err)->message, why);
			g_free((*err)->message);
			(*err)->message = msg;
		}
	} else {
		log_notice("room store: %s: opened again after a failure", s->path);
	}
	return r;
}

static char *column_strdup(sqlite3_stmt *stmt, int col)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);
	return text ? g_strdup((const char *)text) : NULL;
}

static bool column_hash(sqlite3_stmt *stmt, int col, uint8_t out[SECRET_HASH_LEN])
{
	const void *blob = sqlite3_column_blob(stmt, col);

	if (!blob || sqlite3_column_bytes(stmt, col) != SECRET_HASH_LEN)
		return false;
	memcpy(out, blob, SECRET_HASH_LEN);
	return true;
}

/* Decodes the current row into a record appended to OUT, and sets *ID
 * to its id; false when the row is malformed. */
typedef bool (*row_fn)(sqlite3_stmt *stmt, GPtrArray *out, const char **id);

static bool room_row(sqlite3_stmt *stmt, GPtrArray *rooms, const char **id)
{
	struct store_room *room = g_new0(struct store_room, 1);

	g_ptr_array_add(rooms, room);
	*id = room->id = column_strdup(stmt, 0);
	room->name = column_strdup(stmt, 1);
	room->created_by = column_strdup(stmt, 3);
	room->created_at = sqlite3_column_int64(stmt, 4);
	room->expires_at = sqlite3_column_int64(stmt, 5);
	room->max_peers = (unsigned)CLAMP(sqlite3_column_int64(stmt, 6), 0, G_MAXUINT);
	room->open_to_issuer = sqlite3_column_int(stmt, 7) != 0;
	return room->id && room->created_by && column_hash(stmt, 2, room->token_hash);
}

static bool key_row(sqlite3_stmt *stmt, GPtrArray *keys, const char **id)
{
	struct store_key *key = g_new0(struct store_key, 1);

	g_ptr_array_add(keys, key);
	*id = key->key_id = column_strdup(stmt, 0);
	key->room_id = column_strdup(stmt, 2);
	key->name = column_strdup(stmt, 3);
	key->created_at = sqlite3_column_int64(stmt, 4);
	key->expires_at = sqlite3_column_int64(stmt, 5);
	key->revoked_at = sqlite3_column_int64(stmt, 6);
	key->account = column_strdup(stmt, 7);
	return key->key_id && !key->room_id != !key->account && column_hash(stmt, 1, key->key_hash);
}

static bool member_row(sqlite3_stmt *stmt, GPtrArray *members, const char **id)
{
	struct store_member *m = g_new0(struct store_member, 1);

	g_ptr_array_add(members, m);
	*id = m->room_id = column_strdup(stmt, 0);
	m->account = column_strdup(stmt, 1);
	m->added_at = sqlite3_column_int64(stmt, 2);
	return m->room_id && m->account;
}

static bool pubkey_row(sqlite3_stmt *stmt, GPtrArray *out, const char **id)
{
	struct store_pubkey *k = g_new0(struct store_pubkey, 1);

	g_ptr_array_add(out, k);
	*id = k->account = column_strdup(stmt, 0);
	k->public_key = column_strdup(stmt, 1);
	k->device_name = column_strdup(stmt, 2);
	k->username = column_strdup(stmt, 3);
	k->created_at = sqlite3_column_int64(stmt, 4);
	return k->account && k->public_key;
}

/* Every row of the query ST, decoded by ROW into OUT; WHAT names a row. */
static int load_all(struct sq *s, enum stmt st, row_fn row, GPtrArray *out, const char *what,
		    GError **err)
{
	sqlite3_stmt *stmt = s->stmt[st];
	const char *id;
	int rc, r = 0;

	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		if (!row(stmt, out, &id)) {
			r = fail_with(s, -EBADMSG, err, "%s \"%s\" is malformed", what, id ? id : "");
			break;
		}
	if (!r && rc != SQLITE_DONE)
		r = fail(s, rc, "cannot read", err);
	sqlite3_reset(stmt);
	return r;
}

static int sq_load(void *be, GPtrArray *rooms, GPtrArray *keys, GError **err)
{
	struct sq *s = be;
	int rc, r;

	if ((r = reopen(s, err)) < 0)
		return r;
	/* One read transaction: rooms and keys from the same snapshot. */
	if ((rc = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
		return settle(s, fail(s, rc, "cannot read", err), err);
	if ((r = load_all(s, ST_LOAD_ROOMS, room_row, rooms, "room", err)) == 0)
		r = load_all(s, ST_LOAD_KEYS, key_row, keys, "API key", err);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	return r < 0 ? settle(s, r, err) : r;
}

/* Runs the bound statement ST in a transaction of its own; returns the
 * number of rows it changed or a negative errno.  Clears the bindings. */
static int write_one(struct sq *s, enum stmt st, const char *what, GError **err)
{
	sqlite3_stmt *stmt = s->stmt[st];
	int rc, r;

	if ((rc = step_done(s->stmt[ST_BEGIN])) != SQLITE_OK) {
		r = fail(s, rc, what, err);
		sqlite3_reset(s->stmt[ST_BEGIN]);
		goto out;
	}
	sqlite3_reset(s->stmt[ST_BEGIN]);
	if ((rc = step_done(stmt)) != SQLITE_OK) {
		r = fail(s, rc, what, err);
		goto rollback;
	}
	r = sqlite3_changes(s->db);
	if ((rc = step_done(s->stmt[ST_COMMIT])) != SQLITE_OK) {
		r = fail(s, rc, what, err);
		sqlite3_reset(s->stmt[ST_COMMIT]);
		goto rollback;
	}
	sqlite3_reset(s->stmt[ST_COMMIT]);
	goto out;
rollback:
	/* A failed COMMIT may have rolled back already: then this is a no-op. */
	if (sqlite3_get_autocommit(s->db) == 0) {
		step_done(s->stmt[ST_ROLLBACK]);
		sqlite3_reset(s->stmt[ST_ROLLBACK]);
	}
out:
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return r < 0 ? settle(s, r, err) : r;
}

static void bind_text(sqlite3_stmt *stmt, int i, const char *text)
{
	if (text)
		sqlite3_bind_text(stmt, i, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(stmt, i);
}

static int sq_put_room(void *be, const struct store_room *room, GError **err)
{
	struct sq *s = be;
	sqlite3_stmt *stmt;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	stmt = s->stmt[ST_PUT_ROOM];
	bind_text(stmt, 1, room->id);
	bind_text(stmt, 2, room->name);
	sqlite3_bind_blob(stmt, 3, room->token_hash, SECRET_HASH_LEN, SQLITE_STATIC);
	bind_text(stmt, 4, room->created_by);
	sqlite3_bind_int64(stmt, 5, room->created_at);
	sqlite3_bind_int64(stmt, 6, room->expires_at);
	sqlite3_bind_int64(stmt, 7, room->max_peers);
	sqlite3_bind_int(stmt, 8, room->open_to_issuer);
	r = write_one(s, ST_PUT_ROOM, "cannot store a room", err);
	return r < 0 ? r : 0;
}

static int sq_delete_room(void *be, const char *room_id, GError **err)
{
	struct sq *s = be;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	bind_text(s->stmt[ST_DELETE_ROOM], 1, room_id);
	r = write_one(s, ST_DELETE_ROOM, "cannot delete a room", err);
	if (r == 0)
		return fail_with(s, -ENOENT, err, "cannot delete room \"%s\": no such room", room_id);
	return r < 0 ? r : 0;
}

static int sq_put_key(void *be, const struct store_key *key, GError **err)
{
	struct sq *s = be;
	sqlite3_stmt *stmt;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	stmt = s->stmt[ST_PUT_KEY];
	bind_text(stmt, 1, key->key_id);
	sqlite3_bind_blob(stmt, 2, key->key_hash, SECRET_HASH_LEN, SQLITE_STATIC);
	bind_text(stmt, 3, key->room_id);
	bind_text(stmt, 4, key->name);
	sqlite3_bind_int64(stmt, 5, key->created_at);
	sqlite3_bind_int64(stmt, 6, key->expires_at);
	sqlite3_bind_int64(stmt, 7, key->revoked_at);
	bind_text(stmt, 8, key->account);
	r = write_one(s, ST_PUT_KEY, "cannot store an API key", err);
	if (r == -ENOENT) {
		g_clear_error(err);
		return fail_with(s, -ENOENT, err, "cannot store API key \"%s\": no room \"%s\"",
				 key->key_id, key->room_id);
	}
	return r < 0 ? r : 0;
}

/* load_all of one table on its own, the database opened again first if
 * it was let go of. */
static int load_table(struct sq *s, enum stmt st, row_fn row, GPtrArray *out, const char *what,
		      GError **err)
{
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	r = load_all(s, st, row, out, what, err);
	return r < 0 ? settle(s, r, err) : r;
}

static int sq_load_members(void *be, GPtrArray *members, GError **err)
{
	return load_table(be, ST_LOAD_MEMBERS, member_row, members, "room membership of room", err);
}

static int sq_put_member(void *be, const struct store_member *m, GError **err)
{
	struct sq *s = be;
	sqlite3_stmt *stmt;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	stmt = s->stmt[ST_PUT_MEMBER];
	bind_text(stmt, 1, m->room_id);
	bind_text(stmt, 2, m->account);
	sqlite3_bind_int64(stmt, 3, m->added_at);
	r = write_one(s, ST_PUT_MEMBER, "cannot store a room member", err);
	if (r == -ENOENT) {
		g_clear_error(err);
		return fail_with(s, -ENOENT, err, "cannot add a member to room \"%s\": no such room",
				 m->room_id);
	}
	return r < 0 ? r : 0;
}

static int sq_delete_member(void *be, const char *room_id, const char *account, GError **err)
{
	struct sq *s = be;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	bind_text(s->stmt[ST_DELETE_MEMBER], 1, room_id);
	bind_text(s->stmt[ST_DELETE_MEMBER], 2, account);
	r = write_one(s, ST_DELETE_MEMBER, "cannot remove a room member", err);
	if (r == 0)
		return fail_with(s, -ENOENT, err, "room \"%s\" has no such member", room_id);
	return r < 0 ? r : 0;
}

static int sq_revoke_key(void *be, const char *key_id, int64_t when, GError **err)
{
	struct sq *s = be;
	sqlite3_stmt *stmt;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	stmt = s->stmt[ST_REVOKE_KEY];
	bind_text(stmt, 1, key_id);
	sqlite3_bind_int64(stmt, 2, when);
	r = write_one(s, ST_REVOKE_KEY, "cannot revoke an API key", err);
	if (r == 0)
		return fail_with(s, -ENOENT, err, "cannot revoke API key \"%s\": no such key", key_id);
	return r < 0 ? r : 0;
}

static int sq_load_pubkeys(void *be, GPtrArray *out, GError **err)
{
	return load_table(be, ST_LOAD_PUBKEYS, pubkey_row, out, "public key of", err);
}

static int sq_put_pubkey(void *be, const struct store_pubkey *k, GError **err)
{
	struct sq *s = be;
	sqlite3_stmt *stmt;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	stmt = s->stmt[ST_PUT_PUBKEY];
	bind_text(stmt, 1, k->account);
	bind_text(stmt, 2, k->public_key);
	bind_text(stmt, 3, k->device_name);
	bind_text(stmt, 4, k->username);
	sqlite3_bind_int64(stmt, 5, k->created_at);
	r = write_one(s, ST_PUT_PUBKEY, "cannot store a public key", err);
	return r < 0 ? r : 0;
}

static int sq_purge_expired(void *be, int64_t now, GError **err)
{
	struct sq *s = be;
	int r;

	if ((r = reopen(s, err)) < 0)
		return r;
	sqlite3_bind_int64(s->stmt[ST_PURGE], 1, now);
	return write_one(s, ST_PURGE, "cannot purge expired rooms", err);
}

const struct store_backend_ops store_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.load = sq_load,
	.put_room = sq_put_room,
	.delete_room = sq_delete_room,
	.put_key = sq_put_key,
	.load_members = sq_load_members,
	.put_member = sq_put_member,
	.delete_member = sq_delete_member,
	.revoke_key = sq_revoke_key,
	.purge_expired = sq_purge_expired,
	.load_pubkeys = sq_load_pubkeys,
	.put_pubkey = sq_put_pubkey,
	.close = sq_close,
};
