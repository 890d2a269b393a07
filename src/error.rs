//! Library errors, and the policy they follow.
//!
//! **What an error says.** Every error a user can meet is a variant that
//! names the thing it is about (the repository path, the snapshot, the
//! file and line, the key, the server) and, in its message, what to do
//! about it. Messages are one line, lower case, no trailing period, so the
//! CLI prints them with `{:#}` (the message, then its sources). I/O and
//! database errors always carry the path they happened on, and keep the
//! underlying error as their `source`, never flattened into a string. A
//! new failure the user can act on gets its own variant, not a
//! `BadArgument` string; the enum is `#[non_exhaustive]` so adding one is
//! not a breaking change for callers.
//!
//! **Whose move it is.** [`Error::class`] sorts every variant into one of
//! four [`ErrorClass`]es:
//! - `Transient`: the same call may succeed later unchanged (a server that
//!   did not answer, a lock held by another process, SQLite busy). Retry
//!   loops (the Datastore and object-store clients) retry these and only
//!   these; the CLI exits with 75 (EX_TEMPFAIL) so a scheduler can too.
//! - `User`: the input, a setting or the environment must change (a wrong
//!   URL, an unknown snapshot, a full disk, missing credentials, an
//!   entity the target refuses). The message says what to change.
//! - `Damage`: stored data is not what was written (a pack, a manifest,
//!   a source file); the message names the file and the command that
//!   inspects or repairs it. Never retried.
//! - `Bug`: [`Error::Internal`], a state the code should never reach,
//!   reported instead of a panic; the repository is left as the commit
//!   protocol leaves it (consistent).
//!
//! The library never panics on bad input, never prints and never exits.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whose move it is after an error (see the module's policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Worth retrying as is.
    Transient,
    /// The input, a setting or the environment must change.
    User,
    /// Stored data is damaged.
    Damage,
    /// A bug in kindsnap.
    Bug,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no kindsnap repository at {path}; create one with `kindsnap init --repo {path}`")]
    NoRepository { path: PathBuf },

    #[error("{path} exists and is not empty; `kindsnap init` needs a new or empty directory")]
    NotEmpty { path: PathBuf },

    #[error("{path} is not a kindsnap repository ({why})")]
    NotARepository { path: PathBuf, why: String },

    #[error(
        "repository {path} has format version {found}, newer than this kindsnap understands ({supported}); upgrade kindsnap"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("repository {path} is not writable (check its permissions, or work on a copy)")]
    ReadOnly {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file system is full (ENOSPC, EDQUOT, SQLITE_FULL): named as
    /// such, never as damage.
    #[error("no space left on the device holding {path} ({op}); free space there (`kindsnap prune` deletes data no snapshot needs, and works on a full disk) and run the command again; what was already stored is intact")]
    NoSpace { op: &'static str, path: PathBuf },

    #[error("database {path}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error("bucket `{bucket}` does not exist ({url}); create it first, or fix the URL")]
    NoBucket { url: String, bucket: String },

    #[error("{url}: access denied ({why}); check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE in ~/.aws/credentials, or GOOGLE_APPLICATION_CREDENTIALS) and their rights on the bucket")]
    RemoteDenied { url: String, why: String },

    #[error("cannot reach the object store of {url} ({why}); check the endpoint (AWS_ENDPOINT_URL, KINDSNAP_S3_ENDPOINT) and the network, then run the command again")]
    RemoteUnreachable { url: String, why: String },

    #[error("{op} {url}: {why}")]
    Remote {
        op: &'static str,
        url: String,
        why: String,
    },

    /// A server accepted the connection (or never completed it) and did
    /// not answer in time; retries, where they apply, are used up.
    #[error(
        "{service} {endpoint} did not answer within {} ({waiting}); check that it is up and answering, or raise {knob}",
        crate::net::seconds(*timeout)
    )]
    Timeout {
        /// `datastore`, `PostgreSQL server`, `object store`.
        service: &'static str,
        /// Where: host and port, or URL (without password).
        endpoint: String,
        timeout: std::time::Duration,
        /// What was awaited, and how many tries.
        waiting: String,
        /// How to raise it (the flag, or the URL parameter that set it).
        knob: String,
    },

    #[error("repository {url} is locked: {holder}; try again later (the lock of a process that died expires by itself)")]
    Locked { url: String, holder: String },

    /// A holder's lock on object storage was broken by another process
    /// (its renewals stopped for a whole TTL, e.g. the process was
    /// suspended), or may have been: writing on would race that process.
    #[error("lost the repository lock of {url} {why}; run the command again")]
    LockLost { url: String, why: String },

    /// `hint` is empty, " (did you mean …?)", or starts with "; " or ": "
    /// (the valid range of `latest~N` or `@DATE`, the shortest id prefix).
    #[error("snapshot `{spec}` not found{hint}; `kindsnap log` lists snapshots")]
    UnknownSnapshot { spec: String, hint: String },

    /// `within` names the snapshot(s) ("snapshot `monday`"); `hint` is
    /// empty or " (did you mean …?)"; `show` is a snapshot to list.
    #[error("kind `{kind}` is not in {within}{hint}; `kindsnap show {show}` lists its kinds")]
    UnknownKind {
        kind: String,
        within: String,
        hint: String,
        show: String,
    },

    #[error("snapshot `{spec}` is ambiguous: it matches {matches}; use more digits of the id")]
    AmbiguousSnapshot { spec: String, matches: String },

    #[error(
        "a snapshot named `{name}` already exists ({id}); choose another --name or pass --force"
    )]
    NameTaken { name: String, id: String },

    #[error("invalid snapshot name `{name}`: {why}")]
    BadName { name: String, why: String },

    #[error("{file}:{line}: {message}")]
    Source {
        file: String,
        line: u64,
        message: String,
    },

    #[error(
        "duplicate key {key} in the source ({first} and {second}); each entity may appear once"
    )]
    DuplicateKey {
        key: String,
        first: String,
        second: String,
    },

    /// A managed export's file is damaged or not what it should be at
    /// `offset` (the message says what to do).
    #[error("{file} at byte {offset}: {message}")]
    ExportData {
        file: String,
        offset: u64,
        message: String,
    },

    #[error("invalid source or target `{spec}`: {why}")]
    BadLocation { spec: String, why: String },

    #[error("entity {hash} is missing from the repository; run `kindsnap check --read-data`")]
    MissingEntity { hash: String },

    #[error("pack {pack} is damaged ({why}); run `kindsnap check --read-data`")]
    DamagedPack { pack: String, why: String },

    #[error("snapshot {id} is damaged ({why}); run `kindsnap check`")]
    DamagedSnapshot { id: String, why: String },

    /// `hint` is empty or ` (did you mean …?)`.
    #[error("{what} not found in snapshot `{snapshot}`{hint}")]
    NotFound {
        what: String,
        snapshot: String,
        hint: String,
    },

    #[error("invalid key `{text}`: {why}")]
    BadKey { text: String, why: String },

    /// A recorded schema statement that a restore will not run: it does
    /// something other than recreate its table, or it is code the user
    /// has not trusted. `object` says which: ``table `film` ``, ``type
    /// `public.mood` ``.
    #[error("snapshot `{snapshot}`: refusing the recorded schema of {object}: {why}; nothing was written (docs/sql.md, \"Recorded schema\")")]
    UnsafeSchema {
        snapshot: String,
        object: String,
        why: String,
    },

    /// A number in a repository's `config` that kindsnap cannot work with
    /// (a huge block size would ask for that much memory at once).
    #[error("{path}: `{key}` is {value}, outside the allowed range {range}; put back the value `kindsnap init` wrote (docs/format.md, \"config\")")]
    BadRepoConfig {
        path: PathBuf,
        key: &'static str,
        value: String,
        range: String,
    },

    #[error("invalid ignore file {path}: {why}")]
    BadIgnore { path: PathBuf, why: String },

    /// A command-line value that cannot work (the message says why and
    /// what to do).
    #[error("{0}")]
    BadArgument(String),

    #[error("the target rejected {key}: {reason}; fix the entity or pass --tolerate to skip such entities")]
    Rejected { key: String, reason: String },

    #[error(
        "no key map for {target}: nothing was restored there with --keys uuid from this repository"
    )]
    NoKeyMap { target: String },

    /// A restore given no write mode found entities of the kinds it
    /// would write already on the target.
    #[error("{target} already holds entities of {kinds}; say what to do with them: --merge (write the snapshot over them and keep the rest), --exact (afterwards exactly the snapshot's entities) or --clear (empty these kinds first); add --dry-run to see how many each would touch")]
    TargetHasData { target: String, kinds: String },

    #[error("another restore into {target} is running; wait for it to finish")]
    RestoreRunning { target: String },

    #[error("the transform `{command}` failed: {why}")]
    Transform { command: String, why: String },

    #[error("invalid {path}{}: {why}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    BadConfig {
        path: PathBuf,
        why: String,
        line: Option<usize>,
    },

    /// The Datastore server could not be reached at all (no TCP
    /// connection, TLS or DNS failure) after the client's retries.
    #[error("cannot reach the datastore at {endpoint}: {why}; is the server running and the address right?")]
    DatastoreUnreachable { endpoint: String, why: String },

    /// The server answered that the credentials are not good enough
    /// (`UNAUTHENTICATED`, `PERMISSION_DENIED`); `hint` says which
    /// credentials were used and how to fix them.
    #[error("{who} (HTTP {http}: {message}); {hint}")]
    DatastoreDenied {
        /// "the datastore at URL refused the credentials" or "no
        /// permission on project P".
        who: String,
        http: u16,
        message: String,
        hint: String,
    },

    /// The server answered NOT_FOUND to a read: the project, database or
    /// URL is wrong.
    #[error("{endpoint} answered NOT_FOUND to {call} ({message}); check the project `{project}`{} and the URL", if database.is_empty() { String::new() } else { format!(" and database `{database}`") })]
    DatastoreNotFound {
        endpoint: String,
        call: String,
        message: String,
        project: String,
        database: String,
    },

    /// A call the server refused for good with a status of its own;
    /// `attempts` is set when the status is a transient one and the
    /// retries ran out.
    #[error("{call} on {endpoint} failed: {status} {message}{}", attempts.map(|n| format!(" (still failing after {n} attempts)")).unwrap_or_default())]
    DatastoreCall {
        endpoint: String,
        call: String,
        status: String,
        message: String,
        attempts: Option<u32>,
    },

    /// The server (or what answers at its address) sent something that
    /// is not the Datastore v1 API's answer: a wrong address, a proxy, or
    /// a server kindsnap does not support.
    #[error("{endpoint} {why}")]
    NotDatastore { endpoint: String, why: String },

    /// A Datastore answer that kindsnap cannot read: `what` names it
    /// ("an entity of kind K", "a key", "lookup's answer").
    #[error("{endpoint} sent {what} kindsnap cannot read: {why}")]
    DatastoreAnswer {
        endpoint: String,
        what: String,
        why: String,
    },

    /// The server does not support something the command asked for
    /// (`--read-time` on a server without it).
    #[error("{endpoint} does not support {feature} ({message}); {hint}")]
    DatastoreUnsupported {
        endpoint: String,
        feature: &'static str,
        message: String,
        hint: &'static str,
    },

    /// No Application Default Credentials for a `datastore:PROJECT`
    /// location.
    #[error("no Google credentials for project {project}: {why}. Run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file")]
    NoCredentials { project: String, why: String },

    /// The process could not get a resource it needs to start working
    /// (a thread, the I/O runtime, the HTTP client): the machine is out
    /// of something.
    #[error("cannot {what}")]
    Setup {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A file given as a SQLite database is something else.
    #[error("{path} is not a SQLite database; check the path")]
    NotSqlite { path: PathBuf },

    /// SQLite cannot open the file (missing directory, permissions).
    #[error("cannot open the SQLite database {path} (check the path and its permissions)")]
    SqliteOpen {
        path: PathBuf,
        source: rusqlite::Error,
    },

    /// The PostgreSQL server refused the connection, or TLS failed;
    /// `hint` says what to change (empty when `why` says it).
    #[error("cannot connect to {target}: {why}{}", if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    DbConnect {
        target: String,
        why: String,
        hint: String,
    },

    /// No PostgreSQL server answered at the address.
    #[error("cannot connect to {target}: {why}; is the server running and reachable at that host and port?")]
    DbUnreachable { target: String, why: String },

    /// A statement a snapshot or restore runs failed (the server's
    /// message, with its detail and hint).
    #[error("{target}: {why}")]
    DbStatement { target: String, why: String },

    /// Writing rows into a table failed.
    #[error("writing table `{table}` in {target}: {why}")]
    DbWrite {
        target: String,
        table: String,
        why: String,
    },

    /// A restore would leave rows pointing at rows that are not there.
    #[error("the restored data in {target} breaks {what}; restore the referenced kinds too (--with-references), clear the referencing ones, or fix the rows, then run the restore again")]
    BrokenForeignKeys { target: String, what: String },

    /// Creating a recorded table, type, view… on the target failed.
    #[error("creating {what} in {target} failed: {why}{}", kept.as_ref().map(|k| format!("; {k}")).unwrap_or_default())]
    CreateFailed {
        /// "table `t`", "enum `public.mood`", "a trigger of table `t`".
        what: String,
        target: String,
        why: String,
        /// Where the statement was kept to run by hand, if it was.
        kept: Option<String>,
    },

    /// Recorded schema entities that do not decode: `what` names the
    /// table or object, `fix` the way around it.
    #[error("the recorded schema of {what} is damaged ({why}); {fix}")]
    DamagedSchema {
        what: String,
        why: String,
        fix: &'static str,
    },

    /// A recorded schema written by a newer kindsnap.
    #[error("the recorded schema {key} says its keys use encoding {found}, which this kindsnap does not know; upgrade kindsnap to restore it")]
    NewerSchema { key: String, found: String },

    /// A restore into a table the target lacks and nothing creates.
    #[error("table `{kind}` does not exist in {target}{}", if *has_schema { " and the snapshot's recorded schema does not create it; create the table first".to_string() } else { " and the snapshot has no recorded SQL schema (its source was not a SQL database); create the table first, a column for each property (docs/sql.md, \"Restore\")".to_string() })]
    MissingTable {
        kind: String,
        target: String,
        /// Whether the snapshot records a SQL schema at all.
        has_schema: bool,
    },

    /// An entity has a property the target's table has no column for.
    #[error("table `{kind}` in {target} has no column `{column}` (entity {key}); add the column or restore into an empty database")]
    NoSuchColumn {
        kind: String,
        target: String,
        column: String,
        key: String,
    },

    /// Tables on the target differ from the snapshot's: one line each.
    #[error("{}", problems.join("\n"))]
    SchemaMismatch { problems: Vec<String> },

    /// A user table whose name is the kind kindsnap records schemas in.
    #[error("{engine}: table `{table}` has the name of the kind kindsnap records schemas in; rename the table or its schema to snapshot this database")]
    ReservedTable { engine: &'static str, table: String },

    /// Writing to stdout or another caller-supplied sink failed.
    #[error("writing output")]
    Output(#[source] std::io::Error),

    #[error("interrupted; nothing was half-written (a restore continues where it stopped when run again)")]
    Interrupted,

    /// A state the code should never reach: a bug, reported instead of a
    /// panic. The repository is left as the commit protocol leaves it.
    #[error("{file}{at}: authentication failed: the repository was changed or damaged after it was written (or this is not its file); run `kindsnap check --read-data`")]
    AuthFailed { file: String, at: String },

    #[error("cannot get the password from {command}: {why}")]
    PasswordCommand { command: String, why: String },

    #[error("wrong password: no key in {path}/keys/ opens with it")]
    WrongPassword { path: PathBuf },

    #[error("repository {path} is encrypted: give its password with --password-file, --password-command or KINDSNAP_PASSWORD, or run on a terminal to be asked")]
    PasswordNeeded { path: PathBuf },

    #[error("repository {path} is encrypted but holds no key file in keys/, so nothing can open it; put back the key files from a copy of the repository")]
    NoKeys { path: PathBuf },

    #[error("key file {path} is damaged ({why}); put back a copy, or remove it with `kindsnap key remove`")]
    BadKeyFile { path: PathBuf, why: String },

    #[error("repository {path} is not encrypted: it has no keys; to encrypt it, create a new repository with `kindsnap init --encrypt` and `kindsnap copy` into it")]
    NotEncrypted { path: PathBuf },

    #[error("{path} is already a plain (unencrypted) repository and cannot be encrypted in place; create an encrypted one beside it and copy the snapshots: `kindsnap --repo NEW init --encrypt && kindsnap --repo NEW copy --from-repo {path}`")]
    EncryptExisting { path: PathBuf },

    #[error(
        "no single key file matches `{spec}` ({matches} do); `kindsnap key list` shows the keys"
    )]
    UnknownKey { spec: String, matches: usize },

    #[error("key {name} is the one in use or the last one; add another key (`kindsnap key add`) and open the repository with it to remove this one")]
    KeyInUse { name: String },

    #[error("internal error: {0}; please report it (the repository is consistent)")]
    Internal(&'static str),
}

impl Error {
    /// Whose move it is (the module's policy).
    pub fn class(&self) -> ErrorClass {
        use Error::*;
        match self {
            Timeout { .. } | RemoteUnreachable { .. } | Locked { .. } | LockLost { .. } => {
                ErrorClass::Transient
            }
            DatastoreUnreachable { .. }
            | DatastoreCall {
                attempts: Some(_), ..
            } => ErrorClass::Transient,
            RestoreRunning { .. } | Interrupted => ErrorClass::Transient,
            Sqlite { source, .. } if is_busy(source) => ErrorClass::Transient,
            DbUnreachable { .. } => ErrorClass::Transient,
            MissingEntity { .. }
            | DamagedSchema { .. }
            | DamagedPack { .. }
            | DamagedSnapshot { .. }
            | AuthFailed { .. }
            | NoKeys { .. }
            | BadKeyFile { .. }
            | BadRepoConfig { .. }
            | NotARepository { .. } => ErrorClass::Damage,
            Internal(_) => ErrorClass::Bug,
            _ => ErrorClass::User,
        }
    }

    /// Worth retrying as is.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| {
            if is_no_space(&source) {
                Error::NoSpace { op, path }
            } else {
                Error::Io { op, path, source }
            }
        }
    }

    pub(crate) fn sql(path: impl Into<PathBuf>) -> impl FnOnce(rusqlite::Error) -> Error {
        let path = path.into();
        move |source| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                Error::NoSpace {
                    op: "writing",
                    path,
                }
            } else {
                Error::Sqlite { path, source }
            }
        }
    }

    /// The disk is full: worth retrying elsewhere (scratch files) or after
    /// freeing space.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// ENOSPC or EDQUOT (`StorageFull` / `QuotaExceeded` in std's terms).
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}
