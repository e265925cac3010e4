//! The kernel side of IPIs: sending through the SMP core (mailbox bits, then
//! `wripir` in `AlphaPlatform::send_ipi`) and draining on receipt.

use alphasmp::mailbox::IpiMessage;

use crate::ipl::{self, IplGuard};
use crate::platform::SMP;

/// Posts `msg` to `cpu` and interrupts it. Callers pass an online CPU
/// number; anything else is a kernel bug, refused loudly.
pub fn send(cpu: usize, msg: IpiMessage) {
    if let Err(e) = SMP.send_message(cpu, msg) {
        panic!("{e}");
    }
}

/// Drains this CPU's mailbox and handles every message, at IPL 6 or higher
/// so the IPI interrupt cannot nest inside it on this CPU.
pub fn drain_mailbox() -> usize {
    let _ipl = IplGuard::raise(ipl::IPI);
    SMP.handle_ipi()
}

/// The idle loop's poll (policy-gated), at IPL 6 like `drain_mailbox`;
/// what it finds is counted as an idle rescue.
pub fn poll_when_idle() -> usize {
    let _ipl = IplGuard::raise(ipl::IPI);
    SMP.poll_when_idle()
}

/// Sent and handled counts of `cpu` for message type `index`.
pub fn counts(cpu: usize, index: usize) -> (u64, u64) {
    use core::sync::atomic::Ordering::Relaxed;
    let s = &SMP.cpu(cpu).stats;
    (
        s.ipi_sent[index].load(Relaxed),
        s.ipi_handled[index].load(Relaxed),
    )
}
