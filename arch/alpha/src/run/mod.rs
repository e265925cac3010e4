//! The run modes: what the kernel does once every CPU is up. One boot runs
//! one of them, chosen by the boot arguments:
//!
//! | mode | chosen by | does | ends with |
//! |---|---|---|---|
//! | experiment | `experiment=native\|injected\|all` | every cell of the fault x fix matrix in this one boot, recovering the machine between cells (`experiment.rs`) | a table, `experiment-*` lines and the verdict |
//! | lost-edge probe | `edge_probe=N` | N PINGs to each other CPU, each sent while it sits in its clock handler at IPL 7, isolated (`probe.rs`) | `edge-probe:` lines |
//! | stress | `stress=N` | N synchronous shootdowns per CPU from all CPUs at once (`stress.rs`) | a `stress-result:` line |
//! | benchmark | `bench=N` | the benchmark suite, N samples each (`bench.rs`) | `bench-result:` lines |
//! | self-tests | (default) | the self-tests of `tests/` selected by `tests=` (`selftest.rs` runs them), then the deliberate fault of `fault=`, if any | the summary and the verdict line |
//!
//! Every mode ends the run (`smp::finish` or the panic path); none returns.

pub mod bench;
pub mod experiment;
pub mod probe;
pub mod selftest;
pub mod stress;
pub mod tests;

use alphasmp_bootargs::{BootConfig, Fault};

use crate::console::println;
use crate::trap::{fault_breakpoint, fault_callsys, fault_illegal, fault_load, fault_overflow};
use crate::{clock, cpus, ipl, smp};
use selftest::Summary;

/// Runs the mode the boot arguments chose, on the boot CPU at IPL 0 with
/// every CPU online, and ends the run.
pub fn run(cfg: &BootConfig<'_>) -> ! {
    if cfg.experiment != alphasmp_bootargs::experiment::Set::Off {
        experiment::run(cfg);
    }
    if cfg.edge_probe > 0 {
        probe::run(cfg.edge_probe);
    }
    if cfg.stress > 0 {
        stress::run(cfg);
    }
    if cfg.bench > 0 {
        bench::run(cfg);
    }
    let mut summary = Summary::default();
    selftest::run(tests::ALL, cfg, &mut summary);
    tests::print_counters();
    println!("{} passed, {} failed", summary.passed, summary.failed);
    if cfg.fault != Fault::None {
        raise_fault(cfg.fault);
    }
    let why = alloc::format!("{} passed, {} failed", summary.passed, summary.failed);
    smp::finish(summary.failed == 0, &why)
}

/// A load from a physical address nothing answers: a machine check
/// (`fault=mchk_in_console` runs it inside a console call).
fn mchk_here() {
    // SAFETY: a deliberate machine check; the handler reports it and
    // panics, so this never returns into a broken state.
    unsafe {
        fault_load(crate::trap::NXM_KSEG);
    }
}

/// Raises the fault asked for with `fault=`; every one must end the run
/// through the trap report and the panic path, never return.
fn raise_fault(fault: Fault) -> ! {
    println!("fault: raising '{}' on CPU {}", fault.name(), cpus::this());
    let word = [0u64; 2];
    // SAFETY: each routine deliberately traps; the trap handler reports and
    // panics, so none of them returns into a broken state.
    unsafe {
        match fault {
            Fault::None => {}
            Fault::Breakpoint => fault_breakpoint(),
            Fault::Illegal => fault_illegal(),
            Fault::Overflow => fault_overflow(),
            // User-space VA 0x2000: not mapped by the console's page table.
            Fault::Unmapped => {
                fault_load(0x2000);
            }
            Fault::Unaligned => {
                fault_load(&raw const word as u64 + 3);
            }
            Fault::Callsys => fault_callsys(),
            Fault::Mchk => {
                fault_load(crate::trap::NXM_KSEG);
            }
            Fault::MchkInConsole => {
                crate::srm::run_inside_next_call(mchk_here);
                println!("fault: this line's console call takes the machine check");
                if crate::srm::cancel_inside_next_call() {
                    println!("error: fault 'mchk_in_console' needs the SRM console (console=srm)");
                    smp::finish(false, "fault=mchk_in_console without console=srm");
                }
            }
            Fault::FaultWhileEnding => {
                smp::FAULT_WHILE_ENDING.store(true, core::sync::atomic::Ordering::Relaxed);
                fault_illegal()
            }
            Fault::Panic | Fault::PanicStuck => {
                let me = cpus::this();
                let target = smp::online_cpus().find(|c| *c != me).unwrap_or(me);
                if target == me {
                    panic!("deliberate panic on CPU {target} (fault={})", fault.name());
                }
                // panic_stuck: this CPU stays at IPL 7, so the panicking CPU's
                // stop IPI cannot arrive and must be reported, not waited for.
                let _stuck = (fault == Fault::PanicStuck).then(|| ipl::IplGuard::raise(ipl::HIGH));
                smp::IDLE_REQUEST.store(target, core::sync::atomic::Ordering::Release);
                clock::delay_ns(2_000_000_000);
            }
        }
    }
    println!("error: fault '{}' did not trap", fault.name());
    smp::finish(false, "a deliberate fault did not trap")
}
