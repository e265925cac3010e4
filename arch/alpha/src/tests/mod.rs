//! The self-tests, in the order they run.

mod atomics;
mod div;
mod heap;
mod mem;

use alphasmp::bootargs::BootConfig;

use crate::check;
use crate::selftest::{Outcome, Test};

/// Every self-test. Names are `area.what`, selectable by prefix (`tests=`).
pub const ALL: &[Test] = &[
    Test { name: "div.u64_edges", run: div::u64_edges },
    Test { name: "div.i64_edges", run: div::i64_edges },
    Test { name: "div.u32_i32_edges", run: div::narrow_edges },
    Test { name: "div.random_pairs", run: div::random_pairs },
    Test { name: "mem.copy_set_cmp_all_lengths_alignments", run: mem::all_lengths_alignments },
    Test { name: "mem.move_overlap", run: mem::move_overlap },
    Test { name: "mem.strlen", run: mem::strlen },
    Test { name: "atomics.widths", run: atomics::widths },
    Test { name: "atomics.neighbours_untouched", run: atomics::neighbours_untouched },
    Test { name: "heap.vec_box_string", run: heap::vec_box_string },
    Test { name: "heap.reuse", run: heap::reuse },
    Test { name: "selftest.forced_failure", run: forced_failure },
];

/// Fails exactly when `force_fail=yes` was given: proves that a failing
/// self-test reaches the summary and the exit status.
fn forced_failure(cfg: &BootConfig<'_>) -> Outcome {
    check!(!cfg.force_fail, "force_fail=yes was given on the command line");
    Ok(())
}
