//! The fault x fix experiment: its cells and what the protocol predicts for
//! each. Shared by the kernel (which runs every cell of a set in one boot,
//! `experiment=`) and the host tools (which check and tabulate the results),
//! so both speak of the same cells.

use crate::Inject;

/// A set of fixes, switched at run time between cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixes {
    pub name: &'static str,
    /// The serialization lock with drain (`ipi_lock`).
    pub lock: bool,
    /// The in-interrupt poll, and the idle loop's (`ipi_poll`).
    pub poll: bool,
    /// The watchdog's re-send (`resend`).
    pub resend: bool,
}

/// Every fix set, in table order.
pub const FIXES: &[Fixes] = &[
    Fixes {
        name: "none",
        lock: false,
        poll: false,
        resend: false,
    },
    Fixes {
        name: "lock+drain",
        lock: true,
        poll: false,
        resend: false,
    },
    Fixes {
        name: "poll",
        lock: false,
        poll: true,
        resend: false,
    },
    Fixes {
        name: "resend",
        lock: false,
        poll: false,
        resend: true,
    },
    Fixes {
        name: "lock+drain+poll",
        lock: true,
        poll: true,
        resend: false,
    },
];

impl Fixes {
    /// The boot arguments that choose this set.
    pub fn args(self) -> &'static str {
        match (self.lock, self.poll, self.resend) {
            (false, false, false) => "ipi_lock=off ipi_poll=off resend=off",
            (true, false, false) => "ipi_lock=on ipi_poll=off resend=off",
            (false, true, false) => "ipi_lock=off ipi_poll=on resend=off",
            (false, false, true) => "ipi_lock=off ipi_poll=off resend=on",
            (true, true, false) => "ipi_lock=on ipi_poll=on resend=off",
            _ => "?",
        }
    }

    pub fn by_name(name: &str) -> Option<Fixes> {
        FIXES.iter().copied().find(|f| f.name == name)
    }
}

/// The faults of the injected matrix, as `inject=` values: table rows.
pub const FAULTS: &[&str] = &[
    "none",
    "edge_loss",
    "masked_wait",
    "both",
    "edge_loss_masked",
];

/// The rows of the native set: no simulated hardware fault; waiters at
/// IPL 0, and waiters at IPL 7 (a property of the callers, so it belongs on
/// real hardware too).
pub const NATIVE_FAULTS: &[&str] = &["none", "masked_wait"];

/// `experiment=`: which cells one boot runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Set {
    /// No experiment (the boot runs another mode).
    #[default]
    Off,
    /// No simulated hardware fault: what a real machine does by itself.
    Native,
    /// Today's full fault x fix matrix, faults injected.
    Injected,
    /// Native, then injected.
    All,
}

impl Set {
    pub const NAMES: &'static [(&'static str, Set)] = &[
        ("native", Set::Native),
        ("injected", Set::Injected),
        ("all", Set::All),
    ];

    pub fn name(self) -> &'static str {
        crate::name_of(Self::NAMES, self)
    }

    /// The cells of this set, in the order one boot runs them: each fault
    /// row (`native` marks the rows of the native part) with every fix set.
    pub fn cells(self) -> impl Iterator<Item = CellId> {
        let native = matches!(self, Set::Native | Set::All);
        let injected = matches!(self, Set::Injected | Set::All);
        let part = |faults: &'static [&'static str], native: bool| {
            faults.iter().flat_map(move |fault| {
                FIXES.iter().map(move |fixes| CellId {
                    fault,
                    fixes: *fixes,
                    native,
                })
            })
        };
        let a = native.then(|| part(NATIVE_FAULTS, true));
        let b = injected.then(|| part(FAULTS, false));
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }
}

/// One cell: a fault row and a fix set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellId {
    pub fault: &'static str,
    pub fixes: Fixes,
    /// Part of the native set (no injected hardware fault).
    pub native: bool,
}

impl CellId {
    /// The injection this cell runs under.
    pub fn inject(self) -> Inject {
        Inject::NAMES
            .iter()
            .find(|(n, _)| *n == self.fault)
            .map(|(_, i)| *i)
            .unwrap_or_default()
    }
}

/// What the protocol predicts for a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Completes,
    Deadlocks,
    /// Depends on where a lost IPI lands; completing, deadlocking and
    /// crawling are all explained.
    Either,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Expect::Completes => "completes",
            Expect::Deadlocks => "deadlocks",
            Expect::Either => "either",
        }
    }

    pub fn by_name(name: &str) -> Option<Expect> {
        [Expect::Completes, Expect::Deadlocks, Expect::Either]
            .into_iter()
            .find(|e| e.name() == name)
    }

    /// Whether an outcome (`completed`, `deadlock`, `crawl`, ...) is the
    /// predicted one.
    pub fn admits(self, outcome: &str) -> bool {
        match self {
            Expect::Completes => outcome == "completed",
            Expect::Deadlocks => outcome == "deadlock",
            Expect::Either => matches!(outcome, "completed" | "deadlock" | "crawl"),
        }
    }
}

/// The prediction, from the protocol (the reasoning is in the README):
///
/// - With IPIs masked while waiting, only something that runs *in the
///   waiter's own loop* can help: lock+drain (losers of the lock drain their
///   mailbox; only the holder waits). Poll needs an interrupt the masked
///   waiter never takes; a re-sent IPI is latched but not taken either.
///   On 4 CPUs every shootdown waits for all three others, so two waits
///   overlap at once and the deadlock is certain. On 2 CPUs it needs both
///   CPUs to send before either handles the other's call; once one CPU
///   leads, the two fall into a stable alternation and never deadlock.
///   Which happens depends on the start phase, so on 2 CPUs this is
///   "either" (the spin model shows the deadlock is reachable).
/// - With edge loss and waits at IPL 0, a lost IPI leaves a CALL bit that no
///   interrupt will announce. Poll rescues it at the target's next interrupt
///   (its tick). Resend retries at the waiter's watchdog, but the re-sent
///   IPI crosses the same lossy line: "either" (and usually a crawl at the
///   watchdog's pace). Lock+drain rescues it only while the target is
///   itself trying to take the lock, so lock+drain alone may still deadlock
///   at the end of a run.
/// - `edge_loss_masked` loses an IPI whenever its target is at IPL 7, also
///   outside a handler, and every idle CPU sleeps at IPL 7: only the poll
///   (the idle loop's, at its next tick) finds the message. With the poll
///   every cell completes; without it, "either".
pub fn predict(fault: &str, fix: &str, smp: u32) -> Expect {
    let lock = fix.contains("lock");
    let poll = fix.contains("poll");
    let resend = fix == "resend";
    if fault == "edge_loss_masked" {
        return if poll {
            Expect::Completes
        } else {
            Expect::Either
        };
    }
    let edge = fault == "edge_loss" || fault == "both";
    let masked = fault == "masked_wait" || fault == "both";
    if masked && !lock {
        if smp > 2 || (edge && !poll && !resend) {
            // (On 2 CPUs an unrescued lost edge deadlocks even if the
            // masked waits happen to alternate.)
            return Expect::Deadlocks;
        }
        return Expect::Either;
    }
    if edge {
        if poll {
            return Expect::Completes;
        }
        if lock || resend {
            return Expect::Either;
        }
        return Expect::Deadlocks;
    }
    Expect::Completes
}

/// [`predict`] for napping waiters (`wait=nap`). One difference: on a
/// lossy line without the poll a deadlock is no longer certain, because
/// every completed call wakes its napping caller with an IPI whose handler
/// drains the whole mailbox, a lost CALL bit included. Masked waiters nap at
/// IPL 7 and take nothing, so those cells stay as they were.
///
/// Adaptive waiters (`wait=adaptive`) nap at times: `nap` is true for them,
/// and the napping prediction (spin's, with "either" where a nap may turn a
/// deadlock into a crawl) covers both ways of waiting.
pub fn predict_for(fault: &str, fix: &str, smp: u32, nap: bool) -> Expect {
    let e = predict(fault, fix, smp);
    let masked = fault == "masked_wait" || fault == "both";
    if nap && e == Expect::Deadlocks && !masked {
        return Expect::Either;
    }
    e
}

/// Shootdowns per CPU in a cell when `cell_size=` is not given: 300 on
/// more than 2 CPUs, 50 times that on 2 (a shootdown between 2 CPUs is far
/// cheaper, and a cell needs comparable interrupt traffic to meet a lost
/// edge).
pub fn default_cell_size(cpus: usize) -> u64 {
    if cpus <= 2 { 15_000 } else { 300 }
}

/// Version of the `experiment-*` lines (`crate::lines`); `cargo xtask
/// report` refuses other versions. 2: the cells' `pt_*` keys.
pub const FORMAT_VERSION: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_follow_the_protocol() {
        assert_eq!(predict("none", "none", 4), Expect::Completes);
        assert_eq!(predict("edge_loss", "none", 4), Expect::Deadlocks);
        assert_eq!(predict("edge_loss", "poll", 4), Expect::Completes);
        assert_eq!(predict("edge_loss", "resend", 4), Expect::Either);
        assert_eq!(predict("edge_loss", "lock+drain", 4), Expect::Either);
        assert_eq!(predict("masked_wait", "poll", 4), Expect::Deadlocks);
        assert_eq!(predict("masked_wait", "poll", 2), Expect::Either);
        assert_eq!(predict_for("edge_loss", "none", 4, true), Expect::Either);
        assert_eq!(
            predict_for("edge_loss", "none", 4, false),
            Expect::Deadlocks
        );
        assert_eq!(
            predict_for("masked_wait", "poll", 4, true),
            Expect::Deadlocks
        );
        assert_eq!(predict_for("edge_loss", "poll", 4, true), Expect::Completes);
        assert_eq!(predict("masked_wait", "lock+drain", 2), Expect::Completes);
        assert_eq!(predict("both", "lock+drain+poll", 4), Expect::Completes);
        assert_eq!(predict("both", "resend", 4), Expect::Deadlocks);
        assert_eq!(predict("both", "none", 2), Expect::Deadlocks);
        assert_eq!(predict("both", "poll", 2), Expect::Either);
    }

    #[test]
    fn sets_list_their_cells() {
        assert_eq!(Set::Off.cells().count(), 0);
        assert_eq!(Set::Native.cells().count(), 10);
        assert_eq!(Set::Injected.cells().count(), 25);
        assert_eq!(Set::All.cells().count(), 35);
        assert!(
            Set::Native
                .cells()
                .all(|c| c.native && !c.inject().edge_loss)
        );
        assert!(Set::Injected.cells().all(|c| !c.native));
        let first = Set::Injected.cells().next().unwrap();
        assert_eq!((first.fault, first.fixes.name), ("none", "none"));
        let masked = Set::Native.cells().nth(5).unwrap();
        assert!(masked.inject().masked_wait);
    }

    #[test]
    fn outcomes_are_admitted_as_predicted() {
        assert!(Expect::Completes.admits("completed"));
        assert!(!Expect::Completes.admits("crawl"));
        assert!(Expect::Either.admits("crawl"));
        assert!(!Expect::Either.admits("unrecovered"));
        assert!(Expect::Deadlocks.admits("deadlock"));
        for f in FIXES {
            assert_eq!(Fixes::by_name(f.name), Some(*f));
            assert_ne!(f.args(), "?");
        }
    }
}
