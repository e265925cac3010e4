//! How long the boot CPU waits for secondary CPUs to start: a bound per
//! CPU and for the whole bring-up, and what to do about CPU ids from 31 up.
//!
//! Each START is three waits (the console's `txrdy` bit clear, BIP set,
//! the CPU online). DEC's console handles a secondary's START with 32-bit
//! `1 << id` arithmetic on `rxrdy`/`txrdy` (docs/hardware.md, "Known risks
//! on real machines"), so on a GS1280 with more than 31 CPUs the ids from
//! 31 up may never take their START; Linux caps Marvel at 32 CPU ids.
//! Without a bound, each such CPU would cost a full timeout per step.

/// The longest a CPU below [`HIGH_ID`] is waited for, per step.
pub const STEP_NS: u64 = 10_000_000_000;
/// CPU ids from here up may not be startable by DEC's console.
pub const HIGH_ID: u64 = 31;
/// The longest a CPU at or above [`HIGH_ID`] is waited for, per step.
pub const HIGH_STEP_NS: u64 = 1_000_000_000;
/// The longest the whole bring-up may take.
pub const TOTAL_NS: u64 = 60_000_000_000;
/// Below this much time left, no further CPU is tried.
pub const MIN_STEP_NS: u64 = 100_000_000;

/// Why a CPU is not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The bring-up's total time is spent.
    BudgetSpent,
    /// An earlier CPU at or above [`HIGH_ID`] did not start: the console
    /// does not take START for those ids, so the others are not tried.
    HighIdsRefused,
}

/// What to do for the next CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Start it, waiting at most this long per step.
    Start {
        step_ns: u64,
    },
    Skip(Skip),
}

/// The bring-up's running account (boot CPU only).
#[derive(Clone, Copy, Debug, Default)]
pub struct Budget {
    spent_ns: u64,
    high_refused: bool,
}

impl Budget {
    pub const fn new() -> Self {
        Budget {
            spent_ns: 0,
            high_refused: false,
        }
    }

    /// The plan for physical CPU `id`.
    pub fn plan(&self, id: u64) -> Plan {
        let high = id >= HIGH_ID;
        if high && self.high_refused {
            return Plan::Skip(Skip::HighIdsRefused);
        }
        // Three steps share what is left, so one attempt never overruns it.
        let left = TOTAL_NS.saturating_sub(self.spent_ns) / 3;
        if left < MIN_STEP_NS {
            return Plan::Skip(Skip::BudgetSpent);
        }
        let step = if high { HIGH_STEP_NS } else { STEP_NS };
        Plan::Start {
            step_ns: step.min(left),
        }
    }

    /// Records how an attempt on `id` went and how long it took.
    pub fn record(&mut self, id: u64, spent_ns: u64, started: bool) {
        self.spent_ns = self.spent_ns.saturating_add(spent_ns);
        if id >= HIGH_ID && !started {
            self.high_refused = true;
        }
    }

    pub fn spent_ns(&self) -> u64 {
        self.spent_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A model bring-up over 64 CPU slots, in simulated time: a CPU the
    /// console takes START for is online after 1 ms; one it never takes
    /// costs, at worst, the full wait of all three steps. Returns (started, skipped,
    /// failed ids, total time).
    /// (started, skipped with why, failed, total time)
    type Outcome = (Vec<u64>, Vec<(u64, Skip)>, Vec<u64>, u64);

    fn bring_up(takes: impl Fn(u64) -> bool) -> Outcome {
        let mut budget = Budget::new();
        let (mut started, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for id in 1..64 {
            match budget.plan(id) {
                Plan::Skip(why) => skipped.push((id, why)),
                Plan::Start { step_ns } => {
                    let ok = takes(id);
                    budget.record(id, if ok { 1_000_000 } else { 3 * step_ns }, ok);
                    if ok {
                        started.push(id)
                    } else {
                        failed.push(id)
                    }
                }
            }
        }
        (started, skipped, failed, budget.spent_ns())
    }

    #[test]
    fn a_console_that_never_takes_high_ids_costs_one_short_wait() {
        let (started, skipped, failed, total) = bring_up(|id| id < 31);
        assert_eq!(
            started,
            (1..31).collect::<Vec<_>>(),
            "every id below 31 starts"
        );
        assert_eq!(failed, [31], "one high id is tried");
        assert_eq!(skipped.len(), 32);
        assert!(
            skipped
                .iter()
                .all(|(id, why)| *id > 31 && *why == Skip::HighIdsRefused)
        );
        assert!(
            total <= 3 * HIGH_STEP_NS + 30_000_000,
            "bring-up took {} ms",
            total / 1_000_000
        );
    }

    #[test]
    fn a_console_that_takes_every_id_starts_all_64() {
        let (started, skipped, failed, _) = bring_up(|_| true);
        assert_eq!(started.len(), 63);
        assert!(skipped.is_empty() && failed.is_empty());
    }

    #[test]
    fn the_whole_bring_up_is_bounded_whatever_fails() {
        let (started, skipped, _, total) = bring_up(|id| id % 2 == 0);
        assert!(
            total <= TOTAL_NS,
            "bring-up took {} s",
            total / 1_000_000_000
        );
        assert!(started.contains(&2), "early even ids start");
        assert!(
            skipped.iter().any(|(_, why)| *why == Skip::BudgetSpent),
            "the budget ends it"
        );
    }
}
