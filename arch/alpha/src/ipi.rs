//! The kernel side of IPIs: sending through the SMP core (mailbox bits, then
//! `wripir` in `AlphaPlatform::send_ipi`) and the idle loop's poll (the IPI
//! interrupt drains in `interrupt::dispatch`).

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

/// The idle loop's poll (policy-gated), at IPL 6 so that the IPI interrupt
/// cannot nest inside its drain; what it finds is counted as an idle
/// rescue.
pub fn poll_when_idle() -> usize {
    let _ipl = IplGuard::raise(ipl::IPI);
    SMP.poll_when_idle()
}

/// Sent and handled counts of `cpu` for message type `index`.
pub fn counts(cpu: usize, index: usize) -> (u64, u64) {
    use core::sync::atomic::Ordering::Relaxed;
    let s = &SMP.cpu(cpu).stats;
    (
        SMP.cpu(cpu).ipi_sent[index].load(Relaxed),
        s.ipi_handled[index].load(Relaxed),
    )
}
