//! The `Scheduler`: the API the Python package and the HTTP service wrap. It bounds how many
//! runs go on at once and how many may wait, serves runs from warm pools of pre-started
//! sandboxes when it has one built for exactly that request's shape, and cancels a run (killing
//! its sandbox) when the caller drops the future.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use jail::{Killer, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RuntimeError;
use crate::request::RunRequest;
use crate::restore::{self, PoolImage};
use crate::result::RunResult;
use crate::session::{self, Session, SessionOptions};
use crate::warm::{self, NotRestored, PoolZygote, Warm};

/// Output callback for a run: called from a worker thread with each chunk as it arrives.
pub type OnOutput = Box<dyn FnMut(Stream, &[u8]) + Send>;

/// Completion callback of [`Scheduler::start`]: the run's outcome.
pub type OnDone = Box<dyn FnOnce(Result<RunResult, RuntimeError>) + Send>;

/// A run started by [`Scheduler::start`].
pub struct RunHandle {
    slot: Arc<RunSlot>,
    /// The task waiting in the queue for the run's slot, while there is one.
    queued: Option<tokio::task::AbortHandle>,
}

impl RunHandle {
    /// Stops the run: one still queued leaves the queue, a running one has its sandbox killed.
    /// Its `on_done` is still called (with the error, or with what the killed run gave).
    pub fn cancel(&self) {
        if let Some(q) = &self.queued {
            q.abort();
        }
        self.slot.abandon();
    }
}

/// An `OnDone` called exactly once: if it is dropped uncalled (a queued run cancelled, a
/// runtime shutting down before the run's thread started), it gets an error then.
struct DoneOnce(Option<OnDone>);

impl DoneOnce {
    fn new(f: OnDone) -> DoneOnce {
        DoneOnce(Some(f))
    }

    fn call(mut self, outcome: Result<RunResult, RuntimeError>) {
        if let Some(f) = self.0.take() {
            f(outcome);
        }
    }
}

impl Drop for DoneOnce {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(RuntimeError::Busy {
                why: "the run was stopped before it started (cancelled, or the scheduler shut \
                      down)"
                    .into(),
            }));
        }
    }
}

/// A run's worker thread panicked or went away without a result (a bug of ours, not the run's).
fn worker_lost() -> RuntimeError {
    RuntimeError::host(
        "the run's worker thread",
        std::io::Error::other("it ended without a result (see the log)"),
    )
}

/// A run whose caller cancelled it, or stopped waiting, before it got a sandbox.
fn caller_gone() -> RuntimeError {
    RuntimeError::Busy {
        why: "the caller stopped waiting for the run".into(),
    }
}

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Runs executing at once; further runs wait.
    pub max_concurrent: usize,
    /// Runs allowed to wait; beyond it `run` fails at once with `RuntimeError::Busy`.
    pub max_queue: usize,
    /// Ready sandboxes kept per request shape (language, packages, limits, network, mounts,
    /// environment). 0 disables warm pools.
    pub pool_size: usize,
    /// A ready sandbox older than this is replaced (rotation).
    pub max_age: Duration,
    /// A pool unused this long shrinks to zero.
    pub idle: Duration,
    /// Request shapes with a pool at once. Each pool holds up to `pool_size` sandboxes and, for
    /// Python, a zygote or an image (tens of MB with pandas), so distinct shapes must not
    /// each get one without bound. A shape beyond them takes the place of the pool unused
    /// longest once that one has been unused for `POOL_EVICTION_IDLE` (or half of `idle`, if
    /// shorter); until then its runs go cold, since making a pool costs more than a cold run.
    pub max_pools: usize,
    /// Sessions open at once; one more is refused with `RuntimeError::Busy`.
    pub max_sessions: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        SchedulerConfig {
            max_concurrent: cores * 4,
            max_queue: 1024,
            pool_size: 2,
            max_age: Duration::from_secs(60),
            idle: Duration::from_secs(300),
            max_pools: 16,
            max_sessions: cores * 8,
        }
    }
}

#[derive(Default)]
struct Pool {
    ready: VecDeque<Warm>,
    filling: usize,
    template: Option<RunRequest>,
    last_used: Option<Instant>,
    /// When building one of its sandboxes last failed: no refill for `FILL_BACKOFF` after.
    failed_at: Option<Instant>,
    /// Fills that failed, of either kind (a fork too): a `prewarm` waiting on the pool stops
    /// at one rather than at its timeout.
    fill_failures: u64,
    /// The zygote this pool's sandboxes are forked from (Python); shared with the threads
    /// filling the pool, which start it when there is none.
    zygote: ZygoteSlot,
    /// The frozen interpreter this pool's sandboxes restore (Python with packages it does not
    /// trust, see `restore`); shared with the threads filling the pool, which make it.
    image: ImageSlot,
}

#[derive(Default)]
struct ImageState {
    current: Option<Arc<PoolImage>>,
    /// Freezing or restoring failed: this pool pre-starts sandboxes that import instead.
    failed: bool,
}

type ImageSlot = Arc<Mutex<ImageState>>;

#[derive(Default)]
struct ZygoteState {
    current: Option<Arc<PoolZygote>>,
    /// Starting a zygote failed: this pool pre-starts whole sandboxes instead.
    failed: bool,
}

type ZygoteSlot = Arc<Mutex<ZygoteState>>;

/// How long a pool whose sandbox could not be built is not refilled (an install that fails,
/// an import that crashes): runs go cold meanwhile and report their own errors.
const FILL_BACKOFF: Duration = Duration::from_secs(30);

/// A zygote is replaced after this many times the sandboxes' `max_age`.
const ZYGOTE_AGE_FACTOR: u32 = 10;

struct Inner {
    config: SchedulerConfig,
    /// One per run in progress, held by the run's worker: a run whose caller stopped waiting
    /// keeps its slot until its sandbox is gone.
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    pools: Mutex<HashMap<String, Pool>>,
    /// Sandboxes built for pools since start (for tests and metrics).
    started_warm: AtomicUsize,
    /// Set by `shutdown`: no more pool refills.
    closing: std::sync::atomic::AtomicBool,
    /// Sessions started and not yet known to have ended.
    sessions: Mutex<Vec<session::Tracker>>,
    /// Sessions being started (counted against `max_sessions`).
    sessions_starting: Arc<AtomicUsize>,
}

/// Runs requests in fresh sandboxes. Cheap to clone; every clone shares the pools.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// `req` without its code: what its pool was built for.
fn shape_of(req: &RunRequest) -> RunRequest {
    RunRequest {
        code: Vec::new(),
        ..req.clone()
    }
}

/// Pools are keyed by everything of a request but its code: a request whose limits, network,
/// mounts, environment or packages differ never gets a sandbox built for another shape.
fn pool_key(req: &RunRequest) -> String {
    format!("{:?}", shape_of(req))
}

/// A place in the wait queue, given up on drop.
struct Queued<'a> {
    count: &'a AtomicUsize,
    ahead: usize,
}

impl<'a> Queued<'a> {
    fn enter(count: &'a AtomicUsize) -> Queued<'a> {
        Queued {
            ahead: count.fetch_add(1, Ordering::SeqCst),
            count,
        }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The sandbox serving a run, as far as cancelling it goes: the worker records each one it
/// uses (a warm one, one forked on demand, the cold one it falls back to), and the caller's
/// future, if it is dropped first, kills the one recorded and any recorded after.
#[derive(Default)]
struct RunSlot(std::sync::Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    killer: Option<Killer>,
    abandoned: bool,
}

impl RunSlot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the sandbox now serving the run. `false` (and that sandbox killed) when the
    /// caller has stopped waiting.
    fn hold(&self, k: Killer) -> bool {
        let mut state = self.state();
        if state.abandoned {
            drop(state);
            k.kill();
            return false;
        }
        state.killer = Some(k);
        true
    }

    /// The run is over: nothing is left to kill.
    fn release(&self) {
        self.state().killer = None;
    }

    fn abandoned(&self) -> bool {
        self.state().abandoned
    }

    fn abandon(&self) {
        let killer = {
            let mut state = self.state();
            state.abandoned = true;
            state.killer.take()
        };
        if let Some(k) = killer {
            k.kill();
        }
    }
}

/// The waiting caller of `Scheduler::run`. Dropped, it tops the run's pool up: once the result
/// is in, on the caller's thread (a refill started by the run's thread as it reports would
/// compete with the caller for the CPU it is about to be woken on); and when the future is
/// dropped first, which also kills the run's sandbox, even if the result was already on its way.
struct Waiting<'a> {
    sched: &'a Scheduler,
    slot: Arc<RunSlot>,
    shape: RunRequest,
    finished: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.slot.abandon();
        }
        self.sched.replenish(&self.shape);
    }
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Scheduler {
        // What a crashed supervisor left: empty run cgroups.
        jail::cgroup::cleanup_stale();
        prepare_descriptor_passing();
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            pools: Mutex::new(HashMap::new()),
            started_warm: AtomicUsize::new(0),
            closing: std::sync::atomic::AtomicBool::new(false),
            sessions: Mutex::new(Vec::new()),
            sessions_starting: Arc::new(AtomicUsize::new(0)),
            config,
        });
        let weak = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("airlock-pool-reaper".into())
            .spawn(move || reap(weak));
        Scheduler { inner }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// Runs `req` in a sandbox no other code has run in, streaming output to `on_output`.
    /// Dropping the future stops the run (its sandbox is killed).
    pub async fn run(
        &self,
        req: RunRequest,
        on_output: OnOutput,
    ) -> Result<RunResult, RuntimeError> {
        req.validate()?;
        let permit = self.admit().await?;
        let slot = Arc::new(RunSlot::default());
        let mut waiting = Waiting {
            sched: self,
            slot: Arc::clone(&slot),
            shape: shape_of(&req),
            finished: false,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let refill = waiting.shape.clone();
        let on_done = DoneOnce::new(Box::new(move |r| {
            // Nobody waits any more (and may have gone before this run took its sandbox): the
            // run's thread tops the pool up.
            if tx.send(r).is_err() {
                this.replenish(&refill);
            }
        }));
        self.dispatch(req, permit, slot, on_output, on_done);
        let result = rx.await.unwrap_or_else(|_| Err(worker_lost()));
        waiting.finished = true;
        drop(waiting);
        result
    }

    /// Starts `req` and returns at once; `on_done` gets its outcome, exactly once, from the
    /// thread that ran it. For callers that are not futures (the Python package's event-loop
    /// bridge): the result reaches them without first waking a runtime worker to hand it on.
    /// Call it within a Tokio runtime (or under its `Handle::enter`).
    pub fn start(&self, req: RunRequest, on_output: OnOutput, on_done: OnDone) -> RunHandle {
        let this = self.clone();
        let shape = shape_of(&req);
        let on_done = DoneOnce::new(Box::new(move |r| {
            on_done(r);
            this.replenish(&shape);
        }));
        let slot = Arc::new(RunSlot::default());
        let mut handle = RunHandle {
            slot: Arc::clone(&slot),
            queued: None,
        };
        if let Err(e) = req.validate() {
            on_done.call(Err(e));
            return handle;
        }
        match Arc::clone(&self.inner.permits).try_acquire_owned() {
            Ok(permit) => self.dispatch(req, permit, slot, on_output, on_done),
            Err(_) => {
                let this = self.clone();
                let task = tokio::spawn(async move {
                    match this.admit().await {
                        Ok(permit) => this.dispatch(req, permit, slot, on_output, on_done),
                        Err(e) => on_done.call(Err(e)),
                    }
                });
                handle.queued = Some(task.abort_handle());
            }
        }
        handle
    }

    /// A slot to run in: at once, after a wait in the bounded queue, or `Busy` when the queue
    /// is full.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, RuntimeError> {
        let inner = &self.inner;
        if let Ok(p) = Arc::clone(&inner.permits).try_acquire_owned() {
            return Ok(p);
        }
        let queued = Queued::enter(&inner.waiting);
        if queued.ahead >= inner.config.max_queue {
            return Err(RuntimeError::Busy {
                why: format!(
                    "{} runs are already waiting (the scheduler's max_queue: raise it, or send \
                     fewer at once)",
                    inner.config.max_queue
                ),
            });
        }
        // Leaving the queue (also when the caller gives up waiting) is `queued`'s drop.
        let permit = Arc::clone(&inner.permits).acquire_owned().await;
        drop(queued);
        permit.map_err(|_| RuntimeError::Busy {
            why: "the scheduler is shutting down".into(),
        })
    }

    /// Runs `req` on a blocking thread (in a warm sandbox when its pool has one), which reports
    /// to `on_done`.
    fn dispatch(
        &self,
        req: RunRequest,
        permit: OwnedSemaphorePermit,
        slot: Arc<RunSlot>,
        on_output: OnOutput,
        on_done: DoneOnce,
    ) {
        let this = self.clone();
        // If the runtime is shutting down and this never runs, `on_done`'s drop reports it.
        tokio::task::spawn_blocking(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Cancelled before this thread started: no warm sandbox is spent on it.
                if slot.abandoned() {
                    return Err(caller_gone());
                }
                // On this thread: a checkout may wait for stale sandboxes to be destroyed.
                let warm = this.checkout(&req);
                // An empty pool whose zygote is up, or whose image is made: a child forked or a
                // sandbox restored now costs milliseconds, not a cold start with the imports.
                let source = match warm {
                    None => this.on_demand(&req),
                    Some(_) => None,
                };
                execute(req, warm, source, on_output, &slot)
            }))
            .unwrap_or_else(|_| Err(worker_lost()));
            // A handle kept after the run holds no descriptor of its sandbox.
            slot.release();
            drop(permit);
            on_done.call(result);
        });
    }

    /// Starts a session shaped like `template` (its code is ignored): a sandbox that keeps its
    /// state across calls until it is closed, idle for `options.idle_timeout`, or past
    /// `options.max_lifetime`. Refused with `Busy` when `max_sessions` are open.
    pub async fn session(
        &self,
        template: RunRequest,
        options: SessionOptions,
    ) -> Result<Session, RuntimeError> {
        let shut_down = || RuntimeError::SessionClosed {
            why: "the scheduler shut down".into(),
        };
        let starting = {
            let mut open = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            open.retain(|s| !s.is_over());
            if open.len() + self.inner.sessions_starting.load(Ordering::SeqCst)
                >= self.inner.config.max_sessions
            {
                return Err(RuntimeError::Busy {
                    why: format!(
                        "{} sessions are open or starting, the scheduler's max_sessions: close \
                         one, or raise max_sessions",
                        self.inner.config.max_sessions
                    ),
                });
            }
            if self.inner.closing.load(Ordering::SeqCst) {
                return Err(shut_down());
            }
            // Counted under the lock, so concurrent starts cannot pass the limit together;
            // uncounted when the start ends, however it ends (its future may be dropped).
            Starting::count(&self.inner.sessions_starting)
        };
        // The count goes with the start's blocking work, which outlives this future if it is
        // dropped: only once an abandoned sandbox is gone is it uncounted.
        let (session, starting) = Session::start(template, options, starting).await?;
        let registered = {
            let mut open = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Under the lock `shutdown` drains under: either it sees this session, or this
            // sees that it is closing.
            let closing = self.inner.closing.load(Ordering::SeqCst);
            if !closing {
                open.push(session.tracker());
            }
            !closing
        };
        if !registered {
            // Still counted as starting, so `shutdown` waits until this is gone too.
            session.close().await;
            return Err(shut_down());
        }
        drop(starting);
        Ok(session)
    }

    /// Fills the pool for requests shaped like `template` and waits until `count` sandboxes
    /// are ready (or `timeout` passes, or a fill failed with none under way). Returns how many
    /// are ready; an error, naming the field, for a template no run could have (its code is
    /// not looked at).
    pub async fn prewarm(
        &self,
        template: &RunRequest,
        count: usize,
        timeout: Duration,
    ) -> Result<usize, RuntimeError> {
        template.validate_shape()?;
        if !warm::warmable(template) || self.inner.config.pool_size == 0 {
            return Ok(0);
        }
        let key = pool_key(template);
        let (failures_before, evicted) = {
            let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            let Some(evicted) = make_room(&mut pools, &key, &self.inner.config) else {
                tracing::warn!(
                    "not prewarming: all {} pools are in use (max_pools)",
                    self.inner.config.max_pools
                );
                return Ok(0);
            };
            let pool = pools.entry(key.clone()).or_default();
            pool.template = Some(template.clone());
            pool.last_used = Some(Instant::now());
            (pool.fill_failures, evicted)
        };
        drop(evicted);
        refill(&self.inner, &key);
        let deadline = Instant::now() + timeout;
        loop {
            let (ready, stuck) = {
                let pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
                pools.get(&key).map_or((0, true), |p| {
                    // A fill failed and none is under way: nothing more is coming (a fork
                    // failure is not retried until the pool is next used).
                    let stuck = p.fill_failures > failures_before && p.filling == 0;
                    (p.ready.len(), stuck)
                })
            };
            if ready >= count.min(self.inner.config.pool_size)
                || stuck
                || Instant::now() >= deadline
            {
                return Ok(ready);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Ready sandboxes for requests shaped like `req`.
    pub fn ready(&self, req: &RunRequest) -> usize {
        let pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.get(&pool_key(req)).map_or(0, |p| p.ready.len())
    }

    /// Stops refilling, waits for sandboxes being built, and destroys every ready one, so
    /// nothing of this scheduler remains (call before the process exits; a process that exits
    /// mid-build leaves empty cgroups for the next start's cleanup).
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        let sessions: Vec<_> = {
            let mut open = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            open.drain(..).collect()
        };
        for s in &sessions {
            s.close("the scheduler shut down");
        }
        let deadline = tokio::time::Instant::now() + session::END_GRACE;
        for s in &sessions {
            let _ = tokio::time::timeout_at(deadline, s.wait_over()).await;
        }
        // Sessions still starting see `closing` and close themselves.
        while self.inner.sessions_starting.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            let (drained, finished) = {
                let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
                let filling: usize = pools.values().map(|p| p.filling).sum();
                let ready: Vec<Warm> = pools.values_mut().flat_map(|p| p.ready.drain(..)).collect();
                // Once nothing is being built, the pools (and their zygotes) go too.
                let finished = (filling == 0).then(|| std::mem::take(&mut *pools));
                (ready, finished)
            };
            // Destroyed outside the lock: each waits for its cgroup to empty.
            drop(drained);
            if let Some(pools) = finished {
                // A fill thread may still hold a pool's zygote slot for a moment: take each
                // zygote out, so it is killed and reaped here, before shutdown returns.
                let zygotes: Vec<Arc<PoolZygote>> = pools
                    .values()
                    .filter_map(|p| {
                        let mut state = p.zygote.lock().unwrap_or_else(|e| e.into_inner());
                        state.current.take()
                    })
                    .collect();
                drop(pools);
                drop(zygotes);
                // Cgroups of finished runs are removed in the background: wait for them.
                tokio::task::spawn_blocking(jail::cgroup::flush_destroys)
                    .await
                    .ok();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sandboxes built for pools since this scheduler started.
    pub fn warm_started(&self) -> usize {
        self.inner.started_warm.load(Ordering::Relaxed)
    }

    /// Takes a ready sandbox for `req`'s shape, if one is fresh enough, and tops the pool up.
    fn checkout(&self, req: &RunRequest) -> Option<Warm> {
        if self.inner.config.pool_size == 0 || !warm::warmable(req) {
            return None;
        }
        let max_age = self.inner.config.max_age;
        let key = pool_key(req);
        let (taken, stale, evicted) = {
            let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            let evicted = make_room(&mut pools, &key, &self.inner.config)?;
            let pool = pools.entry(key).or_default();
            pool.template.get_or_insert_with(|| shape_of(req));
            pool.last_used = Some(Instant::now());
            // Past their age, or dead (killed while waiting): never handed out.
            let (fresh, stale): (Vec<Warm>, Vec<Warm>) = pool
                .ready
                .drain(..)
                .partition(|w| w.born.elapsed() < max_age && w.alive());
            pool.ready = fresh.into();
            (pool.ready.pop_front(), stale, evicted)
        };
        // Destroying a sandbox waits for its cgroup to empty: never while holding the pools.
        drop(stale);
        drop(evicted);
        taken
    }

    /// The running zygote of `req`'s pool, or its image, if it has one (never starts or makes
    /// one).
    fn on_demand(&self, req: &RunRequest) -> Option<OnDemand> {
        if self.inner.config.pool_size == 0 || !warm::warmable(req) {
            return None;
        }
        let zygote = warm::zygote_serves(req);
        if !zygote && !restore::serves(req) {
            return None;
        }
        let (zygotes, images) = {
            let pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            let pool = pools.get(&pool_key(req))?;
            (Arc::clone(&pool.zygote), Arc::clone(&pool.image))
        };
        // Never wait here for a zygote being started or an image being made: the run goes
        // cold at once instead.
        if zygote {
            let state = zygotes.try_lock().ok()?;
            return state
                .current
                .as_ref()
                .filter(|z| z.alive())
                .cloned()
                .map(OnDemand::Fork);
        }
        let state = images.try_lock().ok()?;
        state
            .current
            .as_ref()
            .filter(|_| !state.failed)
            .cloned()
            .map(|i| OnDemand::Restore(i, images.clone()))
    }

    /// Tops the pool for `req`'s shape up again; called after a run, so building the next
    /// sandbox does not compete with the run for CPU.
    fn replenish(&self, req: &RunRequest) {
        if self.inner.config.pool_size > 0 && warm::warmable(req) {
            refill(&self.inner, &pool_key(req));
        }
    }
}

/// Where a run whose pool is empty gets a sandbox that is not cold.
enum OnDemand {
    Fork(Arc<PoolZygote>),
    Restore(Arc<PoolImage>, ImageSlot),
}

/// Runs on a worker thread: a warm sandbox if there is one (and it is alive), else one made
/// now from the pool's zygote or image, else cold.
fn execute(
    req: RunRequest,
    warm: Option<Warm>,
    source: Option<OnDemand>,
    mut on_output: OnOutput,
    slot: &RunSlot,
) -> Result<RunResult, RuntimeError> {
    let made = source.map(|s| match s {
        OnDemand::Fork(z) => Warm::fork(&z, &req).map_err(|e| ("forking a zygote child", e)),
        OnDemand::Restore(i, images) => Warm::restore(&req, &i)
            .map_err(|e| ("restoring a frozen interpreter", forget_image(&images, e))),
    });
    let warm = match warm {
        Some(w) if slot.hold(w.killer()) => Some(w),
        Some(_) => return Err(caller_gone()),
        None => match made {
            Some(Ok(w)) if slot.hold(w.killer()) => Some(w),
            Some(Ok(_)) => return Err(caller_gone()),
            Some(Err((what, e))) => {
                tracing::warn!("{what} on demand failed; running cold: {e}");
                None
            }
            None => None,
        },
    };
    if let Some(w) = warm {
        match w.run(&req, &mut on_output) {
            Ok(r) => return Ok(r),
            // It died before the code arrived: nothing ran, so a cold sandbox may serve.
            Err(warm::Undelivered) => {
                tracing::warn!("a warm sandbox died before its run; running cold")
            }
        }
    }
    // Nothing cold is started for a caller that is gone (no install either); one that goes
    // while it starts has its sandbox killed as soon as there is one.
    if slot.abandoned() {
        return Err(caller_gone());
    }
    crate::run::run_with(&req, on_output, |k| {
        slot.hold(k);
    })
}

/// How long the least recently used pool must have gone unused before a new request shape may
/// take its place when there are `max_pools` already.
pub const POOL_EVICTION_IDLE: Duration = Duration::from_secs(10);

/// Makes room for a pool for `key` among `pools`, of at most `config.max_pools`: `Some` when
/// it may have one (with the pool evicted for it, if one was, to be dropped outside the
/// lock), `None` when all are in use.
fn make_room(
    pools: &mut HashMap<String, Pool>,
    key: &str,
    config: &SchedulerConfig,
) -> Option<Option<Pool>> {
    if pools.contains_key(key) || pools.len() < config.max_pools {
        return Some(None);
    }
    let evictable = (config.idle / 2).min(POOL_EVICTION_IDLE);
    let oldest = pools
        .iter()
        .filter(|(_, p)| p.filling == 0)
        .filter(|(_, p)| p.last_used.is_none_or(|t| t.elapsed() >= evictable))
        .min_by_key(|(_, p)| p.last_used)
        .map(|(k, _)| k.clone())?;
    Some(pools.remove(&oldest))
}

/// Starts building sandboxes until the pool for `key` holds `pool_size` (counting those
/// being built).
fn refill(inner: &Arc<Inner>, key: &str) {
    if inner.closing.load(Ordering::SeqCst) {
        return;
    }
    let (template, slot, images) = {
        let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pool) = pools.get_mut(key) else {
            return;
        };
        let Some(t) = pool.template.clone() else {
            return;
        };
        if pool.ready.len() + pool.filling >= inner.config.pool_size
            || pool.failed_at.is_some_and(|t| t.elapsed() < FILL_BACKOFF)
        {
            return;
        }
        pool.filling += 1;
        (t, Arc::clone(&pool.zygote), Arc::clone(&pool.image))
    };
    let zygote_age = inner.config.max_age * ZYGOTE_AGE_FACTOR;
    let weak = Arc::downgrade(inner);
    let owned_key = key.to_owned();
    let spawned = std::thread::Builder::new()
        .name("airlock-pool-fill".into())
        .spawn(move || {
            let key = owned_key;
            // A fork that failed (its zygote died, say) is not held against the pool: the next
            // fill starts a new zygote. A sandbox that could not be built would fail again.
            let (made, forked) = match warm::zygote_serves(&template) {
                true => match zygote_for(&slot, &template, zygote_age) {
                    Some(z) => (Warm::fork(&z, &template), true),
                    None => (Warm::start(&template), false),
                },
                false if restore::serves(&template) => {
                    (restored(&images, &template, zygote_age), false)
                }
                false => (Warm::start(&template), false),
            };
            let Some(inner) = weak.upgrade() else { return };
            let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            let Some(pool) = pools.get_mut(&key) else {
                return;
            };
            pool.filling -= 1;
            if made.is_err() {
                pool.fill_failures += 1;
            }
            match made {
                Ok(w) => {
                    pool.failed_at = None;
                    inner.started_warm.fetch_add(1, Ordering::Relaxed);
                    pool.ready.push_back(w);
                    drop(pools);
                    refill(&inner, &key);
                }
                Err(e) if forked => tracing::warn!("forking a zygote child failed: {e}"),
                Err(e) => {
                    pool.failed_at = Some(Instant::now());
                    tracing::warn!(
                        "pre-starting a sandbox failed; not again for {FILL_BACKOFF:?}: {e}"
                    )
                }
            }
        });
    if spawned.is_err() {
        let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get_mut(key) {
            pool.filling -= 1;
        }
    }
}

/// The pool's zygote, started (or replaced, when it died or is past `max_age`) as needed.
/// `None` when this pool cannot have one: it pre-starts whole sandboxes instead, which are as
/// isolated and only slower to make.
fn zygote_for(
    slot: &ZygoteSlot,
    template: &RunRequest,
    max_age: Duration,
) -> Option<Arc<PoolZygote>> {
    let mut state = slot.lock().unwrap_or_else(|p| p.into_inner());
    if state.failed {
        return None;
    }
    if let Some(z) = &state.current
        && z.alive()
        && z.born().elapsed() < max_age
    {
        return Some(Arc::clone(z));
    }
    // The old one lives on while its children do (each holds it).
    state.current = None;
    match warm::start_zygote(template) {
        Ok(z) => {
            let z = Arc::new(z);
            state.current = Some(Arc::clone(&z));
            Some(z)
        }
        Err(e) => {
            tracing::warn!("starting a zygote failed; pre-starting whole sandboxes instead: {e}");
            state.failed = true;
            None
        }
    }
}

/// A sandbox of the pool restored from its image, made (or remade, past `max_age`) as needed;
/// if the pool cannot have one, or restoring fails, a sandbox that imports the packages itself,
/// which is as isolated and only slower to make.
fn restored(
    slot: &ImageSlot,
    template: &RunRequest,
    max_age: Duration,
) -> Result<Warm, RuntimeError> {
    let image = {
        let mut state = slot.lock().unwrap_or_else(|p| p.into_inner());
        if state.failed {
            None
        } else {
            if state
                .current
                .as_ref()
                .is_none_or(|i| i.born().elapsed() >= max_age)
            {
                state.current = None;
                match restore::freeze(template) {
                    Ok(i) => {
                        tracing::debug!("froze an interpreter for a pool: {} bytes", i.size());
                        state.current = Some(Arc::new(i));
                    }
                    Err(e) => {
                        tracing::warn!(
                            "freezing an interpreter failed; pre-starting sandboxes that import instead: {e}"
                        );
                        state.failed = true;
                    }
                }
            }
            state.current.clone()
        }
    };
    let Some(image) = image else {
        return Warm::start(template);
    };
    Warm::restore(template, &image).or_else(|e| {
        let e = forget_image(slot, e);
        tracing::warn!(
            "restoring a frozen interpreter failed; pre-starting a sandbox that imports instead: {e}"
        );
        Warm::start(template)
    })
}

/// A restore's error; when the image was at fault, the pool stops restoring it.
fn forget_image(slot: &ImageSlot, e: NotRestored) -> RuntimeError {
    match e {
        NotRestored::Image(e) => {
            // Not waiting for a freeze in progress: the image it makes replaces this one.
            if let Ok(mut state) = slot.try_lock() {
                state.failed = true;
            }
            e
        }
        NotRestored::Sandbox(e) => e,
    }
}

/// Rotates sandboxes past their age and empties pools nobody used lately. Ends with the
/// scheduler.
fn reap(weak: Weak<Inner>) {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let Some(inner) = weak.upgrade() else { return };
        let mut stale = Vec::new();
        let mut zygotes = Vec::new();
        let keys: Vec<String> = {
            let mut pools = inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            let (max_age, idle) = (inner.config.max_age, inner.config.idle);
            pools.retain(|_, pool| {
                let (old, keep): (Vec<Warm>, Vec<Warm>) = pool
                    .ready
                    .drain(..)
                    .partition(|w| w.born.elapsed() >= max_age);
                pool.ready = keep.into();
                stale.extend(old);
                let unused = pool.last_used.is_none_or(|t| t.elapsed() >= idle);
                if unused && pool.filling == 0 {
                    stale.extend(pool.ready.drain(..));
                    zygotes.push(std::mem::take(&mut pool.zygote));
                    return false;
                }
                true
            });
            pools.keys().cloned().collect()
        };
        drop(stale); // destroyed outside the lock
        drop(zygotes);
        for key in keys {
            refill(&inner, &key);
        }
    }
}

/// One session being started, counted while it lasts.
struct Starting(Arc<AtomicUsize>);

impl Starting {
    fn count(n: &Arc<AtomicUsize>) -> Starting {
        n.fetch_add(1, Ordering::SeqCst);
        Starting(Arc::clone(n))
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Pools, sessions and sandboxes' listeners pass descriptors: see
/// `jail::prepare_descriptor_passing`.
pub(crate) fn prepare_descriptor_passing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = jail::prepare_descriptor_passing(crate::environment::INSTALL_OPEN_FILES) {
            tracing::warn!("{e}");
        }
    });
}
