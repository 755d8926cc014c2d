//! The single-threaded executor and the shard loop.
//!
//! Tasks are `!Send` futures stored in a slab; a waker is an `Arc` naming the
//! task's slot and generation. Wakers are only woken on the shard thread
//! (completions, timers, local channels); a wake from another thread is a
//! bug and is ignored with an error log. Cross-thread signals reach a shard
//! through its ring instead.
//!
//! One loop turn ([`block_on`]): poll at most `max_polls_per_turn` ready
//! tasks, submit, sleep in the kernel until a completion or the next timer
//! deadline, dispatch completions, fire due timers. Connection tasks yield
//! after a bounded amount of work ([`yield_now`]), so one busy connection
//! cannot starve the others.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::{Clock, RingFeatures, RuntimeConfig, driver, timer};

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

struct TaskSlot {
    generation: u32,
    /// Built once per spawn, cloned into contexts (no allocation per poll).
    waker: Waker,
    /// `None` while the task is being polled or after it finished.
    future: Option<BoxFuture>,
    scheduled: bool,
    /// `abort` was called while the task was being polled.
    abort_requested: bool,
}

#[derive(Default)]
struct Executor {
    tasks: RefCell<Vec<TaskSlot>>,
    free: RefCell<Vec<usize>>,
    ready: RefCell<VecDeque<(usize, u32)>>,
    main_woken: Cell<bool>,
    live_tasks: Cell<usize>,
    id: Cell<u64>,
    /// What the loop has done since the runtime started.
    figures: Cell<LoopFigures>,
}

/// What a shard's loop has done since its runtime started (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopFigures {
    /// Loop turns (each ends by going to the kernel).
    pub turns: u64,
    /// Task polls.
    pub polls: u64,
    /// io_uring completions dispatched.
    pub completions: u64,
}

/// A task index meaning "the future passed to block_on".
const MAIN_TASK: usize = usize::MAX;
static NEXT_EXECUTOR_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static EXECUTOR: Executor = Executor::default();
}

struct TaskWaker {
    executor: u64,
    index: usize,
    generation: u32,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = EXECUTOR.try_with(|e| {
            if e.id.get() != self.executor {
                log::error!("task woken from a foreign thread; ignored");
                return;
            }
            if self.index == MAIN_TASK {
                e.main_woken.set(true);
                return;
            }
            let mut tasks = e.tasks.borrow_mut();
            if let Some(slot) = tasks.get_mut(self.index) {
                // Also covers a wake during the task's own poll: it runs again
                // after this poll returns.
                if slot.generation == self.generation && !slot.scheduled {
                    slot.scheduled = true;
                    e.ready
                        .borrow_mut()
                        .push_back((self.index, self.generation));
                }
            }
        });
    }
}

struct JoinState<T> {
    output: Option<T>,
    waker: Option<Waker>,
    finished: bool,
}

/// Awaits a spawned task's output. Dropping it detaches the task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    index: usize,
    generation: u32,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }

    /// Drops the task's future now (its operations are cancelled the usual
    /// way: memory the kernel may use stays parked until completion). A
    /// task aborting itself stops after its current poll. Awaiting the
    /// handle afterwards never completes.
    pub fn abort(&self) {
        if self.is_finished() {
            return;
        }
        let future = EXECUTOR.with(|e| {
            let mut tasks = e.tasks.borrow_mut();
            let slot = tasks.get_mut(self.index)?;
            if slot.generation != self.generation {
                return None;
            }
            match slot.future.take() {
                Some(f) => {
                    e.free.borrow_mut().push(self.index);
                    e.live_tasks.set(e.live_tasks.get() - 1);
                    slot.scheduled = true; // stale ready entries are skipped
                    Some(f)
                }
                None => {
                    slot.abort_requested = true;
                    None
                }
            }
        });
        // Dropped outside the executor's borrow: destructors may spawn/wake.
        drop(future);
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(v) => Poll::Ready(v),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Spawns a task on this shard.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        waker: None,
        finished: false,
    }));
    let task_state = state.clone();
    let task = async move {
        let out = future.await;
        let mut s = task_state.borrow_mut();
        s.output = Some(out);
        s.finished = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    };
    EXECUTOR.with(|e| {
        let mut tasks = e.tasks.borrow_mut();
        let executor = e.id.get();
        let index = match e.free.borrow_mut().pop() {
            Some(i) => {
                let slot = &mut tasks[i];
                slot.generation = slot.generation.wrapping_add(1);
                let generation = slot.generation;
                slot.waker = Waker::from(Arc::new(TaskWaker {
                    executor,
                    index: i,
                    generation,
                }));
                slot.future = Some(Box::pin(task));
                slot.scheduled = true;
                slot.abort_requested = false;
                i
            }
            None => {
                let index = tasks.len();
                let waker = Waker::from(Arc::new(TaskWaker {
                    executor,
                    index,
                    generation: 0,
                }));
                tasks.push(TaskSlot {
                    generation: 0,
                    waker,
                    future: Some(Box::pin(task)),
                    scheduled: true,
                    abort_requested: false,
                });
                index
            }
        };
        let generation = tasks[index].generation;
        e.ready.borrow_mut().push_back((index, generation));
        e.live_tasks.set(e.live_tasks.get() + 1);
        JoinHandle {
            state,
            index,
            generation,
        }
    })
}

/// Number of live tasks on this shard.
pub fn live_tasks() -> usize {
    EXECUTOR.with(|e| e.live_tasks.get())
}

/// What this shard's loop has done since its runtime started.
pub fn loop_figures() -> LoopFigures {
    EXECUTOR.with(|e| e.figures.get())
}

fn count_turn(e: &Executor, polls: usize, completions: usize) {
    let mut f = e.figures.get();
    f.turns += 1;
    f.polls += polls as u64;
    f.completions += completions as u64;
    e.figures.set(f);
}

/// Yields once, letting other ready tasks and the kernel run.
pub async fn yield_now() {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false).await
}

/// Polls one ready task. Returns false when none was ready.
fn run_one(e: &Executor) -> bool {
    let Some((index, generation)) = e.ready.borrow_mut().pop_front() else {
        return false;
    };
    let (mut future, waker) = {
        let mut tasks = e.tasks.borrow_mut();
        let slot = &mut tasks[index];
        if slot.generation != generation {
            return true;
        }
        slot.scheduled = false;
        match slot.future.take() {
            Some(f) => (f, slot.waker.clone()),
            None => return true,
        }
    };
    let mut cx = Context::from_waker(&waker);
    let done = future.as_mut().poll(&mut cx).is_ready()
        || e.tasks
            .borrow()
            .get(index)
            .is_some_and(|s| s.abort_requested);
    let mut tasks = e.tasks.borrow_mut();
    if done {
        drop(tasks);
        // Drop the finished future outside the borrow: its destructors may
        // spawn or wake.
        drop(future);
        e.free.borrow_mut().push(index);
        e.live_tasks.set(e.live_tasks.get() - 1);
        let mut tasks = e.tasks.borrow_mut();
        tasks[index].scheduled = false;
    } else {
        tasks[index].future = Some(future);
    }
    true
}

/// Runs `future` to completion on this thread with a fresh runtime (ring,
/// timers, tasks), driving spawned tasks meanwhile. Tasks still alive when
/// `future` finishes are dropped (their operations cancelled) before return.
pub fn block_on<F: Future>(config: &RuntimeConfig, future: F) -> io::Result<F::Output> {
    let _features: RingFeatures = driver::install(config)?;
    EXECUTOR.with(|e| e.id.set(NEXT_EXECUTOR_ID.fetch_add(1, Ordering::Relaxed)));
    timer::reset_clock(config.clock);
    let out = EXECUTOR.with(|e| run_loop(e, config, future));
    // Tear down: drop tasks (which cancels their operations), then the ring.
    let tasks = EXECUTOR.with(|e| {
        e.ready.borrow_mut().clear();
        e.free.borrow_mut().clear();
        e.live_tasks.set(0);
        std::mem::take(&mut *e.tasks.borrow_mut())
    });
    drop(tasks);
    timer::clear();
    driver::uninstall();
    EXECUTOR.with(|e| {
        e.id.set(0);
        e.figures.set(LoopFigures::default());
    });
    Ok(out)
}

fn run_loop<F: Future>(e: &Executor, config: &RuntimeConfig, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let main_waker = Waker::from(Arc::new(TaskWaker {
        executor: e.id.get(),
        index: MAIN_TASK,
        generation: 0,
    }));
    e.main_woken.set(true);
    loop {
        if e.main_woken.replace(false) {
            let mut cx = Context::from_waker(&main_waker);
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
        }
        let mut polls = 0;
        while polls < config.max_polls_per_turn && run_one(e) {
            polls += 1;
        }
        let busy = !e.ready.borrow().is_empty() || e.main_woken.get();
        if config.clock == Clock::Virtual {
            let completions = virtual_turn(e, busy);
            count_turn(e, polls, completions);
            continue;
        }
        let wait = if busy {
            Some(Duration::ZERO)
        } else {
            timer::next_deadline().map(|d| d.saturating_duration_since(timer::now()))
        };
        let completions = driver::with(|d| {
            d.park(wait);
            d.dispatch()
        });
        count_turn(e, polls, completions);
        timer::advance();
    }
}

/// The end of a loop turn under virtual time: collect what the kernel
/// finished without waiting; when nothing can run, move the clock to the
/// next deadline. Kernel operations still in flight (a test that mixes in
/// real sockets) are waited for on the real clock before time jumps.
/// Returns how many completions it dispatched.
fn virtual_turn(e: &Executor, busy: bool) -> usize {
    let dispatched = driver::with(|d| {
        d.park(Some(Duration::ZERO));
        d.dispatch()
    });
    timer::advance();
    let runnable = busy || dispatched > 0 || !e.ready.borrow().is_empty() || e.main_woken.get();
    if runnable {
        return dispatched;
    }
    if driver::with(|d| d.in_flight()) > 0 {
        return driver::with(|d| {
            d.park(Some(Duration::from_millis(1)));
            d.dispatch()
        });
    }
    assert!(
        timer::jump_to_next_deadline(),
        "virtual-time runtime stalled: no task can run, no timer is armed and no I/O is in flight"
    );
    0
}
