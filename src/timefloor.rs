//! A lower bound on time from a periodic interrupt, for a cycle counter
//! that may slow down or stop while its CPU waits for an interrupt (the
//! Alpha architecture allows RPCC to do so in `wtint`; docs/hardware.md §6).
//!
//! A periodic interrupt keeps running when the counter stops. Each one
//! proves that time has moved on since the previous one, so a CPU can keep
//! a floor under its clock and move the clock forward when the counter has
//! fallen behind it. All values are in counter cycles on one CPU's clock;
//! the caller keeps one [`Floor`] per CPU and calls [`Floor::step`] from
//! that CPU's clock interrupt only, with every interrupt masked.

/// One CPU's floor: what its periodic interrupts vouch for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    /// A lower bound on the time of the latest periodic interrupt's edge.
    pub edge: u64,
    /// The corrected clock at the latest interrupt; 0 before the first.
    pub last: u64,
}

impl Floor {
    pub const fn new() -> Self {
        Floor { edge: 0, last: 0 }
    }

    /// One periodic interrupt (base period `period` cycles) taken when the
    /// clock read `now`. Returns the new floor and how many cycles the
    /// clock must move forward (0 if it is not behind the floor).
    ///
    /// The first interrupt's edge may have come any time before it was
    /// taken, so it only starts the floor. After that, two facts bound
    /// interrupt k's edge from below:
    /// - it came at least one period after interrupt k-1's edge (edges that
    ///   arrive while the interrupt is masked merge, which only makes the
    ///   gap longer): `edge_k >= edge_{k-1} + period`;
    /// - it came after interrupt k-1 was taken (a pending edge is consumed
    ///   by the interrupt it raises), and the clock never runs ahead, so
    ///   `edge_k >= last_{k-1}` (to within the few cycles between taking
    ///   an interrupt and reading the clock in its handler).
    ///
    /// The second bound is what keeps the floor from lagging: after a
    /// stretch with the interrupt masked for many periods (merged edges),
    /// the first alone would trail the clock by that stretch forever and
    /// never correct a stopped counter again.
    pub fn step(self, now: u64, period: u64) -> (Floor, u64) {
        if self.last == 0 {
            let edge = now.saturating_sub(period).max(1);
            return (
                Floor {
                    edge,
                    last: now.max(1),
                },
                0,
            );
        }
        let edge = (self.edge + period).max(self.last);
        let correction = edge.saturating_sub(now);
        (
            Floor {
                edge,
                last: now + correction,
            },
            correction,
        )
    }
}

// Safe arithmetic only (no unsafe, no atomics, no threads): nothing for
// Miri to check that the ordinary test run does not, so Miri skips these
// (xtask's `the_modules_miri_skips_have_nothing_for_it` keeps it so).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    const P: u64 = 1000;

    /// Feeds interrupts taken at the given raw counter values (the counter
    /// may stand still between them); returns the corrected clock at each.
    fn run(raw: &[u64]) -> std::vec::Vec<u64> {
        let (mut f, mut correction) = (Floor::new(), 0);
        raw.iter()
            .map(|r| {
                let (g, c) = f.step(r + correction, P);
                f = g;
                correction += c;
                r + correction
            })
            .collect()
    }

    #[test]
    fn a_running_counter_is_never_moved() {
        let raw: std::vec::Vec<u64> = (0..100).map(|k| 1_000_000 + k * P + 7).collect();
        assert_eq!(run(&raw), raw);
    }

    #[test]
    fn a_stopped_counter_advances_one_period_per_interrupt() {
        let mut raw = std::vec![1_000_000, 1_000_000 + P];
        raw.extend([1_000_000 + P + 5; 10]);
        let t = run(&raw);
        assert!(
            t[11] - t[1] >= 9 * P,
            "the clock moved {} over 10 interrupts with the counter stopped",
            t[11] - t[1]
        );
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "monotonic: {t:?}");
    }

    /// The interrupt is masked for ten periods (a console line at 9600
    /// baud is about that long): one interrupt is taken for ten edges.
    /// Then the counter stops. The floor must not lag by the ten periods
    /// forever: each later interrupt still moves the stopped clock on.
    #[test]
    fn a_masked_stretch_does_not_make_the_floor_lag() {
        let t0 = 1_000_000;
        let mut raw = std::vec![t0, t0 + P, t0 + 11 * P];
        raw.extend([t0 + 11 * P + 5; 10]);
        let t = run(&raw);
        let moved = t[12] - t[2];
        assert!(
            moved >= 8 * P,
            "after a masked stretch, 10 interrupts with the counter stopped moved the clock only {moved} cycles"
        );
    }

    /// Interrupts taken late (a handler ran long) and then on time: the
    /// floor never moves a running clock past what the edges prove.
    #[test]
    fn late_interrupts_never_push_a_running_clock() {
        let t0 = 1_000_000;
        // Edges at t0 + kP; interrupt 1 taken 0.9P late, interrupt 2 on time.
        let raw = [t0, t0 + P + 900, t0 + 2 * P, t0 + 3 * P + 10, t0 + 4 * P];
        let t = run(&raw);
        assert_eq!(
            &t[..],
            &raw[..],
            "no correction of a counter that never stopped"
        );
    }
}
