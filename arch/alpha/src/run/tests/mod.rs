//! The self-tests, in the order they run.

mod atomics;
mod div;
mod heap;
mod mem;
mod platform;
mod ptfree;
mod tlb;
mod xcall;

use alphasmp_bootargs::BootConfig;

use alphasmp::mailbox::IpiMessage;

use crate::console::println;
use crate::run::selftest::check;
use crate::run::selftest::{Outcome, Test};
use crate::{interrupt, ipi, smp};

/// Every self-test. Names are `area.what`, selectable by prefix (`tests=`).
pub const ALL: &[Test] = &[
    Test {
        name: "smp.all_cpus_online",
        run: platform::all_cpus_online,
    },
    Test {
        name: "smp.per_cpu_identity",
        run: platform::per_cpu_identity,
    },
    Test {
        name: "smp.run_on_cpus_timeout_is_clean",
        run: platform::run_on_cpus_timeout_is_clean,
    },
    Test {
        name: "ipl.guard_nests",
        run: platform::ipl_guard_nests,
    },
    Test {
        name: "ipl.note_follows_interrupt_return",
        run: platform::ipl_note_follows_interrupt_return,
    },
    Test {
        name: "ipl.note_agrees_with_rdps",
        run: platform::ipl_note_agrees_with_rdps,
    },
    Test {
        name: "clock.tick_rate",
        run: platform::tick_rate,
    },
    Test {
        name: "clock.interval_agrees_with_the_clock",
        run: platform::interval_agrees_with_the_clock,
    },
    Test {
        name: "clock.interrupts_bound_time",
        run: platform::interrupts_bound_time,
    },
    Test {
        name: "clock.idle_cpus_read_their_counters",
        run: platform::idle_cpus_read_their_counters,
    },
    Test {
        name: "ipi.ping",
        run: platform::ipi_ping,
    },
    Test {
        name: "smp.secondary_console_lines_once",
        run: platform::secondary_console_lines_once,
    },
    Test {
        name: "smp.idle_wakes_on_ping",
        run: platform::idle_wakes_on_ping,
    },
    Test {
        name: "xcall.every_variant_exactly_once",
        run: xcall::every_variant_exactly_once,
    },
    Test {
        name: "xcall.concurrent_storm",
        run: xcall::concurrent_storm,
    },
    Test {
        name: "xcall.listening_waiters_hear_calls",
        run: xcall::listening_waiters_hear_calls,
    },
    Test {
        name: "xcall.waits_for_an_idle_cpu_spin",
        run: xcall::waits_for_an_idle_cpu_spin,
    },
    Test {
        name: "xcall.misuse_is_refused",
        run: xcall::misuse_is_refused,
    },
    Test {
        name: "ptfree.replace_l3_under_walkers",
        run: ptfree::replace_l3_under_walkers,
    },
    Test {
        name: "tlb.page_flush_is_observed_everywhere",
        run: tlb::page_flush_is_observed_everywhere,
    },
    Test {
        name: "tlb.flushes_skip_sleeping_cpus",
        run: tlb::flushes_skip_sleeping_cpus,
    },
    Test {
        name: "tlb.flushes_let_a_poller_sleep",
        run: tlb::flushes_let_a_poller_sleep,
    },
    Test {
        name: "tlb.stale_without_flush",
        run: tlb::stale_without_flush,
    },
    Test {
        name: "tlb.inactive_cpu_forgets_its_context",
        run: tlb::inactive_cpu_forgets_its_context,
    },
    Test {
        name: "tlb.asn_rollover",
        run: tlb::asn_rollover,
    },
    Test {
        name: "div.u64_edges",
        run: div::u64_edges,
    },
    Test {
        name: "div.i64_edges",
        run: div::i64_edges,
    },
    Test {
        name: "div.u32_i32_edges",
        run: div::narrow_edges,
    },
    Test {
        name: "div.random_pairs",
        run: div::random_pairs,
    },
    Test {
        name: "div.zero_divisor",
        run: div::zero_divisor,
    },
    Test {
        name: "mem.copy_set_cmp_all_lengths_alignments",
        run: mem::all_lengths_alignments,
    },
    Test {
        name: "mem.move_overlap",
        run: mem::move_overlap,
    },
    Test {
        name: "mem.strlen",
        run: mem::strlen_every_length,
    },
    Test {
        name: "atomics.widths",
        run: atomics::widths,
    },
    Test {
        name: "atomics.neighbours_untouched",
        run: atomics::neighbours_untouched,
    },
    Test {
        name: "heap.vec_box_string",
        run: heap::vec_box_string,
    },
    Test {
        name: "heap.reuse",
        run: heap::reuse,
    },
    Test {
        name: "xcall.counters_agree",
        run: xcall::counters_agree,
    },
    Test {
        name: "selftest.forced_failure",
        run: forced_failure,
    },
];

/// Fails exactly when `force_fail=yes` was given: proves that a failing
/// self-test reaches the summary and the exit status.
fn forced_failure(cfg: &BootConfig<'_>) -> Outcome {
    check!(
        !cfg.force_fail,
        "force_fail=yes was given on the command line"
    );
    Ok(())
}

/// Prints the per-CPU interrupt and IPI counters (the run summary).
pub fn print_counters() {
    use core::sync::atomic::Ordering::Relaxed;
    for cpu in smp::online_cpus() {
        let c = &interrupt::COUNTS[cpu];
        let mut line = alloc::format!(
            "counters: CPU {cpu}: interrupts ipi={} clock={} mchk={} dev={}; ipi sent/handled",
            c[0].load(Relaxed),
            c[1].load(Relaxed),
            c[2].load(Relaxed),
            c[3].load(Relaxed)
        );
        for (i, name) in IpiMessage::NAMES.iter().enumerate() {
            let (s, h) = ipi::counts(cpu, i);
            line.push_str(&alloc::format!(" {name}={s}/{h}"));
        }
        let st = &crate::platform::SMP.cpu(cpu).stats;
        line.push_str("; rescued in interrupts");
        for (i, name) in IpiMessage::NAMES.iter().enumerate() {
            line.push_str(&alloc::format!(" {name}={}", st.rescued[i].load(Relaxed)));
        }
        line.push_str("; rescued idle");
        for (i, name) in IpiMessage::NAMES.iter().enumerate() {
            line.push_str(&alloc::format!(
                " {name}={}",
                st.idle_rescued[i].load(Relaxed)
            ));
        }
        line.push_str(&alloc::format!(
            "; calls queued={} run={}; dropped(injected)={}",
            st.calls_queued.load(Relaxed),
            st.calls_run.load(Relaxed),
            crate::percpu::CPUS[cpu].dropped_ipis.load(Relaxed)
        ));
        println!("{line}");
    }
}
