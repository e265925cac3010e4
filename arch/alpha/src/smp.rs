//! CPU numbering, starting the secondary CPUs, and stopping every CPU at
//! the end of a run or on panic.
//!
//! Bring-up follows the SRM console protocol (docs/hardware.md §2.5,
//! docs/qemu.md §2.3): fill the CPU's HWRPB slot (hardware PCB with its own
//! stack), point CPU_restart at `secondary_start` (checksum updated), set
//! CV|RC and clear BIP, wait until the console's `txrdy` bit for the CPU is
//! clear, post "START" in its IPC buffer and set its bit in `rxrdy`; the
//! console acknowledges with BIP. qemu-palcode clears *all* of rxrdy when
//! one CPU takes its message, so CPUs are started strictly one at a time:
//! the next starts only after the previous reported online.
//!
//! Slots, `rxrdy`/`txrdy` bits and `wripir` use physical CPU ids; all kernel
//! data uses the logical ids of `crate::cpus`.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use alloc::alloc::{Layout, alloc};
use alphasmp::cpumask::CpuMask;
use alphasmp::line::Line;
use alphasmp::mailbox::IpiMessage;
use alphasmp_srm::start;

use crate::console::println;
use crate::hwrpb::{self, Hwrpb};
use crate::percpu::{self, CPUS, MAX_CPUS, STACK_SIZE};
use crate::platform::{MMU, SMP};
use crate::{clock, cpus, ipi, ipl, machine, pal, trap};

unsafe extern "Rust" {
    fn secondary_start();
}

// ---- Which CPUs ---------------------------------------------------------------

/// The CPUs this run uses, from the HWRPB's slots and `cpus=`.
pub struct Selection {
    /// Physical ids of present slots (PP set).
    pub present: CpuMask,
    /// Physical ids brought up: the startable slots (Linux's test: PA, PP,
    /// PV, PMV and PL set), narrowed by `cpus=`.
    pub chosen: CpuMask,
}

fn ids(m: CpuMask) -> alloc::vec::Vec<usize> {
    m.iter().collect()
}

/// Picks the CPUs and builds the CPU map (boot CPU, before any secondary
/// starts). Errors are one line for the console.
pub fn select_cpus(h: &Hwrpb, wanted: Option<CpuMask>) -> Result<Selection, alloc::string::String> {
    let boot = pal::whami();
    if boot >= MAX_CPUS {
        return Err(alloc::format!(
            "the boot CPU's whami is {boot}; this kernel numbers CPUs below {MAX_CPUS}"
        ));
    }
    let (mut present, mut startable) = (CpuMask::EMPTY, CpuMask::EMPTY);
    for slot in h.slots().filter(|s| s.present()) {
        match usize::try_from(slot.index()) {
            Ok(i) if i < MAX_CPUS => {
                present.insert(i);
                if slot.startable() {
                    startable.insert(i);
                }
            }
            _ => println!(
                "smp: HWRPB slot {} is beyond this kernel's {MAX_CPUS} CPUs; it stays in the console",
                slot.index()
            ),
        }
    }
    // A console that does not mark the boot CPU's slot still has it
    // running this code.
    present.insert(boot);
    startable.insert(boot);
    let unstartable = CpuMask(present.0 & !startable.0);
    if !unstartable.is_empty() {
        println!(
            "smp: CPU(s) {:?} are present without valid PALcode (slot flags lack PA|PP|PV|PMV|PL); they stay in the console",
            ids(unstartable)
        );
    }
    let chosen = match wanted {
        None => startable,
        Some(w) => {
            if !w.contains(boot) {
                return Err(alloc::format!("cpus= must include the boot CPU {boot}"));
            }
            let missing = CpuMask(w.0 & !startable.0);
            if !missing.is_empty() {
                return Err(alloc::format!(
                    "cpus= names CPU(s) {:?} that the HWRPB does not report present and startable (startable: {:?})",
                    ids(missing),
                    ids(startable)
                ));
            }
            w
        }
    };
    cpus::MAP
        .build(chosen.iter(), boot)
        .map_err(|e| alloc::format!("{e}"))?;
    Ok(Selection { present, chosen })
}

/// The online CPUs (logical ids).
pub fn online() -> CpuMask {
    SMP.online()
}

pub fn online_mask() -> u64 {
    SMP.online().0
}

pub fn is_online(cpu: usize) -> bool {
    SMP.online().contains(cpu)
}

pub fn online_count() -> usize {
    SMP.online().count()
}

pub fn online_cpus() -> impl Iterator<Item = usize> {
    SMP.online().iter()
}

/// Waits until every online CPU has taken `n` clock interrupts from now,
/// at most `bound_ns`; returns whether they all did. What a CPU does at its
/// clock interrupt (ticks made from the counter, the census's judgement)
/// has then happened, however long the host left its vCPU unrun.
pub fn wait_clock_interrupts(n: u64, bound_ns: u64) -> bool {
    let taken = |c: usize| crate::interrupt::COUNTS[c][1].load(Ordering::Relaxed);
    let seen: [u64; MAX_CPUS] = core::array::from_fn(taken);
    let start = clock::now_ns();
    while online_cpus().any(|c| taken(c) < seen[c] + n) {
        if clock::now_ns() > start + bound_ns {
            return false;
        }
        clock::pause_since(start);
    }
    true
}

/// Facts from boot that the self-tests check.
pub struct BootInfo {
    /// CPUs in the CPU map (chosen to run), the boot CPU included.
    pub mapped_cpus: usize,
    pub boot_gp: u64,
}

pub static BOOT: spin::Once<BootInfo> = spin::Once::new();

// ---- Bring-up -------------------------------------------------------------------

/// Result of bringing up the secondaries.
pub struct Bringup {
    /// CPUs in the map (the boot CPU included).
    pub mapped: usize,
}

/// Identity checks every CPU does for itself when it comes online.
fn record_identity(cpu: usize) {
    let me = &CPUS[cpu];
    me.id_seen.store(pal::whami(), Ordering::Relaxed);
    me.stack_seen.store(pal::sp(), Ordering::Relaxed);
    me.gp_seen.store(pal::gp(), Ordering::Relaxed);
}

/// The boot CPU's own online step.
pub fn boot_cpu_online(pcb_phys: u64) {
    let cpu = cpus::this();
    CPUS[cpu].pcb_phys.store(pcb_phys, Ordering::Relaxed);
    record_identity(cpu);
    SMP.set_online(cpu);
}

/// A kernel stack for logical CPU `cpu`, from the heap (never freed),
/// aligned to its size and with the CPU's guard at its base
/// (`cpus::this`): its top.
fn alloc_stack(cpu: usize) -> Option<u64> {
    let layout = Layout::from_size_align(STACK_SIZE, STACK_SIZE).ok()?;
    // SAFETY: the layout has non-zero size.
    let p = unsafe { alloc(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh STACK_SIZE-aligned block of STACK_SIZE bytes
    // that no CPU runs on yet.
    unsafe { cpus::set_stack_guard(p as u64, cpu) };
    Some(p as u64 + STACK_SIZE as u64)
}

/// Starts every mapped CPU other than this one, one at a time.
pub fn start_secondaries(h: &Hwrpb, console_pcb_phys: u64) -> Bringup {
    // The console's page table (its PCB's PTBR, a PFN) maps the HWRPB
    // pointer; secondaries run on it too.
    // SAFETY: the console PCB is in PAL memory, readable through KSEG;
    // offset 0x10 is its PTBR field.
    let ptbr = unsafe {
        core::ptr::read_volatile((hwrpb::KSEG | (console_pcb_phys + 0x10)) as *const u64)
    };
    let entry = secondary_start as *const () as u64;
    let mapped = cpus::MAP.count();
    let boot_phys = pal::whami() as u64;
    let high: alloc::vec::Vec<usize> = (1..mapped)
        .filter_map(cpus::physical)
        .filter(|p| *p as u64 >= start::HIGH_ID)
        .collect();
    if !high.is_empty() {
        println!(
            "smp: CPU id(s) {high:?} are {} or above, which DEC's console may never start (its START handling uses a 32-bit 1 << id); each gets {} ms per step, and none after one fails",
            start::HIGH_ID,
            start::HIGH_STEP_NS / 1_000_000
        );
    }
    let mut budget = start::Budget::new();
    for (cpu, state) in CPUS.iter().enumerate().take(mapped).skip(1) {
        let Some(phys) = cpus::physical(cpu) else {
            continue;
        };
        let step_ns = match budget.plan(phys as u64) {
            start::Plan::Start { step_ns } => step_ns,
            start::Plan::Skip(why) => {
                let why = match why {
                    start::Skip::BudgetSpent => "the bring-up's time is spent",
                    start::Skip::HighIdsRefused => "an earlier CPU with a high id did not start",
                };
                println!("smp: CPU {cpu} (physical {phys}) not started: {why}");
                continue;
            }
        };
        let slot = h.slot(phys as u64);
        let Some(top) = alloc_stack(cpu) else {
            println!("smp: no memory for CPU {cpu}'s stack");
            break;
        };
        state.stack_top.store(top, Ordering::Relaxed);
        let t0 = clock::now_ns();
        slot.set_hwpcb(top, ptbr);
        slot.set_pal_revision(h.slot(boot_phys).pal_revision());
        h.set_cpu_restart(entry, entry);
        slot.set_flags((slot.flags() | 0x22) & !alphasmp_srm::hwrpb::flags::BIP);
        // The console may still be answering an earlier message; lines the
        // secondary consoles post meanwhile are taken so they can go on,
        // with interrupts masked: this CPU's IPI handler takes them too,
        // and one nested in this drain would print the same line again.
        let drained = || {
            if h.txrdy() != 0 {
                let _masked = ipl::IplGuard::raise(ipl::HIGH);
                hwrpb::drain_secondary_consoles(h);
            }
        };
        // A line that console posted before its START (its `txrdy` bit) is
        // taken here too: this CPU's interrupts are masked all through the
        // bring-up, so nothing else would take it and the wait would end
        // only at its bound.
        if !wait_ns(step_ns, || {
            drained();
            h.txrdy() & (1 << phys) == 0
        }) {
            println!("smp: CPU {cpu} (physical {phys}): console txrdy bit stuck; not started");
            budget.record(phys as u64, clock::now_ns() - t0, false);
            continue;
        }
        slot.set_message(b"START\r\n");
        pal::mb();
        hwrpb::post_rxrdy(h, 1 << phys);
        let acked = wait_ns(step_ns, || {
            drained();
            slot.flags() & alphasmp_srm::hwrpb::flags::BIP != 0
        });
        let alive = acked
            && wait_ns(step_ns, || {
                drained();
                is_online(cpu)
            });
        let us = (clock::now_ns() - t0) / 1000;
        budget.record(phys as u64, us * 1000, alive);
        if alive {
            println!("smp: CPU {cpu} (physical {phys}) online after {us} us");
        } else if acked {
            println!(
                "smp: CPU {cpu} (physical {phys}) took the START message but did not report online within {} ms",
                step_ns / 1_000_000
            );
        } else {
            println!(
                "smp: CPU {cpu} (physical {phys}) did not acknowledge START within {} ms (rxrdy {:#x})",
                step_ns / 1_000_000,
                h.rxrdy()
            );
        }
    }
    Bringup { mapped }
}

/// Waits up to `ns` for `done()`: spins for the first millisecond (a
/// START is usually taken within two), then sleeps in wtint between checks
/// (the clock started before bring-up ends each sleep within a tick). An
/// emulator that runs its CPUs one at a time (QEMU under `-icount`) runs
/// the console's secondary only while this CPU sleeps: a wait that only
/// spun there never saw its START taken.
fn wait_ns(ns: u64, done: impl Fn() -> bool) -> bool {
    let start = clock::now_ns();
    let end = start + ns;
    while !done() {
        if clock::now_ns() > end {
            return false;
        }
        clock::pause_since(start);
    }
    true
}

/// A CPU asked every CPU to run `f` from its idle loop (fault self-tests).
pub static IDLE_REQUEST: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Entry from asm/secondary_start, at IPL 7 on this CPU's own stack.
#[unsafe(no_mangle)]
pub fn alpha_secondary_main(pcb_phys: u64) -> ! {
    ipl::note_from_rdps();
    trap::install();
    pal::wrmces(7);
    let Some(cpu) = cpus::MAP.logical(pal::whami()) else {
        // Started by mistake (not in the map): stay quiet and out of the
        // way, touching no per-CPU data.
        loop {
            pal::wtint();
        }
    };
    record_identity(cpu);
    // The architected way to our PCB is the HWRPB slot (docs/hardware.md
    // §2.5: the console loads the slot's hwpcb before jumping here); $18 at
    // entry is only what qemu-palcode happens to pass. The self-test
    // smp.per_cpu_identity checks the two agree where both exist.
    let slot_pcb = hwrpb::get().map(|h| h.phys_addr() + h.slot_offset(pal::whami() as u64));
    CPUS[cpu].entry_a2.store(pcb_phys, Ordering::Relaxed);
    CPUS[cpu]
        .pcb_phys
        .store(slot_pcb.unwrap_or(pcb_phys), Ordering::Relaxed);
    machine::start_clock_this_cpu();
    SMP.set_online(cpu);
    ipl::set(ipl::ALL_ON);
    idle_loop(cpu)
}

/// The halt-polling bounds every idle loop reads (`idle_poll_us=`,
/// `idle_poll_cpus=`; set by the boot CPU before the secondaries start).
pub static IDLE_POLL: IdlePollLimits = IdlePollLimits {
    window: AtomicU64::new(0),
    busy_cpus: AtomicU64::new(0),
};

/// [`alphasmp::idlepoll::Limits`] as atomics (Relaxed: set once before
/// any idle loop runs, and any value read is a safe answer).
pub struct IdlePollLimits {
    window: AtomicU64,
    busy_cpus: AtomicU64,
}

impl IdlePollLimits {
    pub fn set(&self, l: alphasmp::idlepoll::Limits) {
        self.window.store(l.window, Ordering::Relaxed);
        self.busy_cpus.store(l.busy_cpus, Ordering::Relaxed);
    }

    pub fn get(&self) -> alphasmp::idlepoll::Limits {
        alphasmp::idlepoll::Limits {
            window: self.window.load(Ordering::Relaxed),
            busy_cpus: self.busy_cpus.load(Ordering::Relaxed),
        }
    }
}

/// When each CPU's idle loop last saw a new IPI (its cycle counter; 0:
/// never). Written by that CPU only, on each new IPI; read by the others'
/// idle loops. One line per CPU, so a write moves only its own.
static IPI_SEEN_AT: [Line<AtomicU64>; MAX_CPUS] =
    [const { Line::new(AtomicU64::new(0)) }; MAX_CPUS];

/// Whether this CPU's idle loop polls this time round instead of waiting
/// in `wtint` (halt polling, `alphasmp::idlepoll`): after an IPI, for the
/// window, while few enough CPUs are busy, and never while a self-test
/// watches its wait ([`IDLE_WINDOW`]).
///
/// Busy: awake, or sent a message not yet taken, or sent one within the
/// window. The last counts the CPUs of the same broadcast that already
/// went back to sleep, so that after an IPI to several CPUs none of them
/// polls (where vCPUs outnumber host cores, a poller takes a core those
/// CPUs need for their next wake-up: measured, README "Speed"); after a
/// call to this CPU alone it does. The stamps are per-CPU cycle counts,
/// which real machines do not keep in step; any answer is safe (the
/// module protocol of `alphasmp::idlepoll`), and real machines do not
/// poll unless asked to.
fn idle_polls(cpu: usize, poll: &mut alphasmp::idlepoll::IdlePoll) -> bool {
    let limits = IDLE_POLL.get();
    if limits.window == 0 || IDLE_WINDOW.cpu.load(Ordering::Relaxed) == cpu {
        return false;
    }
    let handled = poll_feed(cpu);
    let now = clock::cycles();
    if poll.is_new(handled) {
        IPI_SEEN_AT[cpu].store(now.max(1), Ordering::Relaxed);
    }
    let mut busy = SMP.awake_or_called();
    for other in SMP.online().iter() {
        let at = IPI_SEEN_AT[other].load(Ordering::Relaxed);
        if at != 0 && now.wrapping_sub(at) < limits.window {
            busy.insert(other);
        }
    }
    poll.polls(limits, handled, now, busy.count() as u64)
}

/// What keeps this CPU's halt polling going: the messages and calls it
/// handled (by interrupt or by a drain), less other CPUs' TLB flush
/// requests among those calls while flushes skip sleeping CPUs. A flush
/// to a sleeping CPU costs its sender nothing (`alphasmp::lazyflush`), to
/// a polling one an interrupt and a wait; counted as calls, a stream of
/// flushes kept the CPU polling, so every flush interrupted it (measured:
/// 999 of 1000 idle `flush_tlb_all`s on 2 CPUs, README "Speed";
/// `tlb.flushes_let_a_poller_sleep`).
///
/// Only this CPU writes these counters, but it reads them at IPL 0: a
/// flush handled between two reads would show as a change (a call
/// counted, its flush not yet) and restart the window, which under a
/// stream of flushes kept a poller awake a few hundred microseconds at a
/// time. So the sum is read until two reads agree.
fn poll_feed(cpu: usize) -> u64 {
    let st = &SMP.cpu(cpu).stats;
    let lazy = MMU.lazy_idle();
    let read = || {
        let handled = |m: IpiMessage| st.ipi_handled[m.index()].load(Ordering::Relaxed);
        let messages = handled(IpiMessage::PING)
            + handled(IpiMessage::RESCHEDULE)
            + handled(IpiMessage::CPU_STOP);
        let flushes = if lazy {
            MMU.stats[cpu].requests_run.load(Ordering::Relaxed)
        } else {
            0
        };
        messages
            .wrapping_add(st.calls_run.load(Ordering::Relaxed))
            .wrapping_sub(flushes)
    };
    let mut last = read();
    loop {
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn idle_loop(cpu: usize) -> ! {
    let mut poll = alphasmp::idlepoll::IdlePoll::new(poll_feed(cpu));
    loop {
        // A polling CPU listens (alphasmp::listen): it looks at its
        // mailbox each time round, and senders skip its interrupt. It
        // stops before it sleeps, before a posted task runs
        // (`run_posted_task` stops it), and once the policy says no (the
        // experiment turns listening off while CPUs poll).
        let polls = idle_polls(cpu, &mut poll);
        if polls && SMP.start_listening() {
            SMP.hear();
        } else if SMP.is_listening(cpu) {
            SMP.stop_listening();
        }
        // Check for work and sleep with every interrupt held off, as
        // Linux's idle loop does: a PING that arrives between the check and
        // wtint stays pending, so wtint returns at once instead of sleeping
        // until the next clock interrupt with work posted. Back at IPL 0
        // the interrupts that ended the wait (ticks, IPIs) are taken.
        // A polling CPU decides so at IPL 0 and stays there: an IPI that
        // arrives while it decides is taken at once, not when it lowers
        // the IPL again.
        if !polls {
            let _off = ipl::IplGuard::raise(ipl::HIGH);
            if !idle_work_pending(cpu) {
                let watched = IDLE_WINDOW.pause(cpu);
                SMP.note_idle_asleep_on(cpu, true);
                // TLB flushes skip this CPU while it sleeps; it catches
                // up here, before interrupts are let in
                // (`alphasmp::lazyflush`).
                let lazy = MMU.idle_enter(cpu);
                pal::wtint();
                if lazy {
                    MMU.idle_leave(cpu);
                }
                SMP.note_idle_asleep_on(cpu, false);
                if watched {
                    IDLE_WINDOW.after_wait(cpu);
                }
            }
        }
        // With the poll fix on, the idle loop also drains the mailbox (the
        // portable rule for lossy IPIs, docs/cross-calls.md §5); with it off,
        // a lost IPI stays lost here, as on Linux.
        ipi::poll_when_idle();
        if IDLE_REQUEST.load(Ordering::Acquire) == cpu {
            panic!("deliberate panic on CPU {cpu} (fault=panic)");
        }
        SMP.run_posted_task();
    }
}

/// Work the idle loop must run rather than sleep: a posted work item or a
/// deliberate panic request for this CPU.
fn idle_work_pending(cpu: usize) -> bool {
    SMP.task_pending(cpu) || IDLE_REQUEST.load(Ordering::Relaxed) == cpu
}

/// Self-test hook: widens the idle loop's window between its check for
/// work and its wtint, so a test can post work inside it (smp.idle_wakes).
pub struct IdleWindow {
    /// The CPU whose idle loop pauses (usize::MAX: none).
    cpu: AtomicUsize,
    /// Set by that CPU while it is inside the window.
    inside: AtomicBool,
    /// Clock interrupts that CPU had taken when it left the window.
    clock_at_exit: core::sync::atomic::AtomicU64,
    /// Whether the PING was still in that CPU's mailbox, unhandled, when
    /// its wtint after the window returned.
    ping_pending_after_wait: AtomicBool,
}

pub static IDLE_WINDOW: IdleWindow = IdleWindow {
    cpu: AtomicUsize::new(usize::MAX),
    inside: AtomicBool::new(false),
    clock_at_exit: core::sync::atomic::AtomicU64::new(0),
    ping_pending_after_wait: AtomicBool::new(false),
};

impl IdleWindow {
    /// Pauses `cpu`'s idle loop between its check and its wtint, once,
    /// when a test armed it for that CPU: until work is posted to it and
    /// the PING that follows the post is in its mailbox (at most 1 s each),
    /// so the PING arrives inside the window. (Waiting a fixed 200 us
    /// instead assumed the poster runs meanwhile; under -icount, where
    /// QEMU runs one CPU at a time, the poster could still be between its
    /// post and its PING when the window closed.)
    fn pause(&self, cpu: usize) -> bool {
        if self.cpu.load(Ordering::Relaxed) != cpu
            || self
                .cpu
                .compare_exchange(cpu, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.inside.store(true, Ordering::Release);
        wait_ns(1_000_000_000, || SMP.task_pending(cpu));
        wait_ns(1_000_000_000, || {
            SMP.cpu(cpu).mailbox.peek().contains(IpiMessage::PING)
        });
        self.clock_at_exit.store(
            crate::interrupt::COUNTS[cpu][1].load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.inside.store(false, Ordering::Release);
        true
    }

    /// After the window's wtint: whether the PING is still unhandled (at
    /// IPL 7 it stays pending and ends the wait at once; checked at IPL 0
    /// its interrupt was taken inside the window, and wtint then slept).
    fn after_wait(&self, cpu: usize) {
        let pending = SMP.cpu(cpu).mailbox.peek().contains(IpiMessage::PING);
        self.ping_pending_after_wait
            .store(pending, Ordering::Release);
    }

    /// See [`IdleWindow::after_wait`] (read after the posted work ran).
    pub fn ping_pending_after_wait(&self) -> bool {
        self.ping_pending_after_wait.load(Ordering::Acquire)
    }

    /// Arms the window for `cpu` and waits (bounded) until its idle loop is
    /// inside it; false if it never got there.
    pub fn enter(&self, cpu: usize) -> bool {
        self.inside.store(false, Ordering::Relaxed);
        self.ping_pending_after_wait.store(false, Ordering::Relaxed);
        self.cpu.store(cpu, Ordering::Release);
        // The CPU may be asleep in wtint: a PING ends that and it loops.
        SMP.send_message(cpu, IpiMessage::PING).ok();
        let ok = wait_ns(1_000_000_000, || self.inside.load(Ordering::Acquire));
        if !ok {
            self.cpu.store(usize::MAX, Ordering::Relaxed);
        }
        ok
    }

    /// Clock interrupts the CPU had taken when it left the window.
    pub fn clock_at_exit(&self) -> u64 {
        self.clock_at_exit.load(Ordering::Relaxed)
    }
}

// ---- Stopping every CPU ---------------------------------------------------

/// Sends CPU_STOP to every other online CPU and waits for them to park;
/// names each that does not (it sits at a high IPL). A CPU whose CPU_STOP
/// was lost (an EV7 edge, with the poll off: nothing would ever read the
/// message) parks from its next clock interrupt instead: the flag is set
/// before the IPIs go out. Before it, every secondary whose IPI was lost
/// ran on after the verdict (`inject=edge_loss_masked ipi_poll=off`: "did
/// not acknowledge CPU_STOP" for each); on a real machine it would still
/// run kernel code under the console that CPU 0 halted into.
fn stop_others(panic_path: bool) {
    let me = cpus::this();
    let others = online().without(me);
    percpu::request_stop(me);
    for cpu in others.iter() {
        if panic_path {
            // The panic path must not panic again on a refused send.
            SMP.send_message(cpu, IpiMessage::CPU_STOP).ok();
        } else {
            ipi::send(cpu, IpiMessage::CPU_STOP);
        }
    }
    let all = wait_ns(200_000_000, || {
        others
            .iter()
            .all(|c| CPUS[c].stopped.load(Ordering::Acquire))
    });
    if !all {
        for cpu in others
            .iter()
            .filter(|c| !CPUS[*c].stopped.load(Ordering::Acquire))
        {
            crate::console::print_panic(format_args!(
                "panic: CPU {cpu} (physical {}) did not acknowledge CPU_STOP (IPIs not arriving)\n",
                cpus::physical(cpu).unwrap_or(usize::MAX)
            ));
        }
    }
}

/// Ends the run with its verdict: prints the verdict line (the contract
/// with a person at a real console, see README), stops every other CPU and
/// halts through the machine layer.
pub fn finish(pass: bool, why: &str) -> ! {
    let unprinted = machine::MCHK_NOTES_UNPRINTED.load(Ordering::Relaxed);
    if unprinted > 0 {
        println!(
            "note: {unprinted} recoverable machine check(s) came in inside a console write; their notes were not printed"
        );
    }
    println!("alphasmp: {} ({why})", if pass { "PASS" } else { "FAIL" });
    stop_others(false);
    machine::end_run(pass)
}

/// Set by `fault=ending`: the panic path faults once more while it stops
/// the other CPUs, as a missing instruction would (the test of the
/// re-entered panic below).
pub static FAULT_WHILE_ENDING: AtomicBool = AtomicBool::new(false);

/// Stops every other CPU and ends the run with a failure. Called by the
/// panic handler after it printed the message, with the caller's role.
///
/// A fault on this way out (the stop IPIs, the console) re-enters the
/// panic handler on the same CPU: the verdict line is already out, so the
/// re-entered path skips stopping the others and ends the run at once; a
/// third entry ends it without printing (`machine::end_run_now`). Either
/// way the run ends instead of waiting for itself.
pub fn stop_all_and_fail(role: percpu::PanicRole) -> ! {
    match role {
        percpu::PanicRole::Other => machine::park_this_cpu(),
        percpu::PanicRole::Reentered(_) => {
            crate::console::print_panic(format_args!(
                "alphasmp: the panic path faulted; ending without stopping the other CPUs\n"
            ));
            machine::end_run(false)
        }
        percpu::PanicRole::First => {}
    }
    crate::console::print_panic(format_args!("alphasmp: FAIL (panic)\n"));
    if FAULT_WHILE_ENDING.swap(false, Ordering::Relaxed) {
        // SAFETY: a deliberate OPCDEC; the trap handler reports it and
        // re-enters the panic path, which must end the run.
        unsafe { crate::trap::fault_illegal() };
    }
    stop_others(true);
    machine::end_run(false)
}

// ---- Running work on every CPU in task context ------------------------------
//
// Self-tests, the benchmark and the stress run need CPUs to run code at
// IPL 0 outside interrupt handlers (where waiting cross-calls are allowed).
// The core's task slots do it (`alphasmp::task`, Linux's smp_call_on_cpu:
// several posters, a context argument, withdraw and abandon on a timeout;
// checked by the simulator and loom); each CPU's idle loop runs what is
// posted to it.

/// A function run on each CPU: `f(cpu)`.
pub type Work = fn(usize) -> u64;

fn run_plain(cpu: usize, ctx: usize) -> u64 {
    // SAFETY: `run_on_cpus` passes a `Work` function pointer as the
    // context, and nothing else posts `run_plain`.
    let f: Work = unsafe { core::mem::transmute::<usize, Work>(ctx) };
    f(cpu)
}

/// Runs `f(cpu)` on every CPU of `mask` at once (this one included, if in
/// it) and returns the results, or the first CPU that did not finish (or
/// whose slot stayed busy with other work) within `timeout_ns`.
pub fn run_on_cpus(mask: CpuMask, f: Work, timeout_ns: u64) -> Result<[u64; MAX_CPUS], usize> {
    run_on_cpus_with(mask, run_plain, f as usize, timeout_ns)
}

/// [`run_on_cpus`] with a context: `f(cpu, ctx)`, where `ctx` is typically
/// the address of something the caller keeps alive until this returns.
pub fn run_on_cpus_with(
    mask: CpuMask,
    f: alphasmp::task::TaskFn,
    ctx: usize,
    timeout_ns: u64,
) -> Result<[u64; MAX_CPUS], usize> {
    use alphasmp::task::TaskError;
    SMP.run_on_cpus(mask, f, ctx, clock::ns_to_cycles(timeout_ns))
        .map_err(|e| match e {
            TaskError::NoSuchCpu(c)
            | TaskError::NotPosted(c)
            | TaskError::Busy(c)
            | TaskError::TimedOut { cpu: c, .. } => c,
        })
}
