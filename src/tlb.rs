//! TLB and icache shootdown with Alpha semantics, on top of [`crate::xcall`].
//!
//! # Address-space numbers
//!
//! Alpha tags TLB (and virtually-tagged icache) entries with an 8-bit ASN,
//! so a CPU can drop every entry of an address space by giving it a new ASN
//! instead of flushing. As in Linux, each CPU hands out ASNs from its own
//! counter `last_asn[cpu]`, whose bits above the hardware ASN are a
//! *version*. An address space remembers, per CPU, the version|ASN it last
//! got there (`context[cpu]`, 0 = none). When a CPU's hardware ASNs run out
//! it flushes its non-global TLB entries and icache (tbiap + imb) and starts
//! a new version, which makes every older context on that CPU stale.
//!
//! # Who flushes what
//!
//! A CPU **may hold entries** of address space S if it ran S since its
//! context for S was last zeroed, i.e. exactly when `context[cpu]` is
//! non-zero: contexts are only ever set by that CPU, when it runs S. Entries
//! tagged with an ASN whose context was zeroed are harmless: that ASN is
//! never handed out again before the CPU's next rollover, which flushes
//! them (tbiap). For a flush of S, each other CPU is therefore in one of
//! three situations, read from its context word alone:
//! - **0**: it can reach no entry of S. Nothing to do.
//! - **RUNNING set**: S is its current space, so its ASN for S may be
//!   loaded: it gets a cross-call (the IPI handler decides locally, with
//!   the state it finds then: invalidate the pages or take a new ASN if S is
//!   still current, zero its context if it has left S meanwhile);
//! - **non-zero, RUNNING clear**: it ran S and left. Zeroing its context is
//!   enough: S gets a fresh ASN the next time it is activated there. No IPI.
//!
//! The decision for each CPU is one atomic step on that CPU's context word
//! (a compare-and-swap to 0 that fails if RUNNING was set meanwhile), and
//! activation sets RUNNING with one atomic step on the same word
//! (`fetch_or`, which also reads the context to reuse). All operations on
//! one word are totally ordered, so either the flusher's zeroing comes first
//! and the activating CPU sees 0 and takes a new ASN, or the activation
//! comes first and the flusher sees RUNNING and interrupts it. No CPU can
//! fall between the two cases (an earlier version, reading the `active` mask
//! once to decide whom to zero and again to decide whom to interrupt, let a
//! CPU that left S between the two reads get neither).
//!
//! Protocol for `context[cpu]` of a space: **set** only by `cpu` (on
//! activation, and by its own handler when it takes a new ASN while S is
//! current); **RUNNING** set and cleared only by `cpu` (activate,
//! deactivate), with IPIs masked, together with `current[cpu]` and the
//! loaded hardware ASN, so its IPI handler always sees the three agree;
//! **zeroed** by `cpu` itself (handler, S not current) or by a flusher
//! (compare-and-swap, only while RUNNING is clear). While RUNNING is set
//! only `cpu` writes the word. Every access is SeqCst.
//!
//! So a space used only on the calling CPU costs no IPI at all (Linux's
//! "mm only used here" shortcut, generalised as NetBSD does). The `active`
//! mask is kept for diagnostics and tests (who runs S now); no decision
//! reads it.
//!
//! Kernel mappings are global (ASM) and need `tbia` on every CPU
//! ([`Mmu::flush_tlb_all`]).

use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::cpumask::CpuMask;
use crate::lazyflush::LazyFlush;
use crate::line::Line;
use crate::platform::TlbOp;

use crate::xcall::{Hooks, Smp, XcallError};

/// Hardware ASN width on EV6/EV67/EV7.
pub const HW_ASN_BITS: u32 = 8;
const HW_ASN_MASK: u64 = (1 << HW_ASN_BITS) - 1;
const ASN_FIRST_VERSION: u64 = 1 << HW_ASN_BITS;
/// In a context word: the space is that CPU's current space (see the
/// module docs). Versions never reach this bit (2^55 rollovers).
const RUNNING: u64 = 1 << 63;
/// Above this many pages a range flush becomes an address-space flush.
pub const RANGE_PAGE_LIMIT: u64 = 8;
/// Alpha page size.
pub const PAGE_SIZE: u64 = 8192;

/// An address space (Linux's `mm_struct`, as far as the TLB cares).
pub struct AddressSpace<const N: usize> {
    /// Per CPU: version|ASN (0: none), plus [`RUNNING`] (module docs).
    context: [AtomicU64; N],
    /// CPUs where the space is current (diagnostics; decisions read the
    /// context words).
    active: AtomicU64,
    /// CPUs walking this space's page tables without running it (foreign
    /// lockless walkers, `crate::ptfree`): set by the walker (SeqCst) before
    /// it reads the tables, cleared (Release) after.
    pub(crate) walkers: AtomicU64,
    /// Proved flushes started on this space (`crate::ptfree`): each takes
    /// the next number (SeqCst) before it decides anything.
    pub(crate) flush_epoch: AtomicU64,
}

impl<const N: usize> Default for AddressSpace<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AddressSpace<N> {
    pub const fn new() -> Self {
        AddressSpace {
            context: [const { AtomicU64::new(0) }; N],
            active: AtomicU64::new(0),
            walkers: AtomicU64::new(0),
            flush_epoch: AtomicU64::new(0),
        }
    }
    /// `cpu` no longer runs the space: from now on a flusher may zero its
    /// context instead of interrupting it.
    fn leave(&self, cpu: usize) {
        self.context[cpu].fetch_and(!RUNNING, Ordering::SeqCst);
        self.active.fetch_and(!(1 << cpu), Ordering::SeqCst);
    }
    /// CPUs where the space is active.
    pub fn active(&self) -> CpuMask {
        CpuMask(self.active.load(Ordering::SeqCst))
    }
    /// CPUs registered as walking the space without running it
    /// (`crate::ptfree`).
    pub fn walkers(&self) -> CpuMask {
        CpuMask(self.walkers.load(Ordering::SeqCst))
    }
    /// The version|ASN the space holds on `cpu` (0: none).
    pub fn context(&self, cpu: usize) -> u64 {
        self.context[cpu].load(Ordering::SeqCst) & !RUNNING
    }
}

/// Per-CPU TLB counters (Relaxed statistics).
#[derive(Default)]
pub struct TlbStats {
    pub tbia: AtomicU64,
    pub tbiap: AtomicU64,
    pub tbis: AtomicU64,
    pub imb: AtomicU64,
    pub new_asn: AtomicU64,
    pub rollovers: AtomicU64,
    pub contexts_zeroed: AtomicU64,
    /// Flushes that needed no IPI (space active nowhere else).
    pub ipis_avoided: AtomicU64,
    /// Flushes by this CPU: CPUs they skipped because those slept in
    /// their idle loop (`crate::lazyflush`).
    pub idle_skipped: AtomicU64,
    /// Catch-ups this CPU made when it woke from its idle sleep, for
    /// flushes that skipped it.
    pub idle_catch_ups: AtomicU64,
    /// Other CPUs' flush requests this CPU ran (cross-call bodies; not
    /// its own flushes' local part). The idle loop's halt polling leaves
    /// these out of the calls that keep it polling: with lazy flushes a
    /// sleeping CPU costs a flush nothing, a polling one an interrupt.
    pub requests_run: AtomicU64,
    /// Flush requests this CPU found corrupted (reported through
    /// [`Hooks::report_corruption`]; it flushed everything instead).
    pub corrupt_requests: AtomicU64,
    /// Flush bodies this CPU ran inside its own address-space switch (with
    /// IPIs masked, between `current` and the loaded ASN): must stay 0. An
    /// interrupt above the IPI level whose poll ran queued calls there did
    /// it (`Smp::poll_in_interrupt`).
    pub applied_mid_switch: AtomicU64,
    /// Address-space switches inside a lockless page-table walk (a bug of
    /// the caller, reported through [`Hooks::report_corruption`]).
    pub switch_in_walk: AtomicU64,
}

impl TlbStats {
    const fn new() -> Self {
        TlbStats {
            tbia: AtomicU64::new(0),
            tbiap: AtomicU64::new(0),
            tbis: AtomicU64::new(0),
            imb: AtomicU64::new(0),
            new_asn: AtomicU64::new(0),
            rollovers: AtomicU64::new(0),
            contexts_zeroed: AtomicU64::new(0),
            ipis_avoided: AtomicU64::new(0),
            idle_skipped: AtomicU64::new(0),
            idle_catch_ups: AtomicU64::new(0),
            requests_run: AtomicU64::new(0),
            corrupt_requests: AtomicU64::new(0),
            applied_mid_switch: AtomicU64::new(0),
            switch_in_walk: AtomicU64::new(0),
        }
    }
}

/// Whom a space flush reached, and how (`Mmu::shoot_space_tracked`).
pub(crate) struct Coverage {
    pub(crate) result: Result<(), XcallError>,
    /// Other CPUs whose IPI handler (or a drain) ran the flush's body.
    pub(crate) by_ipi: CpuMask,
    /// Other CPUs not running the space when the flush decided (context 0,
    /// or zeroed by the flush): covered without an IPI.
    pub(crate) not_running: CpuMask,
    /// Other CPUs running the space but asleep in their idle loop when the
    /// flush decided (each skip a Release read-modify-write of the CPU's
    /// sleep word): they catch up when they wake, before anything else
    /// (`crate::lazyflush`).
    pub(crate) asleep: CpuMask,
    /// CPUs sent the flush that had not run it when the wait gave up.
    pub(crate) stalled: CpuMask,
}

/// What a remote CPU must do (stored in the caller's request slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    All = 0,
    Mm = 1,
    Page = 2,
    PageExec = 3,
    Range = 4,
    Icache = 5,
    Imb = 6,
    Migrate = 7,
    MigrateExec = 8,
}

impl Op {
    /// The op stored as `v`, or `None` for a value no op has (corruption:
    /// never guess one).
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            0 => Op::All,
            1 => Op::Mm,
            2 => Op::Page,
            3 => Op::PageExec,
            4 => Op::Range,
            5 => Op::Icache,
            6 => Op::Imb,
            7 => Op::Migrate,
            8 => Op::MigrateExec,
            _ => return None,
        })
    }
}

/// Flush requests per CPU. A request is owned by its flush until every CPU
/// it was sent to has read it; a flush whose wait the watchdog aborted
/// keeps its request until the CPUs it stalled on run it, and those hold
/// at most one request each (a later flush to such a CPU waits for its
/// descriptor first, and when that fails nothing was sent). So a CPU can
/// run out only with this many CPUs stalled on its aborted flushes at once,
/// and then its next flush is refused (see `Mmu::shoot`).
const REQUESTS: usize = 4;

/// A flush request: what the targets of one flush read in their IPI body.
///
/// Protocol: `unread` is the set of CPUs (bits) that were sent the request
/// and have not read it yet; 0 means free. The **owner** (one CPU) fills
/// the fields and then sets `unread` only while it reads 0 (Acquire), and
/// publishes both to the targets through the call queue (push Release,
/// take Acquire) or, for itself, program order. Each **reader** loads the
/// fields, then clears its own bit (Release). So a rewrite never overlaps a
/// read (in an earlier version with one request per CPU, the flush after an
/// aborted one rewrote the request its stalled target had still to read:
/// that flush never happened there, and a torn read could mix two).
struct Request {
    unread: AtomicU64,
    mmu: AtomicUsize,
    op: AtomicU8,
    space: AtomicUsize,
    start: AtomicU64,
    end: AtomicU64,
}

impl Request {
    const fn new() -> Self {
        Request {
            unread: AtomicU64::new(0),
            mmu: AtomicUsize::new(0),
            op: AtomicU8::new(0),
            space: AtomicUsize::new(0),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
        }
    }
}

/// Per-CPU MMU state and the shootdown operations.
pub struct Mmu<P: 'static, const N: usize> {
    smp: &'static Smp<P, N>,
    last_asn: [AtomicU64; N],
    /// Address of the space active on each CPU (0: none).
    current: [AtomicUsize; N],
    max_asn: AtomicU64,
    /// Each CPU's flush requests (see [`Request`]), on lines of their own
    /// (`crate::line`).
    requests: [Line<[Request; REQUESTS]>; N],
    /// Set by each CPU (only) while it switches address spaces with IPIs
    /// masked: no flush body may run on it meanwhile.
    switching: [core::sync::atomic::AtomicBool; N],
    /// Set by each CPU (only) while it walks page tables locklessly
    /// (`crate::ptfree::WalkGuard`): it must not switch spaces meanwhile.
    walking: [core::sync::atomic::AtomicBool; N],
    /// Flushes skip CPUs asleep in their idle loop, which catch up when
    /// they wake (`crate::lazyflush`).
    lazy: LazyFlush<N>,
    /// Whether they do (boot argument `lazy_flush`; on by default).
    lazy_on: core::sync::atomic::AtomicBool,
    pub stats: [Line<TlbStats>; N],
}

impl<P: Hooks + 'static, const N: usize> Mmu<P, N> {
    pub const fn new(smp: &'static Smp<P, N>) -> Self {
        Mmu {
            smp,
            last_asn: [const { AtomicU64::new(ASN_FIRST_VERSION) }; N],
            current: [const { AtomicUsize::new(0) }; N],
            max_asn: AtomicU64::new(HW_ASN_MASK),
            requests: [const { Line::new([const { Request::new() }; REQUESTS]) }; N],
            switching: [const { core::sync::atomic::AtomicBool::new(false) }; N],
            walking: [const { core::sync::atomic::AtomicBool::new(false) }; N],
            lazy: LazyFlush::new(),
            lazy_on: core::sync::atomic::AtomicBool::new(true),
            stats: [const { Line::new(TlbStats::new()) }; N],
        }
    }

    /// Sets the largest hardware ASN (the HWRPB's `max_asn`, at most 255).
    pub fn set_max_asn(&self, max: u64) {
        self.max_asn
            .store(max.clamp(1, HW_ASN_MASK), Ordering::Relaxed);
    }

    fn p(&self) -> &P {
        &self.smp.platform
    }

    /// Whether flushes skip CPUs asleep in their idle loop
    /// (`crate::lazyflush`). Safe to switch at any time: off, a flush
    /// skips nobody (a CPU already asleep is interrupted, its `wtint`
    /// ends); a CPU that entered the sleep while it was on still swaps its
    /// word back when it wakes and catches up if it was skipped.
    pub fn set_lazy_idle(&self, on: bool) {
        self.lazy_on.store(on, Ordering::Relaxed);
    }

    /// Whether flushes skip sleeping idle CPUs.
    pub fn lazy_idle(&self) -> bool {
        self.lazy_on.load(Ordering::Relaxed)
    }

    /// The idle loop, with interrupts held off, just before it sleeps:
    /// returns whether flushes may now skip this CPU (then it
    /// must call [`idle_leave`](Self::idle_leave) when the sleep ends,
    /// before it lets interrupts in).
    /// `cpu` is the calling CPU (the idle loop knows it: no lookup on its
    /// wake-up path).
    #[inline]
    pub fn idle_enter(&self, cpu: usize) -> bool {
        if !self.lazy_on.load(Ordering::Relaxed) {
            return false;
        }
        self.lazy.enter_idle(cpu);
        true
    }

    /// CPUs asleep in their idle loop now, which flushes skip (a hint: any
    /// of them may be waking).
    pub fn idle_cpus(&self) -> CpuMask {
        self.lazy.idle()
    }

    /// The idle loop, interrupts still held off, when its sleep ends: no
    /// longer skipped; if a flush skipped it meanwhile, catches up now,
    /// before anything can use a translation.
    #[inline]
    pub fn idle_leave(&self, cpu: usize) {
        if self.lazy.leave_idle(cpu) {
            self.catch_up(cpu);
        }
    }

    /// What a CPU that flushes skipped while it slept does when it wakes:
    /// what every flush op would have done, together. Its whole TLB (the
    /// all-CPU flush, and every space's pages), and a new context for the
    /// space still current on it, whose ASN-tagged icache lines that also
    /// retires (a space flush with exec, as its IPI body does where the
    /// space is current). Spaces it does not run had their context
    /// zeroed by the flushes themselves, as for any CPU.
    #[inline(never)]
    fn catch_up(&self, cpu: usize) {
        self.tlb(cpu, TlbOp::All);
        let current = self.current[cpu].load(Ordering::SeqCst);
        if current != 0 {
            // SAFETY: `current` only ever holds addresses of 'static spaces.
            let space = unsafe { &*(current as *const AddressSpace<N>) };
            self.load_new_context(cpu, space);
        }
        self.stats[cpu]
            .idle_catch_ups
            .fetch_add(1, Ordering::Relaxed);
    }

    fn tlb(&self, cpu: usize, op: TlbOp) {
        let s = &self.stats[cpu];
        match op {
            TlbOp::All => s.tbia.fetch_add(1, Ordering::Relaxed),
            TlbOp::AllProcess => s.tbiap.fetch_add(1, Ordering::Relaxed),
            TlbOp::Page(_) | TlbOp::PageBoth(_) => s.tbis.fetch_add(1, Ordering::Relaxed),
        };
        self.p().invalidate_tlb(op);
    }

    /// A new version|ASN for this CPU (Linux `__get_new_mm_context`).
    fn new_context(&self, cpu: usize) -> u64 {
        let last = self.last_asn[cpu].load(Ordering::Relaxed);
        let mut next = last + 1;
        if last & HW_ASN_MASK >= self.max_asn.load(Ordering::Relaxed) {
            // Out of hardware ASNs: drop every per-process translation and
            // the icache, then start a new version (all older contexts on
            // this CPU become stale).
            self.tlb(cpu, TlbOp::AllProcess);
            self.p().imb();
            self.stats[cpu].imb.fetch_add(1, Ordering::Relaxed);
            self.stats[cpu].rollovers.fetch_add(1, Ordering::Relaxed);
            next = (last & !HW_ASN_MASK) + ASN_FIRST_VERSION;
        }
        self.last_asn[cpu].store(next, Ordering::Relaxed);
        self.stats[cpu].new_asn.fetch_add(1, Ordering::Relaxed);
        next
    }

    /// Whether `ctx` is from this CPU's current ASN version.
    fn is_current_version(&self, cpu: usize, ctx: u64) -> bool {
        ctx != 0 && (ctx ^ self.last_asn[cpu].load(Ordering::Relaxed)) & !HW_ASN_MASK == 0
    }

    /// Gives `space` a fresh ASN on this CPU and loads it (it is current
    /// here, so its context word keeps RUNNING).
    fn load_new_context(&self, cpu: usize, space: &AddressSpace<N>) -> u64 {
        let ctx = self.new_context(cpu);
        space.context[cpu].store(ctx | RUNNING, Ordering::SeqCst);
        self.p().load_asn(ctx & HW_ASN_MASK);
        ctx & HW_ASN_MASK
    }

    /// Makes `space` the active address space of the calling CPU; returns
    /// the hardware ASN it runs with.
    pub fn activate(&self, space: &'static AddressSpace<N>) -> u64 {
        let cpu = self.p().cpu_id();
        let addr = space as *const _ as usize;
        // IPIs masked: the handler must see `current`, RUNNING and the
        // loaded ASN agree (module docs).
        if self.walking[cpu].load(Ordering::Relaxed) {
            self.walk_switched(cpu);
        }
        let ipl = self.p().raise_ipl(self.p().ipi_ipl());
        self.switching[cpu].store(true, Ordering::Relaxed);
        let prev = self.current[cpu].swap(addr, Ordering::SeqCst);
        if prev != 0 && prev != addr {
            // SAFETY: `current` only ever holds addresses of 'static spaces.
            let old = unsafe { &*(prev as *const AddressSpace<N>) };
            old.leave(cpu);
        }
        space.active.fetch_or(1 << cpu, Ordering::SeqCst);
        // One step: claim RUNNING and read the context to reuse. If a
        // flusher zeroed the word first, we read 0 and take a new ASN; if we
        // come first, its compare-and-swap fails on RUNNING and it
        // interrupts us instead.
        let ctx = space.context[cpu].fetch_or(RUNNING, Ordering::SeqCst) & !RUNNING;
        let asn = if self.is_current_version(cpu, ctx) {
            self.p().load_asn(ctx & HW_ASN_MASK);
            ctx & HW_ASN_MASK
        } else {
            self.load_new_context(cpu, space)
        };
        self.switching[cpu].store(false, Ordering::Relaxed);
        self.p().restore_ipl(ipl);
        asn
    }

    /// Leaves the calling CPU with no active address space.
    pub fn deactivate(&self) {
        let cpu = self.p().cpu_id();
        if self.walking[cpu].load(Ordering::Relaxed) {
            self.walk_switched(cpu);
        }
        let ipl = self.p().raise_ipl(self.p().ipi_ipl());
        self.switching[cpu].store(true, Ordering::Relaxed);
        let prev = self.current[cpu].swap(0, Ordering::SeqCst);
        if prev != 0 {
            // SAFETY: as in `activate`.
            let old = unsafe { &*(prev as *const AddressSpace<N>) };
            old.leave(cpu);
        }
        self.switching[cpu].store(false, Ordering::Relaxed);
        self.p().restore_ipl(ipl);
    }

    fn is_current(&self, cpu: usize, space: usize) -> bool {
        self.current[cpu].load(Ordering::SeqCst) == space
    }

    /// Runs `op` for `space` on this CPU (the local half, and the IPI body).
    fn apply(&self, op: Op, space_addr: usize, start: u64, end: u64) {
        let cpu = self.p().cpu_id();
        if self.switching[cpu].load(Ordering::Relaxed) {
            self.stats[cpu]
                .applied_mid_switch
                .fetch_add(1, Ordering::Relaxed);
        }
        let space = if space_addr == 0 {
            None
        } else {
            // SAFETY: requests carry addresses of 'static address spaces.
            Some(unsafe { &*(space_addr as *const AddressSpace<N>) })
        };
        let here = space_addr != 0 && self.is_current(cpu, space_addr);
        let forget = |s: &AddressSpace<N>| {
            s.context[cpu].store(0, Ordering::SeqCst);
            self.stats[cpu]
                .contexts_zeroed
                .fetch_add(1, Ordering::Relaxed);
        };
        match op {
            Op::All => self.tlb(cpu, TlbOp::All),
            Op::Imb => {
                self.p().imb();
                self.stats[cpu].imb.fetch_add(1, Ordering::Relaxed);
            }
            Op::Mm | Op::Icache | Op::PageExec => {
                let Some(s) = space else {
                    return self.corrupt_request("flush request without a space", op as u64);
                };
                if here {
                    self.load_new_context(cpu, s);
                } else {
                    forget(s)
                }
            }
            Op::Page | Op::Range => {
                let Some(s) = space else {
                    return self.corrupt_request("flush request without a space", op as u64);
                };
                if here {
                    let mut va = start;
                    while va < end {
                        self.tlb(cpu, TlbOp::Page(va));
                        va += PAGE_SIZE;
                    }
                } else {
                    forget(s)
                }
            }
            Op::Migrate | Op::MigrateExec => {
                // Compaction fix semantics: new ASN (or forget), then drop
                // the page from this CPU's TLB whether or not it is current.
                let Some(s) = space else {
                    return self.corrupt_request("flush request without a space", op as u64);
                };
                if here {
                    self.load_new_context(cpu, s);
                } else {
                    forget(s)
                }
                self.tlb(
                    cpu,
                    if op == Op::MigrateExec {
                        TlbOp::PageBoth(start)
                    } else {
                        TlbOp::Page(start)
                    },
                );
            }
        }
    }

    /// A request this CPU cannot act on: report it and do what covers
    /// every op, drop every translation and icache line this CPU holds.
    fn corrupt_request(&self, what: &'static str, value: u64) {
        let cpu = self.p().cpu_id();
        self.stats[cpu]
            .corrupt_requests
            .fetch_add(1, Ordering::Relaxed);
        self.p().report_corruption(what, value);
        self.tlb(cpu, TlbOp::All);
        self.p().imb();
        self.stats[cpu].imb.fetch_add(1, Ordering::Relaxed);
    }

    /// Issues `op` on the calling CPU and on `targets` (synchronously), in
    /// a request of its own (see [`Request`]). If every request of this CPU
    /// is still held by an aborted flush, refuses with `Stalled` naming a
    /// CPU that has still to run one of them.
    fn shoot(
        &'static self,
        op: Op,
        space: usize,
        start: u64,
        end: u64,
        targets: CpuMask,
    ) -> Result<(), XcallError> {
        self.shoot_tracked(op, space, start, end, targets).0
    }

    /// [`shoot`](Self::shoot), also telling which other CPUs read the
    /// request: their IPI handler (or a drain) ran this flush's body after
    /// it was issued. All of `targets` but this CPU on success; on a wait
    /// the watchdog gave up, those whose bit in the request's `unread` is
    /// clear; none when nothing was sent.
    pub(crate) fn shoot_tracked(
        &'static self,
        op: Op,
        space: usize,
        start: u64,
        end: u64,
        targets: CpuMask,
    ) -> (Result<(), XcallError>, CpuMask) {
        let me = self.p().cpu_id();
        let mine = &self.requests[me];
        // Acquire: pairs with the readers' clearing, so their reads of the
        // fields are done before we rewrite them.
        let Some(req) = mine.iter().find(|r| r.unread.load(Ordering::Acquire) == 0) else {
            let held = mine
                .iter()
                .fold(0, |m, r| m | r.unread.load(Ordering::Relaxed));
            return (
                Err(XcallError::Stalled {
                    target: match held {
                        0 => 64,
                        h => crate::cpumask::lowest_bit(h),
                    },
                }),
                CpuMask::EMPTY,
            );
        };
        req.mmu
            .store(self as *const Self as usize, Ordering::Relaxed);
        req.op.store(op as u8, Ordering::Relaxed);
        req.space.store(space, Ordering::Relaxed);
        req.start.store(start, Ordering::Relaxed);
        req.end.store(end, Ordering::Relaxed);
        req.unread.store(targets.0, Ordering::Relaxed);
        let others = targets.without(me);
        match self.smp.call_many_tracked(
            targets,
            remote::<P, N>,
            req as *const Request as usize,
            true,
        ) {
            Ok(()) => (Ok(()), others),
            Err(failed) => {
                if !failed.sent {
                    // Nobody was sent it, nobody will read it: free again.
                    req.unread.store(0, Ordering::Relaxed);
                    return (Err(failed.error), CpuMask::EMPTY);
                }
                // Else the CPUs still owing a read keep it until they run it;
                // the others read it (Acquire: after their reads).
                let unread = CpuMask(req.unread.load(Ordering::Acquire));
                (Err(failed.error), CpuMask(others.0 & !unread.0))
            }
        }
    }

    /// Space-scoped flush: CPUs running the space act (cross-call), those
    /// that ran it and left forget their context, the others have nothing
    /// to do. Each CPU's case is decided by one atomic step on its context
    /// word (see the module docs).
    fn shoot_space(
        &'static self,
        op: Op,
        space: &'static AddressSpace<N>,
        start: u64,
        end: u64,
    ) -> Result<(), XcallError> {
        self.shoot_space_tracked(op, space, start, end).result
    }

    /// [`shoot_space`](Self::shoot_space), telling whom it reached how.
    pub(crate) fn shoot_space_tracked(
        &'static self,
        op: Op,
        space: &'static AddressSpace<N>,
        start: u64,
        end: u64,
    ) -> Coverage {
        let me = self.p().cpu_id();
        let addr = space as *const _ as usize;
        let mut remote = CpuMask::EMPTY;
        let mut not_running = CpuMask::EMPTY;
        let mut skipped = CpuMask::EMPTY;
        let others = self.smp.online().without(me);
        // Only CPUs that run the space would be interrupted; of those, the
        // ones asleep in their idle loop catch up when they wake.
        let running = CpuMask(
            others
                .iter()
                .filter(|c| space.context[*c].load(Ordering::Relaxed) & RUNNING != 0)
                .fold(0, |m, c| m | 1 << c),
        );
        let asleep = self.sleepers(me, running);
        for cpu in others.iter() {
            let word = &space.context[cpu];
            let mut seen = word.load(Ordering::SeqCst);
            loop {
                if seen == 0 {
                    not_running.insert(cpu);
                    break;
                }
                if seen & RUNNING != 0 {
                    if asleep.contains(cpu) {
                        skipped.insert(cpu);
                    } else {
                        remote.insert(cpu);
                    }
                    break;
                }
                // Fails if `cpu` set RUNNING (or took a new context) since
                // the load: decide again on what it holds now.
                match word.compare_exchange(seen, 0, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => {
                        self.stats[cpu]
                            .contexts_zeroed
                            .fetch_add(1, Ordering::Relaxed);
                        not_running.insert(cpu);
                        break;
                    }
                    Err(now) => seen = now,
                }
            }
        }
        if remote.is_empty() {
            self.stats[me].ipis_avoided.fetch_add(1, Ordering::Relaxed);
            self.apply(op, addr, start, end);
            return Coverage {
                result: Ok(()),
                by_ipi: CpuMask::EMPTY,
                not_running,
                asleep: skipped,
                stalled: CpuMask::EMPTY,
            };
        }
        let mut targets = remote;
        targets.insert(me);
        let (result, read) = self.shoot_tracked(op, addr, start, end, targets);
        Coverage {
            result,
            by_ipi: read,
            not_running,
            asleep: skipped,
            stalled: CpuMask(remote.0 & !read.0),
        }
    }

    /// Decodes a page or range flush into its op (shared by the plain and
    /// the proved flushes).
    pub(crate) fn page_op(exec: bool) -> Op {
        if exec { Op::PageExec } else { Op::Page }
    }

    /// The number the next proved flush of `space` takes; a flush numbered
    /// above it started after this call.
    pub(crate) fn flush_epoch(space: &AddressSpace<N>) -> u64 {
        space.flush_epoch.load(Ordering::SeqCst)
    }

    /// Starts a proved flush of `space`: takes its number (before any
    /// decision of the flush, SeqCst).
    pub(crate) fn begin_proved(space: &AddressSpace<N>) -> u64 {
        space.flush_epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The calling CPU's number, for `crate::ptfree`.
    pub(crate) fn cpu(&self) -> usize {
        self.p().cpu_id()
    }

    pub(crate) fn smp(&self) -> &'static Smp<P, N> {
        self.smp
    }

    /// The space this CPU runs (its address; 0: none).
    pub(crate) fn current_space(&self, cpu: usize) -> usize {
        self.current[cpu].load(Ordering::SeqCst)
    }

    pub(crate) fn begin_walk(&self, cpu: usize) {
        self.walking[cpu].store(true, Ordering::Relaxed);
    }

    pub(crate) fn end_walk(&self, cpu: usize) {
        self.walking[cpu].store(false, Ordering::Relaxed);
    }

    /// A space switch inside a walk: counted and reported, never silent.
    pub(crate) fn walk_switched(&self, cpu: usize) {
        self.stats[cpu]
            .switch_in_walk
            .fetch_add(1, Ordering::Relaxed);
        self.p()
            .report_corruption("address-space switch inside a page-table walk", cpu as u64);
    }

    /// Every TLB entry on every CPU, global (kernel) ones included.
    /// CPUs asleep in their idle loop are not interrupted: they flush
    /// when they wake, before they use any translation
    /// (`crate::lazyflush`).
    pub fn flush_tlb_all(&'static self) -> Result<(), XcallError> {
        let me = self.p().cpu_id();
        let online = self.smp.online();
        let asleep = self.sleepers(me, online.without(me));
        self.shoot(Op::All, 0, 0, 0, CpuMask(online.0 & !asleep.0))
    }

    /// Of `candidates` (other CPUs a flush by `me` would interrupt), those
    /// it skips instead: asleep in their idle loop, now told to catch up
    /// when they wake (`crate::lazyflush`; after the flush's mapping
    /// change, which the skip releases to them).
    fn sleepers(&self, me: usize, candidates: CpuMask) -> CpuMask {
        if !self.lazy_on.load(Ordering::Relaxed) {
            return CpuMask::EMPTY;
        }
        let asleep = self.lazy.skip_sleepers(candidates);
        if !asleep.is_empty() {
            self.stats[me]
                .idle_skipped
                .fetch_add(asleep.count() as u64, Ordering::Relaxed);
        }
        asleep
    }

    /// Every translation of `space`, everywhere.
    pub fn flush_tlb_mm(&'static self, space: &'static AddressSpace<N>) -> Result<(), XcallError> {
        self.shoot_space(Op::Mm, space, 0, 0)
    }

    /// One page of `space`; `exec` also drops it from the instruction
    /// stream (by a new ASN where the space is active, as Linux does).
    pub fn flush_tlb_page(
        &'static self,
        space: &'static AddressSpace<N>,
        va: u64,
        exec: bool,
    ) -> Result<(), XcallError> {
        let va = va & !(PAGE_SIZE - 1);
        self.shoot_space(
            if exec { Op::PageExec } else { Op::Page },
            space,
            va,
            va + PAGE_SIZE,
        )
    }

    /// `[start, end)` of `space`: per page up to [`RANGE_PAGE_LIMIT`] pages,
    /// a whole-space flush beyond (Linux always flushes the whole space).
    /// `exec` (the range maps, or mapped, executable pages) also drops it
    /// from the instruction stream: a new ASN where the space runs, which
    /// retires its ITB entries and its icache lines (ASN-tagged) at once,
    /// as `flush_tlb_page(exec)` and Linux's whole-space flush do; the
    /// other CPUs forget their context as for any flush.
    pub fn flush_tlb_range(
        &'static self,
        space: &'static AddressSpace<N>,
        start: u64,
        end: u64,
        exec: bool,
    ) -> Result<(), XcallError> {
        let start = start & !(PAGE_SIZE - 1);
        if end <= start {
            return Ok(());
        }
        if exec || (end - start).div_ceil(PAGE_SIZE) > RANGE_PAGE_LIMIT {
            return self.flush_tlb_mm(space);
        }
        self.shoot_space(Op::Range, space, start, end)
    }

    /// After writing instructions into a user page of `space`: a new ASN
    /// where it is active (icache lines are ASN-tagged), forget elsewhere.
    /// Nothing to do for a non-executable page.
    pub fn flush_icache_user_page(
        &'static self,
        space: &'static AddressSpace<N>,
        exec: bool,
    ) -> Result<(), XcallError> {
        if !exec {
            return Ok(());
        }
        self.shoot_space(Op::Icache, space, 0, 0)
    }

    /// Instruction memory barrier on every CPU (kernel code changed).
    pub fn smp_imb(&'static self) -> Result<(), XcallError> {
        self.shoot(Op::Imb, 0, 0, 0, self.smp.online())
    }

    /// Page migration (compaction): on every CPU, a new ASN (or forget),
    /// then drop the page itself, so no stale DTB/ITB entry survives.
    pub fn migrate_flush_tlb_page(
        &'static self,
        space: &'static AddressSpace<N>,
        va: u64,
        exec: bool,
    ) -> Result<(), XcallError> {
        let va = va & !(PAGE_SIZE - 1);
        let op = if exec { Op::MigrateExec } else { Op::Migrate };
        self.shoot(
            op,
            space as *const _ as usize,
            va,
            va + PAGE_SIZE,
            self.smp.online(),
        )
    }
}

/// The cross-call body: `arg` is one of the caller's [`Request`]s, owned by
/// its flush until this CPU (and the others sent it) has read it.
fn remote<P: Hooks + 'static, const N: usize>(arg: usize) {
    // SAFETY: `shoot` passes one of its CPU's request slots, which live in
    // a 'static Mmu.
    let req = unsafe { &*(arg as *const Request) };
    // SAFETY: the slot's `mmu` is the 'static Mmu that filled it (set before
    // the call went out, and not rewritten until this CPU's bit in
    // `unread` is cleared below).
    let mmu = unsafe { &*(req.mmu.load(Ordering::Relaxed) as *const Mmu<P, N>) };
    let cpu = mmu.p().cpu_id();
    let op = req.op.load(Ordering::Relaxed);
    let space = req.space.load(Ordering::Relaxed);
    let start = req.start.load(Ordering::Relaxed);
    let end = req.end.load(Ordering::Relaxed);
    // Done reading (Release: the owner that sees the bit clear, Acquire,
    // may rewrite the slot after our loads).
    req.unread.fetch_and(!(1 << cpu), Ordering::Release);
    if !mmu.requests[cpu]
        .as_ptr_range()
        .contains(&(req as *const Request))
    {
        mmu.stats[cpu].requests_run.fetch_add(1, Ordering::Relaxed);
    }
    match Op::from_u8(op) {
        Some(op) => mmu.apply(op, space, start, end),
        None => mmu.corrupt_request("flush request with an unknown op", u64::from(op)),
    }
}

/// The hardware ASN of a context value.
pub const fn hw_asn(ctx: u64) -> u64 {
    ctx & HW_ASN_MASK
}

/// The version of a context value.
pub const fn asn_version(ctx: u64) -> u64 {
    ctx >> HW_ASN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    /// A one-CPU platform that records what it is asked to do; static, so
    /// the test leaks nothing (Miri runs it).
    struct Recorder {
        tbia: AtomicU64,
        imb: AtomicU64,
        reports: AtomicU64,
    }

    impl Platform for Recorder {
        fn cpu_id(&self) -> usize {
            0
        }
        fn send_ipi(&self, _cpu: usize) {}
        fn raise_ipl(&self, _level: u8) -> u8 {
            0
        }
        fn restore_ipl(&self, _previous: u8) {}
        fn ipl(&self) -> u8 {
            0
        }
        fn ipi_ipl(&self) -> u8 {
            crate::platform::ipl::IPI_QEMU_PALCODE
        }
        fn in_interrupt(&self) -> bool {
            true
        }
        fn invalidate_tlb(&self, op: TlbOp) {
            if op == TlbOp::All {
                self.tbia.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn imb(&self) {
            self.imb.fetch_add(1, Ordering::Relaxed);
        }
        fn load_asn(&self, _asn: u64) {}
        fn cycles(&self) -> u64 {
            0
        }
        fn cycle_freq(&self) -> u64 {
            1
        }
    }

    impl Hooks for Recorder {
        fn report_corruption(&self, _what: &'static str, _value: u64) {
            self.reports.fetch_add(1, Ordering::Relaxed);
        }
    }

    static SMP: Smp<Recorder, 1> = Smp::new(Recorder {
        tbia: AtomicU64::new(0),
        imb: AtomicU64::new(0),
        reports: AtomicU64::new(0),
    });
    static MMU: Mmu<Recorder, 1> = Mmu::new(&SMP);
    static SPACE: AddressSpace<1> = AddressSpace::new();
    static REQUEST: Request = Request::new();

    /// The IPI body given a request it cannot make sense of (an op byte no
    /// `Op` has, or a space-scoped op without a space: what a torn read of
    /// a request being rewritten looks like) must not guess an op or panic
    /// in the handler: it reports the corruption and flushes everything
    /// this CPU holds (tbia + imb covers every op).
    #[test]
    fn a_corrupt_request_is_reported_not_guessed() {
        let p = &SMP.platform;
        for (n, (op, space)) in [(200u8, &SPACE as *const _ as usize), (Op::Page as u8, 0)]
            .into_iter()
            .enumerate()
        {
            REQUEST
                .mmu
                .store(&MMU as *const Mmu<Recorder, 1> as usize, Ordering::Relaxed);
            REQUEST.op.store(op, Ordering::Relaxed);
            REQUEST.space.store(space, Ordering::Relaxed);
            REQUEST.unread.store(1, Ordering::Relaxed);
            remote::<Recorder, 1>(&REQUEST as *const Request as usize);
            let n = n as u64 + 1;
            let seen = [&p.tbia, &p.imb, &p.reports, &MMU.stats[0].corrupt_requests]
                .map(|a| a.load(Ordering::Relaxed));
            assert_eq!(
                seen, [n; 4],
                "op {op} space {space:#x}: [tbia, imb, reports, corrupt_requests]"
            );
            assert_eq!(
                REQUEST.unread.load(Ordering::Relaxed),
                0,
                "the request was read"
            );
        }
    }

    #[test]
    fn a_context_splits_into_version_and_hardware_asn() {
        let ctx = (5 << HW_ASN_BITS) | 0x2a;
        assert_eq!((asn_version(ctx), hw_asn(ctx)), (5, 0x2a));
        assert_eq!(
            (asn_version(ASN_FIRST_VERSION), hw_asn(ASN_FIRST_VERSION)),
            (1, 0)
        );
    }

    #[test]
    fn op_bytes_decode_to_exactly_the_ops() {
        let ops = [
            Op::All,
            Op::Mm,
            Op::Page,
            Op::PageExec,
            Op::Range,
            Op::Icache,
            Op::Imb,
            Op::Migrate,
            Op::MigrateExec,
        ];
        for op in ops {
            assert_eq!(Op::from_u8(op as u8), Some(op));
        }
        for v in ops.len() as u8..=u8::MAX {
            assert_eq!(Op::from_u8(v), None, "byte {v}");
        }
    }
}
