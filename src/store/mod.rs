//! The store: one redb database file, the single source of truth.
//!
//! Reads use redb's MVCC snapshots and never wait on the writer. Every write goes to one writer
//! thread over a channel; it runs as many queued writes as it finds inside one
//! `Durability::Immediate` transaction (group commit), and answers each caller only after that
//! transaction is on disk. A write closure must check everything before it changes any table: a
//! closure that returns an error must have written nothing, because the transaction it shares
//! with other callers is still committed.

pub mod schema;
pub mod tables;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

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
    reply: oneshot::Sender<Result<JobResult, StoreError>>,
}

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_batch: 512 }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
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
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(StoreStats::default());
        let writer = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(db, rx, options, stats))
                .map_err(|e| StoreError::Redb(redb::Error::Io(e)))?
        };
        Ok(Store {
            db,
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

    /// A consistent snapshot for reading. Never waits on the writer.
    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Runs `f` in the writer's next transaction and returns its result once that transaction is
    /// durable. `f` must validate before writing (see the module doc).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run: JobFn = Box::new(move |tx| Box::new(f(tx)) as JobResult);
        self.jobs
            .send(Job { run, reply })
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
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run: JobFn = Box::new(move |tx| Box::new(f(tx)) as JobResult);
        self.jobs
            .blocking_send(Job { run, reply })
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

/// The writer thread: take one job (waiting), then every job already queued (up to the batch
/// limit), run them all in one transaction, commit once, answer them all.
fn writer_loop(
    db: Arc<Database>,
    mut jobs: mpsc::Receiver<Job>,
    options: StoreOptions,
    stats: Arc<StoreStats>,
) {
    let max_batch = options.max_batch.max(1);
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match run_batch(&db, &mut batch) {
            Ok(results) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.writes.fetch_add(n, Ordering::Relaxed);
                stats.max_batch.fetch_max(n, Ordering::Relaxed);
                for (reply, result) in results {
                    let _ = reply.send(Ok(result));
                }
            }
            Err((replies, error)) => {
                tracing::error!(%error, writes = n, "store transaction failed; its writes were not committed");
                let text = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::WriterPanic(text.clone())));
                }
            }
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
