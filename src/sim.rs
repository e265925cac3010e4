//! A simulated multi-CPU platform for host tests (feature `sim`).
//!
//! Each simulated CPU has its own IPL and IPI line, and runs on a host
//! thread of its own (free scheduler) or as a coroutine (seeded). An IPI
//! is delivered only at explicit points (every `relax`, every IPL restore,
//! and the idle loop) and only when the CPU's IPL is below the machine's
//! IPI level (`ipi_ipl`: 6 as on qemu-palcode unless a test sets 5, as on
//! EV6/EV7 OSF PALcode), exactly as on Alpha. Two line models:
//!
//! - [`Line::Latch`] (clipper): a masked IPI stays pending until the IPL
//!   drops;
//! - [`Line::LossyEdge`] (EV7, per the series' in-interrupt poll patch, docs/cross-calls.md §1.2): an IPI that arrives while
//!   the target is inside an interrupt handler at IPL 7 is dropped; the
//!   mailbox bit stays set (the kernel's `inject=edge_loss`);
//! - [`Line::LossyEdgeMasked`] (EV7 if the edge is lost whenever IPL 7
//!   masks it, the kernel's `inject=edge_loss_masked`): an IPI that arrives
//!   while the target's IPL is 7 *for any reason* is dropped, the mailbox
//!   bit staying set: inside a handler as above, but also outside any
//!   handler: a waiter napping in [`Smp::pause`] (which raises to 7 through
//!   [`Platform::raise_ipl`] before the platform's `nap`), a waiter at IPL 7
//!   (`allow_masked_wait`), the serialization lock's drain-and-nap loop, and
//!   an idle CPU in the kernel's idle loop ([`SimPlatform::idle_nap`]).
//!   The IPL is the simulated CPU's own ([`SimCpu::ipl`]), which every
//!   raise, restore and interrupt entry updates, so the sender sees exactly
//!   the target's level at the moment of the `wripir`. IPL 5 and 6 (IPIs
//!   masked below 7) still latch, as on the other lines.
//!
//! A machine has `N` CPUs (a const parameter, at most 64: a [`CpuMask`]'s
//! width); `N` defaults to [`SIM_CPUS`], so `SimPlatform` and `SimSmp`
//! without a parameter are the 4-CPU machine, and `SimPlatform::<64>` /
//! `SimSmp<64>` a 64-CPU one. Which of them are online, and which run a
//! thread, is chosen at run time ([`SimPlatform::machine`], `set_online`,
//! [`SimPlatform::run_on`]).
//!
//! Each CPU has a **TLB model** ([`TlbModel`]): ASN-tagged DTB, ITB and
//! icache entries that persist across ASN loads and are removed only by what
//! the platform is asked to do (tbia, tbiap, tbis, tbisd, imb). Tests read
//! and fetch through it ([`SimPlatform::read`], [`SimPlatform::fetch`])
//! with a page table of their own ([`PageTable`]), so a missing flush
//! shows up as a stale translation, as it would on hardware.
//!
//! Interrupt handlers are run the way the kernel runs them: IPL raised to 7,
//! `in_interrupt` true, then the core's `handle_ipi` (IPIs) or a simulated
//! clock tick followed by the core's in-interrupt poll.
//!
//! Two schedulers:
//!
//! - **free**: the CPU threads run at once (real contention on the host's
//!   atomics; not reproducible);
//! - **seeded**: a baton scheduler lets exactly one CPU thread run at a
//!   time; at every scheduling point (each `relax`, each step of a tick
//!   handler) a generator seeded by the test picks the next CPU. The same
//!   seed gives the same interleaving, so a failing run is replayed from its
//!   seed. The cycle counter is then the global step count, which makes the
//!   watchdog deterministic too. The CPUs are coroutines on the calling
//!   thread (`corosensei`), so a hand-over is a switch of stacks and 64
//!   CPUs cost no more per step than 4.

extern crate std;

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use std::vec::Vec;

use crate::cpumask::CpuMask;
use crate::mailbox::IpiMessage;
use crate::platform::{Platform, TlbOp, ipl};
use crate::rng::XorShift64;
use crate::tlb::PAGE_SIZE;
use crate::xcall::{Hooks, Smp, StallReport};

/// CPUs of the default machine (`SimPlatform` / `SimSmp` without a
/// parameter).
pub const SIM_CPUS: usize = 4;

/// The most CPUs a simulated machine can have (a [`CpuMask`]'s width).
pub const SIM_MAX_CPUS: usize = 64;

/// The simulated SMP core of an `N`-CPU machine.
pub type SimSmp<const N: usize = SIM_CPUS> = Smp<SimPlatform<N>, N>;

/// How the IPI line behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// clipper: a masked IPI stays pending until the IPL drops.
    Latch,
    /// `edge_loss`: lost while the target is in a handler at IPL 7.
    LossyEdge,
    /// `edge_loss_masked`: lost while the target is at IPL 7, in a handler
    /// or not (napping, waiting masked, idle in wtint).
    LossyEdgeMasked,
}

impl Line {
    /// Whether an IPI sent now to a CPU at IPL `level`, inside an interrupt
    /// handler or not, is lost (its mailbox bits stay set).
    pub fn loses(self, in_handler: bool, level: u8) -> bool {
        match self {
            Line::Latch => false,
            Line::LossyEdge => in_handler && level == ipl::HIGH,
            Line::LossyEdgeMasked => level == ipl::HIGH,
        }
    }
}

/// One simulated CPU's hardware state.
#[derive(Default)]
pub struct SimCpu {
    pub ipl: AtomicU8,
    pub ipi_pending: AtomicBool,
    pub in_handler: AtomicBool,
    pub dropped_ipis: AtomicU64,
    /// [`Platform::request_ipis`] calls made by this CPU (a broadcast's
    /// interrupts requested at once), and the targets they named.
    pub ipi_batches: AtomicU64,
    pub batched_ipis: AtomicU64,
    pub tlb_ops: AtomicU64,
    /// Of `tlb_ops`, single-page invalidations of both streams (tbis,
    /// [`TlbOp::PageBoth`]): the only single-page ones that reach the ITB.
    pub tbis_both: AtomicU64,
    pub imbs: AtomicU64,
    pub asn: AtomicU64,
    /// Translation buffers and icache (written by this CPU's thread only;
    /// tests may inspect them after a run).
    pub tlb: Mutex<TlbModel>,
    pub ticks: AtomicU64,
    /// Simulated clock: a tick handler runs every `tick_every` relax calls.
    relax_count: AtomicU64,
    pub stopped: AtomicBool,
    /// Naps ended by an IPI (a wake or a call) / by the clock tick that
    /// bounds every nap.
    pub naps_woken: AtomicU64,
    pub naps_timed_out: AtomicU64,
    /// Wake IPIs to this CPU dropped by [`SimPlatform::drop_wakes`].
    pub dropped_wakes: AtomicU64,
    /// Of `dropped_ipis`, those lost while this CPU was at IPL 7 outside
    /// any interrupt handler ([`Line::LossyEdgeMasked`] only).
    pub dropped_outside_handler: AtomicU64,
    /// Idle-loop naps ([`SimPlatform::idle_nap`]) ended by a pending IPI /
    /// by the clock tick (kept apart from the waiters' `naps_*`).
    pub idle_naps_woken: AtomicU64,
    pub idle_naps_timed_out: AtomicU64,
    /// Performance-counter interrupts taken ([`SimPlatform::perf_every`]).
    pub perf_interrupts: AtomicU64,
    perf_count: AtomicU64,
}

/// A virtual-to-physical map for the TLB model: virtual page -> frame
/// number. The test owns one per address space and repoints entries in it,
/// as a kernel edits PTEs, before it flushes.
///
/// The leaf tables are modelled by identity only: each span of
/// [`TABLE_SPAN`] bytes (one level-3 table's reach) is served by a table
/// numbered from 0, which [`relink_table`](Self::relink_table) replaces
/// by a new one with the same entries (the kernel's copy and relink) and
/// [`free_table`](Self::free_table) marks freed and poisoned. A CPU's
/// page-table walker caches which table serves a span ([`TlbModel::walk`]),
/// so a fill through a cached freed table reads poison ([`POISON_FRAME`]).
#[derive(Default)]
pub struct PageTable {
    map: Mutex<HashMap<u64, u64>>,
    /// Span -> the table serving it now (absent: table 0).
    tables: Mutex<HashMap<u64, u64>>,
    /// Tables freed (their entries poisoned).
    freed: Mutex<std::collections::HashSet<u64>>,
    next_table: AtomicU64,
}

/// The bytes one leaf (level-3) table maps: 1024 pages of 8 KiB.
pub const TABLE_SPAN: u64 = 1024 * PAGE_SIZE;

/// What a fill reads through a freed, poisoned table: a valid-looking
/// frame no page table of a test ever maps.
pub const POISON_FRAME: u64 = 0xdead_beef;

impl PageTable {
    pub fn new() -> Self {
        Self::default()
    }
    /// Maps the page holding `va` to `frame`.
    pub fn map(&self, va: u64, frame: u64) {
        self.lock().insert(va / PAGE_SIZE, frame);
    }
    pub fn unmap(&self, va: u64) {
        self.lock().remove(&(va / PAGE_SIZE));
    }
    /// The frame the page holding `va` maps to now (what a TLB miss loads).
    pub fn lookup(&self, va: u64) -> Option<u64> {
        self.lock().get(&(va / PAGE_SIZE)).copied()
    }
    /// The table serving the span of `va` now.
    pub fn table_of(&self, va: u64) -> u64 {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.get(&(va / TABLE_SPAN)).copied().unwrap_or(0)
    }
    /// Links a new table, a copy of the old, for the span of `va`; returns
    /// the old one's number (unlinked, not yet freed).
    pub fn relink_table(&self, va: u64) -> u64 {
        let new = self.next_table.fetch_add(1, Ordering::Relaxed) + 1;
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.insert(va / TABLE_SPAN, new).unwrap_or(0)
    }
    /// Frees (and poisons) table `table`.
    pub fn free_table(&self, table: u64) {
        let mut f = self.freed.lock().unwrap_or_else(|p| p.into_inner());
        f.insert(table);
    }
    fn is_freed(&self, table: u64) -> bool {
        let f = self.freed.lock().unwrap_or_else(|p| p.into_inner());
        f.contains(&table)
    }
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whose a TB entry is: one ASN's, or global (ASM, kernel mappings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    Asn(u64),
    Global,
}

/// One CPU's translation buffers and icache, with Alpha's rules:
///
/// - DTB and ITB entries map (tag, virtual page) to a frame; a lookup
///   matches an entry of the loaded ASN or a global one. Loading another
///   ASN removes nothing: entries of the old one stay, and match again if
///   that ASN is loaded again (what a stale context would do).
/// - icache lines are (ASN, virtual page) -> the instruction word fetched,
///   virtually indexed and ASN-tagged as on EV6: a new ASN retires them,
///   and so does imb (every line).
/// - the walker's cache ([`walk`](Self::walk)): a TB miss reads its PTE
///   through the virtual page table, whose own translation (the page of
///   the PTE, that is the leaf table) EV6 PALcode loads into the DTB under
///   the loaded ASN (`DTBM_DOUBLE_3`: "load TB and return to redo the
///   ld_vpte", DEC's `ev6_osf_pal.mar`). It is another virtual page, so
///   tbisd of a data page leaves it; tbia, tbiap and a new ASN do not.
/// - tbia removes every DTB and ITB entry; tbiap every non-global one;
///   tbisd ([`TlbOp::Page`]) the page's DTB entries of the loaded ASN and
///   global ones; tbis ([`TlbOp::PageBoth`]) the same in the DTB and the
///   ITB. The architecture guarantees no more than that for a single-page
///   invalidate (hardware may remove more), so the model removes no more:
///   a protocol that relied on more would pass here only by accident.
#[derive(Debug, Default)]
pub struct TlbModel {
    /// The loaded hardware ASN.
    pub asn: u64,
    pub dtb: HashMap<(Tag, u64), u64>,
    pub itb: HashMap<(Tag, u64), u64>,
    pub icache: HashMap<(u64, u64), u64>,
    /// (tag, span) -> the leaf table a fill in that span reads through.
    pub walk: HashMap<(Tag, u64), u64>,
}

impl TlbModel {
    fn hit(&self, tb: &HashMap<(Tag, u64), u64>, page: u64) -> Option<u64> {
        tb.get(&(Tag::Asn(self.asn), page))
            .or_else(|| tb.get(&(Tag::Global, page)))
            .copied()
    }

    /// The frame a TB miss at `va` loads under the loaded ASN: its PTE,
    /// read through the leaf table the walker has cached for the span (or
    /// the one linked now, then cached). Through a freed table, poison.
    fn fill(&mut self, pt: &PageTable, va: u64) -> Option<u64> {
        let span = va / TABLE_SPAN;
        let table = match self.hit(&self.walk, span) {
            Some(t) => t,
            None => {
                let t = pt.table_of(va);
                self.walk.insert((Tag::Asn(self.asn), span), t);
                t
            }
        };
        if pt.is_freed(table) {
            return Some(POISON_FRAME);
        }
        pt.lookup(va)
    }

    fn drop_page(asn: u64, tb: &mut HashMap<(Tag, u64), u64>, page: u64) {
        tb.remove(&(Tag::Asn(asn), page));
        tb.remove(&(Tag::Global, page));
    }

    fn invalidate(&mut self, op: TlbOp) {
        match op {
            TlbOp::All => {
                self.dtb.clear();
                self.itb.clear();
                self.walk.clear();
            }
            TlbOp::AllProcess => {
                self.dtb.retain(|(t, _), _| *t == Tag::Global);
                self.itb.retain(|(t, _), _| *t == Tag::Global);
                self.walk.retain(|(t, _), _| *t == Tag::Global);
            }
            TlbOp::Page(va) => Self::drop_page(self.asn, &mut self.dtb, va / PAGE_SIZE),
            TlbOp::PageBoth(va) => {
                Self::drop_page(self.asn, &mut self.dtb, va / PAGE_SIZE);
                Self::drop_page(self.asn, &mut self.itb, va / PAGE_SIZE);
            }
        }
    }

    /// Entries of any tag for the page holding `va` (diagnostics).
    pub fn entries_for(&self, va: u64) -> usize {
        let page = va / PAGE_SIZE;
        self.dtb
            .keys()
            .chain(self.itb.keys())
            .filter(|(_, p)| *p == page)
            .count()
            + self.icache.keys().filter(|(_, p)| *p == page).count()
    }
}

/// The simulated machine, with `N` CPUs.
pub struct SimPlatform<const N: usize = SIM_CPUS> {
    pub cpus: [SimCpu; N],
    pub line: Line,
    /// Relax calls between clock ticks on each CPU (0: no clock).
    pub tick_every: u64,
    /// Relax-call length of a tick handler (how long it sits at IPL 7).
    pub tick_len: u64,
    /// The IPL from which this machine's IPIs are masked: 6 on
    /// qemu-palcode (the default), 5 on EV6/EV7 OSF PALcode (where IPIs
    /// share the clock's level). Set it before a run.
    pub ipi_ipl: AtomicU8,
    smp: OnceLock<&'static SimSmp<N>>,
    start: Instant,
    pub stalls: AtomicU64,
    /// The latest watchdog report ([`Hooks::report_stall`]).
    pub last_stall: Mutex<Option<StallReport>>,
    /// Physical memory for instruction fetches through the TLB model: frame
    /// -> the word it holds (0 if never written).
    memory: Mutex<HashMap<u64, u64>>,
    /// Corruption reports ([`Hooks::report_corruption`]).
    pub corruptions: AtomicU64,
    /// Fault injection: every wake IPI ([`Platform::wake`]) is lost.
    pub drop_wakes: AtomicBool,
    /// Idle CPUs (a thread whose work is done, waiting for the others)
    /// sleep as the kernel's idle loop does (arch/alpha/src/smp.rs,
    /// `idle_loop`): raise to IPL 7, nap until an interrupt is pending,
    /// lower the IPL (taking it), then the idle poll
    /// ([`Smp::poll_when_idle`], on with the poll policy). Off (the
    /// default): they spin at IPL 0, taking interrupts at every relax.
    /// Under [`Line::LossyEdgeMasked`] an idle-napping CPU loses every IPI
    /// until its tick. Set it before a run.
    pub idle_nap: AtomicBool,
    /// A performance-counter interrupt (IPL 6, above the IPI level) every
    /// this many delivery points per CPU (0: none, the default). Set it
    /// before a run.
    pub perf_every: AtomicU64,
    baton: Option<Baton>,
}

/// The level of the simulated performance-counter interrupt (Linux's
/// `IPL_PERF` on Alpha).
pub const PERF_IPL: u8 = 6;

/// The seeded scheduler: whose turn it is, and the generator choosing.
///
/// A seeded run's CPUs are coroutines on the calling thread
/// ([`SimPlatform::run_on`]): exactly one runs at a time, by construction.
/// At a scheduling point the running CPU draws the next one and, if it is
/// another, records it in `turn` and suspends itself; the run's loop then
/// resumes that CPU. A hand-over is a switch of stacks, not a wake-up of
/// another thread.
struct Baton {
    state: Mutex<BatonState>,
    turn: AtomicUsize,
}

struct BatonState {
    alive: u64,
    rng: XorShift64,
    steps: u64,
}

impl Baton {
    fn new(seed: u64) -> Self {
        Baton {
            state: Mutex::new(BatonState {
                alive: 0,
                rng: XorShift64::new(seed),
                steps: 0,
            }),
            turn: AtomicUsize::new(0),
        }
    }
    /// A run starts: the CPUs of `cpus` take turns, the lowest first (no
    /// draw from the generator, so a seed means the same for any run).
    fn start(&self, cpus: CpuMask) {
        let mut s = self.lock();
        assert!(s.alive == 0, "a seeded machine runs one `run` at a time");
        s.alive = cpus.0;
        self.turn
            .store(cpus.iter().next().unwrap_or(0), Ordering::Relaxed);
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, BatonState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// The generator's draw among the live CPUs (`None`: none is left).
    fn pick(s: &mut BatonState) -> Option<usize> {
        let n = s.alive.count_ones() as u64;
        if n == 0 {
            return None;
        }
        let k = s.rng.below(n) as u32;
        let mut m = s.alive;
        for _ in 0..k {
            m &= m - 1;
        }
        Some(m.trailing_zeros() as usize)
    }
    /// Whose turn it is.
    fn turn(&self) -> usize {
        self.turn.load(Ordering::Relaxed)
    }
    /// A scheduling point: the generator picks who runs next; if that is
    /// another CPU, this one suspends until its turn comes again.
    fn pass(&self, me: usize) {
        let next = {
            let mut s = self.lock();
            s.steps += 1;
            Self::pick(&mut s)
        };
        if let Some(next) = next.filter(|&n| n != me) {
            self.turn.store(next, Ordering::Relaxed);
            suspend_this_cpu();
        }
    }
    /// `me` finished: the generator picks who runs next (`None`: the run
    /// is over).
    fn exit(&self, me: usize) -> Option<usize> {
        let next = {
            let mut s = self.lock();
            s.alive &= !(1 << me);
            Self::pick(&mut s)
        };
        if let Some(n) = next {
            self.turn.store(n, Ordering::Relaxed);
        }
        next
    }
    fn steps(&self) -> u64 {
        self.lock().steps
    }
}

/// A seeded CPU's coroutine: it takes nothing and yields nothing when
/// suspended, and returns its work's result or the panic its work raised,
/// or (the outer error) a panic outside its work.
type CpuCoroutine<R> = corosensei::Coroutine<
    (),
    (),
    std::thread::Result<std::thread::Result<R>>,
    corosensei::stack::DefaultStack,
>;

/// Each seeded CPU's stack: what a test thread gets by default.
const CPU_STACK: usize = 2 << 20;

std::thread_local! {
    /// The yielder of the seeded CPU running on this thread (null when
    /// none is): each coroutine sets it when it starts and again whenever
    /// it is resumed, so it always names the running one.
    static YIELDER: Cell<*const corosensei::Yielder<(), ()>> = const { Cell::new(core::ptr::null()) };
}

/// Suspends the running seeded CPU; returns when the run's loop resumes
/// it.
fn suspend_this_cpu() {
    let y = YIELDER.with(Cell::get);
    assert!(
        !y.is_null(),
        "a seeded scheduling point outside a seeded CPU"
    );
    // SAFETY: `y` is the running coroutine's own yielder (set by its body
    // when it started and restored below after every resume), which lives
    // as long as that body runs, and only the running coroutine gets here.
    // A suspended coroutine is never unwound from here: `run_seeded` leaks
    // the coroutines of a run that failed rather than dropping them (a
    // drop would unwind each from its `suspend`, past this restore).
    unsafe { (*y).suspend(()) };
    YIELDER.with(|c| c.set(y));
}

std::thread_local! {
    static THIS_CPU: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl<const N: usize> SimPlatform<N> {
    /// Builds a machine and its SMP core, with CPUs `0..online` marked
    /// online (mark others with `set_online`).
    pub fn machine(
        line: Line,
        tick_every: u64,
        tick_len: u64,
        online: usize,
    ) -> &'static SimSmp<N> {
        Self::build(line, tick_every, tick_len, online, None)
    }

    /// A machine under the seeded scheduler (see the module docs).
    pub fn seeded(
        line: Line,
        tick_every: u64,
        tick_len: u64,
        online: usize,
        seed: u64,
    ) -> &'static SimSmp<N> {
        Self::build(line, tick_every, tick_len, online, Some(Baton::new(seed)))
    }

    fn build(
        line: Line,
        tick_every: u64,
        tick_len: u64,
        online: usize,
        baton: Option<Baton>,
    ) -> &'static SimSmp<N> {
        const {
            assert!(N != 0, "a simulated machine has at least one CPU");
            assert!(N <= SIM_MAX_CPUS, "a simulated machine has at most 64 CPUs");
        }
        assert!(online <= N, "{online} CPUs online on a {N}-CPU machine");
        let p = SimPlatform {
            cpus: std::array::from_fn(|_| SimCpu::default()),
            line,
            tick_every,
            tick_len,
            ipi_ipl: AtomicU8::new(ipl::IPI_QEMU_PALCODE),
            smp: OnceLock::new(),
            start: Instant::now(),
            stalls: AtomicU64::new(0),
            last_stall: Mutex::new(None),
            memory: Mutex::new(HashMap::new()),
            corruptions: AtomicU64::new(0),
            drop_wakes: AtomicBool::new(false),
            idle_nap: AtomicBool::new(false),
            perf_every: AtomicU64::new(0),
            baton,
        };
        let smp: &'static SimSmp<N> = std::boxed::Box::leak(std::boxed::Box::new(Smp::new(p)));
        let _ = smp.platform.smp.set(smp);
        for c in 0..online {
            smp.set_online(c);
        }
        smp
    }

    fn smp(&self) -> &'static SimSmp<N> {
        self.smp.get().expect("machine() sets the core")
    }

    fn me(&self) -> &SimCpu {
        &self.cpus[self.cpu_id()]
    }

    /// A scheduling point: under the seeded scheduler the generator picks
    /// the next CPU to run; otherwise the host thread yields.
    pub fn schedule(&self) {
        match &self.baton {
            Some(b) => b.pass(self.cpu_id()),
            None => std::thread::yield_now(),
        }
    }

    /// This CPU's TLB model.
    fn tlb(&self) -> MutexGuard<'_, TlbModel> {
        self.me().tlb.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A data read of `va` on this CPU, through its DTB: the frame it
    /// reaches (a hit of the loaded ASN or a global entry, else a fill from
    /// `pt` tagged with the loaded ASN); `None` if unmapped.
    pub fn read(&self, pt: &PageTable, va: u64) -> Option<u64> {
        let mut tlb = self.tlb();
        let page = va / PAGE_SIZE;
        if let Some(frame) = tlb.hit(&tlb.dtb, page) {
            return Some(frame);
        }
        let frame = tlb.fill(pt, va)?;
        let tag = Tag::Asn(tlb.asn);
        tlb.dtb.insert((tag, page), frame);
        Some(frame)
    }

    /// A data read of a global (ASM, kernel) mapping: as [`read`](Self::read),
    /// but a fill makes a global entry.
    pub fn read_global(&self, pt: &PageTable, va: u64) -> Option<u64> {
        let mut tlb = self.tlb();
        let page = va / PAGE_SIZE;
        if let Some(frame) = tlb.hit(&tlb.dtb, page) {
            return Some(frame);
        }
        let frame = pt.lookup(va)?;
        tlb.dtb.insert((Tag::Global, page), frame);
        Some(frame)
    }

    /// An instruction fetch from `va` on this CPU: the word it executes,
    /// from the icache line of the loaded ASN if there is one, else through
    /// the ITB (hit or fill from `pt`) from memory, filling the line;
    /// `None` if unmapped.
    pub fn fetch(&self, pt: &PageTable, va: u64) -> Option<u64> {
        let mut tlb = self.tlb();
        let page = va / PAGE_SIZE;
        let line = (tlb.asn, page);
        if let Some(word) = tlb.icache.get(&line) {
            return Some(*word);
        }
        let frame = match tlb.hit(&tlb.itb, page) {
            Some(f) => f,
            None => {
                let f = tlb.fill(pt, va)?;
                let tag = Tag::Asn(tlb.asn);
                tlb.itb.insert((tag, page), f);
                f
            }
        };
        let word = self.frame_word(frame);
        tlb.icache.insert(line, word);
        Some(word)
    }

    /// Stores `word` in `frame` (new instructions, for [`fetch`](Self::fetch)).
    pub fn write_frame(&self, frame: u64, word: u64) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(frame, word);
    }

    /// The word `frame` holds.
    pub fn frame_word(&self, frame: u64) -> u64 {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&frame)
            .copied()
            .unwrap_or(0)
    }

    /// Scheduling points so far (seeded scheduler; 0 otherwise).
    pub fn steps(&self) -> u64 {
        self.baton.as_ref().map_or(0, Baton::steps)
    }

    /// The interrupt source above the IPI level ([`SimPlatform::perf_every`]):
    /// a performance-counter interrupt at IPL 6, taken whenever the CPU is
    /// below 6 and not in a handler, also inside a region raised only to
    /// the IPI level (5 on EV6/EV7, where real hardware delivers it at any
    /// instruction; here at every delivery point, `raise_ipl` and
    /// `load_asn` included). Its handler does nothing but the poll, as the
    /// kernel's does after every non-IPI interrupt.
    fn deliver_perf(&self) {
        let every = self.perf_every.load(Ordering::Relaxed);
        let cpu = self.me();
        if every == 0 || cpu.in_handler.load(Ordering::Relaxed) {
            return;
        }
        let interrupted = cpu.ipl.load(Ordering::Relaxed);
        if interrupted >= PERF_IPL {
            return;
        }
        if !(cpu.perf_count.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(every) {
            return;
        }
        cpu.perf_interrupts.fetch_add(1, Ordering::Relaxed);
        self.interrupt(|| {
            self.schedule();
            self.smp().poll_in_interrupt(interrupted);
        });
    }

    /// Takes pending interrupts if the IPL allows (the delivery point).
    pub fn deliver(&self) {
        self.deliver_perf();
        let cpu = self.me();
        if cpu.in_handler.load(Ordering::Relaxed) {
            return;
        }
        if self.tick_every != 0 && cpu.ipl.load(Ordering::Relaxed) < 5 {
            let n = cpu.relax_count.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(self.tick_every) {
                let interrupted = cpu.ipl.load(Ordering::Relaxed);
                self.interrupt(|| {
                    cpu.ticks.fetch_add(1, Ordering::Relaxed);
                    self.smp().census_clock();
                    // The handler body: time passes at IPL 7 (the EV7 window).
                    for _ in 0..self.tick_len {
                        self.schedule();
                    }
                    self.smp().poll_in_interrupt(interrupted);
                });
            }
        }
        if cpu.ipl.load(Ordering::Relaxed) < self.ipi_ipl()
            && cpu.ipi_pending.swap(false, Ordering::AcqRel)
        {
            self.interrupt(|| {
                let me = self.smp().platform.cpu_id();
                let upto = self.smp().census_ipi_entry(me);
                self.smp().handle_ipi();
                self.smp().census_ipi_served(me, upto);
            });
        }
    }

    /// wtint (see [`Platform::nap`]): returns true if a pending IPI ended
    /// it, false if the clock did (that tick is then pending).
    fn wtint(&self) -> bool {
        let cpu = self.me();
        let bound = if self.tick_every == 0 {
            1000
        } else {
            self.tick_every
        };
        for _ in 0..bound {
            // Time passes in every step of a nap, also one that ends at
            // once (a masked pending IPI makes wtint a busy loop).
            self.schedule();
            if cpu.ipi_pending.load(Ordering::Acquire) {
                return true;
            }
        }
        if self.tick_every != 0 {
            // The tick that ended the nap is pending: the next delivery
            // point runs it.
            let n = cpu.relax_count.load(Ordering::Relaxed);
            cpu.relax_count.store(
                n - n % self.tick_every + self.tick_every - 1,
                Ordering::Relaxed,
            );
        }
        false
    }

    /// One pass of an idle CPU's loop (see [`idle_nap`](Self::idle_nap)).
    fn idle(&self) {
        if !self.idle_nap.load(Ordering::Relaxed) {
            self.relax();
            return;
        }
        let cpu = self.me();
        let prev = self.raise_ipl(ipl::HIGH);
        // The simulated machine posts no idle work, so the kernel's check
        // for work is empty here: always wait.
        if self.wtint() {
            cpu.idle_naps_woken.fetch_add(1, Ordering::Relaxed);
        } else {
            cpu.idle_naps_timed_out.fetch_add(1, Ordering::Relaxed);
        }
        self.restore_ipl(prev);
        self.smp().poll_when_idle();
    }

    fn interrupt(&self, body: impl FnOnce()) {
        let cpu = self.me();
        let old = cpu.ipl.swap(ipl::HIGH, Ordering::Relaxed);
        cpu.in_handler.store(true, Ordering::Release);
        body();
        cpu.in_handler.store(false, Ordering::Release);
        cpu.ipl.store(old, Ordering::Relaxed);
    }

    /// Runs `work(cpu)` on each of CPUs `0..cpus` (a host thread each, or a
    /// coroutine each under the seeded scheduler), then keeps every CPU
    /// taking interrupts until all have finished their work. Returns the
    /// results in CPU order.
    pub fn run<R: Send + 'static>(
        smp: &'static SimSmp<N>,
        cpus: usize,
        work: impl Fn(usize) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        Self::run_on(smp, CpuMask::first(cpus), work)
    }

    /// [`run`](Self::run) on the CPUs of `cpus` only (e.g. a sparse set);
    /// the others have no thread, as if they had not started.
    pub fn run_on<R: Send + 'static>(
        smp: &'static SimSmp<N>,
        cpus: CpuMask,
        work: impl Fn(usize) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        assert!(
            cpus.is_subset_of(CpuMask::first(N)),
            "{cpus:?}: CPUs beyond N={N}"
        );
        let total = cpus.count() as u64;
        let work = Arc::new(work);
        let done = Arc::new(AtomicU64::new(0));
        if let Some(b) = &smp.platform.baton {
            return Self::run_seeded(b, cpus, move |c| {
                Self::cpu_body(smp, c, &*work, &done, total)
            });
        }
        let handles: Vec<_> = cpus
            .iter()
            .map(|c| {
                let (work, done) = (work.clone(), done.clone());
                std::thread::spawn(move || {
                    THIS_CPU.with(|t| t.set(c));
                    Self::cpu_body(smp, c, &*work, &done, total)
                })
            })
            .collect();
        // Every thread has finished; the first CPU whose work panicked
        // passes its panic (and message) on to the caller.
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("simulated CPU panicked outside its work"))
            .collect();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }

    /// One CPU of a run: its work, then interrupts until every CPU of the
    /// run has finished its work. Returns the work's result or its panic.
    fn cpu_body<R>(
        smp: &'static SimSmp<N>,
        c: usize,
        work: &dyn Fn(usize) -> R,
        done: &AtomicU64,
        total: u64,
    ) -> std::thread::Result<R> {
        // A CPU whose work panics (a failed assertion) goes on serving
        // interrupts below, so the other CPUs can finish and the test
        // reports the panic instead of hanging.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(c)));
        if r.is_err() {
            // Leave the interrupt handler the panic cut short.
            let cpu = &smp.platform.cpus[c];
            cpu.in_handler.store(false, Ordering::Release);
            cpu.ipl.store(ipl::ALL_ON, Ordering::Relaxed);
        }
        done.fetch_add(1, Ordering::AcqRel);
        // Idle: keep serving interrupts until everyone is done.
        while done.load(Ordering::Acquire) < total {
            smp.platform.idle();
        }
        // An IPI posted just before the last CPU finished is visible now
        // (posted before `done` was incremented).
        smp.platform.relax();
        r
    }

    /// A seeded run: each CPU of `cpus` is a coroutine on this thread
    /// running `body`; the loop resumes whichever CPU's turn it is (the
    /// lowest first) until every CPU has finished.
    fn run_seeded<R: 'static>(
        b: &Baton,
        cpus: CpuMask,
        body: impl Fn(usize) -> std::thread::Result<R> + 'static,
    ) -> Vec<R> {
        if cpus.is_empty() {
            return Vec::new();
        }
        b.start(cpus);
        let body = std::rc::Rc::new(body);
        // Never dropped before every CPU finished (see `suspend_this_cpu`):
        // a run that fails leaks its coroutines' stacks.
        let mut coroutines: core::mem::ManuallyDrop<Vec<Option<CpuCoroutine<R>>>> =
            core::mem::ManuallyDrop::new((0..N).map(|_| None).collect());
        for c in cpus.iter() {
            let body = body.clone();
            let stack = corosensei::stack::DefaultStack::new(CPU_STACK).expect("a CPU stack");
            coroutines[c] = Some(corosensei::Coroutine::with_stack(
                stack,
                move |y: &corosensei::Yielder<(), ()>, ()| {
                    YIELDER.with(|t| t.set(y));
                    // A panic outside the work (a call function run while
                    // this CPU idles) ends the coroutine here, not in the
                    // run's loop.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(c)))
                },
            ));
        }
        // The caller's own values, back whatever happens below.
        struct Restore(usize, *const corosensei::Yielder<(), ()>);
        impl Drop for Restore {
            fn drop(&mut self) {
                THIS_CPU.with(|t| t.set(self.0));
                YIELDER.with(|t| t.set(self.1));
            }
        }
        let _restore = Restore(THIS_CPU.with(Cell::get), YIELDER.with(Cell::get));
        let mut results: Vec<Option<std::thread::Result<R>>> = (0..N).map(|_| None).collect();
        let mut next = Some(b.turn());
        while let Some(c) = next {
            THIS_CPU.with(|t| t.set(c));
            let co = coroutines[c].as_mut().expect("a CPU of the run");
            next = match co.resume(()) {
                corosensei::CoroutineResult::Yield(()) => Some(b.turn()),
                corosensei::CoroutineResult::Return(Ok(r)) => {
                    results[c] = Some(r);
                    b.exit(c)
                }
                // The other CPUs cannot finish the run without this one
                // (the thread version hung here): the panic goes to the
                // caller, the unfinished coroutines are leaked.
                corosensei::CoroutineResult::Return(Err(p)) => std::panic::resume_unwind(p),
            };
        }
        // Every coroutine has returned: dropping them unwinds nothing.
        drop(core::mem::ManuallyDrop::into_inner(coroutines));
        // The first CPU whose work panicked passes its panic (and message)
        // on to the caller.
        cpus.iter()
            .map(|c| {
                results[c]
                    .take()
                    .expect("every CPU of the run finished")
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    }
}

impl<const N: usize> Platform for SimPlatform<N> {
    fn cpu_id(&self) -> usize {
        let c = current_cpu();
        assert!(c < N, "CPU {c} is not on this {N}-CPU machine");
        c
    }
    fn send_ipi(&self, cpu: usize) {
        self.request_ipi(cpu);
    }
    fn request_ipi(&self, cpu: usize) -> bool {
        let t = &self.cpus[cpu];
        let in_handler = t.in_handler.load(Ordering::Acquire);
        if self.line.loses(in_handler, t.ipl.load(Ordering::Relaxed)) {
            t.dropped_ipis.fetch_add(1, Ordering::Relaxed);
            if !in_handler {
                t.dropped_outside_handler.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        }
        t.ipi_pending.store(true, Ordering::Release);
        true
    }
    fn request_ipis(&self, targets: CpuMask) -> CpuMask {
        let me = self.me();
        me.ipi_batches.fetch_add(1, Ordering::Relaxed);
        me.batched_ipis
            .fetch_add(targets.count() as u64, Ordering::Relaxed);
        crate::platform::request_each(self, targets)
    }
    fn raise_ipl(&self, level: u8) -> u8 {
        let cpu = self.me();
        let prev = cpu.ipl.load(Ordering::Relaxed);
        if level > prev {
            cpu.ipl.store(level, Ordering::Relaxed);
        }
        self.deliver_perf();
        prev
    }
    fn restore_ipl(&self, previous: u8) {
        self.me().ipl.store(previous, Ordering::Relaxed);
        self.deliver();
    }
    fn ipl(&self) -> u8 {
        self.me().ipl.load(Ordering::Relaxed)
    }
    fn ipi_ipl(&self) -> u8 {
        self.ipi_ipl.load(Ordering::Relaxed)
    }
    fn in_interrupt(&self) -> bool {
        self.me().in_handler.load(Ordering::Relaxed)
    }
    fn invalidate_tlb(&self, op: TlbOp) {
        self.me().tlb_ops.fetch_add(1, Ordering::Relaxed);
        if let TlbOp::PageBoth(_) = op {
            self.me().tbis_both.fetch_add(1, Ordering::Relaxed);
        }
        self.tlb().invalidate(op);
    }
    fn imb(&self) {
        self.me().imbs.fetch_add(1, Ordering::Relaxed);
        self.tlb().icache.clear();
    }
    fn load_asn(&self, asn: u64) {
        self.deliver_perf();
        self.me().asn.store(asn, Ordering::Relaxed);
        self.tlb().asn = asn;
    }
    fn cycles(&self) -> u64 {
        match &self.baton {
            Some(b) => b.steps(),
            None => self.start.elapsed().as_nanos() as u64,
        }
    }
    fn cycle_freq(&self) -> u64 {
        1_000_000_000
    }
    fn relax(&self) {
        self.deliver();
        self.schedule();
    }
    fn may_interrupt(&self) {
        // Others run first, so an IPI may be pending by the delivery.
        self.schedule();
        self.deliver();
    }
    /// wtint as QEMU runs it: the CPU stops until an interrupt is pending,
    /// whatever its IPL: an IPI, or the clock, whose next tick (after
    /// `tick_every` steps, as for a running CPU) ends every nap and is
    /// taken when the caller lowers the IPL. Without a clock a nap lasts
    /// 1000 steps at most.
    fn nap(&self) {
        let cpu = self.me();
        if self.wtint() {
            cpu.naps_woken.fetch_add(1, Ordering::Relaxed);
        } else {
            cpu.naps_timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn wake(&self, cpu: usize) {
        if self.drop_wakes.load(Ordering::Relaxed) {
            self.cpus[cpu].dropped_wakes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.send_ipi(cpu);
    }
}

impl<const N: usize> Hooks for SimPlatform<N> {
    fn on_message(&self, msg: IpiMessage) {
        if msg == IpiMessage::CPU_STOP {
            self.me().stopped.store(true, Ordering::Release);
        }
    }
    fn report_stall(&self, report: &StallReport) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
        *self.last_stall.lock().unwrap_or_else(|p| p.into_inner()) = Some(*report);
    }
    fn report_corruption(&self, _what: &'static str, _value: u64) {
        self.corruptions.fetch_add(1, Ordering::Relaxed);
    }
}

/// The simulated CPU the calling thread is (panics on other threads).
pub fn current_cpu() -> usize {
    let c = THIS_CPU.with(|t| t.get());
    assert!(c < SIM_MAX_CPUS, "not on a simulated CPU thread");
    c
}
