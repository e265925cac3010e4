//! Whether every CPU has a core of its own: a short probe at boot that a
//! virtual machine's waiters use to choose how they wait.
//!
//! Why: a waiter that spins holds whatever runs it. On a machine where
//! every CPU is its own core (real hardware, or virtual CPUs each on a
//! free host core) that costs nothing anyone else needs, and spinning is
//! the fastest wait (Linux's `csd_lock_wait`). Where virtual CPUs
//! outnumber the host cores that run them, the spinner takes the core
//! the CPU it waits for needs, and waiting that naps wins (README
//! "Speed"). KVM tells a guest which case it is in (its "realtime" hint
//! for virtual CPUs pinned to dedicated host CPUs, which Linux's guest
//! halt polling relies on); QEMU's TCG tells it nothing, so the kernel
//! measures it.
//!
//! The probe: every CPU spins for the same short window, reading its
//! clock. A CPU whose thread the host runs sees its clock advance in
//! small steps; one the host has stopped sees one large step when it runs
//! again. Each step longer than a threshold (the gap) is time the CPU did
//! not run ("stolen"). The window is cut into slices, and the verdict asks
//! for one slice in which every CPU ran at least [`RAN_PERMILLE`] of it:
//! that needs at least 0.8 x N cores for N CPUs at once (for 2 to 4 CPUs,
//! a core each). Where N CPUs share fewer, no slice can pass, since the
//! CPUs' running shares in any slice add up to at most the cores they
//! share, as long as the host stops a CPU for longer than the gap when it
//! takes its core away (host schedulers hand out milliseconds; the gap is
//! microseconds). A host that runs every CPU but now and then preempts
//! one (a timer, the emulator's own I/O thread) still leaves quiet slices.
//! Under QEMU's `-icount` one host thread runs the CPUs in turn, for far
//! longer than the gap each, so no slice passes.
//!
//! Protocol: each CPU owns its [`Meter`] and touches no shared state; the
//! caller collects the meters after every CPU is done and calls
//! [`verdict`]. Any verdict is safe: both ways of waiting keep every
//! guarantee of the nap protocol (the spin model's `ADAPTIVE` proves any
//! mix of spinning and napping), so a wrong verdict costs speed only.

/// How many slices a probe window is cut into.
pub const SLICES: usize = 10;

/// What one probe measures, in clock cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Length of one slice; the probe spins `SLICES` of them.
    pub slice: u64,
    /// A step of the clock longer than this is time the CPU did not run.
    /// Far above a loop iteration and an interrupt handler, far below a
    /// host scheduler's time slice.
    pub gap: u64,
}

impl Probe {
    /// The whole window.
    pub const fn window(&self) -> u64 {
        self.slice * SLICES as u64
    }
}

/// One CPU's measurement: the time it did not run in each slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    probe: Probe,
    /// The clock at the last look.
    clock: u64,
    /// Where in the window the last look was.
    last: u64,
    /// Per slice: the cycles of it that a gap covered (a gap across a
    /// slice boundary counts in each slice it covers; past the window's
    /// end, nowhere).
    stolen: [u64; SLICES],
}

impl Meter {
    /// A meter whose window starts at `now`.
    pub const fn new(probe: Probe, now: u64) -> Self {
        Meter {
            probe,
            clock: now,
            last: 0,
            stolen: [0; SLICES],
        }
    }

    /// One look at the clock. Returns whether the window is over (the
    /// caller stops looking).
    pub fn observe(&mut self, now: u64) -> bool {
        // The window advances by each step of the clock, taken modulo
        // 2^64 (a counter that wraps is no matter); a step backwards (the
        // top half of that range: a counter that was reset) counts as none.
        let delta = now.wrapping_sub(self.clock);
        self.clock = now;
        let step = if delta > u64::MAX / 2 { 0 } else { delta };
        let from = self.last;
        let at = from.saturating_add(step);
        self.last = at;
        let window = self.probe.window();
        if step > self.probe.gap {
            let slice = self.probe.slice.max(1);
            let end = at.min(window);
            let mut from = from;
            while from < end {
                let i = (from / slice) as usize;
                let upto = ((i as u64 + 1) * slice).min(end);
                self.stolen[i] += upto - from;
                from = upto;
            }
        }
        at >= window
    }

    /// The cycles this CPU did not run in each slice.
    pub fn stolen(&self) -> [u64; SLICES] {
        self.stolen
    }

    /// The share of slice `i` this CPU ran, in thousandths (0 when it was
    /// stopped for longer than the slice).
    pub fn ran_permille(&self, i: usize) -> u64 {
        let slice = self.probe.slice.max(1);
        slice.saturating_sub(self.stolen[i]) * 1000 / slice
    }
}

/// The least share of a slice every CPU must have run, in thousandths, for
/// that slice to show a core for each.
pub const RAN_PERMILLE: u64 = 800;

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether some slice had every CPU running at least
    /// [`RAN_PERMILLE`] of it.
    pub own_cores: bool,
    /// The slice where the CPU that ran least ran most.
    pub best_slice: usize,
    /// What that CPU ran of it, in thousandths.
    pub slowest_permille: u64,
    /// The mean share of the window the CPUs did not run, in thousandths.
    pub stolen_permille: u64,
    /// How many CPUs ran at once on average over the window, in
    /// thousandths (the sum of every CPU's running share): about the host
    /// cores they had, and 1000 where an emulator runs one CPU at a time.
    pub running_permille: u64,
    /// Whether the CPUs ran in parallel: [`running_permille`](Self::running_permille)
    /// at least [`PARALLEL_PERMILLE`].
    pub in_parallel: bool,
}

/// The least [`Verdict::running_permille`] that shows CPUs running in
/// parallel: halfway between one CPU at a time (1000, `-icount`) and two
/// cores' worth (2000). A waiter spinning for a CPU it has just woken
/// helps only if that CPU can run meanwhile (`alphasmp::xcall::Policy::spin_idle`).
pub const PARALLEL_PERMILLE: u64 = 1500;

/// The verdict over every CPU's meter (none: every CPU trivially has its
/// own core).
pub fn verdict(meters: &[Meter]) -> Verdict {
    let Some(first) = meters.first() else {
        return Verdict {
            own_cores: true,
            best_slice: 0,
            slowest_permille: 1000,
            stolen_permille: 0,
            running_permille: 0,
            in_parallel: false,
        };
    };
    let mut best_slice = 0;
    let mut slowest_permille = 0;
    for i in 0..SLICES {
        let slowest = meters.iter().map(|m| m.ran_permille(i)).min().unwrap_or(0);
        if slowest > slowest_permille {
            slowest_permille = slowest;
            best_slice = i;
        }
    }
    let window = first.probe.window().max(1);
    let stolen: u64 = meters
        .iter()
        .map(|m| m.stolen.iter().sum::<u64>().min(window) * 1000 / window)
        .sum();
    let running_permille = meters.len() as u64 * 1000 - stolen;
    Verdict {
        own_cores: slowest_permille >= RAN_PERMILLE,
        best_slice,
        slowest_permille,
        stolen_permille: stolen / meters.len() as u64,
        running_permille,
        in_parallel: running_permille >= PARALLEL_PERMILLE,
    }
}

// Safe arithmetic only (no unsafe, no atomics, no threads): nothing for
// Miri to check that the ordinary test run does not, so Miri skips these
// (xtask's `the_modules_miri_skips_have_nothing_for_it` keeps it so).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    const PROBE: Probe = Probe {
        slice: 1000,
        gap: 100,
    };

    /// A CPU that runs throughout, looking at its clock this often (a few
    /// hundred looks a window: Miri runs these too).
    const RUN: u64 = 50;

    /// A CPU that reads its clock every `step` cycles, except that it does
    /// not run in `[from, to)` for each pair of `stops` (relative to the
    /// window's start).
    fn cpu(step: u64, stops: &[(u64, u64)]) -> Meter {
        let mut m = Meter::new(PROBE, 5_000);
        let mut t = 0;
        loop {
            t += step;
            if let Some(&(_, to)) = stops.iter().find(|(from, to)| t > *from && t < *to) {
                t = to;
            }
            if m.observe(5_000 + t) {
                return m;
            }
        }
    }

    #[test]
    fn cpus_that_always_run_have_their_own_cores() {
        let v = verdict(&[cpu(RUN, &[]), cpu(PROBE.gap, &[])]);
        assert!(v.own_cores);
        assert_eq!(v.slowest_permille, 1000);
        assert_eq!(v.stolen_permille, 0);
    }

    #[test]
    fn steps_at_or_below_the_gap_are_running_time() {
        let v = verdict(&[cpu(PROBE.gap, &[]), cpu(RUN, &[])]);
        assert!(v.own_cores);
        assert_eq!(v.stolen_permille, 0);
        let v = verdict(&[cpu(PROBE.gap + 1, &[]), cpu(RUN, &[])]);
        assert!(!v.own_cores, "a CPU whose every step is a gap never ran");
    }

    /// Four CPUs on two cores, taking turns in slices of 1.5 slices: no
    /// slice has all four running, though each ran half the window.
    #[test]
    fn four_cpus_taking_turns_on_two_cores_do_not() {
        let turn = 1500;
        let stops = |phase: u64| -> Vec<(u64, u64)> {
            (0..8)
                .map(|k| (2 * k + phase) * turn)
                .map(|from| (from, from + turn))
                .collect()
        };
        let (a, b) = (stops(0), stops(1));
        let v = verdict(&[cpu(RUN, &a), cpu(RUN, &a), cpu(RUN, &b), cpu(RUN, &b)]);
        assert!(!v.own_cores, "{v:?}");
        assert!(v.slowest_permille < RAN_PERMILLE);
        assert!((400..=600).contains(&v.stolen_permille), "{v:?}");
        assert!((1600..=2400).contains(&v.running_permille), "{v:?}");
        assert!(v.in_parallel, "two cores' worth at once: {v:?}");
    }

    /// Two and four CPUs run one at a time (`-icount`): one CPU's worth at
    /// once, not in parallel; two CPUs that both always run are.
    #[test]
    fn cpus_run_one_at_a_time_are_not_in_parallel() {
        let turn = 700;
        let turns = |n: u64, k: u64| -> Vec<(u64, u64)> {
            // CPU k runs the k-th of every n turns, over the window (few
            // stops: Miri runs this too).
            let rounds = PROBE.window() / (n * turn) + 1;
            (0..rounds)
                .flat_map(|r| {
                    (0..n)
                        .filter(move |j| *j != k)
                        .map(move |j| (r * n + j) * turn)
                })
                .map(|from| (from, from + turn))
                .collect()
        };
        for n in [2, 4] {
            let meters: Vec<Meter> = (0..n).map(|k| cpu(RUN, &turns(n, k))).collect();
            let v = verdict(&meters);
            assert!(!v.in_parallel, "{n} CPUs in turn: {v:?}");
            assert!((800..=1200).contains(&v.running_permille), "{v:?}");
        }
        let v = verdict(&[cpu(RUN, &[]), cpu(RUN, &[])]);
        assert_eq!(v.running_permille, 2000);
        assert!(v.in_parallel);
    }

    /// A host that stops one CPU now and then (a timer, the emulator's I/O
    /// thread) still leaves slices where both ran.
    #[test]
    fn an_odd_preemption_leaves_quiet_slices() {
        let v = verdict(&[
            cpu(RUN, &[(1200, 1900), (5100, 5600)]),
            cpu(RUN, &[(3300, 4200)]),
        ]);
        assert!(v.own_cores, "{v:?}");
        assert_eq!(v.slowest_permille, 1000);
        assert!(v.stolen_permille > 0);
    }

    /// One CPU stopped through most of every slice fails the verdict even
    /// though the others ran throughout: every slice needs every CPU.
    #[test]
    fn one_starved_cpu_is_enough_to_fail() {
        let stops: Vec<(u64, u64)> = (0..10).map(|k| (k * 1000 + 100, k * 1000 + 400)).collect();
        let v = verdict(&[cpu(RUN, &[]), cpu(RUN, &stops), cpu(RUN, &[])]);
        assert!(!v.own_cores, "{v:?}");
        assert!(v.slowest_permille < RAN_PERMILLE, "{v:?}");
    }

    /// The threshold, in every slice: a CPU that ran exactly
    /// [`RAN_PERMILLE`] of each passes; one cycle less fails.
    #[test]
    fn the_threshold_is_inclusive() {
        let at_most = |stolen: u64| -> Vec<(u64, u64)> {
            (0..10)
                .map(|k| (k * 1000 + 100, k * 1000 + 100 + stolen))
                .collect()
        };
        let v = verdict(&[cpu(RUN, &[]), cpu(RUN, &at_most(200))]);
        assert_eq!(v.slowest_permille, RAN_PERMILLE, "{v:?}");
        assert!(v.own_cores, "{v:?}");
        let v = verdict(&[cpu(RUN, &[]), cpu(RUN, &at_most(201))]);
        assert_eq!(v.slowest_permille, RAN_PERMILLE - 1, "{v:?}");
        assert!(!v.own_cores, "{v:?}");
    }

    /// The best slice is the first of the slices where the slowest CPU ran
    /// most.
    #[test]
    fn the_best_slice_is_the_first_of_the_best() {
        let stops: Vec<(u64, u64)> = (0..10)
            .filter(|k| *k != 3 && *k != 7)
            .map(|k| (k * 1000 + 100, k * 1000 + 600))
            .collect();
        let v = verdict(&[cpu(RUN, &stops), cpu(RUN, &[])]);
        assert!(v.own_cores);
        assert_eq!(v.best_slice, 3);
        assert_eq!(v.slowest_permille, 1000);
    }

    /// The window ends at the first look at or past its length.
    #[test]
    fn the_window_ends_at_its_length() {
        let mut m = Meter::new(PROBE, 0);
        let w = PROBE.window();
        let mut t = 0;
        while t + RUN < w {
            t += RUN;
            assert!(!m.observe(t), "ended at {t}");
        }
        assert!(!m.observe(w - 1));
        assert!(m.observe(w));
    }

    /// A counter that steps backwards counts no time and does not end the
    /// window.
    #[test]
    fn a_step_backwards_counts_nothing() {
        let mut m = Meter::new(PROBE, 1_000);
        assert!(!m.observe(1_050));
        assert!(!m.observe(900));
        assert!(!m.observe(950));
        assert_eq!(m.stolen(), [0; SLICES]);
        // The window goes on from where it was: 50 + 0 + 50 cycles.
        assert!(!m.observe(950 + PROBE.window() - 101));
        assert!(m.observe(950 + PROBE.window() - 100));
        // Half the counter's range is still a step forwards (it ends the
        // window); one more cycle is a step backwards.
        let mut m = Meter::new(PROBE, 0);
        assert!(m.observe(u64::MAX / 2));
        let mut m = Meter::new(PROBE, 0);
        assert!(!m.observe(u64::MAX / 2 + 1));
    }

    /// The verdict looks at each slice across CPUs, not at each CPU's
    /// total: two CPUs that each ran 85% of the window, never at the same
    /// time in one slice, fail; the same totals in one shared slice pass.
    #[test]
    fn the_passing_slice_must_be_the_same_for_every_cpu() {
        let every_other = |odd: u64| -> Vec<(u64, u64)> {
            (0..10)
                .filter(|k| k % 2 == odd)
                .map(|k| (k * 1000 + 200, k * 1000 + 500))
                .collect()
        };
        let v = verdict(&[cpu(RUN, &every_other(0)), cpu(RUN, &every_other(1))]);
        assert!(
            !v.own_cores,
            "each ran 85% of the window, never with the other"
        );
        assert_eq!(v.slowest_permille, 700);
        assert_eq!(v.stolen_permille, 150);
        let all = |_: u64| -> Vec<(u64, u64)> {
            (0..10).map(|k| (k * 1000 + 200, k * 1000 + 500)).collect()
        };
        let v = verdict(&[cpu(RUN, &all(0)), cpu(RUN, &[])]);
        assert!(!v.own_cores, "{v:?}");
        assert_eq!(v.slowest_permille, 700);
        let v = verdict(&[cpu(RUN, &every_other(0)), cpu(RUN, &[])]);
        assert!(v.own_cores);
        assert_eq!(v.best_slice % 2, 1);
    }

    /// A gap counts in every slice it covers, up to the window's end, and
    /// across a wrap of the counter.
    #[test]
    fn a_gap_counts_in_each_slice_it_covers() {
        let mut m = Meter::new(PROBE, u64::MAX - 10);
        assert!(!m.observe(u64::MAX - 5));
        assert!(!m.observe((u64::MAX - 5).wrapping_add(2_500)));
        let mut want = [0; SLICES];
        want[0] = 995;
        want[1] = 1000;
        want[2] = 505;
        assert_eq!(m.stolen(), want);
        // Ten cycles of running, then a gap past the window's end: it ends
        // the window and counts up to the end.
        assert!(!m.observe((u64::MAX - 5).wrapping_add(2_510)));
        assert!(m.observe((u64::MAX - 5).wrapping_add(2_510 + 30_000)));
        assert_eq!(m.stolen()[2], 1000 - 10);
        assert!((3..SLICES).all(|i| m.ran_permille(i) == 0));
        assert_eq!(m.ran_permille(0), 5);
        assert_eq!(verdict(&[m]).stolen_permille, 998);
    }

    #[test]
    fn no_cpus_is_a_pass() {
        assert!(verdict(&[]).own_cores);
    }
}
