//! A spin lock that knows which CPU holds it, for the consoles.
//!
//! A machine check is taken at any IPL, so it can arrive while its CPU is
//! inside its own console write, holding the console's locks. Its report
//! must still get out: waiting for a lock the same CPU holds never ends.
//! [`CpuLock::lock`] tells the holder's own re-entry apart
//! ([`Entry::Reentered`]) instead of spinning on it, and
//! [`CpuLock::lock_bounded`] gives up after a number of tries
//! ([`Entry::Busy`]) for a holder that will never let go (a CPU stopped
//! while it printed).
//!
//! # Protocol
//!
//! - The lock itself is a `spin::Mutex`; `owner` says who holds it: the
//!   holder's CPU number plus one, 0 for nobody.
//! - Only the holder writes `owner`: its CPU number once it has the mutex,
//!   0 before it lets the mutex go ([`CpuGuard`]'s drop runs before its
//!   mutex guard's).
//! - A CPU compares `owner` only with its own number. It reads its own
//!   number there only while it holds the lock: its last store to `owner`
//!   was its number exactly while it holds it, and 0 from its release on,
//!   and a CPU never reads a value older than its own last store to a
//!   location (coherence). Another CPU's store can only be that CPU's
//!   number or 0. So `Relaxed` is enough for `owner`; what the lock
//!   protects is ordered by the mutex.
//! - An interrupt handler on the holder's CPU that enters the lock finds
//!   its own number (program order on one CPU) and is told
//!   [`Entry::Reentered`]: it then decides whether to go on without the
//!   lock (a fatal report) or to give up (a note that can wait).

use crate::sync::{AtomicUsize, Ordering};

/// A spin lock with its holder's CPU number.
pub struct CpuLock {
    lock: spin::Mutex<()>,
    owner: AtomicUsize,
}

/// What an attempt to take a [`CpuLock`] got.
pub enum Entry<'a> {
    /// Taken: released when the guard is dropped.
    Held(CpuGuard<'a>),
    /// This CPU holds it already (an interrupt inside its own holding).
    Reentered,
    /// Another CPU held it through every try ([`CpuLock::lock_bounded`]).
    Busy,
}

/// A held [`CpuLock`].
pub struct CpuGuard<'a> {
    lock: &'a CpuLock,
    _held: spin::MutexGuard<'a, ()>,
}

impl Drop for CpuGuard<'_> {
    fn drop(&mut self) {
        // Before the mutex guard (a field) is dropped, so `owner` never
        // names a CPU that no longer holds the lock.
        self.lock.owner.store(0, Ordering::Relaxed);
    }
}

impl Default for CpuLock {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuLock {
    pub const fn new() -> Self {
        CpuLock {
            lock: spin::Mutex::new(()),
            owner: AtomicUsize::new(0),
        }
    }

    /// Takes the lock as CPU `cpu`, waiting as long as another CPU holds
    /// it; [`Entry::Reentered`] at once if `cpu` holds it.
    pub fn lock(&self, cpu: usize) -> Entry<'_> {
        if self.holds(cpu) {
            return Entry::Reentered;
        }
        self.held(cpu, self.lock.lock())
    }

    /// [`lock`](Self::lock), giving up after `tries` attempts
    /// ([`Entry::Busy`]).
    pub fn lock_bounded(&self, cpu: usize, tries: u64) -> Entry<'_> {
        if self.holds(cpu) {
            return Entry::Reentered;
        }
        for _ in 0..tries {
            if let Some(g) = self.lock.try_lock() {
                return self.held(cpu, g);
            }
            core::hint::spin_loop();
        }
        Entry::Busy
    }

    /// Whether CPU `cpu` holds the lock (exact for the calling CPU; see
    /// the module's protocol).
    pub fn holds(&self, cpu: usize) -> bool {
        self.owner.load(Ordering::Relaxed) == cpu + 1
    }

    fn held<'a>(&'a self, cpu: usize, g: spin::MutexGuard<'a, ()>) -> Entry<'a> {
        self.owner.store(cpu + 1, Ordering::Relaxed);
        Entry::Held(CpuGuard {
            lock: self,
            _held: g,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    #[test]
    fn the_holder_is_told_it_reentered_and_others_wait() {
        let l = CpuLock::new();
        let g = match l.lock(0) {
            Entry::Held(g) => g,
            _ => panic!("a free lock is taken"),
        };
        assert!(l.holds(0) && !l.holds(1));
        // An interrupt on CPU 0 inside its own holding.
        assert!(matches!(l.lock(0), Entry::Reentered));
        assert!(matches!(l.lock_bounded(0, 1), Entry::Reentered));
        // Another CPU gives up after its tries.
        assert!(matches!(l.lock_bounded(1, 100), Entry::Busy));
        drop(g);
        assert!(!l.holds(0));
        assert!(matches!(l.lock_bounded(1, 1), Entry::Held(_)));
        // Dropped at once (a temporary): free again.
        assert!(matches!(l.lock(0), Entry::Held(_)));
    }

    /// Under contention: one holder at a time, and nobody but the holder
    /// ever hears `Reentered`.
    #[test]
    fn under_contention_only_the_holder_reenters() {
        const CPUS: usize = 4;
        let rounds = if cfg!(miri) { 20 } else { 20_000 };
        let l = CpuLock::new();
        let inside = AtomicBool::new(false);
        let taken = AtomicU64::new(0);
        std::thread::scope(|s| {
            for cpu in 0..CPUS {
                let (l, inside, taken) = (&l, &inside, &taken);
                s.spawn(move || {
                    for i in 0..rounds {
                        let entry = if i % 2 == 0 {
                            l.lock(cpu)
                        } else {
                            l.lock_bounded(cpu, 1_000)
                        };
                        match entry {
                            Entry::Held(_g) => {
                                assert!(!inside.swap(true, std::sync::atomic::Ordering::AcqRel));
                                assert!(l.holds(cpu));
                                assert!(matches!(l.lock(cpu), Entry::Reentered));
                                taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                inside.store(false, std::sync::atomic::Ordering::Release);
                            }
                            Entry::Reentered => panic!("CPU {cpu} does not hold it"),
                            Entry::Busy => {}
                        }
                    }
                });
            }
        });
        assert!(taken.load(std::sync::atomic::Ordering::Relaxed) >= (CPUS * rounds / 2) as u64);
    }
}
