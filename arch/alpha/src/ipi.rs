//! Sending and receiving IPIs: message bits in the target's mailbox, then
//! `wripir` (protocol in alphasmp::mailbox). The receive side runs from the
//! IPI interrupt and from every place that polls for lost IPIs.

use core::sync::atomic::Ordering;

use alphasmp::mailbox::IpiMessage;

use crate::ipl::{self, IplGuard};
use crate::percpu::{self, CPUS, MAX_CPUS};
use crate::{pal, smp};

/// Posts `msg` to `cpu` and interrupts it.
///
/// Callers pass an online CPU number; anything else is a kernel bug, so it
/// is refused loudly rather than sent to `cpu mod 4` as PALcode would.
pub fn send(cpu: usize, msg: IpiMessage) {
    assert!(cpu < MAX_CPUS, "IPI to impossible CPU {cpu}");
    let target = &CPUS[cpu];
    target.mailbox.post(msg);
    for m in msg.each() {
        target.ipi_sent[m.index()].fetch_add(1, Ordering::Relaxed);
    }
    // The mailbox store must be visible before the interrupt can be taken.
    pal::mb();
    pal::wripir(cpu);
}

/// Drains this CPU's mailbox and handles every message. Runs at IPL 6 (or
/// higher) so the IPI interrupt cannot nest inside it on this CPU.
pub fn drain_mailbox() -> usize {
    let _ipl = IplGuard::raise(ipl::IPI);
    let me = percpu::this();
    me.mailbox.drain(|msgs| {
        for m in msgs.each() {
            me.ipi_handled[m.index()].fetch_add(1, Ordering::Relaxed);
            handle(m);
        }
    })
}

fn handle(m: IpiMessage) {
    if m == IpiMessage::CPU_STOP {
        smp::park();
    }
    // CALL_FUNCTION is wired to the call queue by the cross-call layer;
    // RESCHEDULE and PING have no work beyond being counted.
}

/// Sent and handled counts of `cpu` for message type `index`.
pub fn counts(cpu: usize, index: usize) -> (u64, u64) {
    (CPUS[cpu].ipi_sent[index].load(Ordering::Relaxed), CPUS[cpu].ipi_handled[index].load(Ordering::Relaxed))
}
