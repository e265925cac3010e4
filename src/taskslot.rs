//! The task slot: one per CPU, the data and the protocol states of work
//! posted to run on that CPU in task context. The protocol and the calls
//! that move a slot through it are in `crate::task`.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// A function run on a CPU in task context: `f(cpu, ctx)`, where `cpu` is
/// the CPU it runs on and `ctx` the poster's argument (a number, or the
/// address of something the poster keeps alive until it collects the
/// result).
pub type TaskFn = fn(usize, usize) -> u64;

pub(crate) const FREE: usize = 0;
pub(crate) const CLAIMED: usize = 1;
pub(crate) const POSTED: usize = 2;
pub(crate) const RUNNING: usize = 3;
pub(crate) const DONE: usize = 4;
pub(crate) const ABANDONED: usize = 5;

/// One CPU's task slot (the module docs give the protocol).
pub struct TaskSlot {
    pub(crate) state: AtomicUsize,
    /// 1 + the poster that claimed the slot (0: none).
    pub(crate) owner: AtomicUsize,
    pub(crate) func: AtomicUsize,
    pub(crate) ctx: AtomicUsize,
    pub(crate) result: AtomicU64,
    /// CPUs waiting on this slot (for their result or for it to be free).
    pub(crate) waiters: AtomicU64,
}

impl Default for TaskSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskSlot {
    pub const fn new() -> Self {
        TaskSlot {
            state: AtomicUsize::new(FREE),
            owner: AtomicUsize::new(0),
            func: AtomicUsize::new(0),
            ctx: AtomicUsize::new(0),
            result: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
        }
    }

    /// Whether a posted function waits to be taken.
    #[inline]
    pub fn pending(&self) -> bool {
        self.state.load(Ordering::Relaxed) == POSTED
    }

    /// Reads every field once (the loom tests create their checked
    /// atomics on first use, and must do so before spawning threads).
    #[doc(hidden)]
    pub fn touch(&self) {
        self.state.load(Ordering::Relaxed);
        self.owner.load(Ordering::Relaxed);
        self.func.load(Ordering::Relaxed);
        self.ctx.load(Ordering::Relaxed);
        self.result.load(Ordering::Relaxed);
        self.waiters.load(Ordering::Relaxed);
    }

    /// Whether nothing is claimed, posted or running.
    pub fn is_free(&self) -> bool {
        self.state.load(Ordering::Acquire) == FREE
    }
}

/// Why a task did not run to a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskError {
    /// No such CPU, or it is offline.
    NoSuchCpu(usize),
    /// `collect_task` by a CPU that has no task posted to that CPU.
    NotPosted(usize),
    /// The slot stayed busy with other posters' work for the whole bound.
    Busy(usize),
    /// Not finished within the bound; `started` says whether the CPU had
    /// taken it (it then runs to its end; its result is dropped).
    TimedOut { cpu: usize, started: bool },
}
