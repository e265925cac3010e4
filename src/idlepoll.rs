//! Halt polling: an idle CPU that was just sent an IPI stays awake for a
//! while instead of waiting for interrupts at once.
//!
//! Why: where a CPU is a host thread (QEMU), an IPI to a CPU in `wtint`
//! first has to wake that thread, which costs more than the whole call
//! does on a running CPU (README "Speed": an idle target's `call_single`
//! about 2.5x a busy one's). A CPU that keeps taking IPIs is likely to be
//! sent the next one soon; polling for a bounded window after each IPI
//! turns a burst of calls to an idle CPU into calls to a running one, and
//! a CPU that is sent nothing for a window sleeps as before. The same
//! trade is Linux's `haltpoll` idle governor for virtual machines. On a
//! real machine it costs only power, and DEC's EV6 PALcode already returns
//! from `wtint` at once (`wtint=returns`), so there the idle loop polls
//! anyway.
//!
//! Protocol: [`IdlePoll`] is owned by one CPU's idle loop and touches no
//! shared state; the loop feeds it a count of the messages and calls the
//! CPU handled (on Alpha less other CPUs' TLB flush requests, which
//! lazy flushing serves better by a sleeping CPU), the cycle counter and the
//! number of CPUs it counts as busy (awake, called, or called within the
//! window). Any answer is safe: polling only skips a
//! `wtint`, which may return at once anyway, and the loop takes interrupts
//! at IPL 0 between its checks either way, so no message, wake or work item
//! can be missed by a poll and nothing is lost by a sleep that the loop
//! did not already risk.

/// What bounds the polling (from boot arguments; 0 turns a bound off as
/// documented on each field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a CPU keeps polling after its last IPI, in cycles; 0: never
    /// poll.
    pub window: u64,
    /// Poll only while at most this many CPUs are busy (this one
    /// included; what counts as busy is the caller's: awake, called, or
    /// called within the window); 0: no limit. Where more vCPUs poll than the host has
    /// cores, a poller takes a core from the CPU it waits to hear from.
    pub busy_cpus: u64,
}

/// One CPU's polling state.
#[derive(Clone, Copy, Debug)]
pub struct IdlePoll {
    /// The IPI count last seen.
    ipis: u64,
    /// When the current window began (the cycle the last new IPI was seen).
    since: u64,
    /// Whether a window is open (no IPI seen yet: none).
    open: bool,
}

impl IdlePoll {
    /// A CPU that has taken `ipis` IPIs so far, with no window open.
    pub const fn new(ipis: u64) -> Self {
        IdlePoll {
            ipis,
            since: 0,
            open: false,
        }
    }

    /// Whether `ipis` differs from the count last seen (the next
    /// [`polls`](Self::polls) with it opens a window).
    pub fn is_new(&self, ipis: u64) -> bool {
        ipis != self.ipis
    }

    /// Whether the idle loop polls this time round instead of waiting for
    /// an interrupt. `ipis`: the CPU's IPI interrupts taken so far; `now`:
    /// the cycle counter; `busy`: the CPUs the caller counts as busy,
    /// this one included.
    /// A change in `ipis` (re)opens the window at `now`.
    pub fn polls(&mut self, limits: Limits, ipis: u64, now: u64, busy: u64) -> bool {
        if limits.window == 0 {
            return false;
        }
        if ipis != self.ipis {
            self.ipis = ipis;
            self.since = now;
            self.open = true;
        }
        let crowded = limits.busy_cpus != 0 && busy > limits.busy_cpus;
        if !self.open || crowded || now.wrapping_sub(self.since) >= limits.window {
            // Closed until the next IPI: also when more CPUs are busy than
            // the limit, so a CPU that was one of several an
            // IPI went to does not poll while the others still wait for a
            // core, nor once they are back asleep.
            self.open = false;
            return false;
        }
        true
    }
}

// Safe arithmetic only (no unsafe, no atomics, no threads): nothing for
// Miri to check that the ordinary test run does not, so Miri skips these
// (xtask's `the_modules_miri_skips_have_nothing_for_it` keeps it so).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    const L: Limits = Limits {
        window: 100,
        busy_cpus: 2,
    };

    #[test]
    fn no_ipi_no_poll() {
        let mut p = IdlePoll::new(5);
        assert!(!p.polls(L, 5, 0, 1));
        assert!(!p.polls(L, 5, 1_000, 1));
    }

    #[test]
    fn an_ipi_opens_a_window_that_closes() {
        let mut p = IdlePoll::new(0);
        assert!(p.polls(L, 1, 1_000, 2));
        assert!(p.polls(L, 1, 1_099, 2));
        assert!(!p.polls(L, 1, 1_100, 2));
        // Closed stays closed, even if the counter wraps back into range.
        assert!(!p.polls(L, 1, 1_050, 2));
    }

    #[test]
    fn each_new_ipi_restarts_the_window() {
        let mut p = IdlePoll::new(0);
        assert!(p.polls(L, 1, 0, 1));
        assert!(p.polls(L, 2, 90, 1));
        assert!(p.polls(L, 2, 180, 1));
        assert!(!p.polls(L, 2, 190, 1));
        assert!(p.polls(L, 3, 10_000, 1));
    }

    #[test]
    fn too_many_busy_cpus_close_the_window_until_the_next_ipi() {
        let mut p = IdlePoll::new(0);
        assert!(p.polls(L, 1, 0, 2));
        assert!(!p.polls(L, 1, 10, 3));
        assert!(!p.polls(L, 1, 20, 2), "closed, not paused");
        assert!(p.polls(L, 2, 30, 2));
        let unlimited = Limits { busy_cpus: 0, ..L };
        assert!(p.polls(unlimited, 3, 60, 64));
    }

    #[test]
    fn a_zero_window_never_polls() {
        let mut p = IdlePoll::new(0);
        let off = Limits { window: 0, ..L };
        assert!(!p.polls(off, 1, 0, 1));
        assert!(!p.polls(off, 2, 1, 1));
    }

    #[test]
    fn the_window_survives_a_counter_wrap() {
        let mut p = IdlePoll::new(0);
        assert!(p.polls(L, 1, u64::MAX - 10, 1));
        assert!(p.polls(L, 1, 20, 1));
        assert!(!p.polls(L, 1, 89, 1));
    }
}
