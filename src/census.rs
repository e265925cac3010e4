//! The census of IPI delivery: for every IPI sent to a CPU, whether its
//! interrupt arrived (delivered), arrived only after a poll or a drain had
//! already taken its message (late), or never arrived although the target
//! could take interrupts (stranded: the lost edge). It is what tells, on a
//! real machine with every fix on, whether the hardware loses IPI edges.
//!
//! # Definitions (the README's "The census of IPI delivery" says the same)
//!
//! Every IPI *request* to CPU `t` (one `post` of a message and its interrupt
//! request, or one target's share of a broadcast's `post_all`, whose
//! requests go out together after all its messages are posted; wakes of
//! napping waiters carry no message and are not counted)
//! takes a number `n` from `t`'s counter `req` *before* its message bits are
//! posted, and counts itself in `sent` once its interrupt request was issued
//! (or dropped by a fault injection). `req >= sent` at all times.
//!
//! - **Served**: an IPI interrupt taken by `t` reads `req` at its entry,
//!   before it drains the mailbox, and serves every request numbered up to
//!   that value. Edges that merge (a request made while `t` already has an
//!   IPI pending, or several requests before `t` can take one) are served
//!   together by the one interrupt: merging is legitimate and never a loss.
//! - **Rescued**: a poll or drain outside the IPI interrupt (the
//!   in-interrupt poll, the idle loop's poll, the lock's drain, the
//!   recovery between experiment cells) that takes at least one message
//!   reads `req` *before* it takes the mailbox; every request numbered up to
//!   that value had its message posted before the take, so the take got it.
//! - **Heard**: a CPU that listens (`crate::listen`: it spins where it
//!   could take IPIs and looks at its mailbox meanwhile, so senders skip
//!   the interrupt) serves, when a take of its mailbox finds a message
//!   while it listens (a look, a drain, or an IPI interrupt), every request
//!   numbered up to `req` as read *after* the take. After, not before: bits
//!   merge, so a take can carry the message of a request numbered after a
//!   read made before it, and that request, its interrupt skipped, would
//!   have nothing else to serve it (seen: one request judged stranded in a
//!   `machine=marvel` boot with the read before). Requests numbered but
//!   not yet posted at the read are served early; their messages come by
//!   a later look or by an interrupt that then finds nothing new. A lost
//!   edge among the requests served so goes unseen, which is why listening
//!   is off where the census is the measurement (the experiment, fault
//!   injection).
//! - A served request is **late** if a rescue took its message before its
//!   interrupt served it, else **delivered**.
//! - **Stranded**: at each clock interrupt `t` takes, the requests counted
//!   in `sent` when `t` took its *previous* clock interrupt, and not served
//!   since, are stranded. Reason: their interrupt requests were issued
//!   before that previous clock interrupt; when it returned, `t` went back
//!   to an IPL low enough to take the clock, which takes IPIs too (the IPI
//!   level is at or above the clock's on every machine this kernel knows,
//!   docs/hardware.md), so a pending IPI would have been taken then, one
//!   full clock period before this judgement. A CPU that sits at IPL 7
//!   takes no clock interrupt and is never judged: it could not take the
//!   IPI. Each request is judged once; a stranded request served later
//!   still counts as stranded (its edge was lost; a later edge carried its
//!   message).
//!
//! The time bound is thus one to two clock periods (about 1 to 2 ms at the
//! default 1024 Hz). The numbering is per target, not per message: the
//! census counts requests exactly, but which of several concurrent requests
//! was stranded is approximate (a sender delayed for a whole clock period
//! between numbering and issuing its request, which for a broadcast spans
//! its other targets' posts, can be blamed for another's loss; the totals
//! stay right).
//!
//! # Ground truth (fault injection and the simulator's lossy lines)
//!
//! A platform that drops a request on purpose says so
//! ([`Platform::request_ipi`](crate::platform::Platform::request_ipi)
//! returns false); the census records its number. The same
//! serving and judging steps clear a served drop (a later edge carried its
//! message: the drop left nothing unannounced) or count a judged one as
//! **unannounced**. So `stranded == unannounced` exactly when every request
//! that was really issued got its interrupt within the bound and every
//! dropped one that no later edge covered was found: the check the QEMU
//! runs and the simulator make.
//!
//! # Who writes what
//!
//! `req`, `sent` and the drop record's marks are written by senders (atomic
//! read-modify-writes; `req` SeqCst so its order against the mailbox post
//! and the target's reads is total); everything else only by the target,
//! inside its interrupt handlers or polls (Relaxed, single writer). A
//! [`Census::reset`] writes all of them, so it runs on the target itself
//! with its interrupts masked (a judgement it interrupted would store a
//! mark read before the reset) and when no request to it is half made
//! (numbered, not yet issued): `Smp::reset_counters_this_cpu`.

use crate::sync::{AtomicU64, Ordering};

/// The drop record keeps the numbers of this many recent requests: a drop
/// is checked exactly as long as fewer requests than this are outstanding
/// at once (ground truth only). 256 was overrun once calls got cheaper: a
/// 4-CPU napping `edge_loss` cell judged more than 256 requests at one
/// clock interrupt, and the ground truth missed 86 drops (stranded 299,
/// unannounced 213), so the kernel keeps 1024. The host simulator keeps
/// 256: its 64-CPU runs hold every CPU's census on a thread's stack, and
/// its cells never have that many outstanding.
#[cfg(not(any(loom, feature = "sim")))]
const WINDOW: u64 = 1024;
#[cfg(all(not(loom), feature = "sim"))]
const WINDOW: u64 = 256;
/// Under loom (tests/loom.rs compiles this file against its atomics) every
/// atomic is a heavier object on a small coroutine stack, and no loom test
/// drops a request: a token record.
#[cfg(loom)]
const WINDOW: u64 = 4;

/// Adds `n` to a word only its CPU writes (its handlers, which do not nest
/// in one another where they write it).
#[inline]
fn add(word: &AtomicU64, n: u64) {
    word.store(word.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// One CPU's census as a target of IPIs. `repr(C)`, its senders' words
/// first: `xcall::CpuState` ends its inbox line with them, and the target's
/// words after them lie on lines only the target writes.
#[repr(C)]
pub struct Census {
    req: AtomicU64,
    sent: AtomicU64,
    served: AtomicU64,
    judged: AtomicU64,
    rescued_upto: AtomicU64,
    sent_at_clock: AtomicU64,
    /// Requests served by an interrupt whose message was still there.
    pub delivered: AtomicU64,
    /// Requests served by an interrupt after a rescue had taken the message.
    pub late: AtomicU64,
    /// Requests served by a listening CPU's look (no interrupt needed).
    pub heard: AtomicU64,
    /// Requests never served within the bound.
    pub stranded: AtomicU64,
    /// Requests dropped on purpose (injection, simulator).
    pub dropped: AtomicU64,
    /// Dropped requests judged stranded (ground truth for `stranded`).
    pub unannounced: AtomicU64,
    /// Slot `n % WINDOW` holds `n` while request `n`'s drop is unresolved.
    drops: [AtomicU64; WINDOW as usize],
}

/// The census's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub delivered: u64,
    pub late: u64,
    pub heard: u64,
    pub stranded: u64,
    pub dropped: u64,
    pub unannounced: u64,
}

/// Where one CPU's census stands ([`Census::marks`]): a request is open
/// while its number is above both `served` and `judged`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    pub numbered: u64,
    pub issued: u64,
    pub served: u64,
    pub judged: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.delivered += o.delivered;
        self.late += o.late;
        self.heard += o.heard;
        self.stranded += o.stranded;
        self.dropped += o.dropped;
        self.unannounced += o.unannounced;
    }
    /// Requests not yet served nor judged.
    pub fn open(&self) -> u64 {
        self.requests
            .saturating_sub(self.delivered + self.late + self.heard + self.stranded)
    }
}

impl Default for Census {
    fn default() -> Self {
        Self::new()
    }
}

impl Census {
    /// Where the words its senders write end (bytes from its start): the
    /// layout check of `xcall::CpuState`.
    #[cfg(not(loom))]
    pub(crate) const SENDERS_END: usize = core::mem::offset_of!(Census, sent) + 8;

    pub const fn new() -> Self {
        Census {
            req: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            served: AtomicU64::new(0),
            judged: AtomicU64::new(0),
            rescued_upto: AtomicU64::new(0),
            sent_at_clock: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            late: AtomicU64::new(0),
            heard: AtomicU64::new(0),
            stranded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unannounced: AtomicU64::new(0),
            drops: [const { AtomicU64::new(0) }; WINDOW as usize],
        }
    }

    /// Sender, before posting the message bits: numbers the request.
    pub fn begin_request(&self) -> u64 {
        self.req.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Sender, after the interrupt request was issued (`issued`) or dropped.
    #[inline]
    pub fn end_request(&self, n: u64, issued: bool) {
        if !issued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            // The number itself, not a bit: a mark made after an interrupt
            // already served `n` (the sender was slower than the target)
            // can never be mistaken for a later request's.
            self.drops[(n % WINDOW) as usize].store(n, Ordering::Relaxed);
        }
        self.sent.fetch_add(1, Ordering::Release);
    }

    /// Target, at the entry of an IPI interrupt, before draining, and only
    /// there (the census and its tests): [`Census::ipi_entry`] and
    /// [`Census::serve`] at once.
    #[inline]
    pub fn on_ipi_interrupt(&self) {
        self.serve(self.ipi_entry());
    }

    /// Target, at the entry of an IPI interrupt, before it drains the
    /// mailbox: the number this interrupt serves up to. The interrupt
    /// passes it to [`Census::serve`] when its drain is done, so that the
    /// bookkeeping stays off the path to the calls it runs. Nothing else
    /// changes the target's words in between: the drain makes no rescue,
    /// and no clock interrupt (the only judge) nests in the IPI handler.
    #[inline]
    pub fn ipi_entry(&self) -> u64 {
        self.req.load(Ordering::SeqCst)
    }

    /// Target, in the IPI interrupt whose entry read `r`
    /// ([`Census::ipi_entry`]): serves every request numbered up to `r`.
    /// Its words have one writer, this CPU in its handlers (which do not
    /// nest in one another here), so a load and a store count.
    #[inline]
    pub fn serve(&self, r: u64) {
        let lo = self.served_or_judged();
        if r > lo {
            let late = self
                .rescued_upto
                .load(Ordering::Relaxed)
                .min(r)
                .saturating_sub(lo);
            if late != 0 {
                add(&self.late, late);
            }
            add(&self.delivered, r - lo - late);
            self.take_drops(lo, r);
            self.served.store(r, Ordering::Relaxed);
        }
    }

    /// Target, before a poll or drain outside the IPI interrupt takes the
    /// mailbox: returns the number to pass to [`Census::rescued`] if the
    /// take found a message.
    pub fn before_rescue(&self) -> u64 {
        self.req.load(Ordering::SeqCst)
    }

    /// Target: the take after [`Census::before_rescue`] found a message.
    pub fn rescued(&self, upto: u64) {
        if upto > self.rescued_upto.load(Ordering::Relaxed) {
            self.rescued_upto.store(upto, Ordering::Relaxed);
        }
    }

    /// Target, listening, with IPIs masked, after a take of its mailbox
    /// found a message: serves every request numbered so far as heard
    /// (module docs: the number is read after the take).
    pub fn heard(&self) {
        let upto = self.req.load(Ordering::SeqCst);
        let lo = self.served_or_judged();
        if upto > lo {
            add(&self.heard, upto - lo);
            self.take_drops(lo, upto);
            self.served.store(upto, Ordering::Relaxed);
        }
    }

    /// Target, at every clock interrupt it takes: judges the requests
    /// issued before its previous one (module docs).
    pub fn on_clock(&self) {
        let due = self.sent_at_clock.load(Ordering::Relaxed);
        let lo = self.served_or_judged();
        if due > lo {
            self.stranded.fetch_add(due - lo, Ordering::Relaxed);
            let lost = self.take_drops(lo, due);
            self.unannounced.fetch_add(lost, Ordering::Relaxed);
            self.judged.store(due, Ordering::Relaxed);
        }
        self.sent_at_clock
            .store(self.sent.load(Ordering::Acquire), Ordering::Relaxed);
    }

    #[inline]
    fn served_or_judged(&self) -> u64 {
        self.served
            .load(Ordering::Relaxed)
            .max(self.judged.load(Ordering::Relaxed))
    }

    /// Clears the drop marks of requests `lo+1 ..= hi` (at most `WINDOW`
    /// of them); returns how many were marked.
    fn take_drops(&self, lo: u64, hi: u64) -> u64 {
        // Nothing dropped on purpose (every real machine): no marks to
        // look at, so serving and judging stay O(1).
        if self.dropped.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut found = 0;
        for n in (lo + 1)..=hi.min(lo + WINDOW) {
            let slot = &self.drops[(n % WINDOW) as usize];
            if slot.load(Ordering::Relaxed) == n {
                slot.store(0, Ordering::Relaxed);
                found += 1;
            }
        }
        found
    }

    /// The census's marks, for a report on requests left open: how many
    /// were numbered and issued, and how far serving and judging reached.
    pub fn marks(&self) -> Marks {
        Marks {
            numbered: self.req.load(Ordering::Relaxed),
            issued: self.sent.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            judged: self.judged.load(Ordering::Relaxed),
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            requests: self.req.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            heard: self.heard.load(Ordering::Relaxed),
            stranded: self.stranded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            unannounced: self.unannounced.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the census (between experiment cells): on its CPU, with that
    /// CPU's interrupts masked, while no request to it is half made (the
    /// module's "Who writes what").
    pub fn reset(&self) {
        for c in [
            &self.req,
            &self.sent,
            &self.served,
            &self.judged,
            &self.rescued_upto,
            &self.sent_at_clock,
            &self.delivered,
            &self.late,
            &self.heard,
            &self.stranded,
            &self.dropped,
            &self.unannounced,
        ]
        .into_iter()
        .chain(&self.drops)
        {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `k` requests, each numbered and issued.
    fn issue(c: &Census, k: usize) {
        for _ in 0..k {
            let n = c.begin_request();
            c.end_request(n, true);
        }
    }

    #[test]
    fn an_interrupt_serves_every_request_before_it() {
        let c = Census::new();
        issue(&c, 3);
        c.on_ipi_interrupt();
        assert_eq!(c.counts().delivered, 3, "merged edges are served together");
        c.on_clock();
        c.on_clock();
        assert_eq!(c.counts().stranded, 0);
        assert_eq!(c.counts().open(), 0);
    }

    #[test]
    fn the_marks_say_where_an_open_request_stands() {
        let c = Census::new();
        issue(&c, 2);
        c.on_ipi_interrupt();
        let n = c.begin_request();
        assert_eq!(c.counts().open(), 1);
        assert_eq!(
            c.marks(),
            Marks {
                numbered: 3,
                issued: 2,
                served: 2,
                judged: 0
            }
        );
        c.end_request(n, true);
        c.on_clock();
        c.on_clock();
        assert_eq!(c.marks().judged, 3);
        assert_eq!(c.counts().open(), 0);
    }

    #[test]
    fn a_request_without_an_interrupt_is_stranded_after_a_full_clock_period() {
        let c = Census::new();
        let n = c.begin_request();
        c.end_request(n, false);
        c.on_clock();
        assert_eq!(c.counts().stranded, 0, "issued after the previous clock");
        c.on_clock();
        let k = c.counts();
        assert_eq!((k.stranded, k.unannounced, k.dropped), (1, 1, 1));
        c.on_clock();
        c.on_ipi_interrupt();
        assert_eq!(c.counts().stranded, 1, "judged once");
        assert_eq!(
            c.counts().delivered,
            0,
            "a judged request is not served again"
        );
    }

    #[test]
    fn a_drop_covered_by_a_later_edge_is_not_unannounced() {
        let c = Census::new();
        let a = c.begin_request();
        c.end_request(a, false);
        let b = c.begin_request();
        c.end_request(b, true);
        c.on_ipi_interrupt();
        c.on_clock();
        c.on_clock();
        let k = c.counts();
        assert_eq!((k.delivered, k.stranded, k.unannounced), (2, 0, 0));
    }

    #[test]
    fn a_drop_marked_after_its_serving_is_never_counted() {
        let c = Census::new();
        let n = c.begin_request();
        // The target serves request n before its slow sender marks it lost.
        c.on_ipi_interrupt();
        c.end_request(n, false);
        for _ in 1..WINDOW {
            let m = c.begin_request();
            c.end_request(m, true);
            c.on_ipi_interrupt();
        }
        // A full window later the same slot comes round again, for a request
        // that was issued (not dropped on purpose) and whose interrupt never
        // came: stranded, but not one of the injection's drops.
        let m = c.begin_request();
        assert_eq!(m % WINDOW, n % WINDOW);
        c.end_request(m, true);
        c.on_clock();
        c.on_clock();
        let k = c.counts();
        assert_eq!((k.stranded, k.unannounced), (1, 0), "{k:?}");
    }

    #[test]
    fn an_interrupt_after_a_rescue_is_late() {
        let c = Census::new();
        // Two requests before the rescue (so the rescue's mark is not
        // the first number by chance), one after it.
        issue(&c, 2);
        let upto = c.before_rescue();
        c.rescued(upto);
        issue(&c, 1);
        c.on_ipi_interrupt();
        let k = c.counts();
        assert_eq!((k.late, k.delivered), (2, 1));
        c.reset();
        assert_eq!(c.counts(), Counts::default());
    }

    /// The IPI handler reads `req` at its entry and serves after its
    /// drain: a request numbered in between is not this interrupt's (its
    /// own interrupt, or a judgement, counts it).
    #[test]
    fn an_interrupt_serves_what_was_numbered_at_its_entry() {
        let c = Census::new();
        issue(&c, 1);
        let upto = c.ipi_entry();
        issue(&c, 1);
        c.serve(upto);
        assert_eq!((c.counts().delivered, c.counts().open()), (1, 1));
        c.on_ipi_interrupt();
        assert_eq!((c.counts().delivered, c.counts().open()), (2, 0));
    }

    /// The words senders write come first, the two of them: what
    /// `xcall::CpuState`'s inbox line is laid out for.
    #[test]
    fn the_senders_words_lead() {
        assert_eq!(core::mem::offset_of!(Census, req), 0);
        assert_eq!(Census::SENDERS_END, 2 * core::mem::size_of::<AtomicU64>());
    }

    /// Two requests whose interrupts were skipped, the second numbered
    /// after the listener began its look but posted before its take (its
    /// bit merged with the first's): the one take serves both, and an
    /// interrupt after it finds nothing new, so neither is judged
    /// stranded (with the number read before the take, the second was: a
    /// `machine=marvel` CI boot).
    #[test]
    fn a_listening_take_serves_as_heard_and_an_interrupt_after_it_finds_nothing() {
        let c = Census::new();
        let n1 = c.begin_request();
        c.end_request(n1, true);
        // The look begins here; request 2 is numbered and posted.
        let n2 = c.begin_request();
        c.end_request(n2, true);
        // The take (both messages), then the census.
        c.heard();
        c.on_ipi_interrupt();
        c.on_clock();
        c.on_clock();
        c.on_clock();
        let k = c.counts();
        assert_eq!((k.heard, k.delivered, k.stranded), (2, 0, 0));
        assert_eq!(k.open(), 0);
        c.heard();
        assert_eq!(c.counts().heard, 2, "served once");
    }

    #[test]
    fn counts_add_field_by_field() {
        let a = Counts {
            requests: 9,
            delivered: 3,
            late: 2,
            heard: 1,
            stranded: 1,
            dropped: 4,
            unannounced: 5,
        };
        let mut sum = a;
        sum.add(&a);
        assert_eq!(
            sum,
            Counts {
                requests: 18,
                delivered: 6,
                late: 4,
                heard: 2,
                stranded: 2,
                dropped: 8,
                unannounced: 10,
            }
        );
        assert_eq!(sum.open(), 18 - 6 - 4 - 2 - 2);
    }
}
