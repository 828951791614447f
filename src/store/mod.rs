//! The store: one redb database file, the single source of truth.
//!
//! Callers speak to it in the terms of its records, not of redb: a write's closure is handed a
//! [`Tx`], a read gets a [`Snapshot`], and both offer typed operations per record kind
//! (`ops.rs`, `leases.rs`). Table layout and encoding stay inside this room (`tables.rs`,
//! `schema.rs`).
//!
//! Reads use redb's MVCC snapshots and never wait on the writer. Every write goes to one writer
//! thread over a channel; it runs as many queued writes as it finds inside one
//! `Durability::Immediate` transaction (group commit), and answers each caller only after that
//! transaction is on disk. A write closure must check everything before it changes any table: a
//! closure that returns an error must have written nothing, because the transaction it shares
//! with other callers is still committed.
//!
//! A full or failing disk. redb refuses every operation after one I/O error ("Previous I/O
//! error occurred"), so after a failed commit the writer closes the database and opens it again
//! (redb repairs what the failed commit left). The state disk keeps a reserve file
//! ([`reserve`]): on "no space left" the writer deletes it, the store is [`StoreState::DiskFull`],
//! ordinary writes are answered [`StoreError::DiskFull`] (507) without touching the disk, and
//! [`WriteClass::Essential`] writes (logins, deletes, the life cycle's own records) go on in the
//! space the reserve left, so that an operator can log in and free space and the appliance
//! can record what its machines do. Once the disk has room for the reserve again it is made
//! anew and the store is [`StoreState::Ok`]. `/healthz` and the watchdog read [`Store::state`].

mod leases;
mod ops;
pub(crate) mod reserve;
pub mod schema;
pub(crate) mod tables;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

pub use ops::{Snapshot, Tx};
pub use schema::SCHEMA_VERSION;

/// What went wrong in the store. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error(
        "database {path} has schema version {found}, but this rackbox understands versions up to {supported}: it was written by a newer rackbox; run that version or restore a backup"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("database error: {0}")]
    Redb(#[from] redb::Error),
    #[error("stored record {what} cannot be decoded: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("record cannot be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the store's writer has stopped (the daemon is shutting down)")]
    WriterGone,
    #[error("a write failed inside the writer and its batch was rolled back: {0}")]
    WriterPanic(String),
    /// The state disk is full: ordinary writes are refused until space is freed.
    #[error(
        "the state disk is full ({path}): nothing was written; delete machines, images or files, \
         or free space on that file system, and try again (logins and deletes still work)"
    )]
    DiskFull { path: PathBuf },
    /// Writing to the database failed for another reason (an I/O error); the writer reopens it.
    #[error("the store could not write ({detail}); nothing was written; try again")]
    Unavailable { detail: String },
}

impl StoreError {
    /// What the caller is told: shutting down, disk full, try again, or a fault of rackbox's.
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            StoreError::WriterGone => ErrorKind::ShuttingDown,
            StoreError::DiskFull { .. } => ErrorKind::DiskFull,
            StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    /// Whether this error is the operating system's "no space left on device" (or quota).
    fn is_disk_full(&self) -> bool {
        let text = format!("{self:?}");
        text.contains("StorageFull")
            || text.contains("os error 28")
            || text.contains("QuotaExceeded")
            || text.contains("os error 122")
    }

    /// Whether this error came from the disk (so that redb must be reopened after it).
    fn is_io(&self) -> bool {
        let text = format!("{self:?}");
        text.contains("Io(") || text.contains("PreviousIo")
    }
}

/// What the store can do now, for `/healthz`, the watchdog and the metrics.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StoreState {
    /// Every write is taken.
    Ok,
    /// The state disk is full: only essential writes are taken, in the reserve's space.
    DiskFull { detail: String },
    /// The database could not be reopened after an I/O error; writes fail until it can.
    Failed { detail: String },
}

/// How much a write matters when the state disk is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteClass {
    /// Refused while the disk is full.
    Ordinary,
    /// Taken while the disk is full, in the reserve's space: logins, deletes (they free
    /// space) and the appliance's own records of what its machines do.
    Essential,
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )*};
}
redb_from!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

type JobResult = Box<dyn Any + Send>;
type JobFn = Box<dyn FnOnce(&WriteTransaction) -> JobResult + Send>;

/// One queued write and where to send its answer.
struct Job {
    run: JobFn,
    class: WriteClass,
    reply: oneshot::Sender<Result<JobResult, StoreError>>,
}

/// The open database, replaced by the writer when it reopens it after an I/O error (`None`
/// while it is closed and could not be opened again).
type Current = RwLock<Option<Arc<Database>>>;

/// Counters about the writer, for /metrics and the benchmarks.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Transactions committed (one fsync each).
    pub commits: AtomicU64,
    /// Write requests answered.
    pub writes: AtomicU64,
    /// Largest number of writes committed together.
    pub max_batch: AtomicU64,
}

/// How the writer batches.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// At most this many writes share one transaction. 1 means one commit per write.
    pub max_batch: usize,
    /// Bytes kept free on the state disk for essential writes (0: no reserve).
    pub reserve_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_batch: 512,
            reserve_bytes: reserve::DEFAULT_BYTES,
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Current>,
    state: Arc<Mutex<StoreState>>,
    jobs: mpsc::Sender<Job>,
    stats: Arc<StoreStats>,
    writer: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database at `path`, checks its schema version and migrates an older
    /// one, then starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let io_error = |what: &str, e: std::io::Error| {
            StoreError::Redb(redb::Error::Io(std::io::Error::new(
                e.kind(),
                format!("{what}: {e}"),
            )))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The store holds BMC passwords and token hashes: a state directory rackbox
            // makes is its own (0700), as systemd's StateDirectory= is.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_error(&format!("cannot create {}", dir.display()), e))?;
        }
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // Readable by rackbox alone, whatever the umask was when it was made.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_error(&format!("cannot make {} private", path.display()), e))?;
        }
        schema::check_and_migrate(&db, path)?;
        let reserve = reserve::Reserve::new(path, options.reserve_bytes);
        let initial = match reserve.ensure() {
            Ok(()) => StoreState::Ok,
            Err(e) => {
                tracing::warn!(error = %e, "no reserve on the state disk");
                StoreState::DiskFull {
                    detail: format!("no room for the {} reserve: {e}", reserve.describe()),
                }
            }
        };
        let db = Arc::new(RwLock::new(Some(Arc::new(db))));
        let state = Arc::new(Mutex::new(initial));
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(StoreStats::default());
        let writer = {
            let writer = Writer {
                db: db.clone(),
                path: path.to_path_buf(),
                state: state.clone(),
                reserve,
                options,
                stats: stats.clone(),
            };
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| StoreError::Redb(redb::Error::Io(e)))?
        };
        Ok(Store {
            db,
            state,
            jobs: tx,
            stats,
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// A consistent snapshot for reading. Never waits on the writer (but for the moment it
    /// takes to reopen the database after an I/O error).
    pub fn read(&self) -> Result<Snapshot, StoreError> {
        let db = self
            .db
            .read()
            .map_err(|_| StoreError::WriterPanic("the database handle was poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Unavailable {
                detail: "the database is closed after an I/O error and could not be opened again"
                    .into(),
            })?;
        Ok(Snapshot {
            rx: db.begin_read()?,
        })
    }

    /// What the store can do now.
    pub fn state(&self) -> StoreState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| StoreState::Failed {
                detail: "the store's state was poisoned".into(),
            })
    }

    /// Runs `f` on the writer's next transaction ([`Tx`]) and returns its result once that
    /// transaction is durable. `f` must validate before writing (see the module doc). Refused while the state
    /// disk is full ([`Store::write_essential`] is not).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.write_class(WriteClass::Ordinary, f).await
    }

    /// [`Store::write`] for a write that must go through while the state disk is full: a
    /// login, a delete, the life cycle's own record of what a machine does.
    pub async fn write_essential<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.write_class(WriteClass::Essential, f).await
    }

    async fn write_class<T, E, F>(&self, class: WriteClass, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (job, answer) = job(class, f);
        self.jobs
            .send(job)
            .await
            .map_err(|_| E::from(StoreError::WriterGone))?;
        let result = answer.await.map_err(|_| E::from(StoreError::WriterGone))?;
        unbox(result)
    }

    /// [`Store::write`] for code outside the async runtime (start-up, tools, tests).
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (job, answer) = job(WriteClass::Essential, f);
        self.jobs
            .blocking_send(job)
            .map_err(|_| E::from(StoreError::WriterGone))?;
        let result = answer
            .blocking_recv()
            .map_err(|_| E::from(StoreError::WriterGone))?;
        unbox(result)
    }

    /// Takes the writer thread's handle (once). The writer commits everything queued and exits
    /// when the last [`Store`] handle is dropped; joining this handle then waits for that, which
    /// is how a graceful shutdown knows every acknowledged write is on disk.
    pub fn take_writer(&self) -> Option<JoinHandle<()>> {
        self.writer.lock().ok().and_then(|mut w| w.take())
    }
}

/// A write for the writer thread: `f`, handed the transaction's [`Tx`], and where its answer goes.
fn job<T, E, F>(class: WriteClass, f: F) -> (Job, oneshot::Receiver<Result<JobResult, StoreError>>)
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let run: JobFn = Box::new(move |tx| Box::new(f(&Tx { tx })) as JobResult);
    (Job { run, class, reply }, answer)
}

fn unbox<T: 'static, E: From<StoreError> + 'static>(
    result: Result<JobResult, StoreError>,
) -> Result<T, E> {
    match result {
        Ok(boxed) => match boxed.downcast::<Result<T, E>>() {
            Ok(r) => *r,
            Err(_) => Err(E::from(StoreError::WriterPanic(
                "result of unexpected type".into(),
            ))),
        },
        Err(e) => Err(E::from(e)),
    }
}

/// The writer thread's own state.
struct Writer {
    db: Arc<Current>,
    path: PathBuf,
    state: Arc<Mutex<StoreState>>,
    reserve: reserve::Reserve,
    options: StoreOptions,
    stats: Arc<StoreStats>,
}

/// How long the writer waits for readers to let go of a database it reopens.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Writer {
    /// Take one job (waiting), then every job already queued (up to the batch limit), run them
    /// all in one transaction, commit once, answer them all.
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let max_batch = self.options.max_batch.max(1);
        let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
        while let Some(first) = jobs.blocking_recv() {
            batch.push(first);
            while batch.len() < max_batch {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.before_batch(&mut batch);
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            let Some(db) = self.db.read().ok().and_then(|db| db.clone()) else {
                refuse(&mut batch, || StoreError::Unavailable {
                    detail: "the database is closed after an I/O error".into(),
                });
                continue;
            };
            let outcome = run_batch(&db, &mut batch);
            drop(db);
            match outcome {
                Ok(results) => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats.writes.fetch_add(n, Ordering::Relaxed);
                    self.stats.max_batch.fetch_max(n, Ordering::Relaxed);
                    for (reply, result) in results {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err((replies, error)) => {
                    tracing::error!(%error, writes = n, "store transaction failed; its writes were not committed");
                    let answer = self.after_failure(&error);
                    for reply in replies {
                        let _ = reply.send(Err(answer.clone_for_caller()));
                    }
                }
            }
        }
    }

    fn set_state(&self, state: StoreState) {
        if let Ok(mut s) = self.state.lock()
            && *s != state
        {
            tracing::warn!(?state, "store state");
            *s = state;
        }
    }

    fn current_state(&self) -> StoreState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(StoreState::Ok)
    }

    /// Before a batch: a failed database is reopened first; while the disk is full, ordinary
    /// writes are refused (unless the disk has room for the reserve again: then it is made
    /// anew and everything is taken).
    fn before_batch(&mut self, batch: &mut Vec<Job>) {
        match self.current_state() {
            StoreState::Ok => {}
            StoreState::Failed { .. } => match self.reopen() {
                Ok(()) => self.set_state(StoreState::Ok),
                Err(detail) => {
                    refuse(batch, || StoreError::Unavailable {
                        detail: detail.clone(),
                    });
                }
            },
            StoreState::DiskFull { .. } => {
                if self.reserve.ensure().is_ok() {
                    tracing::info!("the state disk has room again; reserve made anew");
                    self.set_state(StoreState::Ok);
                    return;
                }
                let path = self.path.clone();
                let (ordinary, essential): (Vec<Job>, Vec<Job>) = batch
                    .drain(..)
                    .partition(|j| j.class == WriteClass::Ordinary);
                batch.extend(essential);
                for job in ordinary {
                    let _ = job
                        .reply
                        .send(Err(StoreError::DiskFull { path: path.clone() }));
                }
            }
        }
    }

    /// After a failed transaction: an I/O error poisons redb, so the database is reopened; a
    /// full disk releases the reserve. Returns what the batch's callers are told.
    fn after_failure(&mut self, error: &StoreError) -> StoreError {
        if !error.is_io() {
            return StoreError::WriterPanic(error.to_string());
        }
        let full = error.is_disk_full();
        if full {
            match self.reserve.release() {
                Ok(freed) => tracing::warn!(
                    freed,
                    "state disk full: reserve released for essential writes"
                ),
                Err(e) => tracing::warn!(error = %e, "state disk full and no reserve to release"),
            }
            self.set_state(StoreState::DiskFull {
                detail: format!("no space left on the state disk ({})", self.path.display()),
            });
        }
        if let Err(detail) = self.reopen() {
            self.set_state(StoreState::Failed {
                detail: detail.clone(),
            });
            return StoreError::Unavailable { detail };
        }
        if full {
            StoreError::DiskFull {
                path: self.path.clone(),
            }
        } else {
            StoreError::Unavailable {
                detail: error.to_string(),
            }
        }
    }

    /// Closes the database and opens it again, waiting (bounded) for readers to let go of it.
    fn reopen(&mut self) -> Result<(), String> {
        let mut current = self
            .db
            .write()
            .map_err(|_| "the database handle was poisoned".to_owned())?;
        // Readers that come meanwhile wait on the lock; those already reading hold the old
        // database until they finish, which the loop below waits out.
        drop(current.take());
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        loop {
            match Database::create(&self.path) {
                Ok(db) => {
                    *current = Some(Arc::new(db));
                    tracing::info!(path = %self.path.display(), "store reopened after an I/O error");
                    return Ok(());
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(format!("reopening {}: {e}", self.path.display()));
                }
            }
        }
    }
}

/// Answers every job of `batch` with the error `make` gives.
fn refuse(batch: &mut Vec<Job>, make: impl Fn() -> StoreError) {
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(make()));
    }
}

impl StoreError {
    /// A copy of a writer's answer for each caller of a batch.
    fn clone_for_caller(&self) -> StoreError {
        match self {
            StoreError::DiskFull { path } => StoreError::DiskFull { path: path.clone() },
            StoreError::Unavailable { detail } => StoreError::Unavailable {
                detail: detail.clone(),
            },
            other => StoreError::WriterPanic(other.to_string()),
        }
    }
}

type Reply = oneshot::Sender<Result<JobResult, StoreError>>;
type Replies = Vec<Reply>;
/// What a committed batch answers: each caller and its result.
type Answered = Vec<(Reply, JobResult)>;

fn run_batch(db: &Database, batch: &mut Vec<Job>) -> Result<Answered, (Replies, StoreError)> {
    let mut tx = match db.begin_write() {
        Ok(tx) => tx,
        Err(e) => return Err((batch.drain(..).map(|j| j.reply).collect(), e.into())),
    };
    if let Err(e) = tx.set_durability(Durability::Immediate) {
        return Err((batch.drain(..).map(|j| j.reply).collect(), e.into()));
    }
    let mut done = Vec::with_capacity(batch.len());
    let mut panicked = None;
    for job in batch.drain(..) {
        if panicked.is_some() {
            done.push((job.reply, None));
            continue;
        }
        let run = job.run;
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(&tx))) {
            Ok(result) => done.push((job.reply, Some(result))),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                panicked = Some(what);
                done.push((job.reply, None));
            }
        }
    }
    if let Some(what) = panicked {
        let _ = tx.abort();
        return Err((
            done.into_iter().map(|(r, _)| r).collect(),
            StoreError::WriterPanic(what),
        ));
    }
    if let Err(e) = tx.commit() {
        return Err((done.into_iter().map(|(r, _)| r).collect(), e.into()));
    }
    Ok(done
        .into_iter()
        .filter_map(|(r, result)| result.map(|res| (r, res)))
        .collect())
}
