//! Starting the secondary CPUs and stopping every CPU on panic.
//!
//! Bring-up follows the SRM console protocol (docs: qemu-alpha.md 2.3):
//! fill the CPU's HWRPB slot (hardware PCB with its own stack), point
//! CPU_restart at `secondary_start`, post "START" in its IPC buffer and set
//! its bit in `rxrdy`. qemu-palcode clears *all* of rxrdy when one CPU takes
//! its message, so CPUs are started strictly one at a time: the next starts
//! only after the previous acknowledged (slot flag BIP) and reported online.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alphasmp::mailbox::IpiMessage;

use crate::hwrpb::{CpuSlot, Hwrpb, KSEG};
use crate::percpu::{self, CPUS, MAX_CPUS};
use crate::platform::SMP;
use crate::{clock, exit, ipl, ipi, pal, println, trap};

unsafe extern "Rust" {
    fn secondary_start();
}

/// How long the boot CPU waits for each step of a CPU's start.
const START_TIMEOUT_NS: u64 = 2_000_000_000;

/// Result of bringing up the secondaries.
pub struct Bringup {
    pub reported: usize,
    pub started: usize,
}

/// Identity checks every CPU does for itself when it comes online.
fn record_identity(cpu: usize) {
    let me = &CPUS[cpu];
    let marker = 0u64;
    me.id_seen.store(pal::whami(), Ordering::Relaxed);
    me.stack_seen.store(&raw const marker as u64, Ordering::Relaxed);
    me.gp_seen.store(pal::gp(), Ordering::Relaxed);
}

/// The boot CPU's own online step.
pub fn boot_cpu_online(pcb_phys: u64) {
    let cpu = pal::whami();
    CPUS[cpu].pcb_phys.store(pcb_phys, Ordering::Relaxed);
    record_identity(cpu);
    percpu::set_online(cpu);
}

/// Starts every CPU the HWRPB reports, one at a time.
pub fn start_secondaries(hwrpb: &Hwrpb, console_pcb_phys: u64) -> Bringup {
    let reported = hwrpb.nr_processors() as usize;
    let me = pal::whami();
    if reported > MAX_CPUS {
        println!("smp: HWRPB reports {reported} CPUs; this kernel supports {MAX_CPUS}, the rest stay in the console");
    }
    // The console's page table (its PCB's PTBR, a PFN) maps the HWRPB
    // pointer; secondaries run on it too.
    // SAFETY: the console PCB is in PAL memory, readable through KSEG;
    // offset 0x10 is its PTBR field.
    let ptbr = unsafe { core::ptr::read_volatile((KSEG | (console_pcb_phys + 0x10)) as *const u64) };
    let entry = secondary_start as usize as u64;
    let mut started = 0;
    for cpu in (0..reported.min(MAX_CPUS)).filter(|c| *c != me) {
        let slot = hwrpb.slot(cpu);
        if slot.flags() & CpuSlot::FLAGS_PRESENT != CpuSlot::FLAGS_PRESENT {
            println!("smp: CPU {cpu} not available (slot flags {:#x})", slot.flags());
            continue;
        }
        let t0 = clock::now_ns();
        slot.set_hwpcb(percpu::stack_top(cpu), ptbr);
        hwrpb.set_cpu_restart(entry, entry);
        hwrpb.update_checksum();
        slot.set_flags((slot.flags() | 0x22) & !CpuSlot::FLAG_BIP);
        slot.set_message(b"START\r\n");
        pal::mb();
        hwrpb.post_rxrdy(1 << cpu);
        let acked = wait_ns(START_TIMEOUT_NS, || slot.flags() & CpuSlot::FLAG_BIP != 0);
        let alive = acked && wait_ns(START_TIMEOUT_NS, || percpu::is_online(cpu));
        let us = (clock::now_ns() - t0) / 1000;
        if alive {
            started += 1;
            println!("smp: CPU {cpu} online after {us} us");
        } else if acked {
            println!("smp: CPU {cpu} took the START message but did not report online within {} ms", START_TIMEOUT_NS / 1_000_000);
        } else {
            println!("smp: CPU {cpu} did not acknowledge START within {} ms (rxrdy {:#x})", START_TIMEOUT_NS / 1_000_000, hwrpb.rxrdy());
        }
    }
    Bringup { reported, started }
}

fn wait_ns(ns: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = clock::now_ns() + ns;
    while !done() {
        if clock::now_ns() > end {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// A CPU asked every CPU to run `f` from its idle loop (fault self-tests).
pub static IDLE_REQUEST: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Entry from asm/secondary_start, at IPL 7 on this CPU's own stack.
#[unsafe(no_mangle)]
pub fn alpha_secondary_main(pcb_phys: u64) -> ! {
    trap::install();
    pal::wrmces(7);
    let cpu = pal::whami();
    if cpu >= MAX_CPUS {
        // Started by mistake: stay quiet and out of the way.
        loop {
            pal::wtint();
        }
    }
    record_identity(cpu);
    CPUS[cpu].pcb_phys.store(pcb_phys, Ordering::Relaxed);
    clock::start_tick();
    percpu::set_online(cpu);
    ipl::set(ipl::ALL_ON);
    idle_loop(cpu)
}

fn idle_loop(cpu: usize) -> ! {
    loop {
        // Interrupts (ticks, IPIs) wake wtint; handlers ran by the time it
        // returns. With the poll fix on, the idle loop also drains the
        // mailbox (the portable rule for lossy IPIs, smp-anchors.md 8);
        // with it off, a lost IPI stays lost here, as on Linux.
        pal::wtint();
        if SMP.policy.poll_in_irq.load(Ordering::Relaxed) {
            ipi::drain_mailbox();
        }
        if IDLE_REQUEST.load(Ordering::Acquire) == cpu {
            panic!("deliberate panic on CPU {cpu} (fault=panic)");
        }
        run_posted_work(cpu);
    }
}

// ---- Stopping every CPU ---------------------------------------------------

/// Set by the first CPU that panics; later panics on other CPUs just park.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Parks this CPU for good after acknowledging the stop.
pub fn park() -> ! {
    let _ipl = ipl::IplGuard::raise(ipl::HIGH);
    percpu::this().stopped.store(true, Ordering::Release);
    loop {
        core::hint::spin_loop();
    }
}

/// Stops every other CPU and ends the run with a failure status. Called by
/// the panic handler after it printed the message.
///
/// Other CPUs get a CPU_STOP IPI; a CPU that does not acknowledge within the
/// timeout (its IPIs are not arriving: it sits at a high IPL, or the IPI was
/// lost) is reported by number. Those CPUs still see `PANICKING` from their
/// tick handler and idle loop, and the failure exit ends the machine anyway.
pub fn stop_all_and_fail() -> ! {
    let me = pal::whami();
    if PANICKING.swap(true, Ordering::AcqRel) {
        // Another CPU is already reporting a panic: let it finish.
        park();
    }
    let others: u64 = percpu::online_mask() & !(1 << me);
    for cpu in (0..MAX_CPUS).filter(|c| others & (1 << c) != 0) {
        ipi::send(cpu, IpiMessage::CPU_STOP);
    }
    let all_stopped = wait_ns(200_000_000, || {
        (0..MAX_CPUS).filter(|c| others & (1 << c) != 0).all(|c| CPUS[c].stopped.load(Ordering::Acquire))
    });
    if !all_stopped {
        for cpu in (0..MAX_CPUS).filter(|c| others & (1 << c) != 0 && !CPUS[*c].stopped.load(Ordering::Acquire)) {
            crate::console::print_panic(format_args!("panic: CPU {cpu} did not acknowledge CPU_STOP (IPIs not arriving)\n"));
        }
    }
    exit::failure()
}

/// Whether a panic is in progress (polled where IPIs might not arrive).
pub fn panicking() -> bool {
    PANICKING.load(Ordering::Relaxed)
}

// ---- Running work on every CPU in task context ------------------------------
//
// Self-tests need all CPUs to run code at IPL 0 outside interrupt handlers
// (where waiting cross-calls are allowed), not inside an IPI handler. The
// boot CPU posts a function in each target's `WORK` slot (Release) and PINGs
// it; the target's idle loop takes it (Acquire), runs it, stores the result
// and clears the slot (Release), which the poster waits for (Acquire).

type Work = fn(usize) -> u64;

static WORK: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static WORK_RESULT: [core::sync::atomic::AtomicU64; MAX_CPUS] = [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];

fn run_posted_work(cpu: usize) {
    let w = WORK[cpu].load(Ordering::Acquire);
    if w != 0 {
        // SAFETY: only `run_on_cpus` stores here, and only `Work` pointers.
        let f: Work = unsafe { core::mem::transmute::<usize, Work>(w) };
        WORK_RESULT[cpu].store(f(cpu), Ordering::Relaxed);
        WORK[cpu].store(0, Ordering::Release);
    }
}

/// Runs `f(cpu)` on every CPU of `mask` at once (this one included, if in
/// it) and returns the results, or the first CPU that did not finish within
/// `timeout_ns`.
pub fn run_on_cpus(mask: alphasmp::cpumask::CpuMask, f: Work, timeout_ns: u64) -> Result<[u64; MAX_CPUS], usize> {
    let me = pal::whami();
    for cpu in mask.without(me).iter() {
        WORK[cpu].store(f as usize, Ordering::Release);
        ipi::send(cpu, IpiMessage::PING);
    }
    let mut out = [0u64; MAX_CPUS];
    if mask.contains(me) {
        out[me] = f(me);
    }
    for cpu in mask.without(me).iter() {
        if !wait_ns(timeout_ns, || WORK[cpu].load(Ordering::Acquire) == 0) {
            return Err(cpu);
        }
        out[cpu] = WORK_RESULT[cpu].load(Ordering::Relaxed);
    }
    Ok(out)
}
